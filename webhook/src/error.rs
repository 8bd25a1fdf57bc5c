//! The webhook's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the webhook, its stores and the certificate generator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or setting that makes no sense.
    #[error("configuration: {0}")]
    Config(String),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key that does not load.
    #[error("TLS: {0}")]
    Tls(String),
    /// Generating certificates.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A call to the Kubernetes API.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Binding or serving a socket.
    #[error("server: {0}")]
    Serve(#[source] std::io::Error),
    /// Encoding YAML or JSON.
    #[error("encoding: {0}")]
    Encode(String),
}

impl Error {
    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::File { .. } => "file",
            Error::Tls(_) => "tls",
            Error::Rcgen(_) => "rcgen",
            Error::Kube(_) => "kube",
            Error::Serve(_) => "serve",
            Error::Encode(_) => "encode",
        }
    }

    /// An I/O error about `path`.
    pub fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::File {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with the webhook's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
