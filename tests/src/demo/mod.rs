//! `snug-demo`: Snug's whole loop on one machine, no cluster. A sample app whose CPU and memory
//! follow its requests runs as its own process; snug-sidecar proxies it and measures; two client
//! peers load it; snug-profiler (local mode) scrapes the sidecar, reads the app's CPU and memory
//! from procfs and writes a WorkloadProfile into a directory; snug-webhook serves TLS with
//! certificates made for the run, reads that directory, and answers an AdmissionReview for a new
//! pod of the same workload in `apply` mode. The sidecar, profiler and webhook are the real
//! components, run in this process on real sockets.

pub mod admit;
pub mod load;
pub mod show;
mod steps;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use snug_api::WorkloadProfile;

pub use steps::run;

/// The namespace of the demo's workload.
pub const NAMESPACE: &str = "shop";
/// The demo's workload: `Deployment/web`.
pub const WORKLOAD: &str = "web";

/// What the demo is asked to do.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// How long the load runs.
    pub duration: Duration,
    /// Where profiles, certificates and logs go.
    pub out: PathBuf,
    /// The executable that runs the sample app when given `app` (normally this program).
    pub app_exe: PathBuf,
}

/// Something that went wrong inside a step.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

/// `Result` of the demo's steps.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

/// The step that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("step '{step}' failed: {failure}")]
pub struct StepFailed {
    /// The step.
    pub step: &'static str,
    /// Why.
    pub failure: Failure,
}

/// What the demo produced, for the reader and for the end-to-end tests.
#[derive(Debug)]
pub struct Outcome {
    /// The profile the webhook read.
    pub profile: WorkloadProfile,
    /// The pod as the API server would have received it.
    pub pod_before: Value,
    /// The pod with the webhook's patch applied.
    pub pod_after: Pod,
    /// Requests answered, per peer name.
    pub requests: Vec<(&'static str, u64)>,
}

/// Prints one progress line per event, stamped with the time since the demo started.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
}

impl Progress {
    /// Starts the clock.
    pub fn start() -> Self {
        Progress {
            started: Instant::now(),
        }
    }

    /// `[  3.2s] step       message`
    pub fn say(&self, step: &str, message: impl std::fmt::Display) {
        println!(
            "[{:>5.1}s] {step:<10} {message}",
            self.started.elapsed().as_secs_f64()
        );
    }
}
