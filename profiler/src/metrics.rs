//! The profiler's Prometheus metrics: its own counters and the recommendations themselves
//! (`snug_recommendation{namespace,workload,container,resource}`), so dashboards and alerts need
//! no kube-state-metrics add-on.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use snug_api::metrics as names;
use snug_recommender::Recommendation;

use crate::pods::WorkloadKey;

type Labels = Vec<(&'static str, String)>;

/// Every metric of the profiler.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `snug_profiler_scrapes_total{outcome}`.
    pub scrapes: Family<Labels, Counter>,
    /// `snug_profiler_cycles_total{outcome}`.
    pub cycles: Family<Labels, Counter>,
    /// `snug_profiler_cycle_duration_seconds`.
    pub cycle_duration: Histogram,
    /// `snug_profiler_writes_total{outcome}`.
    pub writes: Family<Labels, Counter>,
    /// `snug_profiler_skipped_total{reason}`.
    pub skipped: Family<Labels, Counter>,
    /// `snug_profiler_usage_reads_total{outcome}`.
    pub usage_reads: Family<Labels, Counter>,
    /// `snug_profiler_oom_kills_total`.
    pub oom_kills: Counter,
    /// `snug_profiler_leader`.
    pub leader: Gauge,
    /// `snug_profiler_workloads`.
    pub workloads: Gauge,
    /// `snug_recommendation{namespace,workload,container,resource}`.
    pub recommendation: Family<Labels, Gauge<f64, AtomicU64>>,
}

fn one(key: &'static str, value: &str) -> Labels {
    vec![(key, value.to_owned())]
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            scrapes: Family::default(),
            cycles: Family::default(),
            cycle_duration: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            writes: Family::default(),
            skipped: Family::default(),
            usage_reads: Family::default(),
            oom_kills: Counter::default(),
            leader: Gauge::default(),
            workloads: Gauge::default(),
            recommendation: Family::default(),
        };
        let counter = names::registered_name;
        registry.register(
            counter(names::PROFILER_SCRAPES_TOTAL),
            "Sidecar scrapes by outcome",
            metrics.scrapes.clone(),
        );
        registry.register(
            counter(names::PROFILER_CYCLES_TOTAL),
            "Profiling cycles by outcome",
            metrics.cycles.clone(),
        );
        registry.register(
            names::PROFILER_CYCLE_DURATION_SECONDS,
            "Wall time of one profiling cycle",
            metrics.cycle_duration.clone(),
        );
        registry.register(
            counter(names::PROFILER_WRITES_TOTAL),
            "Profile writes by outcome",
            metrics.writes.clone(),
        );
        registry.register(
            counter(names::PROFILER_SKIPPED_TOTAL),
            "Inputs skipped by reason",
            metrics.skipped.clone(),
        );
        registry.register(
            counter(names::PROFILER_USAGE_READS_TOTAL),
            "Usage reads by outcome",
            metrics.usage_reads.clone(),
        );
        registry.register(
            counter(names::PROFILER_OOM_KILLS_TOTAL),
            "Container OOM kills seen",
            metrics.oom_kills.clone(),
        );
        registry.register(
            names::PROFILER_LEADER,
            "1 while this replica holds the leader lease",
            metrics.leader.clone(),
        );
        registry.register(
            names::PROFILER_WORKLOADS,
            "Workloads profiled",
            metrics.workloads.clone(),
        );
        registry.register(
            names::RECOMMENDATION,
            "Recommended requests and limits (cores, bytes) per workload container",
            metrics.recommendation.clone(),
        );
        metrics
    }

    /// Metrics registered nowhere, for tools and benchmarks that export none.
    pub fn detached() -> Self {
        Metrics::register(&mut Registry::default())
    }

    /// Counts a scrape.
    pub fn scrape(&self, outcome: &str) {
        self.scrapes
            .get_or_create(&one(names::LABEL_OUTCOME, outcome))
            .inc();
    }

    /// Counts `n` scrapes of one outcome.
    pub fn scrapes_by(&self, outcome: &str, n: u64) {
        if n > 0 {
            self.scrapes
                .get_or_create(&one(names::LABEL_OUTCOME, outcome))
                .inc_by(n);
        }
    }

    /// Counts a skipped input.
    pub fn skip(&self, reason: &str) {
        self.skipped
            .get_or_create(&one(names::LABEL_REASON, reason))
            .inc();
    }

    /// Counts a usage read.
    pub fn usage_read(&self, outcome: &str) {
        self.usage_reads
            .get_or_create(&one(names::LABEL_OUTCOME, outcome))
            .inc();
    }

    /// Counts a write.
    pub fn write(&self, outcome: &str) {
        self.writes
            .get_or_create(&one(names::LABEL_OUTCOME, outcome))
            .inc();
    }

    /// Counts a cycle.
    pub fn cycle(&self, outcome: &str) {
        self.cycles
            .get_or_create(&one(names::LABEL_OUTCOME, outcome))
            .inc();
    }

    /// Sets the recommendation gauges of one container (a missing CPU limit removes its series).
    pub fn set_recommendation(
        &self,
        workload: &WorkloadKey,
        container: &str,
        r: Option<&Recommendation>,
    ) {
        for (resource, value) in [
            ("cpu_request", r.map(|r| r.cpu_request)),
            ("cpu_limit", r.and_then(|r| r.cpu_limit)),
            ("memory_request", r.map(|r| r.memory_request)),
            ("memory_limit", r.map(|r| r.memory_limit)),
        ] {
            let labels = recommendation_labels(workload, container, resource);
            match value {
                Some(value) => {
                    self.recommendation.get_or_create(&labels).set(value);
                }
                None => {
                    self.recommendation.remove(&labels);
                }
            }
        }
    }

    /// Removes a forgotten workload's recommendation series.
    pub fn forget_workload(&self, workload: &WorkloadKey, containers: &[String]) {
        for container in containers {
            self.set_recommendation(workload, container, None);
        }
    }
}

fn recommendation_labels(workload: &WorkloadKey, container: &str, resource: &str) -> Labels {
    vec![
        (names::LABEL_NAMESPACE, workload.namespace.clone()),
        (names::LABEL_WORKLOAD, workload.workload.to_string()),
        (names::LABEL_CONTAINER, container.to_owned()),
        (names::LABEL_RESOURCE, resource.to_owned()),
    ]
}
