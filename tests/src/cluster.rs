//! A real Kubernetes 1.20 control plane (etcd, kube-apiserver, kube-controller-manager) on
//! 127.0.0.1 for one test run, started by `tests/cluster/up.sh` from binaries that
//! `tests/cluster/build.sh` builds once and caches.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Error, Result};

/// The Kubernetes version the cluster runs.
pub const KUBERNETES_VERSION: &str = "v1.20.2";

/// A running control plane. Dropping it stops every process it started (also while a test
/// panics); the directory with the processes' logs is kept unless [`Cluster::passed`] was
/// called.
pub struct Cluster {
    dir: PathBuf,
    kubeconfig: PathBuf,
    client: kube::Client,
    passed: std::sync::atomic::AtomicBool,
}

impl Cluster {
    /// Builds the control plane if it is not cached yet (minutes, once per machine), starts it
    /// in a fresh temporary directory and connects to it as cluster admin.
    pub async fn start() -> Result<Self> {
        build()?;
        let dir = tempfile::Builder::new()
            .prefix("snug-cluster-")
            .tempdir()
            .map_err(Error::io(std::env::temp_dir()))?
            .keep();
        eprintln!("[snug cluster] directory {}", dir.display());
        // Stop on drop from here on, whatever happens below.
        let mut starting = Stopper(Some(dir.clone()));
        let status = Command::new(script("up.sh"))
            .arg(&dir)
            .env("SNUG_CLUSTER_OWNER", std::process::id().to_string())
            .env("SNUG_CLUSTER_CACHE", cache_dir())
            .stdout(Stdio::null())
            .status()
            .map_err(Error::io(script("up.sh")))?;
        if !status.success() {
            return Err(Error::Start {
                reason: format!("up.sh exited with {status}"),
                logs: dir.join("logs"),
            });
        }
        let kubeconfig = dir.join("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig)?,
            &KubeConfigOptions::default(),
        )
        .await?;
        let client = kube::Client::try_from(config)?;
        starting.0 = None;
        Ok(Cluster {
            dir,
            kubeconfig,
            client,
            passed: false.into(),
        })
    }

    /// Marks the run as passed: the directory with the logs is removed on drop (it is kept
    /// otherwise, for whoever debugs the failure).
    pub fn passed(&self) {
        self.passed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// A client authenticated as cluster admin.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The admin kubeconfig (for `kubectl --kubeconfig` and for Snug's own processes).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubeconfig that acts as ServiceAccount `namespace/name`: the admin impersonates it,
    /// with the groups a ServiceAccount token carries, so a program run with it has exactly
    /// what RBAC grants that ServiceAccount and is refused the rest.
    pub fn kubeconfig_as(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let fail = |reason: String| Error::Command {
            command: format!("kubeconfig for {namespace}/{name}"),
            reason,
        };
        let text =
            std::fs::read_to_string(&self.kubeconfig).map_err(Error::io(&self.kubeconfig))?;
        let mut config: serde_json::Value =
            serde_norway::from_str(&text).map_err(|e| fail(e.to_string()))?;
        let users = config["users"]
            .as_array_mut()
            .ok_or_else(|| fail("the admin kubeconfig has no users".into()))?;
        for user in users {
            user["user"]["as"] = format!("system:serviceaccount:{namespace}:{name}").into();
            user["user"]["as-groups"] = serde_json::json!([
                "system:serviceaccounts",
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated",
            ]);
        }
        let path = self.dir.join(format!("kubeconfig-{namespace}-{name}"));
        let yaml = serde_norway::to_string(&config).map_err(|e| fail(e.to_string()))?;
        std::fs::write(&path, yaml).map_err(Error::io(&path))?;
        Ok(path)
    }

    /// The run's directory: `logs/` (one file per process), `pki/`, `kubeconfig`, `pids/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where processes started for this run keep their output.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Where PIDs of processes started for this run are recorded, so `down.sh` (and the
    /// watchdog when the test process is killed) stops them too.
    pub fn pid_dir(&self) -> PathBuf {
        self.dir.join("pids")
    }

    /// The CA certificate that signed the API server's certificate (PEM).
    pub fn ca_pem(&self) -> Result<String> {
        let path = self.dir.join("pki/ca.crt");
        std::fs::read_to_string(&path).map_err(Error::io(path))
    }

    /// Runs the cached kubectl 1.20 against this cluster; its standard output, or an error with
    /// its standard error.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_with_input(args, None).await
    }

