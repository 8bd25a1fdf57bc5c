//! The cluster side: watches kept in memory, so an admission never waits on the API server.
//! WorkloadProfiles through a reflector; namespace mode annotations through a metadata-only
//! reflector; LimitRange maximums indexed by namespace from a watch.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{LimitRange, Namespace};
use kube::{
    Api, Client,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use snug_api::{Mode, WorkloadProfile, keys};

use super::{LimitMax, NamespaceStore, ProfileStore};

/// WorkloadProfiles from a watch of the whole cluster.
#[derive(Debug)]
pub struct ClusterProfiles {
    reader: Store<WorkloadProfile>,
    ready: Arc<AtomicBool>,
}

impl ClusterProfiles {
    /// Starts the watch. The store reports ready once the first list is in, or after
    /// `sync_timeout` (then pods get the sidecar without learned resources until it syncs).
    pub fn start(client: Client, sync_timeout: Duration) -> Arc<Self> {
        let api: Api<WorkloadProfile> = Api::all(client);
        let (reader, writer) = reflector::store();
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            // The profiler's checkpoint and managed fields are never read here: drop them to
            // keep 10,000 profiles small.
            .modify(|p: &mut WorkloadProfile| {
                p.metadata.managed_fields = None;
                if let Some(status) = p.status.as_mut() {
                    status.checkpoint = None;
                }
            })
            .reflect(writer);
        tokio::spawn(drive(stream, "workloadprofiles"));
        let ready = Arc::new(AtomicBool::new(false));
        let (flag, waiter) = (ready.clone(), reader.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(sync_timeout, waiter.wait_until_ready()).await {
                Ok(_) => tracing::info!(profiles = waiter.len(), "workload profiles synced"),
                Err(_) => tracing::warn!(
                    timeout = ?sync_timeout,
                    "workload profiles not synced in time; injecting the sidecar only until they are"
                ),
            }
            flag.store(true, Ordering::Release);
        });
        Arc::new(ClusterProfiles { reader, ready })
    }
}

async fn drive<S, K>(stream: S, what: &'static str)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    loop {
        match stream.try_next().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => tracing::warn!(error = %e, what, "watch error; retrying"),
        }
    }
}

impl ProfileStore for ClusterProfiles {
    fn get(&self, namespace: &str, name: &str) -> Option<Arc<WorkloadProfile>> {
        self.reader.get(&ObjectRef::new(name).within(namespace))
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn len(&self) -> usize {
        self.reader.len()
    }
}

/// Namespace annotations and LimitRanges from watches.
#[derive(Debug)]
pub struct ClusterNamespaces {
    namespaces: Store<PartialObjectMeta<Namespace>>,
    limits: Arc<RwLock<HashMap<String, HashMap<String, LimitMax>>>>,
}

impl ClusterNamespaces {
    /// Starts both watches.
    pub fn start(client: Client) -> Arc<Self> {
        // Metadata only: the mode annotation is all that is read.
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        let (namespaces, writer) = reflector::store();
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|ns: &mut PartialObjectMeta<Namespace>| ns.metadata.managed_fields = None)
            .reflect(writer);
        tokio::spawn(drive(stream, "namespaces"));
        let limits = Arc::new(RwLock::new(HashMap::new()));
        let api: Api<LimitRange> = Api::all(client);
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        tokio::spawn(index_limit_ranges(stream, limits.clone()));
        Arc::new(ClusterNamespaces { namespaces, limits })
    }
}

type LimitIndex = Arc<RwLock<HashMap<String, HashMap<String, LimitMax>>>>;

async fn index_limit_ranges<S>(stream: S, index: LimitIndex)
where
    S: futures::Stream<Item = Result<watcher::Event<LimitRange>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut buffer: HashMap<String, HashMap<String, LimitMax>> = HashMap::new();
    let key = |r: &LimitRange| {
        let m = &r.metadata;
        Some((m.namespace.clone()?, m.name.clone()?))
    };
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "limitranges watch error; retrying");
                continue;
            }
        };
        let Ok(mut live) = index.write() else { return };
        match event {
            watcher::Event::Init => buffer.clear(),
            watcher::Event::InitApply(r) => {
                if let Some((ns, name)) = key(&r) {
                    buffer.entry(ns).or_default().insert(name, LimitMax::of(&r));
                }
            }
            watcher::Event::InitDone => *live = std::mem::take(&mut buffer),
            watcher::Event::Apply(r) => {
                if let Some((ns, name)) = key(&r) {
                    live.entry(ns).or_default().insert(name, LimitMax::of(&r));
                }
            }
            watcher::Event::Delete(r) => {
                if let Some((ns, name)) = key(&r)
                    && let Some(ranges) = live.get_mut(&ns)
                {
                    ranges.remove(&name);
                }
            }
        }
    }
}

impl NamespaceStore for ClusterNamespaces {
    fn mode(&self, namespace: &str) -> Option<Mode> {
        let ns = self.namespaces.get(&ObjectRef::new(namespace))?;
        ns.metadata
            .annotations
            .as_ref()?
            .get(keys::MODE)?
            .parse()
            .ok()
    }

    fn limit_max(&self, namespace: &str) -> LimitMax {
        let Ok(index) = self.limits.read() else {
            return LimitMax::default();
        };
        index
            .get(namespace)
            .into_iter()
            .flat_map(|ranges| ranges.values())
            .fold(LimitMax::default(), |acc, m| acc.min(*m))
    }
}

/// Whether the API server runs Kubernetes ≥ 1.29, where native sidecars are on by default.
pub async fn server_supports_native_sidecars(client: &Client) -> Result<bool, kube::Error> {
    let info = client.apiserver_version().await?;
    let number = |s: &str| -> u32 {
        s.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0)
    };
    let (major, minor) = (number(&info.major), number(&info.minor));
    Ok(major > 1 || (major == 1 && minor >= 29))
}
