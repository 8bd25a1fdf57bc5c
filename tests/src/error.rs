//! The harness's errors: each says which part of the test environment failed and where to look.

use std::path::PathBuf;

/// Errors from starting or driving the test cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `tests/cluster/build.sh` failed: the control plane cannot be built on this machine.
    #[error(
        "building the Kubernetes control plane failed ({0}); the cluster tests cannot run \
         without it. The output above says which step failed; see tests/cluster/README.md"
    )]
    Build(String),
    /// `tests/cluster/up.sh` failed.
    #[error("starting the control plane failed ({reason}); logs in {logs}")]
    Start {
        /// What failed.
        reason: String,
        /// Directory of the processes' logs.
        logs: PathBuf,
    },
    /// A helper program (script, kubectl) could not be run or failed.
    #[error("{command} failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status and standard error.
        reason: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The API server refused or failed a request.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The kubeconfig written by up.sh is unusable.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// A certificate could not be generated.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// TLS configuration failed.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// A condition the harness waits for did not come true in time.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        seconds: u64,
    },
    /// A pod's container cannot be run by the fake kubelet.
    #[error("pod {pod}: container {container}: {reason}")]
    Container {
        /// `namespace/name`.
        pod: String,
        /// The container.
        container: String,
        /// Why.
        reason: String,
    },
    /// JSON that the harness builds or reads is malformed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// `Result` with the harness's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