    /// [`Cluster::kubectl`] with `input` on standard input (for `apply -f -`).
    pub async fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        use tokio::io::AsyncWriteExt;
        let kubectl = cache_dir().join("bin/kubectl");
        let mut child = tokio::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::io(&kubectl))?;
        // Dropping stdin after writing closes it, so kubectl sees the end of its input.
        if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
            stdin
                .write_all(input.as_bytes())
                .await
                .map_err(Error::io(&kubectl))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(Error::io(&kubectl))?;
        if !out.status.success() {
            return Err(Error::Command {
                command: format!("kubectl {}", args.join(" ")),
                reason: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates namespace `name` unless it exists.
    pub async fn ensure_namespace(&self, name: &str) -> Result<()> {
        use k8s_openapi::api::core::v1::Namespace;
        use kube::api::{Api, Patch, PatchParams};
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
        }))?;
        Api::<Namespace>::all(self.client())
            .patch(
                name,
                &PatchParams::apply("snug-e2e"),
                &Patch::Apply(&namespace),
            )
            .await?;
        Ok(())
    }

    /// Creates namespace `name` with `labels`, and waits until pods can be created in it (the
    /// ServiceAccount admission plugin refuses pods until the controller-manager has made the
    /// default service account and its token).
    pub async fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) -> Result<()> {
        use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
        use kube::api::{Api, PostParams};
        let labels: std::collections::BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &namespace)
            .await?;
        let accounts = Api::<ServiceAccount>::namespaced(self.client(), name);
        crate::wait::until(
            &format!("the default service account of namespace {name}"),
            crate::wait::PATIENCE,
            || async {
                let sa = accounts.get_opt("default").await.ok().flatten()?;
                sa.secrets.filter(|s| !s.is_empty()).map(|_| ())
            },
        )
        .await
    }

    /// The last `lines` lines of every log in the run's directory, for a failure message.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(self.log_dir()) else {
            return out;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            out.push_str(&format!("==> {} <==\n", path.display()));
            for line in tail.iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop(&self.dir);
        if std::thread::panicking() || !self.passed.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!(
                "[snug cluster] logs of every process kept in {}",
                self.log_dir().display()
            );
        } else {
            // Best effort: a leftover directory in /tmp only costs disk space.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Stops a half-started cluster if [`Cluster::start`] returns early.
struct Stopper(Option<PathBuf>);

impl Drop for Stopper {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            stop(dir);
        }
    }
}

fn stop(dir: &Path) {
    let status = Command::new(script("down.sh"))
        .arg(dir)
        .stdout(Stdio::null())
        .status();
    if let Err(e) = status {
        eprintln!("[snug cluster] down.sh {} failed: {e}", dir.display());
    }
}

/// Runs `build.sh`, which returns at once when the binaries are cached.
fn build() -> Result<()> {
    let status = Command::new(script("build.sh"))
        .env("SNUG_CLUSTER_CACHE", cache_dir())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| Error::Build(format!("cannot run {}: {e}", script("build.sh").display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Build(format!("build.sh exited with {status}")))
    }
}

/// Where the built binaries are cached: `$SNUG_CLUSTER_CACHE`, else
/// `${XDG_CACHE_HOME:-~/.cache}/snug-cluster/kubernetes-v1.20.2`: outside the repository, so
/// `cargo clean` keeps them.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SNUG_CLUSTER_CACHE") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join(format!("snug-cluster/kubernetes-{KUBERNETES_VERSION}"))
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("cluster")
        .join(name)
}
