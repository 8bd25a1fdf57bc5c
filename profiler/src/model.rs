//! What the profiler knows about one workload: a recommender and usage distributions per
//! container, OOM kills, traffic — and the status it turns into.

mod status;

use std::collections::{BTreeMap, BTreeSet};

use snug_recommender::{CurrentResources, Recommendation, Recommender, RecommenderKind, Usage};

use crate::{
    checkpoint::{self, Checkpoint, ContainerCheckpoint},
    distribution::Distribution,
    pods::WorkloadKey,
    traffic::WorkloadTraffic,
};

pub use status::{Written, confidence};

/// A fraction in `[0, 1)` that depends only on `key` (within one build of the profiler).
fn refresh_phase(key: &WorkloadKey) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    // The top 53 bits, as a float's mantissa holds them.
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// How container recommenders are made: [`RecommenderKind`]'s own constructors, or a test double.
#[derive(Debug, Clone, Copy)]
pub struct RecommenderFactory {
    /// The kind recorded in checkpoints.
    pub kind: RecommenderKind,
    build: fn(RecommenderKind) -> Box<dyn Recommender>,
    restore: fn(RecommenderKind, &str) -> snug_recommender::Result<Box<dyn Recommender>>,
}

impl RecommenderFactory {
    /// The real recommenders of `kind`.
    pub fn of(kind: RecommenderKind) -> Self {
        RecommenderFactory {
            kind,
            build: RecommenderKind::build,
            restore: RecommenderKind::restore,
        }
    }

    /// Other constructors under the name of `kind` (tests, benchmarks).
    pub fn custom(
        kind: RecommenderKind,
        build: fn(RecommenderKind) -> Box<dyn Recommender>,
        restore: fn(RecommenderKind, &str) -> snug_recommender::Result<Box<dyn Recommender>>,
    ) -> Self {
        RecommenderFactory {
            kind,
            build,
            restore,
        }
    }

    fn build(&self) -> Box<dyn Recommender> {
        (self.build)(self.kind)
    }

    fn restore(&self, state: &str) -> snug_recommender::Result<Box<dyn Recommender>> {
        (self.restore)(self.kind, state)
    }
}

/// Knobs of the model, from the command line.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// The recommender of every container.
    pub recommender: RecommenderFactory,
    /// Observed window at which confidence saturates, seconds.
    pub min_window: f64,
    /// Usage samples per container at which confidence saturates.
    pub min_samples: u64,
    /// Write a profile at least this often (seconds), even when nothing changed much.
    pub refresh: f64,
}

/// One container's learned state.
#[derive(Debug)]
pub struct ContainerModel {
    recommender: Box<dyn Recommender>,
    cpu: Distribution,
    memory: Distribution,
    oom_kills: u32,
    current: CurrentResources,
}

impl ContainerModel {
    fn new(factory: &RecommenderFactory) -> Self {
        ContainerModel {
            recommender: factory.build(),
            cpu: Distribution::default(),
            memory: Distribution::default(),
            oom_kills: 0,
            current: CurrentResources::default(),
        }
    }
}

/// One workload's learned state.
#[derive(Debug)]
pub struct WorkloadModel {
    /// Which workload.
    pub key: WorkloadKey,
    factory: RecommenderFactory,
    containers: BTreeMap<String, ContainerModel>,
    samples: u64,
    observed_since: Option<f64>,
    last_sample: Option<f64>,
    oom_seen: BTreeSet<String>,
    /// Traffic from the sidecars.
    pub traffic: WorkloadTraffic,
    /// The last status written, to decide whether the next one is worth a write.
    pub written: Option<Written>,
    /// The recommendations last exported as gauges, per container.
    pub(crate) gauged: BTreeMap<String, Option<Recommendation>>,
    /// Where in each refresh interval this workload's refresh falls, as a fraction of it (from
    /// a hash of the key), so profiles first written together are not all rewritten together.
    refresh_phase: f64,
}

impl WorkloadModel {
    /// A workload seen for the first time.
    pub fn new(key: WorkloadKey, factory: RecommenderFactory) -> Self {
        WorkloadModel {
            refresh_phase: refresh_phase(&key),
            key,
            factory,
            containers: BTreeMap::new(),
            samples: 0,
            observed_since: None,
            last_sample: None,
            oom_seen: BTreeSet::new(),
            traffic: WorkloadTraffic::default(),
            written: None,
            gauged: BTreeMap::new(),
        }
    }

