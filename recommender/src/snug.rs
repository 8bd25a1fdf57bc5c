//! Snug's recommender. Where VPA sizes every hour of the day for the busiest (p90 over days of
//! history, +15%), Snug sizes the coming hour for what that time of day has needed lately, and
//! reacts to level shifts, OOM kills and throttling within the hour:
//!
//! - **CPU request** = the highest of (a) the time-of-day profile for the slots the next hour
//!   covers, (b) the recent level (p90 of a 3 h half-life histogram), and (c) traffic × cores
//!   per request when the sidecar reports traffic — plus a margin that widens while the
//!   container is throttled and relaxes afterwards.
//! - **No CPU limit**: a limit only adds throttling (CPU is compressible; the request already
//!   guarantees the share). A user who wants one sets it; throttling then raises the request.
//! - **Memory limit = request** = the higher of the daily peaks' p90 (36 h half-life) and the
//!   last 6 hours' peak, × a headroom learned from this workload's past jumps, + 256 MiB. An
//!   OOM kill at limit L keeps the limit above max(L + 100 MiB, 1.2 L) for a day, at once.
//!
//! Rules and tuning are explained in `docs/recommender.md`.
mod config;
mod cpu;
mod memory;
mod profile;

pub use config::SnugConfig;

use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::{CurrentResources, Error, Recommendation, Recommender, Result, Usage};
use cpu::CpuModel;
use memory::MemoryModel;

/// Snug's own recommender.
#[derive(Debug, Clone, PartialEq)]
pub struct SnugRecommender {
    config: SnugConfig,
    cpu: CpuModel,
    memory: MemoryModel,
    first_sample: Option<f64>,
    last_sample: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnugCheckpoint {
    v: u32,
    config: SnugConfig,
    cpu: cpu::CpuState,
    memory: memory::MemoryState,
    first: Option<f64>,
    last: Option<f64>,
}

impl Default for SnugRecommender {
    fn default() -> Self {
        Self::new(SnugConfig::default())
    }
}

impl SnugRecommender {
    /// A fresh recommender with `config`.
    pub fn new(config: SnugConfig) -> Self {
        Self {
            cpu: CpuModel::new(&config),
            memory: MemoryModel::new(&config),
            config,
            first_sample: None,
            last_sample: None,
        }
    }

    /// Resumes from [`Recommender::state_json`] or [`Recommender::checkpoint`] output.
    pub fn restore(checkpoint: &str) -> Result<Self> {
        let c: SnugCheckpoint = checkpoint::decode(checkpoint)?;
        if c.v != 1 {
            return Err(Error::Checkpoint(format!(
                "unknown Snug checkpoint version {}",
                c.v
            )));
        }
        c.config.validate()?;
        let cpu = CpuModel::from_state(&c.config, c.cpu)?;
        let memory = MemoryModel::from_state(&c.config, c.memory)?;
        Ok(Self {
            config: c.config,
            cpu,
            memory,
            first_sample: c.first,
            last_sample: c.last,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SnugConfig {
        &self.config
    }

    /// History length in days.
    fn history_days(&self) -> f64 {
        match (self.first_sample, self.last_sample) {
            (Some(a), Some(b)) => (b - a) / 86_400.0,
            _ => 0.0,
        }
    }
}

impl Recommender for SnugRecommender {
    fn name(&self) -> &'static str {
        "snug"
    }

    fn observe(&mut self, usage: Usage) {
        if self.last_sample.is_some_and(|last| usage.at < last) || !usage.at.is_finite() {
            return; // out of order: the models assume time moves forward
        }
        self.first_sample.get_or_insert(usage.at);
        self.last_sample = Some(usage.at);
        if let Some(c) = usage.cpu_cores.filter(|c| c.is_finite() && *c >= 0.0) {
            self.cpu.observe(&self.config, usage.at, c);
        }
        if let Some(m) = usage.memory_bytes.filter(|m| m.is_finite() && *m >= 0.0) {
            self.memory.observe(&self.config, usage.at, m);
        }
    }

    fn oom_killed(&mut self, at: f64, memory_limit: f64) {
        self.memory.oom_killed(&self.config, at, memory_limit);
    }

    fn throttled(&mut self, at: f64, _cpu_limit: f64) {
        self.cpu
            .pressure(&self.config, at, self.config.cpu_throttle_step);
    }

    fn observe_traffic(&mut self, at: f64, requests_per_second: f64) {
        if requests_per_second.is_finite() && requests_per_second >= 0.0 {
            self.cpu.observe_traffic(at, requests_per_second);
        }
    }

    fn applied(&mut self, resources: &CurrentResources) {
        self.cpu.applied(resources.cpu_request);
    }

    fn recommend(&self, at: f64, _current: &CurrentResources) -> Option<Recommendation> {
        let first = self.first_sample?;
        if at < first {
            return None;
        }
        let cfg = &self.config;
        let cpu = self.cpu.estimate(cfg, at);
        let memory = self.memory.estimate(cfg, at);
        let cpu_request = cpu.request.max(cfg.min_cpu_cores);
        let memory_limit = memory.limit.max(cfg.min_memory_bytes);
        Some(Recommendation {
            cpu_request,
            cpu_limit: None,
            memory_request: memory_limit,
            memory_limit,
            cpu_lower_bound: cpu.lower.clamp(cfg.min_cpu_cores, cpu_request),
            cpu_upper_bound: cpu.upper.max(cpu_request),
            memory_lower_bound: memory.lower.clamp(cfg.min_memory_bytes, memory_limit),
            memory_upper_bound: memory.upper.max(memory_limit),
            confidence: (self.history_days() / cfg.full_confidence_days).clamp(0.0, 1.0),
        })
    }

    fn state_json(&self) -> Result<String> {
        checkpoint::encode(&SnugCheckpoint {
            v: 1,
            config: self.config.clone(),
            cpu: self.cpu.state(),
            memory: self.memory.state(),
            first: self.first_sample,
            last: self.last_sample,
        })
    }
}

#[cfg(test)]
mod tests;
