//! Snug's profiler: turns sidecar metrics, container usage and OOM kills into WorkloadProfiles.
//!
//! One loop ([`cycle::Profiler`]) runs the same way in a cluster and on a laptop; three seams
//! decide where its inputs come from and where profiles go:
//! - [`pods::PodSource`]: a kube watch of pods ([`pods::kube::PodIndex`]) or the fixed targets
//!   of local mode ([`pods::LocalPods`]);
//! - [`usage::UsageSource`]: metrics.k8s.io PodMetrics ([`usage::metrics_api`]) or procfs
//!   ([`usage::procfs`]);
//! - [`store::ProfileStore`]: server-side apply ([`store::kube`]) or a directory of YAML files
//!   ([`store::dir`]).

pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod crd;
pub mod cycle;
pub mod distribution;
pub mod exposition;
#[cfg(test)]
mod fake_api;
pub mod fixture;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod model;
mod once;
pub mod pods;
pub mod reading;
pub mod run;
pub mod scrape;
pub mod store;
pub mod telemetry;
pub mod traffic;
pub mod usage;

pub use config::{Config, LocalConfig, RunConfig};
pub use run::{run_cluster, run_local};

/// Errors of the profiler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// The workload a profile belongs to is gone (deleted mid-cycle).
    #[error("workload {0} no longer exists")]
    WorkloadGone(String),
    /// Reading or writing a file of the directory store.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A profile file that is not a WorkloadProfile.
    #[error("{path}: not a WorkloadProfile: {source}")]
    Yaml {
        /// The file.
        path: std::path::PathBuf,
        /// The parse error.
        #[source]
        source: serde_norway::Error,
    },
    /// A checkpoint that cannot be written or read back.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Configuration that cannot work (bad `--workload`, ...).
    #[error("configuration: {0}")]
    Config(String),
    /// The health and metrics listener.
    #[error("health listener: {0}")]
    Serve(#[source] std::io::Error),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::WorkloadGone(_) => "workload_gone",
            Error::Io { .. } => "io",
            Error::Yaml { .. } => "yaml",
            Error::Checkpoint(_) => "checkpoint",
            Error::Config(_) => "config",
            Error::Serve(_) => "serve",
        }
    }
}

impl From<kube::Error> for Error {
    fn from(error: kube::Error) -> Self {
        Error::Kube(error)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Seconds since the Unix epoch, the profiler's notion of "now" (recommenders take time as a
/// number, so tests and replays pass it in).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
