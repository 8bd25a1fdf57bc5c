//! Snug end to end: a real Kubernetes control plane for the tests (`cluster`), a kubelet that
//! runs pods as local processes (`kubelet`), the metrics.k8s.io API served from their procfs
//! (`metrics_api`), and a sample HTTP app to run in those pods (`sample_app`).

pub mod cluster;
pub mod demo;
pub mod error;
pub mod http;
pub mod kubelet;
pub mod metrics_api;
pub mod process;
pub mod procfs;
pub mod sample_app;
pub mod serve;
pub mod snug;
pub mod tls;
pub mod wait;

pub use cluster::Cluster;
pub use error::{Error, Result};
pub use kubelet::Kubelet;
