//! The contract between Snug's parts.
//!
//! Everything that more than one of `snug-webhook`, `snug-sidecar` and `snug-profiler` must agree
//! on lives here, and nothing else: the `WorkloadProfile` custom resource, the label and annotation
//! keys users write on namespaces and pods, the sidecar's ports, environment and metric names, the
//! latency bucket layout, and Kubernetes resource-quantity helpers.
//!
//! This crate has no runtime: no tokio, no HTTP. It is safe to depend on from anywhere.

pub mod keys;
pub mod latency;
pub mod metrics;
pub mod mode;
pub mod ports;
pub mod profile;
pub mod quantity;
pub mod workload;

pub use mode::Mode;
pub use ports::{PortMap, PortMapping};
pub use profile::{
    ContainerProfile, ContainerRecommendation, PeerTraffic, ProfileSummary, ResourceAmounts,
    TrafficSummary, UsageDistribution, WorkloadProfile, WorkloadProfileSpec, WorkloadProfileStatus,
};
pub use workload::{OwnerParts, WorkloadParts, WorkloadRef};

/// The API group of Snug's custom resources.
pub const GROUP: &str = "snug.dev";
/// The version of Snug's custom resources.
pub const VERSION: &str = "v1alpha1";
/// `GROUP/VERSION`, as written in `apiVersion`.
pub const API_VERSION: &str = "snug.dev/v1alpha1";

/// Errors from parsing values of the contract (quantities, port maps, modes, workload refs).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A Kubernetes resource quantity that does not parse.
    #[error("invalid quantity {0:?}: {1}")]
    Quantity(String, &'static str),
    /// A `listen:app` port map that does not parse.
    #[error("invalid port map {0:?}: {1}")]
    PortMap(String, String),
    /// A `snug.dev/mode` value that is not `observe`, `apply` or `off`.
    #[error("invalid mode {0:?}: expected observe, apply or off")]
    Mode(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
