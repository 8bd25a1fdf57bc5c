//! Waiting for the cluster to converge: poll a check until it yields, within a generous bound.
//! The bound is a deadlock guard, not a speed assertion: it is long enough for a loaded CI
//! machine, and the error says what never happened.

use std::{future::Future, time::Duration};

use crate::error::{Error, Result};

/// The default bound for [`until`].
pub const PATIENCE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(250);

/// Polls `check` until it returns `Some`, for at most `patience`.
pub async fn until<T, F, Fut>(what: &str, patience: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                seconds: patience.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
