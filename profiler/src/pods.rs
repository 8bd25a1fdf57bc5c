//! The pods the profiler knows, reduced to what it needs: workload, IP, scrape target,
//! container resources and OOM kills. A [`PodSource`] hands out a snapshot each cycle.

pub mod kube;

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use crate::reading;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use snug_api::{WorkloadRef, keys, ports, quantity};
use snug_recommender::CurrentResources;

/// A workload: its namespace and reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    /// Namespace of the workload (and of its profile).
    pub namespace: String,
    /// The workload.
    pub workload: WorkloadRef,
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.workload)
    }
}

/// One pod, slimmed down.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID, which keys per-pod state (counters, OOM kills) across renames and restarts.
    pub uid: String,
    /// The workload, `None` for a pod without an owner (not profiled).
    pub workload: Option<WorkloadRef>,
    /// The pod IP, for mapping peers to workloads.
    pub ip: Option<IpAddr>,
    /// Whether the webhook injected a sidecar (so the pod is scraped and profiled).
    pub injected: bool,
    /// The sidecar's metrics URL, for injected pods with an IP.
    pub scrape_url: Option<String>,
    /// Containers, init containers that run as sidecars included.
    pub containers: Vec<ContainerInfo>,
}

/// One container of a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerInfo {
    /// Container name.
    pub name: String,
    /// Requests and limits in the pod spec.
    pub resources: CurrentResources,
    /// Restart count from the container status.
    pub restart_count: i32,
    /// Whether its last termination was an OOM kill.
    pub last_oom_killed: bool,
}

/// What a pod source knows at the start of a cycle.
#[derive(Debug, Clone, Default)]
pub struct PodSnapshot {
    /// Pods to profile (injected, in any namespace) and pods of opted-in namespaces.
    pub pods: Vec<Arc<PodInfo>>,
}

impl PodSnapshot {
    /// Peer IP → `Kind/name` of the pod's workload.
    pub fn workloads_by_ip(&self) -> HashMap<IpAddr, String> {
        self.pods
            .iter()
            .filter_map(|pod| {
                let workload = pod.workload.as_ref()?;
                Some((pod.ip?, workload.to_string()))
            })
            .collect()
    }
}

/// Where pods come from.
pub trait PodSource: Send + Sync {
    /// The pods as known now (no API call: sources keep an index current in the background).
    fn snapshot(&self) -> PodSnapshot;
}

/// Local mode: one workload, whose sidecars are the given URLs.
#[derive(Debug, Clone)]
pub struct LocalPods {
    pods: Vec<Arc<PodInfo>>,
}

impl LocalPods {
    /// One pseudo-pod per sidecar URL, all of `workload` in `namespace`, with one container.
    pub fn new(namespace: &str, workload: &WorkloadRef, container: &str, urls: &[String]) -> Self {
        let pod = |index: usize, url: Option<&String>| {
            Arc::new(PodInfo {
                namespace: namespace.to_owned(),
                name: format!("{}-local-{index}", workload.name),
                uid: format!("local-{index}"),
                workload: Some(workload.clone()),
                ip: None,
                injected: true,
                scrape_url: url.cloned(),
                containers: vec![ContainerInfo {
                    name: container.to_owned(),
                    ..Default::default()
                }],
            })
        };
        let mut pods: Vec<_> = urls
            .iter()
            .enumerate()
            .map(|(i, u)| pod(i, Some(u)))
            .collect();
        if pods.is_empty() {
            pods.push(pod(0, None));
        }
        LocalPods { pods }
    }

    /// The name of the pod usage is attributed to (the first one).
    pub fn usage_pod(&self) -> Option<&PodInfo> {
        self.pods.first().map(|p| p.as_ref())
    }
}

impl PodSource for LocalPods {
    fn snapshot(&self) -> PodSnapshot {
        PodSnapshot {
            pods: self.pods.clone(),
        }
    }
}

