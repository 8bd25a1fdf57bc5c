//! A workload model as a `WorkloadProfileStatus`, and whether it changed enough to be written.

use std::collections::BTreeMap;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use snug_api::{
    ContainerProfile, ContainerRecommendation, ProfileSummary, ResourceAmounts,
    WorkloadProfileStatus,
    profile::{CONDITION_READY, MIN_CONFIDENCE_TO_APPLY},
    quantity::{format_cpu, format_memory},
};
use snug_recommender::Recommendation;

use super::{ModelSettings, WorkloadModel};

/// A relative change in any recommended amount above this is worth a write.
const MEANINGFUL_CHANGE: f64 = 0.05;
/// A confidence change above this is worth a write.
const MEANINGFUL_CONFIDENCE: f64 = 0.1;

/// What was last written for a workload, to compare the next status with.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// Unix seconds of the write.
    pub at: f64,
    /// Whether `Ready` was true.
    pub ready: bool,
    /// The confidence written.
    pub confidence: f64,
    /// OOM kills written.
    pub oom_kills: u32,
    /// Recommendations written, per container.
    pub recommendations: BTreeMap<String, Option<Recommendation>>,
    /// When `Ready` last changed.
    pub ready_since: f64,
}

/// How much to trust a recommendation from `window` seconds of observation and
/// `samples_per_container` samples: each grows linearly to 1 at its minimum (the
/// `--min-window` flag, [`ModelSettings::min_samples`]); the smaller of the two counts.
pub fn confidence(window: f64, samples_per_container: f64, settings: &ModelSettings) -> f64 {
    let window = (window / settings.min_window.max(1.0)).clamp(0.0, 1.0);
    let samples = (samples_per_container / settings.min_samples.max(1) as f64).clamp(0.0, 1.0);
    window.min(samples)
}

fn time(at: f64) -> Time {
    let millis = (at * 1000.0) as i64;
    Time(Timestamp::from_millisecond(millis).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn amounts(cpu: Option<f64>, memory: Option<f64>) -> ResourceAmounts {
    ResourceAmounts {
        cpu: cpu.map(format_cpu),
        memory: memory.map(format_memory),
    }
}

fn recommendation(r: &Recommendation) -> ContainerRecommendation {
    ContainerRecommendation {
        requests: amounts(Some(r.cpu_request), Some(r.memory_request)),
        limits: amounts(r.cpu_limit, Some(r.memory_limit)),
        lower_bound: amounts(Some(r.cpu_lower_bound), Some(r.memory_lower_bound)),
        upper_bound: amounts(Some(r.cpu_upper_bound), Some(r.memory_upper_bound)),
    }
}

/// `12ms`, `1.5s`, `850µs`.
fn format_latency(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.1}s")
    } else if seconds >= 1e-3 {
        format!("{:.0}ms", seconds * 1e3)
    } else {
        format!("{:.0}µs", seconds * 1e6)
    }
}

impl WorkloadModel {
    /// The status at `at` (without the checkpoint, which only written statuses need: see
    /// [`WorkloadModel::checkpoint`]), and the record to keep if it is written.
    pub fn status(&self, at: f64, settings: &ModelSettings) -> (WorkloadProfileStatus, Written) {
        let written = self.assess(at, settings);
        (self.status_of(&written, settings), written)
    }

    /// What a status at `at` would say that decides whether it is worth writing (see
    /// [`WorkloadModel::worth_writing`]): the recommendations, asked of each container's
    /// recommender once, confidence and readiness. [`WorkloadModel::status_of`] builds the
    /// status itself, for the few that get written.
    pub fn assess(&self, at: f64, settings: &ModelSettings) -> Written {
        let recommendations = self.recommendations(at);
        let per_container = self.samples as f64 / self.containers.len().max(1) as f64;
        let all_recommended =
            !recommendations.is_empty() && recommendations.values().all(Option::is_some);
        // A profile without a recommendation for every container must never be applied.
        let confidence = if all_recommended {
            confidence(self.window(), per_container, settings)
        } else {
            0.0
        };
        let ready = confidence >= MIN_CONFIDENCE_TO_APPLY;
        let ready_since = match &self.written {
            Some(w) if w.ready == ready => w.ready_since,
            _ => at,
        };
        Written {
            at,
            ready,
            confidence,
            oom_kills: self.containers.values().map(|c| c.oom_kills).sum(),
            recommendations,
            ready_since,
        }
    }

    /// Seconds between the first and the last usage sample.
    fn window(&self) -> f64 {
        match (self.observed_since, self.last_sample) {
            (Some(first), Some(last)) => (last - first).max(0.0),
            _ => 0.0,
        }
    }

