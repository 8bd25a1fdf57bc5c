//! The profiling loop, shaped like a kube-rs controller: a [`Context`] of shared handles, and a
//! [`Profiler::cycle`] that reconciles every profiled workload once per interval. Problems with
//! one input (a pod, a namespace, a workload) are logged once, counted and skipped; a cycle
//! itself never fails.

use std::{
    collections::{BTreeSet, hash_map::Entry},
    sync::Arc,
    time::Instant,
};

// foldhash's maps: hashing a pod UID or a workload key with SipHash, tens of thousands of
// times a cycle, was a few percent of the profiler's CPU.
use foldhash::{HashMap, HashMapExt};
use futures::StreamExt;
use snug_recommender::Usage;
use tokio_util::task::AbortOnDropHandle;

use crate::{
    Error,
    checkpoint::Checkpoint,
    metrics::Metrics,
    model::{ModelSettings, WorkloadModel},
    once::{WarnOnce, warn_once},
    pods::{PodInfo, PodSnapshot, PodSource, WorkloadKey},
    reading::{ReadingDelta, SidecarReading},
    scrape::{ScrapeFailure, ScrapeOutcome, ScrapeTarget, Scraper},
    store::ProfileStore,
    usage::{ContainerUsage, UsageSource},
};

/// Profile loads and writes in flight at once.
const STORE_CONCURRENCY: usize = 16;
/// A workload without profiled pods for this long is forgotten (its profile stays stored).
const FORGET_AFTER_SECONDS: f64 = 3600.0;
/// CPU usage at this share of the container's CPU limit counts as throttled when the source
/// has no throttling counter: metrics.k8s.io averages over its window, so a container held at
/// its quota reads just under it.
const THROTTLED_AT_LIMIT_SHARE: f64 = 0.95;

/// What every cycle needs.
#[derive(Debug)]
pub struct Context<P, U, S> {
    /// Where pods come from.
    pub pods: P,
    /// Where usage comes from.
    pub usage: U,
    /// Where profiles go.
    pub store: S,
    /// Scrapes the sidecars.
    pub scraper: Scraper,
    /// The profiler's metrics.
    pub metrics: Metrics,
    /// Model knobs.
    pub settings: ModelSettings,
}

/// What one cycle did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleReport {
    /// Workloads with profiled pods this cycle.
    pub workloads: usize,
    /// Profiles written.
    pub written: usize,
    /// Sidecars scraped successfully.
    pub scrapes_ok: usize,
    /// Sidecars that failed (skipped this cycle).
    pub scrapes_failed: usize,
    /// Usage samples folded in.
    pub usage_samples: usize,
    /// New OOM kills.
    pub oom_kills: usize,
    /// Usage samples of containers that were CPU-throttled.
    pub throttled: usize,
}

/// The profiler's state between cycles.
#[derive(Debug)]
pub struct Profiler<P, U, S> {
    ctx: Arc<Context<P, U, S>>,
    models: HashMap<WorkloadKey, WorkloadModel>,
    last_seen: HashMap<WorkloadKey, f64>,
    readings: HashMap<String, (f64, SidecarReading)>,
    warned: WarnOnce,
}

/// This cycle's profiled pods, by workload.
type Profiled = HashMap<WorkloadKey, Vec<Arc<PodInfo>>>;

impl<P: PodSource, U: UsageSource, S: ProfileStore> Profiler<P, U, S> {
    /// A profiler with no learned state yet (it resumes each workload from its stored
    /// checkpoint when it first sees it).
    pub fn new(ctx: Arc<Context<P, U, S>>) -> Self {
        Profiler {
            ctx,
            models: HashMap::new(),
            last_seen: HashMap::new(),
            readings: HashMap::new(),
            warned: WarnOnce::default(),
        }
    }

    /// The shared context.
    pub fn context(&self) -> &Arc<Context<P, U, S>> {
        &self.ctx
    }

