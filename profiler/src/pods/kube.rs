//! The in-cluster pod source: watches of pods and opted-in namespaces, kept as a slim index in
//! memory (a [`PodInfo`] is a few hundred bytes, not a whole Pod object), and a metadata-only
//! watch of Jobs, so that the pods of a CronJob's Jobs belong to the CronJob — one profile for
//! all its runs, owned by the CronJob — by the Job's real ownerReference, not by its name.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{Stream, StreamExt};
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Namespace, Pod},
};
use kube::{
    Api, Client,
    core::PartialObjectMeta,
    runtime::{WatchStreamExt, watcher},
};
use snug_api::{WorkloadRef, keys};

use super::{PodInfo, PodSnapshot, PodSource, pod_info};

/// Pods and opted-in namespaces, as the watches last reported them.
#[derive(Debug, Default)]
pub struct PodIndex {
    state: RwLock<IndexState>,
    pods_synced: AtomicBool,
    namespaces_synced: AtomicBool,
    jobs_synced: AtomicBool,
}

/// A Job by namespace and name, as a pod's ownerReference names it.
type JobKey = (String, String);

#[derive(Debug, Default)]
struct IndexState {
    pods: HashMap<String, Arc<PodInfo>>,
    pending_pods: HashMap<String, Arc<PodInfo>>,
    opted_in: HashSet<String>,
    pending_namespaces: HashSet<String>,
    /// Jobs that a CronJob owns, and that CronJob; other Jobs are not kept.
    cron_jobs: HashMap<JobKey, WorkloadRef>,
    pending_cron_jobs: HashMap<JobKey, WorkloadRef>,
}

impl PodIndex {
    /// Whether every watch has listed everything once.
    pub fn is_synced(&self) -> bool {
        self.pods_synced.load(Ordering::Relaxed)
            && self.namespaces_synced.load(Ordering::Relaxed)
            && self.jobs_synced.load(Ordering::Relaxed)
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

    /// Applies one event of the metadata-only Job watch.
    pub fn apply_job_event(&self, event: watcher::Event<PartialObjectMeta<Job>>) {
        let mut state = self.write();
        let cron_job = |job: &PartialObjectMeta<Job>| {
            let key = (job.metadata.namespace.clone()?, job.metadata.name.clone()?);
            Some((key, WorkloadRef::owner_of_job(&job.metadata)))
        };
        match event {
            watcher::Event::Init => state.pending_cron_jobs.clear(),
            watcher::Event::InitApply(job) => {
                if let Some((key, Some(owner))) = cron_job(&job) {
                    state.pending_cron_jobs.insert(key, owner);
                }
            }
            watcher::Event::InitDone => {
                state.cron_jobs = std::mem::take(&mut state.pending_cron_jobs);
                self.jobs_synced.store(true, Ordering::Relaxed);
            }
            watcher::Event::Apply(job) => match cron_job(&job) {
                Some((key, Some(owner))) => {
                    state.cron_jobs.insert(key, owner);
                }
                // Orphaned from its CronJob (`kubectl delete cronjob --cascade=orphan`).
                Some((key, None)) => {
                    state.cron_jobs.remove(&key);
                }
                None => {}
            },
            watcher::Event::Delete(job) => {
                if let Some((key, _)) = cron_job(&job) {
                    state.cron_jobs.remove(&key);
                }
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, IndexState> {
        // A panic while holding the lock leaves plain maps behind, still consistent enough to
        // read; recovering beats taking the profiler down.
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches pods, opted-in namespaces and Jobs until the streams end (never, in practice),
    /// applying events to this index.
    pub async fn watch(self: Arc<Self>, client: Client) {
        let jobs = self.clone().watch_jobs(client.clone());
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
        futures::join!(namespaces, pods, jobs);
    }

    /// Watches the metadata of Jobs in every namespace (a few hundred bytes each, never their
    /// pod template), applying events to this index.
    pub async fn watch_jobs(self: Arc<Self>, client: Client) {
        let jobs = watcher(
            Api::<PartialObjectMeta<Job>>::all(client),
            watcher::Config::default(),
        );
        drive(jobs, move |e| self.apply_job_event(e)).await;
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
            Err(error) => tracing::warn!(%error, "pod, namespace or job watch failed; retrying"),
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
            .map(|pod| state.of_cron_job(pod).unwrap_or_else(|| pod.clone()))
            .collect();
        PodSnapshot { pods }
    }
}

impl IndexState {
    /// A pod of a CronJob's Job, as a pod of the CronJob; `None` for any other pod.
    fn of_cron_job(&self, pod: &PodInfo) -> Option<Arc<PodInfo>> {
        let job = pod
            .workload
            .as_ref()
            .filter(|w| w.kind == "Job" && w.api_version.starts_with("batch/"))?;
        let cron_job = self
            .cron_jobs
            .get(&(pod.namespace.clone(), job.name.clone()))?;
        Some(Arc::new(PodInfo {
            workload: Some(cron_job.clone()),
            ..pod.clone()
        }))
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

    /// A pod of Job `job` (as the job controller creates it).
    fn job_pod(ns: &str, name: &str, job: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name, "uid": format!("{ns}-{name}"),
                "labels": {"snug.dev/injected": "true", "job-name": job},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                    "name": job, "uid": format!("uid-{job}"), "controller": true}]},
            "status": {"podIP": "10.0.0.7"}
        }))
        .unwrap()
    }

