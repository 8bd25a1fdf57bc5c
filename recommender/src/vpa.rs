//! The baseline: a reference implementation of the published Kubernetes VPA recommender
//! (`kubernetes/autoscaler`, `vertical-pod-autoscaler/pkg/recommender`), with its defaults.
//!
//! - CPU: every usage sample goes into a decaying histogram (24 h half-life), weighted by the CPU
//!   request in force (at least 0.1), so a raised request makes the old history count less.
//! - Memory: one peak per 24 h window goes into a decaying histogram (24 h half-life); the
//!   aggregation window is 8 such intervals (state with no sample for 8 days is stale).
//! - Target = p90 (CPU samples, memory peaks) + 15% margin; lower bound p50, upper bound p95,
//!   each + 15%, widened by the confidence (history length in days, at one sample a minute):
//!   upper × (1 + 1/confidence), lower × (1 + 0.001/confidence)^-2.
//! - Everything at least 25 millicores and 250 MiB (the pod minimums for a one-container pod).
//! - An OOM kill adds a memory peak of max(used + 100 MiB, used × 1.2), where `used` is the
//!   larger of the memory at the kill and the window's usage peak.
//! - Limits keep the container's original limit/request ratio (1 when it has none).
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::histogram::{BucketScheme, DecayingHistogram, SparseHistogram};
use crate::peaks::{IntervalPeaks, IntervalPeaksState};
use crate::{CurrentResources, Error, Recommendation, Recommender, Result, Usage};

/// Fraction added to every estimate.
pub const SAFETY_MARGIN: f64 = 0.15;
/// Smallest CPU recommendation, cores (25 millicores).
pub const MIN_CPU_CORES: f64 = 0.025;
/// Smallest memory recommendation, bytes (250 MiB).
pub const MIN_MEMORY_BYTES: f64 = 250.0 * 1024.0 * 1024.0;
/// Histogram half-life for both resources, seconds.
pub const HALF_LIFE_S: f64 = 24.0 * 3600.0;
/// One memory peak is kept per interval of this length, seconds.
pub const MEMORY_AGGREGATION_INTERVAL_S: f64 = 24.0 * 3600.0;
/// Memory aggregation window, in intervals (8 days).
pub const MEMORY_AGGREGATION_INTERVAL_COUNT: u32 = 8;
/// Memory after an OOM kill is at least this much more, bytes (100 MiB).
pub const OOM_MIN_BUMP_BYTES: f64 = 100.0 * 1024.0 * 1024.0;
/// Memory after an OOM kill is at least this many times more.
pub const OOM_BUMP_RATIO: f64 = 1.2;
/// Smallest weight of a CPU sample (its request in cores, when smaller).
const MIN_SAMPLE_WEIGHT: f64 = 0.1;
/// Samples per day that make one day of confidence (one a minute).
const SAMPLES_PER_CONFIDENCE_DAY: f64 = 60.0 * 24.0;
const DAY_S: f64 = 86_400.0;

/// VPA's CPU buckets: 1 millicore first, up to 1000 cores, 5% growth.
pub fn cpu_scheme() -> BucketScheme {
    BucketScheme::exponential(1000.0, 0.001, 1.05, 0.001 * MIN_SAMPLE_WEIGHT)
}

/// VPA's memory buckets: 10 MB first, up to 1 TB, 5% growth.
pub fn memory_scheme() -> BucketScheme {
    BucketScheme::exponential(1e12, 1e7, 1.05, 0.001 * MIN_SAMPLE_WEIGHT)
}

/// Reference implementation of the published VPA recommender: the baseline Snug is measured
/// against.
#[derive(Debug, Clone, PartialEq)]
pub struct VpaRecommender {
    cpu: DecayingHistogram,
    memory_peaks: IntervalPeaks,
    scalars: Scalars,
}

/// Everything besides the histograms; checkpointed as is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Scalars {
    first_sample: Option<f64>,
    last_sample: Option<f64>,
    total_samples: u64,
    /// CPU request in force: the weight of CPU samples.
    cpu_request: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct VpaCheckpoint {
    v: u32,
    cpu: SparseHistogram,
    mem: IntervalPeaksState,
    s: Scalars,
}

impl Default for VpaRecommender {
    fn default() -> Self {
        Self {
            cpu: DecayingHistogram::new(cpu_scheme(), HALF_LIFE_S),
            memory_peaks: IntervalPeaks::new(
                memory_scheme(),
                HALF_LIFE_S,
                MEMORY_AGGREGATION_INTERVAL_S,
            ),
            scalars: Scalars::default(),
        }
    }
}

impl VpaRecommender {
    /// Resumes from [`Recommender::state_json`] or [`Recommender::checkpoint`] output.
    pub fn restore(checkpoint: &str) -> Result<Self> {
        let c: VpaCheckpoint = checkpoint::decode(checkpoint)?;
        if c.v != 1 {
            return Err(Error::Checkpoint(format!(
                "unknown VPA checkpoint version {}",
                c.v
            )));
        }
        let bad = || Error::Checkpoint("histogram out of range".into());
        Ok(Self {
            cpu: DecayingHistogram::from_sparse(cpu_scheme(), HALF_LIFE_S, &c.cpu)
                .ok_or_else(bad)?,
            memory_peaks: IntervalPeaks::from_state(
                memory_scheme(),
                HALF_LIFE_S,
                MEMORY_AGGREGATION_INTERVAL_S,
                &c.mem,
            )
            .ok_or_else(bad)?,
            scalars: c.s,
        })
    }