    /// The model of a workload, if it is profiled.
    pub fn model(&self, key: &WorkloadKey) -> Option<&WorkloadModel> {
        self.models.get(key)
    }

    /// One cycle at unix time `at`: scrape, read usage, count OOM kills, recommend, write.
    pub async fn cycle(&mut self, at: f64) -> CycleReport {
        let started = Instant::now();
        let snapshot = self.ctx.pods.snapshot();
        let profiled = self.profiled(&snapshot);
        self.resume(&profiled).await;
        let mut report = CycleReport {
            workloads: profiled.len(),
            ..Default::default()
        };
        self.fold_traffic(&snapshot, &profiled, at, &mut report)
            .await;
        self.fold_usage(&profiled, at, &mut report).await;
        self.fold_oom_kills(&profiled, at, &mut report);
        report.written = self.write(&profiled, at).await;
        self.forget_idle(&profiled, at);
        self.ctx.metrics.workloads.set(self.models.len() as i64);
        self.ctx.metrics.cycle("ok");
        self.ctx
            .metrics
            .cycle_duration
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(?report, "cycle done");
        report
    }

    /// Injected pods by workload; pods without an owner are skipped (logged once, counted).
    fn profiled(&mut self, snapshot: &PodSnapshot) -> Profiled {
        let mut profiled: Profiled = HashMap::new();
        for pod in snapshot.pods.iter().filter(|p| p.injected) {
            let Some(workload) = pod.workload.clone() else {
                self.ctx.metrics.skip("no_owner");
                warn_once!(self.warned, format!("no-owner/{}", pod.uid),
                    pod = %format!("{}/{}", pod.namespace, pod.name),
                    "pod has no owner; not profiled (profiles follow workloads)");
                continue;
            };
            let key = WorkloadKey {
                namespace: pod.namespace.clone(),
                workload,
            };
            profiled.entry(key).or_default().push(pod.clone());
        }
        profiled
    }

    /// Creates the models of workloads seen for the first time, from their stored checkpoint
    /// when there is one. A workload whose profile cannot be read now is left for next cycle,
    /// so a flaky API server never makes the profiler overwrite learned state.
    async fn resume(&mut self, profiled: &Profiled) {
        let new: Vec<WorkloadKey> = profiled
            .keys()
            .filter(|k| !self.models.contains_key(*k))
            .cloned()
            .collect();
        let ctx = self.ctx.clone();
        let loaded: Vec<_> = futures::stream::iter(new)
            .map(|key| {
                let ctx = ctx.clone();
                async move {
                    let result = ctx.store.load(&key).await;
                    (key, result)
                }
            })
            .buffer_unordered(STORE_CONCURRENCY)
            .collect()
            .await;
        for (key, result) in loaded {
            match result {
                Ok(stored) => {
                    let checkpoint = stored.and_then(|p| p.status).and_then(|s| s.checkpoint);
                    let model = self.model_from(&key, checkpoint.as_deref());
                    self.models.insert(key, model);
                }
                Err(error @ Error::Yaml { .. }) => {
                    tracing::warn!(workload = %key, %error, "stored profile unreadable; starting afresh");
                    let model = self.model_from(&key, None);
                    self.models.insert(key, model);
                }
                Err(error) => {
                    warn_once!(self.warned, format!("load/{key}"), workload = %key, %error,
                        "cannot read the stored profile; will retry");
                }
            }
        }
    }

    /// A workload's model, resumed from `checkpoint` when it is readable.
    fn model_from(&mut self, key: &WorkloadKey, checkpoint: Option<&str>) -> WorkloadModel {
        self.warned.forget(&format!("load/{key}"));
        let factory = self.ctx.settings.recommender;
        match checkpoint.map(Checkpoint::decode) {
            Some(Ok(saved)) => {
                tracing::info!(workload = %key, samples = saved.samples, "resumed from checkpoint");
                WorkloadModel::restore(key.clone(), factory, saved)
            }
            Some(Err(error)) => {
                tracing::warn!(workload = %key, %error, "checkpoint unreadable; starting afresh");
                WorkloadModel::new(key.clone(), factory)
            }
            None => WorkloadModel::new(key.clone(), factory),
        }
    }

