//! Requests and limits from a profile: the recommendation, the original limit/request ratio
//! when the profile gives no limit, clamped to the pod's `snug.dev/min-*`/`max-*` bounds and
//! the namespace's LimitRange maximums.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Container, ResourceRequirements},
    apimachinery::pkg::api::resource::Quantity,
};
use snug_api::{ContainerRecommendation, keys, quantity};

use crate::store::LimitMax;

/// Bounds of one resource: a floor and a ceiling, each with the text to write when hit.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Range {
    /// Lowest request.
    pub min: Option<(f64, Quantity)>,
    /// Highest request or limit.
    pub max: Option<(f64, Quantity)>,
}

/// The bounds that hold for a pod.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Bounds {
    /// CPU, cores.
    pub cpu: Range,
    /// Memory, bytes.
    pub memory: Range,
    /// Annotations that did not parse (reported, then ignored).
    pub invalid: Vec<String>,
}

impl Bounds {
    /// Bounds from the pod's annotations, tightened by the namespace's LimitRange.
    pub fn new(annotations: Option<&BTreeMap<String, String>>, limit_max: LimitMax) -> Bounds {
        let mut bounds = Bounds::default();
        let mut read = |key: &str| -> Option<(f64, Quantity)> {
            let text = annotations?.get(key)?;
            match quantity::parse(text) {
                Ok(v) => Some((v, Quantity(text.trim().to_owned()))),
                Err(e) => {
                    bounds.invalid.push(format!("{key}: {e}"));
                    None
                }
            }
        };
        let (min_cpu, max_cpu) = (read(keys::MIN_CPU), read(keys::MAX_CPU));
        let (min_memory, max_memory) = (read(keys::MIN_MEMORY), read(keys::MAX_MEMORY));
        bounds.cpu = Range {
            min: min_cpu,
            max: tighter(max_cpu, limit_max.cpu, cpu_floor),
        };
        bounds.memory = Range {
            min: min_memory,
            max: tighter(max_memory, limit_max.memory, memory_floor),
        };
        bounds
    }
}

fn tighter(
    annotated: Option<(f64, Quantity)>,
    limit_range: Option<f64>,
    format: fn(f64) -> Quantity,
) -> Option<(f64, Quantity)> {
    match (annotated, limit_range) {
        (Some(a), Some(l)) if l < a.0 => Some((l, format(l))),
        (Some(a), _) => Some(a),
        (None, Some(l)) => Some((l, format(l))),
        (None, None) => None,
    }
}

/// Whole millicores, rounded down: a ceiling must never be written above itself.
fn cpu_floor(cores: f64) -> Quantity {
    Quantity(format!(
        "{}m",
        (cores * 1000.0 + 1e-6).floor().max(0.0) as u64
    ))
}

/// Whole bytes, rounded down.
fn memory_floor(bytes: f64) -> Quantity {
    Quantity(format!("{}", bytes.floor().max(0.0) as u64))
}

/// The resources a container should get from its recommendation, or `None` when the
/// recommendation says nothing usable.
pub fn plan(
    container: &Container,
    rec: &ContainerRecommendation,
    bounds: &Bounds,
) -> Option<ResourceRequirements> {
    let original = container.resources.clone().unwrap_or_default();
    let mut requests = original.requests.clone().unwrap_or_default();
    let mut limits = original.limits.clone().unwrap_or_default();
    let mut changed = false;
    let resources = [
        (
            "cpu",
            &rec.requests.cpu,
            &rec.limits.cpu,
            &bounds.cpu,
            quantity::format_cpu as fn(f64) -> Quantity,
        ),
        (
            "memory",
            &rec.requests.memory,
            &rec.limits.memory,
            &bounds.memory,
            quantity::format_memory,
        ),
    ];
    for (name, want_request, want_limit, range, format) in resources {
        let Some(request) = want_request
            .as_ref()
            .and_then(|q| quantity::parse_quantity(q).ok())
        else {
            continue;
        };
        let old_request = original_value(&original.requests, name);
        let old_limit = original_value(&original.limits, name);
        let request = clamp(request, range);
        let limit = match want_limit
            .as_ref()
            .and_then(|q| quantity::parse_quantity(q).ok())
        {
            Some(limit) => Some(limit),
            // Keep the ratio the owner chose; a limit without a request means request == limit.
            None => {
                old_limit.map(|l| request * l / old_request.unwrap_or(l).max(f64::MIN_POSITIVE))
            }
        };
        requests.insert(name.into(), written(request, range, format));
        if let Some(limit) = limit {
            let limit = clamp(
                limit,
                &Range {
                    min: None,
                    max: range.max.clone(),
                },
            )
            .max(request);
            limits.insert(name.into(), written(limit, range, format));
        }
        changed = true;
    }
    changed.then(|| ResourceRequirements {
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..original
    })
}

