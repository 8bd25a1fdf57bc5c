//! Which workload a pod belongs to, from its ownerReferences — the rule the webhook and the
//! profiler must agree on, since the webhook looks up the profile the profiler wrote.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The workload a profile describes: `kind` and `name` in the profile's namespace.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// API version of the workload, e.g. `apps/v1`.
    pub api_version: String,
    /// Kind: `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, `ReplicaSet`,
    /// `Rollout`, or `Pod` for a pod without a controller.
    pub kind: String,
    /// Name of the workload.
    pub name: String,
}

impl WorkloadRef {
    /// A reference from its parts.
    pub fn new(api_version: &str, kind: &str, name: &str) -> Self {
        WorkloadRef {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The name of this workload's `WorkloadProfile`: `<kind>-<name>`, lower-case kind, cut to
    /// the 253 characters a resource name may have.
    pub fn profile_name(&self) -> String {
        profile_name(&self.kind, &self.name)
    }

    /// The workload of a pod, from its metadata alone (no API call):
    /// - owned by a ReplicaSet whose name is `<deployment>-<pod-template-hash>` → that
    ///   Deployment; a ReplicaSet without that suffix → the ReplicaSet;
    /// - owned by a Job whose name is `<cronjob>-<digits>` and which carries no
    ///   `job-name`-independent hint → the Job (callers that can see the Job's own owner may
    ///   replace it with the CronJob via [`WorkloadRef::owner_of_job`]);
    /// - owned by a StatefulSet, DaemonSet, Job or any other controller → that controller;
    /// - no controller → the pod itself (by `generateName` stem when set, else its name).
    pub fn from_pod(meta: &ObjectMeta) -> Option<Self> {
        let owners = meta.owner_references.iter().flatten().map(|o| OwnerParts {
            api_version: &o.api_version,
            kind: &o.kind,
            name: &o.name,
            controller: o.controller == Some(true),
        });
        let hash = meta
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"))
            .map(String::as_str);
        WorkloadParts::from_pod_parts(
            owners,
            hash,
            meta.generate_name.as_deref(),
            meta.name.as_deref(),
        )
        .map(|w| w.to_ref())
    }

    /// For a Job owned by a CronJob (as seen on the Job's own ownerReferences), the CronJob.
    pub fn owner_of_job(job: &ObjectMeta) -> Option<Self> {
        job.owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "CronJob")
            .map(|o| WorkloadRef::new(&o.api_version, &o.kind, &o.name))
    }
}

/// A [`WorkloadRef`] borrowed from the pod it was read from (the webhook looks up a profile on
/// every admission without copying the names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadParts<'a> {
    /// API version of the workload.
    pub api_version: &'a str,
    /// Kind.
    pub kind: &'a str,
    /// Name.
    pub name: &'a str,
}

impl<'a> WorkloadParts<'a> {
    /// The workload of a pod by the rules of [`WorkloadRef::from_pod`], from the parts of the
    /// pod's metadata it reads, borrowed from wherever the caller holds them: the
    /// ownerReferences, the `pod-template-hash` label, `generateName` and `name`.
    pub fn from_pod_parts(
        owners: impl Iterator<Item = OwnerParts<'a>> + Clone,
        pod_template_hash: Option<&str>,
        generate_name: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Option<Self> {
        let parts = |api_version, kind, name| WorkloadParts {
            api_version,
            kind,
            name,
        };
        let owner = owners
            .clone()
            .find(|o| o.controller)
            .or_else(|| owners.clone().next());
        let Some(owner) = owner else {
            let name = generate_name
                .map(|stem| stem.trim_end_matches('-'))
                .filter(|stem| !stem.is_empty())
                .or(name)?;
            return Some(parts("v1", "Pod", name));
        };
        if owner.kind == "ReplicaSet"
            && owner.api_version.starts_with("apps/")
            && let Some(deployment) = pod_template_hash.and_then(|h| strip_suffix(owner.name, h))
        {
            return Some(parts("apps/v1", "Deployment", deployment));
        }
        Some(parts(owner.api_version, owner.kind, owner.name))
    }

    /// The owned reference.
    pub fn to_ref(&self) -> WorkloadRef {
        WorkloadRef::new(self.api_version, self.kind, self.name)
    }

    /// The name of this workload's `WorkloadProfile` (as [`WorkloadRef::profile_name`]).
    pub fn profile_name(&self) -> String {
        profile_name(self.kind, self.name)
    }
}

/// `<kind>-<name>`, lower-case kind, cut to the 253 characters a resource name may have.
fn profile_name(kind: &str, workload: &str) -> String {
    let mut name = String::with_capacity(kind.len() + 1 + workload.len());
    name.extend(kind.chars().map(|c| c.to_ascii_lowercase()));
    name.push('-');
    name.push_str(workload);
    // At a character boundary: names are ASCII once validated, but a pod being admitted is
    // not validated yet.
    let cut = (0..=253.min(name.len()))
        .rev()
        .find(|&at| name.is_char_boundary(at))
        .unwrap_or(0);
    name.truncate(cut);
    name
}

/// The fields of one ownerReference that decide a pod's workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerParts<'a> {
    /// `apiVersion`.
    pub api_version: &'a str,
    /// `kind`.
    pub kind: &'a str,
    /// `name`.
    pub name: &'a str,
    /// `controller: true`.
    pub controller: bool,
}

