//! The `WorkloadProfile` custom resource: one per workload, written by the profiler, read by the
//! webhook and by people (`kubectl get workloadprofiles`).

use k8s_openapi::apimachinery::pkg::{
    api::resource::Quantity,
    apis::meta::v1::{Condition, Time},
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::WorkloadRef;

/// Lowest [`WorkloadProfileStatus::confidence`] at which the webhook applies a recommendation
/// in `apply` mode.
pub const MIN_CONFIDENCE_TO_APPLY: f64 = 0.5;

/// Condition type: the profile holds a recommendation confident enough to apply.
pub const CONDITION_READY: &str = "Ready";

/// What Snug learned about one workload.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "snug.dev",
    version = "v1alpha1",
    kind = "WorkloadProfile",
    plural = "workloadprofiles",
    singular = "workloadprofile",
    shortname = "wp",
    category = "snug",
    namespaced,
    status = "WorkloadProfileStatus",
    doc = "What Snug learned about one workload: usage distributions, recommendation, traffic, peers.",
    printcolumn = r#"{"name":"Workload","type":"string","jsonPath":".status.summary.workload"}"#,
    printcolumn = r#"{"name":"CPU","type":"string","jsonPath":".status.summary.cpu","description":"Recommended CPU request, whole pod"}"#,
    printcolumn = r#"{"name":"Memory","type":"string","jsonPath":".status.summary.memory","description":"Recommended memory request, whole pod"}"#,
    printcolumn = r#"{"name":"P99","type":"string","jsonPath":".status.summary.latencyP99"}"#,
    printcolumn = r#"{"name":"RPS","type":"string","jsonPath":".status.summary.requestsPerSecond"}"#,
    printcolumn = r#"{"name":"Confidence","type":"string","jsonPath":".status.summary.confidence"}"#,
    printcolumn = r#"{"name":"OOM","type":"integer","jsonPath":".status.oomKills","priority":1}"#,
    printcolumn = r#"{"name":"Samples","type":"integer","jsonPath":".status.samples","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadProfileSpec {
    /// The workload this profile describes, in the profile's namespace.
    pub target_ref: WorkloadRef,
}

/// Everything the profiler learned; written with server-side apply by `snug-profiler`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadProfileStatus {
    /// Per container: usage distributions and the recommendation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerProfile>,
    /// OOM kills seen across the workload's pods since the profile began.
    #[serde(default)]
    pub oom_kills: u32,
    /// Inbound traffic measured by the sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficSummary>,
    /// Who talks to this workload, busiest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerTraffic>,
    /// Usage samples folded into the recommendation.
    #[serde(default)]
    pub samples: u64,
    /// When the first sample was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_since: Option<Time>,
    /// When the last sample was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sample: Option<Time>,
    /// Length of the observed window, in seconds.
    #[serde(default)]
    pub window_seconds: f64,
    /// How much to trust the recommendation, 0 to 1 (grows with samples and window).
    #[serde(default)]
    pub confidence: f64,
    /// Short strings for `kubectl get` columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<ProfileSummary>,
    /// Standard conditions; `Ready` once the recommendation may be applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The profiler's learned state (decaying histograms), compact and opaque to everyone
    /// else, so a restarted profiler resumes where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// One container's usage and recommendation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerProfile {
    /// Container name (the sidecar's is `snug-sidecar`).
    pub name: String,
    /// CPU usage distribution, in cores.
    #[serde(default)]
    pub cpu: UsageDistribution,
    /// Memory (working set) distribution, in bytes.
    #[serde(default)]
    pub memory: UsageDistribution,
    /// What Snug recommends for this container.
    #[serde(default)]
    pub recommendation: ContainerRecommendation,
    /// OOM kills of this container.
    #[serde(default)]
    pub oom_kills: u32,
}

/// Percentiles of a usage series (cores or bytes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageDistribution {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Highest value seen.
    pub max: f64,
}