fn original_value(map: &Option<BTreeMap<String, Quantity>>, name: &str) -> Option<f64> {
    map.as_ref()?
        .get(name)
        .and_then(|q| quantity::parse_quantity(q).ok())
        .filter(|v| *v > 0.0)
}

fn clamp(value: f64, range: &Range) -> f64 {
    let mut v = value;
    if let Some((min, _)) = &range.min {
        v = v.max(*min);
    }
    if let Some((max, _)) = &range.max {
        v = v.min(*max);
    }
    v
}

/// The quantity to write: formatting rounds up, so a value at or near the ceiling is written
/// as the ceiling itself and never above it.
fn written(value: f64, range: &Range, format: fn(f64) -> Quantity) -> Quantity {
    let text = format(value);
    match &range.max {
        Some((max, max_text)) if quantity::parse_quantity(&text).map_or(true, |v| v > *max) => {
            max_text.clone()
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snug_api::ResourceAmounts;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let map = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| pairs.iter().map(|(k, v)| (k.to_string(), q(v))).collect())
        };
        Container {
            name: "app".into(),
            resources: Some(ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn rec(cpu: &str, memory: &str) -> ContainerRecommendation {
        ContainerRecommendation {
            requests: ResourceAmounts {
                cpu: Some(q(cpu)),
                memory: Some(q(memory)),
            },
            ..Default::default()
        }
    }

    #[test]
    fn keeps_the_original_limit_to_request_ratio() {
        let c = container(
            &[("cpu", "500m"), ("memory", "512Mi")],
            &[("cpu", "1"), ("memory", "512Mi")],
        );
        let r = plan(&c, &rec("200m", "300Mi"), &Bounds::default()).unwrap();
        let requests = r.requests.unwrap();
        let limits = r.limits.unwrap();
        assert_eq!(requests["cpu"], q("200m"));
        assert_eq!(limits["cpu"], q("400m"));
        assert_eq!(requests["memory"], q("300Mi"));
        assert_eq!(limits["memory"], q("300Mi"));
    }

    #[test]
    fn no_original_limit_means_no_limit_unless_the_profile_gives_one() {
        let c = container(&[("cpu", "1")], &[]);
        let r = plan(&c, &rec("100m", "64Mi"), &Bounds::default()).unwrap();
        assert!(r.limits.is_none());
        let mut with_limit = rec("100m", "64Mi");
        with_limit.limits.memory = Some(q("128Mi"));
        let r = plan(&c, &with_limit, &Bounds::default()).unwrap();
        assert_eq!(r.limits.unwrap()["memory"], q("128Mi"));
    }

    #[test]
    fn bounds_and_limit_range_clamp_requests_and_limits() {
        let annotations: BTreeMap<String, String> = [
            (keys::MIN_CPU.to_owned(), "300m".to_owned()),
            (keys::MAX_MEMORY.to_owned(), "100M".to_owned()),
            (keys::MAX_CPU.to_owned(), "nonsense".to_owned()),
        ]
        .into();
        let bounds = Bounds::new(
            Some(&annotations),
            LimitMax {
                cpu: Some(0.8),
                memory: None,
            },
        );
        assert_eq!(bounds.invalid.len(), 1);
        let c = container(
            &[("cpu", "1"), ("memory", "1Gi")],
            &[("cpu", "4"), ("memory", "2Gi")],
        );
        let r = plan(&c, &rec("100m", "400Mi"), &bounds).unwrap();
        let (requests, limits) = (r.requests.unwrap(), r.limits.unwrap());
        assert_eq!(requests["cpu"], q("300m"), "raised to min-cpu");
        assert_eq!(
            limits["cpu"],
            q("800m"),
            "ratio 4x capped by the LimitRange max"
        );
        // 100M is not a whole number of MiB: the ceiling is written verbatim, never above.
        assert_eq!(requests["memory"], q("100M"));
        assert_eq!(limits["memory"], q("100M"));
    }

    #[test]
    fn an_empty_recommendation_changes_nothing() {
        let c = container(&[("cpu", "1")], &[]);
        assert!(plan(&c, &ContainerRecommendation::default(), &Bounds::default()).is_none());
    }
}
