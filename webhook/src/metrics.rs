//! The webhook's Prometheus metrics, one registry per process.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use snug_api::metrics as names;

/// How an admission ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A patch was returned.
    Patched,
    /// Allowed unchanged (not a CREATE, opted out, already injected, nothing to do).
    Unchanged,
    /// Allowed unchanged because the namespace or pod is excluded or the mode is `off`.
    Skipped,
    /// Allowed unchanged with a warning: wrong kind or version, unreadable pod.
    Invalid,
    /// Allowed unchanged after an internal error or panic.
    Error,
}

impl Outcome {
    /// Every outcome, in declaration order (`outcome as usize` indexes it).
    const ALL: [Outcome; 5] = [
        Outcome::Patched,
        Outcome::Unchanged,
        Outcome::Skipped,
        Outcome::Invalid,
        Outcome::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Patched => "patched",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped => "skipped",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Every metric the webhook exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    admissions: Family<OutcomeLabels, Counter>,
    /// The series of `admissions`, one per outcome, created up front: an admission counts
    /// without a lookup, and every outcome is exported from the start (at zero).
    by_outcome: [Counter; Outcome::ALL.len()],
    duration: Histogram,
    not_intercepted: Counter,
    warnings: Family<ReasonLabels, Counter>,
    tls_reloads: Family<ResultLabels, Counter>,
    /// Profiles in the store.
    pub profiles: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let admissions = Family::<OutcomeLabels, Counter>::default();
        let by_outcome = Outcome::ALL.map(|outcome| {
            admissions
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.label(),
                })
                .clone()
        });
        Metrics {
            admissions,
            by_outcome,
            // 50µs .. ~0.8s: admissions are in-memory and should sit in the lowest buckets.
            duration: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                50e-6, 2.0, 15,
            )),
            not_intercepted: Counter::default(),
            warnings: Family::default(),
            tls_reloads: Family::default(),
            profiles: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        registry.register(
            names::registered_name(names::WEBHOOK_ADMISSIONS_TOTAL),
            "Admission reviews handled, by outcome",
            m.admissions.clone(),
        );
        registry.register(
            names::WEBHOOK_ADMISSION_DURATION_SECONDS,
            "Time to handle one admission review",
            m.duration.clone(),
        );
        registry.register(
            names::registered_name(names::WEBHOOK_PORTS_NOT_INTERCEPTED_TOTAL),
            "Container ports the sidecar could not intercept (numeric target ports)",
            m.not_intercepted.clone(),
        );
        registry.register(
            names::registered_name(names::WEBHOOK_WARNINGS_TOTAL),
            "Admissions answered with a warning, by reason",
            m.warnings.clone(),
        );
        registry.register(
            names::registered_name(names::WEBHOOK_TLS_RELOADS_TOTAL),
            "Certificate reloads, by result",
            m.tls_reloads.clone(),
        );
        registry.register(
            names::WEBHOOK_PROFILES,
            "Workload profiles in the webhook's store",
            m.profiles.clone(),
        );
        m
    }

    /// Counts one admission and its duration.
    pub fn admission(&self, outcome: Outcome, seconds: f64) {
        self.by_outcome[outcome as usize].inc();
        self.duration.observe(seconds);
    }

    /// Counts ports left unintercepted.
    pub fn ports_not_intercepted(&self, count: usize) {
        self.not_intercepted.inc_by(count as u64);
    }

    /// Counts a warning sent back to the API server.
    pub fn warning(&self, reason: &'static str) {
        self.warnings.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts a certificate reload attempt.
    pub fn tls_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.tls_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_exported_from_the_start_and_counted_under_its_own_label() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.admission(Outcome::Invalid, 0.001);
        metrics.admission(Outcome::Invalid, 0.001);
        metrics.admission(Outcome::Patched, 0.001);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for (outcome, count) in [
            ("patched", 1),
            ("unchanged", 0),
            ("skipped", 0),
            ("invalid", 2),
            ("error", 0),
        ] {
            let line = format!("snug_webhook_admissions_total{{outcome=\"{outcome}\"}} {count}\n");
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
    }
}
