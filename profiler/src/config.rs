//! The profiler's configuration as plain values: what the command line parses into, and what
//! tests build directly.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use snug_api::WorkloadRef;
use snug_recommender::RecommenderKind;

use crate::{Error, Result};

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Config {
    /// In a cluster.
    Cluster(RunConfig),
    /// On one machine, without a cluster.
    Local(LocalConfig),
}

/// `snug-profiler run`: in a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// Time between cycles.
    pub interval: Duration,
    /// A profile is written at least this often, even when nothing changed much.
    pub refresh: Duration,
    /// Sidecar scrapes in flight at once.
    pub scrape_concurrency: usize,
    /// Time a sidecar has to answer.
    pub scrape_timeout: Duration,
    /// Time the metrics API has to answer, per namespace.
    pub usage_timeout: Duration,
    /// Which recommender.
    pub recommender: RecommenderKind,
    /// Observed window at which a profile's confidence saturates.
    pub min_window: Duration,
    /// Name of the leader-election Lease.
    pub lease_name: String,
    /// Namespace of the Lease (Snug's own).
    pub namespace: String,
    /// This replica's identity in the Lease (the pod name).
    pub identity: String,
    /// Address of `/metrics`, `/live`, `/ready`.
    pub health_listen: SocketAddr,
}

/// `snug-profiler local`: sidecars by URL, usage from procfs, profiles into a directory.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalConfig {
    /// Sidecar admin `/metrics` URLs, all of the one workload.
    pub scrape: Vec<String>,
    /// The app's processes; their usage is summed as the container's.
    pub pids: Vec<u32>,
    /// Where procfs is mounted.
    pub procfs: PathBuf,
    /// Where the cgroup filesystem is mounted.
    pub cgroupfs: PathBuf,
    /// The workload profiled.
    pub workload: WorkloadRef,
    /// Its namespace.
    pub namespace: String,
    /// The container the usage belongs to.
    pub container: String,
    /// Directory store of the profiles.
    pub profiles_dir: PathBuf,
    /// Time between cycles.
    pub interval: Duration,
    /// A profile is written at least this often.
    pub refresh: Duration,
    /// Observed window at which confidence saturates (shorten it for demos).
    pub min_window: Duration,
    /// Time a sidecar has to answer.
    pub scrape_timeout: Duration,
    /// Which recommender.
    pub recommender: RecommenderKind,
    /// Address of `/metrics`, `/live`, `/ready`, if any.
    pub health_listen: Option<SocketAddr>,
    /// Stop after this many cycles (tests); run until stopped when `None`.
    pub cycles: Option<u64>,
}

/// Parses `Kind/name` into a workload reference, with the API version of the kind.
pub fn parse_workload(text: &str) -> Result<WorkloadRef> {
    let (kind, name) = text
        .split_once('/')
        .filter(|(k, n)| !k.is_empty() && !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| Error::Config(format!("workload {text:?} is not Kind/name")))?;
    let api_version = match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        "Rollout" => "argoproj.io/v1alpha1",
        "Pod" => "v1",
        _ => {
            return Err(Error::Config(format!(
                "workload kind {kind:?}: expected Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Rollout or Pod"
            )));
        }
    };
    Ok(WorkloadRef::new(api_version, kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_parse_with_their_api_version() {
        assert_eq!(
            parse_workload("Deployment/web").unwrap(),
            WorkloadRef::new("apps/v1", "Deployment", "web")
        );
        assert_eq!(
            parse_workload("CronJob/nightly").unwrap().api_version,
            "batch/v1"
        );
        for bad in ["web", "Deployment/", "/web", "Gizmo/web", "Deployment/a/b"] {
            assert!(parse_workload(bad).is_err(), "{bad}");
        }
    }
}