    /// Scrapes every profiled pod's sidecar and folds the increments into each workload's traffic.
    async fn fold_traffic(
        &mut self,
        snapshot: &PodSnapshot,
        profiled: &Profiled,
        at: f64,
        report: &mut CycleReport,
    ) {
        // Workloads by index, so a scrape's increments are grouped without hashing its key.
        let workloads: Vec<(&WorkloadKey, usize)> = profiled
            .iter()
            .map(|(key, pods)| (key, pods.len()))
            .collect();
        let mut owner: HashMap<&str, usize> = HashMap::new();
        let mut targets = Vec::new();
        for (index, pods) in profiled.values().enumerate() {
            for pod in pods {
                if let Some(url) = &pod.scrape_url {
                    owner.insert(pod.uid.as_str(), index);
                    targets.push(ScrapeTarget {
                        key: pod.uid.clone(),
                        url: url.clone(),
                    });
                }
            }
        }
        // Counters of pods that are gone are dropped with them.
        self.readings
            .retain(|uid, _| owner.contains_key(uid.as_str()));
        let results = scrape_on_the_runtime(&self.ctx.scraper, targets).await;
        let mut deltas: Vec<Vec<ReadingDelta>> = vec![Vec::new(); workloads.len()];
        let mut ok = 0;
        for (target, result) in results {
            match result {
                Ok(reading) => {
                    ok += 1;
                    self.warned.forget_keyed("scrape", &target.key);
                    let index = owner.get(target.key.as_str()).copied();
                    match self.readings.entry(target.key) {
                        Entry::Occupied(mut last) => {
                            let (then, previous) = last.get();
                            let delta = reading.since(previous, at - then);
                            if let Some(index) = index {
                                deltas[index].push(delta);
                            }
                            last.insert((at, reading));
                        }
                        Entry::Vacant(first) => {
                            first.insert((at, reading));
                        }
                    }
                }
                Err(failure) => {
                    self.ctx.metrics.scrape(failure.outcome.label());
                    report.scrapes_failed += 1;
                    warn_once!(self.warned, format!("scrape/{}", target.key), url = %target.url,
                        outcome = failure.outcome.label(), error = %failure.message,
                        "sidecar scrape failed; pod skipped this cycle");
                }
            }
        }
        report.scrapes_ok += ok;
        self.ctx
            .metrics
            .scrapes_by(ScrapeOutcome::Ok.label(), ok as u64);
        let names = snapshot.workloads_by_ip();
        for ((key, pods), deltas) in workloads.into_iter().zip(deltas) {
            if deltas.is_empty() {
                continue;
            }
            if let Some(model) = self.models.get_mut(key)
                && let Some(rps) = model.traffic.fold(at, &deltas, &names)
            {
                model.observe_traffic(at, rps / pods.max(1) as f64);
            }
        }
    }

