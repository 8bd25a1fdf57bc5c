//! A kubelet for a machine without a container runtime: every pod admitted in a namespace the
//! test hands it runs as local processes on the pod's own loopback address (127.0.0.N), and
//! its status (podIP, phase, conditions, containerStatuses) goes through pods/status as a
//! kubelet would write it. Images map to local binaries (the sample app, the snug-sidecar).
//! No scheduler runs, so pods stay unbound; the API server deletes unbound pods at once, and
//! the kubelet stops their processes when it sees the deletion.

mod env;
mod pod;
mod probe;

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use tokio::task::JoinHandle;

pub use env::{POD_IP_ENV, to_pod_address};
pub use pod::{ContainerUsage, Dirs, Kill, RunningPod};

use crate::error::{Error, Result};

/// How often container usage is read from procfs.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Which local binary runs an image: keyed by the image's last path segment without tag or
/// digest (`ghcr.io/snug-dev/snug-sidecar:0.1.0` → `snug-sidecar`).
#[derive(Debug, Clone, Default)]
pub struct Images(HashMap<String, PathBuf>);

impl Images {
    /// Runs images named `name` (any registry, any tag) with `binary`.
    pub fn with(mut self, name: &str, binary: impl Into<PathBuf>) -> Self {
        self.0.insert(name.to_owned(), binary.into());
        self
    }

    /// The binary for `image`, if one is known.
    pub fn binary(&self, image: &str) -> Option<PathBuf> {
        self.0.get(image_name(image)).cloned()
    }
}

/// `registry/path/name:tag@digest` → `name`.
pub fn image_name(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next().unwrap_or(last)
}

/// The fake kubelet. Dropping it kills every process it started.
pub struct Kubelet {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    client: kube::Client,
    images: Images,
    dirs: Dirs,
    namespaces: Mutex<HashSet<String>>,
    pods: Mutex<HashMap<String, Arc<RunningPod>>>,
    next_address: AtomicU32,
}

impl Kubelet {
    /// Starts watching pods; pods run once their namespace is handed over with
    /// [`Kubelet::run_pods_in`].
    pub fn start(client: kube::Client, images: Images, dirs: Dirs) -> Self {
        let inner = Arc::new(Inner {
            client,
            images,
            dirs,
            namespaces: Mutex::default(),
            pods: Mutex::default(),
            next_address: AtomicU32::new(0),
        });
        let watching = tokio::spawn(inner.clone().watch());
        let sampling = tokio::spawn(inner.clone().sample());
        Kubelet {
            inner,
            tasks: vec![watching, sampling],
        }
    }

    /// Runs every pod admitted in `namespace` from now on (and those already there).
    pub fn run_pods_in(&self, namespace: &str) {
        lock(&self.inner.namespaces).insert(namespace.to_owned());
    }

    /// The pods running now.
    pub fn pods(&self) -> Vec<Arc<RunningPod>> {
        lock(&self.inner.pods).values().cloned().collect()
    }

    /// A live view of the running pods, for servers that outlive a borrow (the metrics API).
    pub fn pod_source(&self) -> crate::metrics_api::PodSource {
        let inner = self.inner.clone();
        Arc::new(move || lock(&inner.pods).values().cloned().collect())
    }

    /// The running pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<RunningPod>> {
        let key = format!("{namespace}/{name}");
        self.pods().into_iter().find(|p| p.key() == key)
    }

    /// Kills `container` of pod `namespace/name` as the OOM killer would: the status shows
    /// `lastState.terminated.reason: OOMKilled` and restartCount + 1, and it restarts.
    pub fn oom_kill(&self, namespace: &str, name: &str, container: &str) -> Result<()> {
        let pod = self.pod(namespace, name).ok_or_else(|| Error::Container {
            pod: format!("{namespace}/{name}"),
            container: container.to_owned(),
            reason: "the pod is not running here".into(),
        })?;
        if pod.kill(container, Kill::OutOfMemory) {
            Ok(())
        } else {
            Err(Error::Container {
                pod: pod.key(),
                container: container.to_owned(),
                reason: "no such container".into(),
            })
        }
    }
}

impl std::fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet")
            .field("pods", &lock(&self.inner.pods).len())
            .finish_non_exhaustive()
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for pod in lock(&self.inner.pods).drain().map(|(_, p)| p) {
            pod.stop();
        }
    }
}

impl Inner {
    async fn watch(self: Arc<Self>) {
        let pods = Api::<Pod>::all(self.client.clone());
        let mut events = watcher(pods, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                    if pod.metadata.deletion_timestamp.is_some() {
                        self.forget(&pod);
                    } else {
                        self.admit(pod);
                    }
                }
                Ok(watcher::Event::Delete(pod)) => self.forget(&pod),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying"),
            }
        }
    }

    fn admit(&self, pod: Pod) {
        let namespace = pod.namespace().unwrap_or_default();
        if !lock(&self.namespaces).contains(&namespace) {
            return;
        }
        let uid = pod.uid().unwrap_or_default();
        let mut pods = lock(&self.pods);
        if pods.contains_key(&uid) {
            return;
        }
        let ip = self.next_ip();
        tracing::info!(pod = %format!("{namespace}/{}", pod.name_any()), %ip, "starting pod");
        let api = Api::namespaced(self.client.clone(), &namespace);
        let images = self.images.clone();
        let running = RunningPod::start(api, pod, ip, self.dirs.clone(), move |image| {
            images.binary(image)
        });
        pods.insert(uid, running);
    }

    fn forget(&self, pod: &Pod) {
        let removed = lock(&self.pods).remove(&pod.uid().unwrap_or_default());
        if let Some(running) = removed {
            tracing::info!(pod = %running.key(), "stopping pod");
            running.stop();
        }
    }

    /// 127.0.0.100, 127.0.0.101, ... then 127.0.1.2 and on: a fresh address per pod, so a
    /// new pod never inherits a dead pod's connections.
    fn next_ip(&self) -> Ipv4Addr {
        let n = self.next_address.fetch_add(1, Ordering::Relaxed) + 98;
        Ipv4Addr::new(127, 0, (n / 250 % 256) as u8, (n % 250 + 2) as u8)
    }

    async fn sample(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        loop {
            tick.tick().await;
            let pods: Vec<_> = lock(&self.pods).values().cloned().collect();
            for pod in pods {
                pod.sample();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_ignore_registry_tag_and_digest() {
        assert_eq!(
            image_name("ghcr.io/snug-dev/snug-sidecar:0.1.0"),
            "snug-sidecar"
        );
        assert_eq!(image_name("localhost:5000/app@sha256:abc"), "app");
        assert_eq!(image_name("sample-app"), "sample-app");
        let images = Images::default().with("sample-app", "/bin/true");
        assert_eq!(
            images.binary("example.com/sample-app:v2"),
            Some("/bin/true".into())
        );
        assert_eq!(images.binary("nginx"), None);
    }
}
