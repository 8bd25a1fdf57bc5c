//! The sidecar's errors.

use std::{io, net::SocketAddr};

/// What can stop the sidecar from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener (inbound or admin) could not bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The configuration is unusable (for example an empty port map).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The worker threads could not be started.
    #[error("cannot start the worker threads: {0}")]
    Workers(#[source] io::Error),
}

/// `Result` with the sidecar's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
