//! Log a recurring problem once, not once per cycle: the first occurrence of a key is a warning,
//! repeats are debug lines (the counters still count every one).

use std::collections::HashSet;

/// Keys already warned about.
#[derive(Debug, Default)]
pub(crate) struct WarnOnce {
    seen: HashSet<String>,
}

impl WarnOnce {
    /// Whether `key` is new: the caller logs a warning if so, else at debug level.
    pub(crate) fn first(&mut self, key: impl Into<String>) -> bool {
        // Bounded: at most one entry per distinct pod, workload or namespace problem; cleared
        // when it grows past what a cluster could hold so a long-running profiler stays small.
        if self.seen.len() > 100_000 {
            self.seen.clear();
        }
        self.seen.insert(key.into())
    }

    /// Forgets `prefix/key` (see [`WarnOnce::forget`]), without building the key when nothing
    /// was warned about.
    pub(crate) fn forget_keyed(&mut self, prefix: &str, key: &str) {
        if !self.seen.is_empty() {
            self.forget(&format!("{prefix}/{key}"));
        }
    }

    /// Forgets `key`, so a problem that went away and comes back is warned about again.
    pub(crate) fn forget(&mut self, key: &str) {
        self.seen.remove(key);
    }
}

/// Logs `$($arg)*` at warn level the first time `$key` is seen, at debug level afterwards.
macro_rules! warn_once {
    ($once:expr, $key:expr, $($arg:tt)*) => {
        if $once.first($key) {
            tracing::warn!($($arg)*);
        } else {
            tracing::debug!($($arg)*);
        }
    };
}
pub(crate) use warn_once;
