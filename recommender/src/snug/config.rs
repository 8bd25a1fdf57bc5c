//! Snug's tunables, with the defaults tuned as `docs/recommender.md` describes.
use serde::{Deserialize, Serialize};

use super::profile::ProfileRule;
use crate::{Error, Result};

/// How Snug's recommender reacts; the defaults are the tuned ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnugConfig {
    /// Length of a time-of-day slot, seconds (must divide a day).
    pub slot_s: f64,
    /// How long a recommendation is expected to stay in force, seconds: the request covers the
    /// slots of this horizon.
    pub horizon_s: f64,
    /// Percentile (0..1) of a slot's CPU samples that stands for the slot.
    pub slot_percentile: f64,
    /// When a slot's new day is higher, the estimate moves this fraction of the way up.
    pub slot_rise: f64,
    /// When a slot's new day is lower, the estimate moves this fraction of the way down (up is
    /// at once).
    pub slot_fall: f64,
    /// Half-life of the recent-level CPU histogram, seconds.
    pub recent_half_life_s: f64,
    /// Percentile (0..1) of the recent-level histogram the request never goes below.
    pub recent_percentile: f64,
    /// CPU margin on top of the estimate (0.1 = +10%).
    pub cpu_margin: f64,
    /// Cores added to every CPU request (cheap for a small container, which a burst starves the
    /// most).
    pub cpu_headroom_cores: f64,
    /// Extra CPU margin per starved sample (use above the request in force).
    pub cpu_pressure_step: f64,
    /// Extra CPU margin per throttled sample (use at a CPU limit someone set).
    pub cpu_throttle_step: f64,
    /// Cap of the extra CPU margin.
    pub cpu_pressure_max: f64,
    /// Half-life of the extra CPU margin, seconds.
    pub cpu_pressure_half_life_s: f64,
    /// The memory limit starts from the highest usage of this many last seconds...
    pub memory_window_s: f64,
    /// ...or this percentile of the daily peaks (kept as VPA keeps them), when higher.
    pub memory_peak_percentile: f64,
    /// Half-life of the daily peaks, seconds.
    pub memory_half_life_s: f64,
    /// Smallest memory headroom above that peak (0.05 = +5%).
    pub memory_margin: f64,
    /// Headroom in bytes added to every memory limit: room is cheap for a small container, and
    /// an OOM kill hurts the same whatever the container's size.
    pub memory_headroom_bytes: f64,
    /// Headroom before enough hours were seen to learn one.
    pub memory_margin_start: f64,
    /// Largest learned memory headroom.
    pub memory_margin_max: f64,
    /// Hours of peak jumps remembered to learn the headroom from.
    pub jump_history_hours: f64,
    /// Hours of jumps needed before the learned headroom is used.
    pub jump_min_hours: f64,
    /// Percentile (0..1] of the remembered jumps the headroom covers.
    pub jump_percentile: f64,
    /// The headroom is this many times that jump.
    pub jump_factor: f64,
    /// After an OOM kill the limit stays above the bumped memory this long, seconds.
    pub oom_floor_s: f64,
    /// Extra memory margin per OOM kill.
    pub oom_margin_step: f64,
    /// Half-life of the extra memory margin, seconds.
    pub oom_relax_half_life_s: f64,
    /// Smallest CPU request, cores.
    pub min_cpu_cores: f64,
    /// Smallest memory limit, bytes.
    pub min_memory_bytes: f64,
    /// Days of history for full confidence.
    pub full_confidence_days: f64,
}

impl Default for SnugConfig {
    fn default() -> Self {
        Self {
            slot_s: 3600.0,
            horizon_s: 3600.0,
            slot_percentile: 0.9,
            slot_rise: 0.5,
            slot_fall: 0.5,
            recent_half_life_s: 3.0 * 3600.0,
            recent_percentile: 0.9,
            cpu_margin: 0.05,
            cpu_headroom_cores: 0.0,
            cpu_pressure_step: 0.0,
            cpu_throttle_step: 0.05,
            cpu_pressure_max: 0.5,
            cpu_pressure_half_life_s: 6.0 * 3600.0,
            memory_window_s: 6.0 * 3600.0,
            memory_peak_percentile: 0.9,
            memory_half_life_s: 1.5 * 86_400.0,
            memory_margin: 0.0,
            memory_margin_start: 0.15,
            memory_headroom_bytes: 256.0 * 1024.0 * 1024.0,
            memory_margin_max: 0.1,
            jump_history_hours: 7.0 * 24.0,
            jump_min_hours: 24.0,
            jump_percentile: 1.0,
            jump_factor: 1.0,
            oom_floor_s: 86_400.0,
            oom_margin_step: 0.0,
            oom_relax_half_life_s: 2.0 * 86_400.0,
            min_cpu_cores: crate::vpa::MIN_CPU_CORES,
            min_memory_bytes: crate::vpa::MIN_MEMORY_BYTES,
            full_confidence_days: 7.0,
        }
    }
}

impl SnugConfig {
    /// Checks the values make sense (a checkpoint may carry a config from elsewhere).
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("slot_s", self.slot_s),
            ("horizon_s", self.horizon_s),
            ("recent_half_life_s", self.recent_half_life_s),
            ("cpu_pressure_half_life_s", self.cpu_pressure_half_life_s),
            ("memory_window_s", self.memory_window_s),
            ("memory_half_life_s", self.memory_half_life_s),
            ("jump_history_hours", self.jump_history_hours),
            ("jump_factor", self.jump_factor),
            ("oom_floor_s", self.oom_floor_s),
            ("oom_relax_half_life_s", self.oom_relax_half_life_s),
            ("full_confidence_days", self.full_confidence_days),
        ];
        let fractions = [
            ("slot_percentile", self.slot_percentile),
            ("slot_rise", self.slot_rise),
            ("slot_fall", self.slot_fall),
            ("recent_percentile", self.recent_percentile),
            ("jump_percentile", self.jump_percentile),
            ("memory_peak_percentile", self.memory_peak_percentile),
        ];
        let non_negative = [
            ("cpu_margin", self.cpu_margin),
            ("cpu_headroom_cores", self.cpu_headroom_cores),
            ("cpu_pressure_step", self.cpu_pressure_step),
            ("cpu_throttle_step", self.cpu_throttle_step),
            ("cpu_pressure_max", self.cpu_pressure_max),
            ("memory_margin", self.memory_margin),
            ("memory_margin_start", self.memory_margin_start),
            ("memory_headroom_bytes", self.memory_headroom_bytes),
            ("memory_margin_max", self.memory_margin_max),
            ("jump_min_hours", self.jump_min_hours),
            ("oom_margin_step", self.oom_margin_step),
            ("min_cpu_cores", self.min_cpu_cores),
            ("min_memory_bytes", self.min_memory_bytes),
        ];
        let bad =
            |name: &str, v: f64| Error::Checkpoint(format!("config {name} = {v} is out of range"));
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(name, v));
            }
        }
        for (name, v) in fractions {
            if !(v > 0.0 && v <= 1.0) {
                return Err(bad(name, v));
            }
        }
        for (name, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(name, v));
            }
        }
        if self.slot_s > 86_400.0 || (86_400.0 % self.slot_s) != 0.0 {
            return Err(bad("slot_s (must divide a day)", self.slot_s));
        }
        Ok(())
    }

    /// How the CPU profile learns.
    pub(super) fn cpu_rule(&self) -> ProfileRule {
        ProfileRule {
            slot_s: self.slot_s,
            percentile: self.slot_percentile,
            rise: self.slot_rise,
            fall: self.slot_fall,
        }
    }
}
