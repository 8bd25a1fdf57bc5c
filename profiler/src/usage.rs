//! Container CPU and memory usage, read once per cycle: metrics.k8s.io in a cluster, procfs in
//! local mode.

pub mod cgroup;
pub mod metrics_api;
pub mod procfs;

use std::future::Future;

/// One container's usage at the time of the read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerUsage {
    /// Namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// CPU in cores, `None` when not known yet (procfs needs two reads).
    pub cpu_cores: Option<f64>,
    /// Working-set memory in bytes.
    pub memory_bytes: Option<f64>,
    /// Whether the kernel throttled the container's CPU since the previous read (its cgroup's
    /// `nr_throttled` grew). Sources that cannot tell (metrics.k8s.io) say `false`, and the
    /// profiler then judges by usage against the limit in the pod spec.
    pub throttled: bool,
    /// The CPU limit the source found in force (the cgroup's quota), cores; `None` when there
    /// is none or the source cannot tell.
    pub cpu_limit: Option<f64>,
}

/// How a usage read went, as counted in `snug_profiler_usage_reads_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageOutcome {
    /// Read.
    Ok,
    /// The source is not there: no metrics-server (404, 503), a process that exited.
    Unavailable,
    /// The source did not answer in time.
    Timeout,
    /// Anything else (an unreadable answer, a refused call).
    Error,
}

impl UsageOutcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            UsageOutcome::Ok => "ok",
            UsageOutcome::Unavailable => "unavailable",
            UsageOutcome::Timeout => "timeout",
            UsageOutcome::Error => "error",
        }
    }
}

/// One read of one scope (a namespace, a process) that did not go well.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageProblem {
    /// What was read: a namespace, a PID.
    pub scope: String,
    /// How it went.
    pub outcome: UsageOutcome,
    /// Why, for the log.
    pub message: String,
}

/// Everything one usage read returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageReport {
    /// Usage per container.
    pub usage: Vec<ContainerUsage>,
    /// Scopes read successfully.
    pub ok: usize,
    /// Scopes that failed; the cycle goes on without their usage.
    pub problems: Vec<UsageProblem>,
}

/// Where usage comes from.
pub trait UsageSource: Send + Sync {
    /// Reads the usage of the containers in `namespaces` (sources that know their containers
    /// already, like procfs, ignore it).
    fn read(&self, namespaces: &[String]) -> impl Future<Output = UsageReport> + Send;
}