    /// The status `written` (from [`WorkloadModel::assess`]) describes, without the checkpoint.
    pub fn status_of(&self, written: &Written, settings: &ModelSettings) -> WorkloadProfileStatus {
        let window = self.window();
        let containers: Vec<ContainerProfile> = self
            .containers
            .iter()
            .map(|(name, c)| ContainerProfile {
                name: name.clone(),
                cpu: c.cpu.summary(),
                memory: c.memory.summary(),
                recommendation: written
                    .recommendations
                    .get(name)
                    .and_then(Option::as_ref)
                    .map(recommendation)
                    .unwrap_or_default(),
                oom_kills: c.oom_kills,
            })
            .collect();
        WorkloadProfileStatus {
            summary: Some(self.summary(written)),
            conditions: vec![ready_condition(written, window, settings)],
            containers,
            oom_kills: written.oom_kills,
            traffic: self.traffic.summary.clone(),
            peers: self.traffic.peers.clone(),
            samples: self.samples,
            observed_since: self.observed_since.map(time),
            last_sample: self.last_sample.map(time),
            window_seconds: window,
            confidence: written.confidence,
            checkpoint: None,
        }
    }

    fn summary(&self, written: &Written) -> ProfileSummary {
        let total = |pick: fn(&Recommendation) -> f64| {
            written
                .recommendations
                .values()
                .flatten()
                .map(pick)
                .sum::<f64>()
        };
        let any = written.recommendations.values().any(Option::is_some);
        let traffic = self.traffic.summary.as_ref();
        ProfileSummary {
            workload: self.key.workload.to_string(),
            cpu: if any {
                format_cpu(total(|r| r.cpu_request)).0
            } else {
                String::new()
            },
            memory: if any {
                format_memory(total(|r| r.memory_request)).0
            } else {
                String::new()
            },
            latency_p99: traffic
                .filter(|t| t.requests_per_second > 0.0)
                .map(|t| format_latency(t.latency_p99_seconds))
                .unwrap_or_default(),
            requests_per_second: traffic
                .map(|t| format!("{:.1}", t.requests_per_second))
                .unwrap_or_default(),
            confidence: format!("{:.0}%", written.confidence * 100.0),
        }
    }

    /// Whether one of this workload's refresh times lies in `(last, now]`. They come every
    /// `refresh` seconds, shifted by the workload's own phase: a profile is rewritten at least
    /// once per interval (never more than `refresh` apart), and profiles first written in the
    /// same cycle have their refreshes spread over the next interval instead of all due at once.
    pub(super) fn refresh_due(&self, last: f64, now: f64, refresh: f64) -> bool {
        let shift = self.refresh_phase * refresh;
        ((now + shift) / refresh).floor() > ((last + shift) / refresh).floor()
    }

    /// Whether `candidate` differs enough from what was last written (or a refresh time
    /// passed) to be worth an API write: readiness, OOM kills, confidence by
    /// [`MEANINGFUL_CONFIDENCE`], a container's recommendation appearing or going, and — once
    /// the profile is `Ready` — a recommended amount moving by more than [`MEANINGFUL_CHANGE`].
    ///
    /// While a profile is learning (not `Ready`, so no webhook applies it), the amounts of its
    /// recommendation are built on little data and move with most samples; rewriting it for each
    /// move would write (and checkpoint) nearly every learning profile every cycle. Its progress
    /// is written on the refresh interval instead, which also checkpoints what it learned.
    pub fn worth_writing(&self, candidate: &Written, settings: &ModelSettings) -> bool {
        let Some(last) = &self.written else {
            return true;
        };
        if self.refresh_due(last.at, candidate.at, settings.refresh)
            || candidate.ready != last.ready
            || candidate.oom_kills != last.oom_kills
            || (candidate.confidence - last.confidence).abs() >= MEANINGFUL_CONFIDENCE
            || candidate.recommendations.len() != last.recommendations.len()
        {
            return true;
        }
        // `candidate.ready == last.ready` here.
        let amounts_matter = candidate.ready;
        candidate.recommendations.iter().any(|(name, now)| {
            match (now, last.recommendations.get(name).copied().flatten()) {
                (Some(now), Some(then)) => amounts_matter && changed(now, &then),
                (None, None) => false,
                _ => true,
            }
        })
    }
}

fn changed(now: &Recommendation, then: &Recommendation) -> bool {
    let differs = |a: f64, b: f64| (a - b).abs() > MEANINGFUL_CHANGE * a.abs().max(b.abs());
    differs(now.cpu_request, then.cpu_request)
        || differs(now.memory_request, then.memory_request)
        || differs(now.memory_limit, then.memory_limit)
        || match (now.cpu_limit, then.cpu_limit) {
            (Some(a), Some(b)) => differs(a, b),
            (a, b) => a.is_some() != b.is_some(),
        }
}

fn ready_condition(written: &Written, window: f64, settings: &ModelSettings) -> Condition {
    let (reason, message) = if written.ready {
        (
            "Confident",
            format!(
                "confidence {:.0}%; the webhook may apply the recommendation",
                written.confidence * 100.0
            ),
        )
    } else if written.recommendations.values().any(Option::is_none)
        || written.recommendations.is_empty()
    {
        (
            "NoRecommendation",
            "not enough usage data for a recommendation of every container yet".to_owned(),
        )
    } else {
        (
            "Learning",
            format!(
                "confidence {:.0}% after {:.0}s of a {:.0}s learning window",
                written.confidence * 100.0,
                window,
                settings.min_window
            ),
        )
    };
    Condition {
        type_: CONDITION_READY.to_owned(),
        status: if written.ready { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: time(written.ready_since),
        observed_generation: None,
    }
}