impl std::fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

fn strip_suffix<'a>(name: &'a str, hash: &str) -> Option<&'a str> {
    name.strip_suffix(hash)?
        .strip_suffix('-')
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn pod(owner: Option<(&str, &str, &str)>, hash: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some("web-5d4f8c7b9-x2x7k".into()),
            owner_references: owner.map(|(api, kind, name)| {
                vec![OwnerReference {
                    api_version: api.into(),
                    kind: kind.into(),
                    name: name.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            labels: hash.map(|h| [("pod-template-hash".to_owned(), h.to_owned())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn replicaset_with_template_hash_means_its_deployment() {
        let meta = pod(
            Some(("apps/v1", "ReplicaSet", "web-5d4f8c7b9")),
            Some("5d4f8c7b9"),
        );
        let w = WorkloadRef::from_pod(&meta).unwrap();
        assert_eq!(w, WorkloadRef::new("apps/v1", "Deployment", "web"));
        assert_eq!(w.profile_name(), "deployment-web");
    }

    #[test]
    fn profile_names_are_cut_to_253_bytes_at_a_character_boundary() {
        let long = WorkloadRef::new("apps/v1", "StatefulSet", &"a".repeat(300));
        let name = long.profile_name();
        assert_eq!(name.len(), 253);
        assert!(name.starts_with("statefulset-aaa"));
        // Not yet validated when the webhook reads it: a name that is not ASCII must not
        // make the cut panic.
        let wide = WorkloadRef::new("apps/v1", "Deployment", &"é".repeat(200));
        let name = wide.profile_name();
        assert!(
            name.len() <= 253 && name.starts_with("deployment-é"),
            "{name}"
        );
    }

    #[test]
    fn bare_replicaset_and_other_controllers_are_themselves() {
        let meta = pod(Some(("apps/v1", "ReplicaSet", "cache")), None);
        assert_eq!(WorkloadRef::from_pod(&meta).unwrap().kind, "ReplicaSet");
        let meta = pod(Some(("apps/v1", "StatefulSet", "db")), None);
        assert_eq!(
            WorkloadRef::from_pod(&meta).unwrap(),
            WorkloadRef::new("apps/v1", "StatefulSet", "db")
        );
        let meta = pod(Some(("batch/v1", "Job", "migrate")), None);
        assert_eq!(
            WorkloadRef::from_pod(&meta).unwrap().profile_name(),
            "job-migrate"
        );
    }

    #[test]
    fn pod_without_owner_is_its_own_workload() {
        let mut meta = pod(None, None);
        assert_eq!(
            WorkloadRef::from_pod(&meta).unwrap().name,
            "web-5d4f8c7b9-x2x7k"
        );
        meta.generate_name = Some("batch-".into());
        assert_eq!(WorkloadRef::from_pod(&meta).unwrap().name, "batch");
        assert_eq!(WorkloadRef::from_pod(&ObjectMeta::default()), None);
    }

    #[test]
    fn job_owned_by_cronjob_names_the_cronjob() {
        let job = pod(Some(("batch/v1", "CronJob", "nightly")), None);
        assert_eq!(
            WorkloadRef::owner_of_job(&job).unwrap(),
            WorkloadRef::new("batch/v1", "CronJob", "nightly")
        );
    }
}