/// Slims a Kubernetes pod down to a [`PodInfo`]; `None` for a pod without namespace, name or
/// UID (which the API server never sends).
pub fn pod_info(pod: &Pod) -> Option<PodInfo> {
    let meta = &pod.metadata;
    let owned = meta
        .owner_references
        .as_ref()
        .is_some_and(|o| !o.is_empty());
    let injected = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(keys::INJECTED))
        .is_some_and(|v| v == "true");
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok());
    let scrape_url = injected
        .then_some(ip)
        .flatten()
        .map(|ip: IpAddr| sidecar_url(ip, ports::ADMIN_PORT));
    let spec = pod.spec.as_ref();
    let specs = spec.into_iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    });
    let statuses: Vec<&ContainerStatus> = pod
        .status
        .iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .collect();
    let containers = specs
        .map(|c| container_info(c, statuses.iter().find(|s| s.name == c.name).copied()))
        .collect();
    Some(PodInfo {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        workload: owned.then(|| WorkloadRef::from_pod(meta)).flatten(),
        ip,
        injected,
        scrape_url,
        containers,
    })
}

/// `http://<ip>:<port>/metrics?<query>`, with IPv6 addresses bracketed; the query asks for the
/// families the profiler reads ([`reading::metrics_query`]).
pub fn sidecar_url(ip: IpAddr, port: u16) -> String {
    let (path, query) = (ports::METRICS_PATH, reading::metrics_query());
    match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{port}{path}?{query}"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}{path}?{query}"),
    }
}

fn container_info(container: &Container, status: Option<&ContainerStatus>) -> ContainerInfo {
    let resources = container.resources.as_ref();
    let amount = |map: Option<&std::collections::BTreeMap<String, _>>, key: &str| {
        map.and_then(|m| m.get(key))
            .and_then(|q| quantity::parse_quantity(q).ok())
    };
    let requests = resources.and_then(|r| r.requests.as_ref());
    let limits = resources.and_then(|r| r.limits.as_ref());
    let last_oom_killed = status
        .and_then(|s| s.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"));
    ContainerInfo {
        name: container.name.clone(),
        resources: CurrentResources {
            cpu_request: amount(requests, "cpu"),
            cpu_limit: amount(limits, "cpu"),
            memory_request: amount(requests, "memory"),
            memory_limit: amount(limits, "memory"),
        },
        restart_count: status.map_or(0, |s| s.restart_count),
        last_oom_killed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn injected_pod_gets_scrape_url_resources_and_oom() {
        let pod = pod(serde_json::json!({
            "metadata": {
                "namespace": "shop", "name": "web-5d4f8c7b9-x2x7k", "uid": "u1",
                "labels": {"snug.dev/injected": "true", "pod-template-hash": "5d4f8c7b9"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-5d4f8c7b9", "uid": "rs1", "controller": true}]
            },
            "spec": {"containers": [{"name": "app", "resources": {
                "requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}}],
                "initContainers": [{"name": "snug-sidecar", "restartPolicy": "Always"}]},
            "status": {"podIP": "10.1.2.3", "containerStatuses": [{
                "name": "app", "restartCount": 2, "ready": true, "image": "x", "imageID": "",
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
        }));
        let info = pod_info(&pod).unwrap();
        assert_eq!(
            info.workload,
            Some(WorkloadRef::new("apps/v1", "Deployment", "web"))
        );
        assert_eq!(
            info.scrape_url.as_deref(),
            Some(
                "http://10.1.2.3:4790/metrics?name%5B%5D=snug_requests_total\
                 &name%5B%5D=snug_request_duration_seconds\
                 &name%5B%5D=snug_peer_received_bytes_total\
                 &name%5B%5D=snug_peer_sent_bytes_total&name%5B%5D=snug_peer_requests_total"
            )
        );
        let url: http::Uri = info.scrape_url.unwrap().parse().unwrap();
        assert_eq!(url.path(), "/metrics");
        let app = &info.containers[0];
        assert_eq!(app.resources.cpu_request, Some(0.25));
        assert_eq!(app.resources.memory_limit, Some(512.0 * 1024.0 * 1024.0));
        assert_eq!((app.restart_count, app.last_oom_killed), (2, true));
        assert_eq!(info.containers[1].name, "snug-sidecar");
    }

    #[test]
    fn pod_without_owner_has_no_workload_and_uninjected_pod_no_url() {
        let info = pod_info(&pod(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "debug", "uid": "u2"},
            "status": {"podIP": "fd00::1"}
        })))
        .unwrap();
        assert_eq!(info.workload, None);
        assert_eq!(info.scrape_url, None);
        assert_eq!(
            sidecar_url("fd00::1".parse().unwrap(), 4790),
            format!("http://[fd00::1]:4790/metrics?{}", reading::metrics_query())
        );
    }
}
