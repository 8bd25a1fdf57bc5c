//! Snug's recommenders: given a container's usage over time (and the OOM kills and traffic it
//! saw), what should its requests and limits be?
//!
//! Two implementations of one [`Recommender`] trait: [`vpa::VpaRecommender`], a reference
//! implementation of the published Kubernetes VPA recommender (the baseline), and
//! [`snug::SnugRecommender`], Snug's own. Both are pure and deterministic: time is passed in,
//! never read from a clock, so a replay of a trace is exact and causal.

pub mod checkpoint;
pub mod histogram;
pub mod peaks;
pub mod quality;
pub mod replay;
pub mod score;
pub mod snug;
pub mod trace;
pub mod vpa;

use serde::{Deserialize, Serialize};

/// One usage observation of a container. A missing value is "no reading", not zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Unix time of the observation, seconds.
    pub at: f64,
    /// CPU used, in cores, averaged over the sampling interval.
    pub cpu_cores: Option<f64>,
    /// Memory working set, in bytes.
    pub memory_bytes: Option<f64>,
}

/// The container's resources as they are now; limits keep this limit/request ratio.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CurrentResources {
    /// CPU request, cores.
    pub cpu_request: Option<f64>,
    /// CPU limit, cores.
    pub cpu_limit: Option<f64>,
    /// Memory request, bytes.
    pub memory_request: Option<f64>,
    /// Memory limit, bytes.
    pub memory_limit: Option<f64>,
}

/// What a recommender advises for one container.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// CPU request, cores.
    pub cpu_request: f64,
    /// CPU limit, cores; `None` means no CPU limit.
    pub cpu_limit: Option<f64>,
    /// Memory request, bytes.
    pub memory_request: f64,
    /// Memory limit, bytes (always given).
    pub memory_limit: f64,
    /// Below this CPU request the container is likely starved, cores.
    pub cpu_lower_bound: f64,
    /// Above this CPU request it is likely wasted, cores.
    pub cpu_upper_bound: f64,
    /// Below this memory request the container is likely to be OOM-killed, bytes.
    pub memory_lower_bound: f64,
    /// Above this memory request it is likely wasted, bytes.
    pub memory_upper_bound: f64,
    /// How much to trust this, 0 to 1.
    pub confidence: f64,
}

/// A recommender for one container. Calls come in time order.
pub trait Recommender: std::fmt::Debug + Send {
    /// Short name for tables and CLI flags (`vpa`, `snug`).
    fn name(&self) -> &'static str;
    /// Folds in one usage observation.
    fn observe(&mut self, usage: Usage);
    /// The container was OOM-killed at `at` while its memory limit was `memory_limit` bytes.
    fn oom_killed(&mut self, at: f64, memory_limit: f64);
    /// The container was CPU-throttled at `at` (usage hit a CPU limit of `cpu_limit` cores).
    /// Recommenders that do not use the signal ignore it.
    fn throttled(&mut self, _at: f64, _cpu_limit: f64) {}
    /// Inbound requests per second measured by the sidecar at `at`. Recommenders that do not use
    /// the signal ignore it.
    fn observe_traffic(&mut self, _at: f64, _requests_per_second: f64) {}
    /// The resources now in force for the container (its pod was created or resized with them).
    /// VPA weighs CPU samples by the CPU request in force; recommenders that do not use it
    /// ignore it.
    fn applied(&mut self, _resources: &CurrentResources) {}
    /// The recommendation at time `at`, or `None` before there is enough data for any.
    fn recommend(&self, at: f64, current: &CurrentResources) -> Option<Recommendation>;
    /// The learned state as plain JSON, for a restart to resume from
    /// ([`RecommenderKind::restore`] reads it). Uncompressed: a caller that stores many states
    /// compresses them once, together (the profiler gzips a workload's whole checkpoint).
    fn state_json(&self) -> Result<String>;
    /// The learned state, compact on its own (a few KiB at most): [`Recommender::state_json`]
    /// gzipped and base64-encoded ([`checkpoint::compress`]).
    fn checkpoint(&self) -> Result<String> {
        checkpoint::compress(&self.state_json()?)
    }
}

/// Which recommender to use; the profiler and the replay tool take it as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecommenderKind {
    /// Snug's own recommender.
    Snug,
    /// The VPA baseline.
    Vpa,
}

impl std::str::FromStr for RecommenderKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "snug" => Ok(RecommenderKind::Snug),
            "vpa" => Ok(RecommenderKind::Vpa),
            other => Err(Error::UnknownRecommender(other.to_string())),
        }
    }
}

impl RecommenderKind {
    /// A fresh recommender of this kind.
    pub fn build(self) -> Box<dyn Recommender> {
        match self {
            RecommenderKind::Snug => Box::new(snug::SnugRecommender::default()),
            RecommenderKind::Vpa => Box::new(vpa::VpaRecommender::default()),
        }
    }

    /// A recommender of this kind resumed from [`Recommender::state_json`] or
    /// [`Recommender::checkpoint`] output (either is accepted).
    pub fn restore(self, checkpoint: &str) -> Result<Box<dyn Recommender>> {
        Ok(match self {
            RecommenderKind::Snug => Box::new(snug::SnugRecommender::restore(checkpoint)?),
            RecommenderKind::Vpa => Box::new(vpa::VpaRecommender::restore(checkpoint)?),
        })
    }
}

/// A usable amount of a resource: finite and not negative (NaN is not).
pub(crate) fn is_amount(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A checkpoint that cannot be decoded.
    #[error("invalid checkpoint: {0}")]
    Checkpoint(String),
    /// A recommender name that is neither `snug` nor `vpa`.
    #[error("unknown recommender {0:?} (expected snug or vpa)")]
    UnknownRecommender(String),
    /// A trace file that cannot be read.
    #[error("invalid trace {path}: {reason}")]
    Trace {
        /// File the trace came from.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