    /// Reads container usage of the profiled namespaces and feeds it to the models.
    async fn fold_usage(&mut self, profiled: &Profiled, at: f64, report: &mut CycleReport) {
        let namespaces: BTreeSet<String> = profiled.keys().map(|k| k.namespace.clone()).collect();
        let namespaces: Vec<String> = namespaces.into_iter().collect();
        let read = self.ctx.usage.read(&namespaces).await;
        for _ in 0..read.ok {
            self.ctx.metrics.usage_read("ok");
        }
        for problem in &read.problems {
            self.ctx.metrics.usage_read(problem.outcome.label());
            warn_once!(self.warned, format!("usage/{}/{}", problem.scope, problem.outcome.label()),
                scope = %problem.scope, outcome = problem.outcome.label(), error = %problem.message,
                "usage unavailable; profiles go on without it");
        }
        let mut pods: HashMap<(&str, &str), (&WorkloadKey, &PodInfo)> = HashMap::new();
        for (key, list) in profiled {
            for pod in list {
                pods.insert(
                    (pod.namespace.as_str(), pod.name.as_str()),
                    (key, pod.as_ref()),
                );
            }
        }
        for usage in read.usage {
            // Pods of the namespace that are not injected are not profiled.
            let Some((key, pod)) = pods.get(&(usage.namespace.as_str(), usage.pod.as_str())) else {
                continue;
            };
            let Some(model) = self.models.get_mut(*key) else {
                continue;
            };
            let current = pod
                .containers
                .iter()
                .find(|c| c.name == usage.container)
                .map(|c| c.resources)
                .unwrap_or_default();
            let sample = Usage {
                at,
                cpu_cores: usage.cpu_cores,
                memory_bytes: usage.memory_bytes,
            };
            model.observe_usage(sample, &usage.container, current);
            report.usage_samples += 1;
            if let Some(limit) = throttled_at(&usage, current.cpu_limit) {
                model.observe_throttling(at, &usage.container, limit);
                report.throttled += 1;
            }
        }
    }

    /// Counts each container restart caused by an OOM kill once.
    fn fold_oom_kills(&mut self, profiled: &Profiled, at: f64, report: &mut CycleReport) {
        for (key, pods) in profiled {
            let Some(model) = self.models.get_mut(key) else {
                continue;
            };
            for pod in pods {
                for container in pod.containers.iter().filter(|c| c.last_oom_killed) {
                    let kill =
                        format!("{}/{}/{}", pod.uid, container.name, container.restart_count);
                    let limit = container.resources.memory_limit;
                    if model.observe_oom(at, kill, &container.name, limit) {
                        self.ctx.metrics.oom_kills.inc();
                        report.oom_kills += 1;
                        tracing::info!(workload = %key, pod = %pod.name, container = %container.name,
                            restarts = container.restart_count, "OOM kill");
                    }
                }
            }
            let live: BTreeSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
            model.prune_oom_seen(&live);
        }
    }
}

/// [`Scraper::scrape_all`] as a task of its own on the runtime. On a multi-threaded runtime
/// the cycle runs where it is awaited (the main thread, for the profiler's `main`), and every
/// socket that became readable would be handed from the worker thread that saw it to that
/// thread, a thread wake-up per read; as a task, the scrapes run on the worker that polls the
/// sockets. The task is aborted if the cycle is dropped.
async fn scrape_on_the_runtime(
    scraper: &Scraper,
    targets: Vec<ScrapeTarget>,
) -> Vec<(ScrapeTarget, Result<SidecarReading, ScrapeFailure>)> {
    let scraper = scraper.clone();
    let task = tokio::spawn(async move { scraper.scrape_all(targets).await });
    match AbortOnDropHandle::new(task).await {
        Ok(results) => results,
        // A panic in a scrape is the cycle's panic, as when it ran inline.
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Cancelled: the runtime is shutting down.
        Err(_) => Vec::new(),
    }
}

/// The CPU limit a container was throttled at, if this sample says it was: the source saw the
/// kernel throttle it, or its CPU usage reached [`THROTTLED_AT_LIMIT_SHARE`] of the limit in
/// force (the source's own, else `spec_limit` from the pod spec).
fn throttled_at(usage: &ContainerUsage, spec_limit: Option<f64>) -> Option<f64> {
    let limit = usage.cpu_limit.or(spec_limit);
    let at_limit = matches!((usage.cpu_cores, limit),
        (Some(cores), Some(limit)) if cores >= THROTTLED_AT_LIMIT_SHARE * limit);
    // A counter that grew without a limit in sight (a quota on a parent cgroup): the usage is
    // where the kernel held it.
    (usage.throttled || at_limit).then(|| limit.or(usage.cpu_cores))?
}

#[cfg(test)]
mod tests;
mod write;
