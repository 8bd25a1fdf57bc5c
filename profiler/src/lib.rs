//! Snug's profiler: turns sidecar metrics, container usage and OOM kills into WorkloadProfiles.

pub mod crd;
pub mod replay;