    /// VPA's confidence: history length in days, but no more than the sample count allows at one
    /// sample a minute.
    pub fn confidence_days(&self) -> f64 {
        let s = &self.scalars;
        let lifespan = match (s.first_sample, s.last_sample) {
            (Some(a), Some(b)) => (b - a) / DAY_S,
            _ => 0.0,
        };
        lifespan.min(s.total_samples as f64 / SAMPLES_PER_CONFIDENCE_DAY)
    }

    fn add_cpu_sample(&mut self, cores: f64, at: f64) {
        let s = &mut self.scalars;
        // duplicates and out-of-order samples are dropped, as VPA does
        if !crate::is_amount(cores) || s.last_sample.is_some_and(|last| at <= last) {
            return;
        }
        let weight = s.cpu_request.unwrap_or(0.0).max(MIN_SAMPLE_WEIGHT);
        self.cpu.add(cores, weight, at);
        s.first_sample.get_or_insert(at);
        s.last_sample = Some(at);
        s.total_samples += 1;
    }
}

/// The original limit/request ratio, 1 when there is no limit (or no request to relate it to).
pub fn limit_ratio(request: Option<f64>, limit: Option<f64>) -> f64 {
    match (request, limit) {
        (Some(r), Some(l)) if r > 0.0 && l > 0.0 && l.is_finite() => l / r,
        _ => 1.0,
    }
}

/// `value` scaled by `(1 + multiplier / confidence)^exponent`; an infinite result (no history)
/// is capped at `cap`.
fn with_confidence(value: f64, multiplier: f64, exponent: f64, confidence: f64, cap: f64) -> f64 {
    let scaled = value * (1.0 + multiplier / confidence).powf(exponent);
    if scaled.is_finite() { scaled } else { cap }
}

impl Recommender for VpaRecommender {
    fn name(&self) -> &'static str {
        "vpa"
    }

    fn observe(&mut self, usage: Usage) {
        if let Some(c) = usage.cpu_cores {
            self.add_cpu_sample(c, usage.at);
        }
        if let Some(m) = usage.memory_bytes {
            self.memory_peaks.add(m, usage.at, false);
        }
    }

    fn oom_killed(&mut self, at: f64, memory_limit: f64) {
        let w = self.memory_peaks.window();
        if w.window_end
            .is_some_and(|end| at < end - MEMORY_AGGREGATION_INTERVAL_S)
        {
            return; // too old, as VPA discards it
        }
        // the larger of the memory at the kill and the interval's usage peak, bumped
        let used = memory_limit.max(w.memory_peak);
        let needed = (used + OOM_MIN_BUMP_BYTES).max(used * OOM_BUMP_RATIO);
        self.memory_peaks.add(needed, at, true);
    }

    fn applied(&mut self, resources: &CurrentResources) {
        self.scalars.cpu_request = resources.cpu_request;
    }

    fn recommend(&self, _at: f64, current: &CurrentResources) -> Option<Recommendation> {
        if self.scalars.total_samples == 0 && self.memory_peaks.histogram().is_empty() {
            return None;
        }
        let margin = 1.0 + SAFETY_MARGIN;
        let conf = self.confidence_days();
        let cpu = |p: f64| self.cpu.percentile(p) * margin;
        let mem = |p: f64| self.memory_peaks.histogram().percentile(p) * margin;
        let cpu_request = cpu(0.9).max(MIN_CPU_CORES);
        let memory_request = mem(0.9).max(MIN_MEMORY_BYTES);
        let cpu_ratio = limit_ratio(current.cpu_request, current.cpu_limit);
        let memory_ratio = limit_ratio(current.memory_request, current.memory_limit);
        Some(Recommendation {
            cpu_request,
            cpu_limit: Some(cpu_request * cpu_ratio),
            memory_request,
            memory_limit: memory_request * memory_ratio,
            cpu_lower_bound: with_confidence(cpu(0.5), 0.001, -2.0, conf, 0.0).max(MIN_CPU_CORES),
            cpu_upper_bound: with_confidence(cpu(0.95), 1.0, 1.0, conf, 1000.0).max(MIN_CPU_CORES),
            memory_lower_bound: with_confidence(mem(0.5), 0.001, -2.0, conf, 0.0)
                .max(MIN_MEMORY_BYTES),
            memory_upper_bound: with_confidence(mem(0.95), 1.0, 1.0, conf, 1e12)
                .max(MIN_MEMORY_BYTES),
            confidence: (conf / f64::from(MEMORY_AGGREGATION_INTERVAL_COUNT)).clamp(0.0, 1.0),
        })
    }

    fn state_json(&self) -> Result<String> {
        checkpoint::encode(&VpaCheckpoint {
            v: 1,
            cpu: self.cpu.to_sparse(),
            mem: self.memory_peaks.state(),
            s: self.scalars.clone(),
        })
    }
}

#[cfg(test)]
mod tests;
