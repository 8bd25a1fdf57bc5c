//! Where the webhook looks things up during an admission — all in memory, never an API call:
//! profiles (from a directory or a watch of WorkloadProfiles) and what it must know about a
//! namespace (its mode annotation, its LimitRange maximums).

mod cluster;
mod dir;

use std::sync::Arc;

use k8s_openapi::api::core::v1::LimitRange;
use snug_api::{Mode, WorkloadProfile, quantity};

pub use cluster::{ClusterNamespaces, ClusterProfiles, server_supports_native_sidecars};
pub use dir::DirProfiles;

/// Profiles by namespace and name.
pub trait ProfileStore: Send + Sync + std::fmt::Debug {
    /// The profile `namespace/name`, if known.
    fn get(&self, namespace: &str, name: &str) -> Option<Arc<WorkloadProfile>>;
    /// Whether the store has loaded what there is to load (or given up waiting).
    fn is_ready(&self) -> bool;
    /// How many profiles the store holds.
    fn len(&self) -> usize;
    /// Whether the store holds no profile.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the webhook knows about namespaces.
pub trait NamespaceStore: Send + Sync + std::fmt::Debug {
    /// The namespace's `snug.dev/mode` annotation, if set and valid.
    fn mode(&self, namespace: &str) -> Option<Mode>;
    /// The lowest container maximums of the namespace's LimitRanges.
    fn limit_max(&self, namespace: &str) -> LimitMax;
}

/// Without a cluster: no namespace annotations, no LimitRanges.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNamespaces;

impl NamespaceStore for NoNamespaces {
    fn mode(&self, _: &str) -> Option<Mode> {
        None
    }
    fn limit_max(&self, _: &str) -> LimitMax {
        LimitMax::default()
    }
}

/// A fixed set of profiles, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct StaticProfiles(pub std::collections::HashMap<(String, String), Arc<WorkloadProfile>>);

impl StaticProfiles {
    /// A store holding these profiles, keyed by their own namespace and name.
    pub fn new(profiles: impl IntoIterator<Item = WorkloadProfile>) -> Self {
        StaticProfiles(
            profiles
                .into_iter()
                .filter_map(|p| Some((profile_key(&p)?, Arc::new(p))))
                .collect(),
        )
    }
}

impl ProfileStore for StaticProfiles {
    fn get(&self, namespace: &str, name: &str) -> Option<Arc<WorkloadProfile>> {
        self.0
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Namespace modes and limits given up front, for tests.
#[derive(Debug, Default)]
pub struct StaticNamespaces {
    /// Mode per namespace.
    pub modes: std::collections::HashMap<String, Mode>,
    /// LimitRange maximums per namespace.
    pub limits: std::collections::HashMap<String, LimitMax>,
}

impl NamespaceStore for StaticNamespaces {
    fn mode(&self, namespace: &str) -> Option<Mode> {
        self.modes.get(namespace).copied()
    }
    fn limit_max(&self, namespace: &str) -> LimitMax {
        self.limits.get(namespace).copied().unwrap_or_default()
    }
}

/// `(namespace, name)` of a profile, from its own metadata.
pub fn profile_key(profile: &WorkloadProfile) -> Option<(String, String)> {
    Some((
        profile.metadata.namespace.clone()?,
        profile.metadata.name.clone()?,
    ))
}

/// The most a container may have in a namespace, from its LimitRanges (`type: Container`,
/// `max`), in cores and bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct LimitMax {
    /// Highest CPU request or limit, cores.
    pub cpu: Option<f64>,
    /// Highest memory request or limit, bytes.
    pub memory: Option<f64>,
}

impl LimitMax {
    /// The tighter of the two.
    pub fn min(self, other: LimitMax) -> LimitMax {
        let min = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        LimitMax {
            cpu: min(self.cpu, other.cpu),
            memory: min(self.memory, other.memory),
        }
    }

    /// The container maximums one LimitRange sets.
    pub fn of(range: &LimitRange) -> LimitMax {
        let mut out = LimitMax::default();
        let items = range.spec.iter().flat_map(|s| s.limits.iter());
        for item in items.filter(|i| i.type_ == "Container") {
            let get = |key: &str| {
                item.max
                    .as_ref()?
                    .get(key)
                    .and_then(|q| quantity::parse_quantity(q).ok())
            };
            out = out.min(LimitMax {
                cpu: get("cpu"),
                memory: get("memory"),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{LimitRangeItem, LimitRangeSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn limit_range_container_max_is_read_and_the_tighter_wins() {
        let item = |type_: &str, cpu: &str| LimitRangeItem {
            type_: type_.into(),
            max: Some(
                [
                    ("cpu".to_owned(), Quantity(cpu.into())),
                    ("memory".to_owned(), Quantity("1Gi".into())),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let range = LimitRange {
            spec: Some(LimitRangeSpec {
                limits: vec![
                    item("Pod", "100m"),
                    item("Container", "2"),
                    item("Container", "1500m"),
                ],
            }),
            ..Default::default()
        };
        let max = LimitMax::of(&range);
        assert_eq!(max.cpu, Some(1.5));
        assert_eq!(max.memory, Some(1024.0 * 1024.0 * 1024.0));
        let tighter = max.min(LimitMax {
            cpu: None,
            memory: Some(1.0),
        });
        assert_eq!(
            tighter,
            LimitMax {
                cpu: Some(1.5),
                memory: Some(1.0)
            }
        );
    }
}