    /// A Job's metadata, owned by CronJob `cron_job` when given.
    fn job(ns: &str, name: &str, cron_job: Option<&str>) -> PartialObjectMeta<Job> {
        let owners: Vec<_> = cron_job
            .map(|c| {
                serde_json::json!({"apiVersion": "batch/v1", "kind": "CronJob", "name": c,
                    "uid": format!("uid-{c}"), "controller": true})
            })
            .into_iter()
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"namespace": ns, "name": name, "ownerReferences": owners}
        }))
        .unwrap()
    }

    fn workloads(index: &PodIndex) -> Vec<(String, String)> {
        let mut workloads: Vec<_> = index
            .snapshot()
            .pods
            .iter()
            .map(|p| (p.name.clone(), p.workload.as_ref().unwrap().to_string()))
            .collect();
        workloads.sort();
        workloads
    }

    #[test]
    fn pods_of_a_cron_jobs_jobs_belong_to_the_cron_job_by_the_jobs_owner() {
        let index = PodIndex::default();
        index.apply_pod_event(watcher::Event::Init);
        for (pod, job) in [
            ("nightly-1-a", "nightly-29000000"),
            ("nightly-2-a", "nightly-29001440"),
            // Named like a CronJob's Job, but created by hand: stays a Job.
            ("migrate-a", "migrate-2"),
        ] {
            index.apply_pod_event(watcher::Event::InitApply(job_pod("shop", pod, job)));
        }
        index.apply_pod_event(watcher::Event::InitDone);
        index.apply_job_event(watcher::Event::Init);
        for (name, owner) in [
            ("nightly-29000000", Some("nightly")),
            ("nightly-29001440", Some("nightly")),
            ("migrate-2", None),
        ] {
            index.apply_job_event(watcher::Event::InitApply(job("shop", name, owner)));
        }
        // A Job of the same name in another namespace is another Job.
        index.apply_job_event(watcher::Event::InitApply(job(
            "other",
            "migrate-2",
            Some("migrate"),
        )));
        index.apply_job_event(watcher::Event::InitDone);
        assert_eq!(
            workloads(&index),
            [
                ("migrate-a".into(), "Job/migrate-2".into()),
                ("nightly-1-a".into(), "CronJob/nightly".into()),
                ("nightly-2-a".into(), "CronJob/nightly".into()),
            ]
        );
        // The apiVersion too, for the GET of the CronJob's UID (the profile's owner).
        let nightly = WorkloadRef::new("batch/v1", "CronJob", "nightly");
        let snapshot = index.snapshot();
        let of_nightly = snapshot
            .pods
            .iter()
            .filter(|p| p.name.starts_with("nightly"));
        assert!(of_nightly.clone().count() == 2);
        assert!(
            of_nightly
                .into_iter()
                .all(|p| p.workload.as_ref() == Some(&nightly))
        );
        // Orphaned (the CronJob deleted with --cascade=orphan), then gone.
        index.apply_job_event(watcher::Event::Apply(job("shop", "nightly-29001440", None)));
        index.apply_job_event(watcher::Event::Delete(job(
            "shop",
            "nightly-29000000",
            Some("nightly"),
        )));
        assert_eq!(
            workloads(&index),
            [
                ("migrate-a".into(), "Job/migrate-2".into()),
                ("nightly-1-a".into(), "Job/nightly-29000000".into()),
                ("nightly-2-a".into(), "Job/nightly-29001440".into()),
            ]
        );
    }

    #[tokio::test]
    async fn the_job_watch_asks_for_metadata_only() {
        let (client, mut api) = crate::fake_api::client();
        let index = Arc::new(PodIndex::default());
        index.apply_pod_event(watcher::Event::Init);
        index.apply_pod_event(watcher::Event::InitApply(job_pod(
            "shop",
            "nightly-1-a",
            "nightly-29000000",
        )));
        index.apply_pod_event(watcher::Event::InitDone);
        let watch = tokio::spawn(index.clone().watch_jobs(client));
        let list = api
            .expect(
                "GET",
                "/apis/batch/v1/jobs",
                200,
                serde_json::json!({
                    "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                    "metadata": {"resourceVersion": "7"},
                    "items": [job("shop", "nightly-29000000", Some("nightly"))]
                }),
            )
            .await;
        assert!(
            list.accept.contains("as=PartialObjectMetadataList"),
            "{list:?}"
        );
        // The watch that follows the list starts once the list is applied.
        let next = api
            .expect("GET", "/apis/batch/v1/jobs", 200, serde_json::json!({}))
            .await;
        assert!(next.query.contains("watch=true"), "{next:?}");
        watch.abort();
        assert_eq!(
            workloads(&index),
            [("nightly-1-a".into(), "CronJob/nightly".into())]
        );
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
        assert!(!index.is_synced(), "jobs not listed yet");
        index.apply_job_event(watcher::Event::Init);
        index.apply_job_event(watcher::Event::InitDone);
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
