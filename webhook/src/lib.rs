//! `snug-webhook`: Snug's mutating admission webhook.
//!
//! For every pod created in an opted-in namespace it injects the measuring sidecar (taking
//! over the pod's named ports), and, in `apply` mode, sets requests and limits from the
//! workload's learned profile. It never blocks a pod: whatever goes wrong, the pod is allowed.
//!
//! The library exposes [`admission::router`] and [`server::run`] so tests and benchmarks drive
//! the webhook without a process.

pub mod admission;
pub mod certs;
pub mod config;
mod error;
pub mod metrics;
pub mod mutate;
pub mod patch;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod view;

pub use admission::{Admission, router};
pub use config::{Cli, Config, InjectConfig};
pub use error::{Error, Result};
pub use server::{health_router, run};