    /// A workload resumed from its checkpoint. Container states written by another recommender
    /// kind, or that the recommender cannot read, start afresh (the distributions are kept).
    pub fn restore(key: WorkloadKey, factory: RecommenderFactory, saved: Checkpoint) -> Self {
        let mut model = WorkloadModel::new(key, factory);
        for (name, container) in saved.containers {
            let recommender = if saved.recommender == factory.kind {
                factory
                    .restore(&container.recommender)
                    .unwrap_or_else(|error| {
                        tracing::warn!(workload = %model.key, container = %name, %error,
                        "recommender state unreadable; starting it afresh");
                        factory.build()
                    })
            } else {
                factory.build()
            };
            let restored = ContainerModel {
                recommender,
                cpu: container.cpu,
                memory: container.memory,
                oom_kills: container.oom_kills,
                current: CurrentResources::default(),
            };
            model.containers.insert(name, restored);
        }
        model.samples = saved.samples;
        model.observed_since = saved.observed_since;
        model.last_sample = saved.last_sample;
        model.oom_seen = saved.oom_seen;
        model
    }

    fn container(&mut self, name: &str) -> &mut ContainerModel {
        let factory = self.factory;
        self.containers
            .entry(name.to_owned())
            .or_insert_with(|| ContainerModel::new(&factory))
    }

    /// Folds in one container's usage sample of one pod.
    pub fn observe_usage(&mut self, usage: Usage, container: &str, current: CurrentResources) {
        if usage.cpu_cores.is_none() && usage.memory_bytes.is_none() {
            return;
        }
        let model = self.container(container);
        if model.current != current {
            model.recommender.applied(&current);
            model.current = current;
        }
        if let Some(cpu) = usage.cpu_cores {
            model.cpu.add(cpu);
        }
        if let Some(memory) = usage.memory_bytes {
            model.memory.add(memory);
        }
        model.recommender.observe(usage);
        self.samples += 1;
        self.observed_since.get_or_insert(usage.at);
        self.last_sample = Some(usage.at);
    }

    /// An OOM kill, identified by `pod_uid/container/restartCount`; counted once whatever the
    /// number of cycles that see it. Returns whether it was new.
    pub fn observe_oom(
        &mut self,
        at: f64,
        kill: String,
        container: &str,
        limit: Option<f64>,
    ) -> bool {
        if !self.oom_seen.insert(kill) {
            return false;
        }
        let model = self.container(container);
        model.oom_kills += 1;
        // Without a limit in the spec, the highest usage seen is the best guess of where the
        // kernel stopped the container.
        let limit = limit.unwrap_or(model.memory.summary().max);
        model.recommender.oom_killed(at, limit);
        true
    }

    /// The container was CPU-throttled at `at` under a limit of `cpu_limit` cores.
    pub fn observe_throttling(&mut self, at: f64, container: &str, cpu_limit: f64) {
        self.container(container)
            .recommender
            .throttled(at, cpu_limit);
    }

    /// Forgets counted OOM kills of pods that are gone, so the set stays as small as the
    /// workload; `live_pods` holds the UIDs of its pods now.
    pub fn prune_oom_seen(&mut self, live_pods: &BTreeSet<&str>) {
        self.oom_seen.retain(|kill| {
            kill.split('/')
                .next()
                .is_some_and(|uid| live_pods.contains(uid))
        });
    }

    /// Tells every container's recommender the requests per second each pod serves.
    pub fn observe_traffic(&mut self, at: f64, requests_per_second_per_pod: f64) {
        for container in self.containers.values_mut() {
            container
                .recommender
                .observe_traffic(at, requests_per_second_per_pod);
        }
    }

    /// Recommendations per container at `at`.
    pub fn recommendations(&self, at: f64) -> BTreeMap<String, Option<Recommendation>> {
        self.containers
            .iter()
            .map(|(name, c)| (name.clone(), c.recommender.recommend(at, &c.current)))
            .collect()
    }

    /// Names of the containers seen.
    pub fn container_names(&self) -> Vec<String> {
        self.containers.keys().cloned().collect()
    }

    /// Usage samples folded in.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The learned state, for `status.checkpoint`.
    pub fn checkpoint(&self) -> crate::Result<Checkpoint> {
        let mut containers = BTreeMap::new();
        for (name, c) in &self.containers {
            // Plain JSON: the workload's checkpoint is compressed once, as a whole.
            let recommender = c
                .recommender
                .state_json()
                .map_err(|e| crate::Error::Checkpoint(e.to_string()))?;
            let saved = ContainerCheckpoint {
                recommender,
                cpu: c.cpu.clone(),
                memory: c.memory.clone(),
                oom_kills: c.oom_kills,
            };
            containers.insert(name.clone(), saved);
        }
        Ok(Checkpoint {
            version: checkpoint::VERSION,
            recommender: self.factory.kind,
            containers,
            samples: self.samples,
            observed_since: self.observed_since,
            last_sample: self.last_sample,
            oom_seen: self.oom_seen.clone(),
        })
    }
}

#[cfg(test)]
mod tests;
