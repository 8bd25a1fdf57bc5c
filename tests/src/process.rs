//! Snug's own programs (webhook, profiler) run as local processes against the test cluster:
//! the binaries cargo built for this workspace, output to the run's log directory, PID recorded
//! so `down.sh` stops them too.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use crate::{
    cluster::Cluster,
    error::{Error, Result},
};

/// A running program; dropping it kills it.
#[derive(Debug)]
pub struct LocalProcess {
    name: String,
    child: tokio::process::Child,
    pid_file: PathBuf,
    log: PathBuf,
}

impl LocalProcess {
    /// Starts `binary` with `args` and `env`, `KUBECONFIG` pointing at the cluster's admin
    /// kubeconfig unless `env` names another; output goes to `logs/<name>.log`, the PID to the
    /// cluster's PID directory (so `down.sh` stops it too).
    pub fn spawn(
        cluster: &Cluster,
        name: &str,
        binary: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Self> {
        let mut env = env.to_vec();
        env.insert(
            0,
            ("KUBECONFIG", cluster.kubeconfig().display().to_string()),
        );
        Self::start(
            name,
            binary,
            args,
            &env,
            &cluster.log_dir(),
            &cluster.pid_dir(),
        )
    }

    /// Starts `binary` with `args` and `env` (no cluster); output goes to
    /// `<log_dir>/<name>.log`, the PID and start time to `<pid_dir>/<name>.pid`.
    pub fn start(
        name: &str,
        binary: &Path,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
        pid_dir: &Path,
    ) -> Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(Error::io(&log))?;
        let err = out.try_clone().map_err(Error::io(&log))?;
        let child = tokio::process::Command::new(binary)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::io(binary))?;
        let pid_file = pid_dir.join(format!("{name}.pid"));
        if let Some(pid) = child.id() {
            let started = crate::procfs::start_time(pid).unwrap_or_default();
            std::fs::write(&pid_file, format!("{pid} {started}\n"))
                .map_err(Error::io(&pid_file))?;
        }
        Ok(LocalProcess {
            name: name.to_owned(),
            child,
            pid_file,
            log,
        })
    }

    /// The process ID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Whether it has exited (and how), without waiting.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills it (SIGKILL, as a node failure would) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Err(e) = self.child.kill().await {
            tracing::warn!(process = %self.name, error = %e, "kill failed");
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

impl Drop for LocalProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// A binary of this workspace (`snug-webhook`, `snug-sidecar`, `snug-profiler`), next to the
/// running test executable in cargo's target directory. `cargo test --workspace` builds them
/// (each package has integration tests); the error says how to build them otherwise.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(Error::io("current executable"))?;
    // target/<profile>/deps/<test binary> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| Error::Command {
            command: format!("locate {name}"),
            reason: format!("{} is not in a cargo target directory", exe.display()),
        })?;
    let binary = dir.join(name);
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(Error::Command {
            command: format!("locate {name}"),
            reason: format!(
                "{} is missing: build it with `cargo build --workspace --bins` \
                 (`cargo test --workspace` builds it too)",
                binary.display()
            ),
        })
    }
}