/// Requests and limits to set, with the range within which the current values are fine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecommendation {
    /// The requests to set.
    #[serde(default)]
    pub requests: ResourceAmounts,
    /// The limits to set; a missing value means no limit (CPU) or keep the request ratio.
    #[serde(default)]
    pub limits: ResourceAmounts,
    /// Below this, the container is likely starved.
    #[serde(default)]
    pub lower_bound: ResourceAmounts,
    /// Above this, the request is likely wasted.
    #[serde(default)]
    pub upper_bound: ResourceAmounts,
}

/// A CPU and a memory amount, as Kubernetes quantities.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    /// CPU (`250m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory (`256Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

/// Inbound traffic, as the sidecars saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSummary {
    /// Requests per second over the last interval, all pods.
    pub requests_per_second: f64,
    /// Median time to the end of the response, seconds.
    pub latency_p50_seconds: f64,
    /// 95th percentile, seconds.
    pub latency_p95_seconds: f64,
    /// 99th percentile, seconds.
    pub latency_p99_seconds: f64,
    /// Share of requests answered 5xx (or a gRPC server error), 0 to 1.
    pub error_ratio: f64,
}

/// Traffic with one peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerTraffic {
    /// The peer: `Kind/name` of its workload when known (`Deployment/frontend`), else its IP,
    /// or `other` for the peers beyond the sidecar's limit.
    pub peer: String,
    /// Bytes per second from the peer to this workload.
    pub received_bytes_per_second: f64,
    /// Bytes per second from this workload to the peer.
    pub sent_bytes_per_second: f64,
    /// Requests per minute from the peer.
    pub requests_per_minute: f64,
}

/// Preformatted values for printer columns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSummary {
    /// `Kind/name` of the workload.
    pub workload: String,
    /// Recommended CPU request summed over containers (`350m`).
    pub cpu: String,
    /// Recommended memory request summed over containers (`320Mi`).
    pub memory: String,
    /// p99 latency (`12ms`), empty without traffic.
    #[serde(default)]
    pub latency_p99: String,
    /// Requests per second (`35.2`), empty without traffic.
    #[serde(default)]
    pub requests_per_second: String,
    /// Confidence as a percentage (`80%`).
    pub confidence: String,
}

impl WorkloadProfile {
    /// Whether the webhook may apply this profile's recommendation.
    pub fn is_confident(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.confidence >= MIN_CONFIDENCE_TO_APPLY && !s.containers.is_empty())
    }

    /// The recommendation for one container, if the profile has it.
    pub fn container(&self, name: &str) -> Option<&ContainerProfile> {
        self.status
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_is_namespaced_with_status_and_columns() {
        let crd = WorkloadProfile::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("workloadprofiles.snug.dev")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "Workload",
                "CPU",
                "Memory",
                "P99",
                "RPS",
                "Confidence",
                "OOM",
                "Samples",
                "Age"
            ]
        );
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["wp".to_owned()][..])
        );
    }

    #[test]
    fn confidence_gates_application() {
        let mut profile = WorkloadProfile::new(
            "deployment-web",
            WorkloadProfileSpec {
                target_ref: WorkloadRef::new("apps/v1", "Deployment", "web"),
            },
        );
        assert!(!profile.is_confident());
        profile.status = Some(WorkloadProfileStatus {
            confidence: 0.9,
            containers: vec![ContainerProfile {
                name: "app".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert!(profile.is_confident());
        assert!(profile.container("app").is_some());
        assert!(profile.container("nope").is_none());
    }

    #[test]
    fn status_round_trips_through_yaml_shaped_json() {
        let json = serde_json::json!({
            "apiVersion": "snug.dev/v1alpha1",
            "kind": "WorkloadProfile",
            "metadata": {"name": "deployment-web", "namespace": "shop", "resourceVersion": "42"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
            "status": {
                "confidence": 0.8,
                "containers": [{
                    "name": "app",
                    "recommendation": {"requests": {"cpu": "250m", "memory": "256Mi"}}
                }]
            }
        });
        let profile: WorkloadProfile = serde_json::from_value(json).unwrap();
        let rec = &profile.container("app").unwrap().recommendation;
        assert_eq!(rec.requests.cpu, Some(Quantity("250m".into())));
        assert_eq!(rec.limits.cpu, None);
    }
}
