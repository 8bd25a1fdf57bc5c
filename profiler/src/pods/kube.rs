//! The in-cluster pod source: watches of pods and opted-in namespaces, kept as a slim index in
//! memory (a [`PodInfo`] is a few hundred bytes, not a whole Pod object).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};
use snug_api::keys;

use super::{PodInfo, PodSnapshot, PodSource, pod_info};

/// Pods and opted-in namespaces, as the watches last reported them.
#[derive(Debug, Default)]
pub struct PodIndex {
    state: RwLock<IndexState>,
    pods_synced: AtomicBool,
    namespaces_synced: AtomicBool,
}

#[derive(Debug, Default)]
struct IndexState {
    pods: HashMap<String, Arc<PodInfo>>,
    pending_pods: HashMap<String, Arc<PodInfo>>,
    opted_in: HashSet<String>,
    pending_namespaces: HashSet<String>,
}

impl PodIndex {
    /// Whether both watches have listed everything once.
    pub fn is_synced(&self) -> bool {
        self.pods_synced.load(Ordering::Relaxed) && self.namespaces_synced.load(Ordering::Relaxed)
    }

    /// Applies one pod watch event.
    pub fn apply_pod_event(&self, event: watcher::Event<Pod>) {
        let mut state = self.write();
        match event {
            watcher::Event::Init => state.pending_pods.clear(),
            watcher::Event::InitApply(pod) => {
                if let Some(info) = pod_info(&pod) {
                    state.pending_pods.insert(info.uid.clone(), Arc::new(info));
                }
            }
            watcher::Event::InitDone => {
                state.pods = std::mem::take(&mut state.pending_pods);
                self.pods_synced.store(true, Ordering::Relaxed);
            }
            watcher::Event::Apply(pod) => {
                if let Some(info) = pod_info(&pod) {
                    state.pods.insert(info.uid.clone(), Arc::new(info));
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    state.pods.remove(uid);
                }
            }
        }
    }

    /// Applies one namespace watch event (the watch selects opted-in namespaces).
    pub fn apply_namespace_event(&self, event: watcher::Event<Namespace>) {
        let mut state = self.write();
        let name = |ns: &Namespace| ns.metadata.name.clone();
        match event {
            watcher::Event::Init => state.pending_namespaces.clear(),
            watcher::Event::InitApply(ns) => state.pending_namespaces.extend(name(&ns)),
            watcher::Event::InitDone => {
                state.opted_in = std::mem::take(&mut state.pending_namespaces);
                self.namespaces_synced.store(true, Ordering::Relaxed);
            }
            watcher::Event::Apply(ns) => state.opted_in.extend(name(&ns)),
            watcher::Event::Delete(ns) => {
                if let Some(n) = name(&ns) {
                    state.opted_in.remove(&n);
                }
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, IndexState> {
        // A panic while holding the lock leaves plain maps behind, still consistent enough to
        // read; recovering beats taking the profiler down.
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches pods and opted-in namespaces until the streams end (never, in practice),
    /// applying events to this index.
    pub async fn watch(self: Arc<Self>, client: Client) {
        let namespaces = watcher(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default().labels(&format!(
                "{}={}",
                keys::INJECT,
                keys::INJECT_ENABLED
            )),
        );
        let pods = watcher(Api::<Pod>::all(client), watcher::Config::default());
        let index = self.clone();
        let namespaces = drive(namespaces, move |e| index.apply_namespace_event(e));
        let index = self;
        let pods = drive(pods, move |e| index.apply_pod_event(e));
        futures::join!(namespaces, pods);
    }
}

async fn drive<K, S>(stream: S, mut apply: impl FnMut(watcher::Event<K>))
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream.default_backoff());
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => apply(event),
            // The watcher retries with backoff; the index keeps its last known state meanwhile.
            Err(error) => tracing::warn!(%error, "pod or namespace watch failed; retrying"),
        }
    }
}

impl PodSource for PodIndex {
    fn snapshot(&self) -> PodSnapshot {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let pods = state
            .pods
            .values()
            .filter(|p| p.injected || state.opted_in.contains(&p.namespace))
            .cloned()
            .collect();
        PodSnapshot { pods }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, injected: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name, "uid": format!("{ns}-{name}"),
                "labels": {"snug.dev/injected": injected.to_string()},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "name": "db", "uid": "s1", "controller": true}]},
            "status": {"podIP": "10.0.0.1"}
        }))
        .unwrap()
    }

    fn namespace(name: &str) -> Namespace {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap()
    }

    #[test]
    fn snapshot_holds_injected_pods_and_pods_of_opted_in_namespaces() {
        let index = PodIndex::default();
        index.apply_pod_event(watcher::Event::Init);
        index.apply_pod_event(watcher::Event::InitApply(pod("shop", "a", true)));
        index.apply_pod_event(watcher::Event::InitApply(pod("shop", "b", false)));
        index.apply_pod_event(watcher::Event::InitApply(pod("other", "c", false)));
        assert!(index.snapshot().pods.is_empty(), "nothing before InitDone");
        index.apply_pod_event(watcher::Event::InitDone);
        assert!(!index.is_synced());
        assert_eq!(index.snapshot().pods.len(), 1);
        index.apply_namespace_event(watcher::Event::Init);
        index.apply_namespace_event(watcher::Event::InitApply(namespace("shop")));
        index.apply_namespace_event(watcher::Event::InitDone);
        assert!(index.is_synced());
        let mut names: Vec<_> = index
            .snapshot()
            .pods
            .iter()
            .map(|p| p.name.clone())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);
        index.apply_pod_event(watcher::Event::Delete(pod("shop", "a", true)));
        index.apply_namespace_event(watcher::Event::Delete(namespace("shop")));
        assert!(index.snapshot().pods.is_empty());
    }
}
