//! Where profiles go: the API server (server-side apply) or a directory of YAML files.

pub mod dir;
pub mod kube;

use std::future::Future;

use snug_api::{WorkloadProfile, WorkloadProfileStatus};

use crate::{Result, pods::WorkloadKey};

/// Reads and writes WorkloadProfiles.
pub trait ProfileStore: Send + Sync {
    /// The stored profile of a workload, if there is one (to resume from its checkpoint).
    fn load(
        &self,
        key: &WorkloadKey,
    ) -> impl Future<Output = Result<Option<WorkloadProfile>>> + Send;

    /// Writes a workload's profile with this status, creating it if needed.
    /// [`Error::WorkloadGone`](crate::Error::WorkloadGone) when the workload no longer exists.
    fn save(
        &self,
        key: &WorkloadKey,
        status: &WorkloadProfileStatus,
    ) -> impl Future<Output = Result<()>> + Send;
}
