//! Shutdown in two steps: *draining* (stop accepting, let in-flight work finish, ask HTTP
//! connections to close once idle) and then *stop* (close whatever is left, at the deadline).

use std::{future::Future, pin::Pin};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Shared by every listener and connection task.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    /// Cancelled when shutdown starts.
    pub draining: CancellationToken,
    /// Cancelled when the grace period is over.
    pub stop: CancellationToken,
    /// Every listener and connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

impl Lifecycle {
    /// Drives an HTTP server connection to its end: on draining it is asked to close gracefully
    /// (`graceful`), on stop it is dropped. Returns `None` when it was dropped.
    pub async fn drive<C, T>(&self, mut conn: Pin<&mut C>, graceful: fn(Pin<&mut C>)) -> Option<T>
    where
        C: Future<Output = T>,
    {
        tokio::select! {
            result = conn.as_mut() => return Some(result),
            () = self.draining.cancelled() => graceful(conn.as_mut()),
            () = self.stop.cancelled() => return None,
        }
        tokio::select! {
            result = conn => Some(result),
            () = self.stop.cancelled() => None,
        }
    }
}
