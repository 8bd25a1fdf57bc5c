//! Snug's memory model: the higher of the daily peaks' percentile (kept as VPA keeps them) and
//! the recent peak, times a headroom learned from how far this workload's peaks have jumped
//! above that before, plus an absolute headroom; an OOM kill sets an immediate floor.
//!
//! The learned headroom is what lets Snug spend memory where it prevents OOM kills: a workload
//! whose peaks never exceed what it did in the last days gets a thin margin; one that keeps
//! jumping to new heights gets as much as its jumps have needed (up to a cap: a bigger jump is
//! a new regime no margin covers).
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::SnugConfig;
use super::profile::percentile;
use crate::peaks::{IntervalPeaks, IntervalPeaksState};
use crate::vpa::{OOM_BUMP_RATIO, OOM_MIN_BUMP_BYTES, memory_scheme};
use crate::{Error, Result};

const HOUR_S: f64 = 3600.0;
const DAY_S: f64 = 86_400.0;

/// The daily-peaks histogram for `cfg`.
fn daily_peaks(cfg: &SnugConfig) -> IntervalPeaks {
    IntervalPeaks::new(memory_scheme(), cfg.memory_half_life_s, DAY_S)
}

/// Memory learned so far.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct MemoryModel {
    state: MemoryState,
    /// Daily peaks in a decaying histogram, as VPA keeps them.
    daily: IntervalPeaks,
}

/// Everything but the daily peaks; checkpointed as is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct MemoryState {
    /// Samples that may still be the window's maximum: (at, bytes), bytes decreasing.
    peaks: VecDeque<(f64, f64)>,
    /// The hour in progress (hour number since the epoch), its peak, and the window maximum
    /// when it started.
    hour: Option<i64>,
    hour_peak: f64,
    window_at_hour_start: f64,
    /// How far each of the last hours' peaks went above the window at its start (fraction,
    /// 0 when it stayed below), oldest first.
    jumps: VecDeque<f64>,
    /// After an OOM kill: (until, bytes) — the limit stays above this.
    oom_floor: Option<(f64, f64)>,
    /// Extra headroom from OOM kills, as of `boost_at`.
    boost: f64,
    boost_at: f64,
    daily: Option<IntervalPeaksState>,
}

/// The memory estimate at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct MemoryEstimate {
    pub limit: f64,
    pub lower: f64,
    pub upper: f64,
}

impl MemoryModel {
    pub(super) fn new(cfg: &SnugConfig) -> Self {
        Self {
            state: MemoryState::default(),
            daily: daily_peaks(cfg),
        }
    }

    pub(super) fn state(&self) -> MemoryState {
        MemoryState {
            daily: Some(self.daily.state()),
            ..self.state.clone()
        }
    }

    pub(super) fn from_state(cfg: &SnugConfig, mut state: MemoryState) -> Result<Self> {
        let daily = state
            .daily
            .take()
            .ok_or_else(|| Error::Checkpoint("no memory peaks".into()))?;
        let daily =
            IntervalPeaks::from_state(memory_scheme(), cfg.memory_half_life_s, DAY_S, &daily)
                .ok_or_else(|| Error::Checkpoint("memory peaks out of range".into()))?;
        let model = Self { state, daily };
        model.check(cfg)?;
        Ok(model)
    }

    fn check(&self, cfg: &SnugConfig) -> Result<()> {
        let me = &self.state;
        let sane = |v: f64| v.is_finite() && v >= 0.0;
        if me.jumps.len() <= cfg.jump_history_hours as usize
            && me.peaks.len() <= 1_000_000
            && me.jumps.iter().all(|j| sane(*j))
            && me.peaks.iter().all(|(t, b)| t.is_finite() && sane(*b))
        {
            Ok(())
        } else {
            Err(Error::Checkpoint(
                "memory state does not match the configuration".into(),
            ))
        }
    }

    pub(super) fn observe(&mut self, cfg: &SnugConfig, at: f64, bytes: f64) {
        self.daily.add(bytes, at, false);
        let base = self.base(cfg, at);
        let me = &mut self.state;
        let hour = (at / HOUR_S).floor() as i64;
        if me.hour != Some(hour) {
            me.close_hour(cfg);
            me.hour = Some(hour);
            me.hour_peak = 0.0;
            me.window_at_hour_start = base;
        }
        me.hour_peak = me.hour_peak.max(bytes);
        while me.peaks.back().is_some_and(|(_, b)| *b <= bytes) {
            me.peaks.pop_back();
        }
        me.peaks.push_back((at, bytes));
        while me
            .peaks
            .front()
            .is_some_and(|(t, _)| *t < at - cfg.memory_window_s)
        {
            me.peaks.pop_front();
        }
    }

    /// What the limit is built on: the higher of the daily peaks' percentile and the recent
    /// window's peak.
    fn base(&self, cfg: &SnugConfig, at: f64) -> f64 {
        let oldest = at - cfg.memory_window_s;
        let recent = self
            .state
            .peaks
            .iter()
            .filter(|(t, _)| *t >= oldest)
            .map(|(_, b)| *b)
            .fold(0.0, f64::max);
        let daily = self
            .daily
            .histogram()
            .percentile(cfg.memory_peak_percentile);
        recent.max(daily)
    }
}

impl MemoryState {
    fn close_hour(&mut self, cfg: &SnugConfig) {
        if self.hour.is_none() || self.window_at_hour_start <= 0.0 {
            return;
        }
        let jump = (self.hour_peak / self.window_at_hour_start - 1.0).max(0.0);
        self.jumps.push_back(jump);
        while self.jumps.len() > cfg.jump_history_hours as usize {
            self.jumps.pop_front();
        }
    }

    /// The headroom this workload's jumps have needed, at least the configured minimum.
    fn learned_headroom(&self, cfg: &SnugConfig) -> f64 {
        if self.jumps.len() < cfg.jump_min_hours as usize {
            return cfg.memory_margin.max(cfg.memory_margin_start);
        }
        // a jump beyond the largest headroom is a new regime (a batch job starting), which no
        // headroom covers: it does not count, or one burst would inflate the margin for a week
        let mut jumps: Vec<f64> = self
            .jumps
            .iter()
            .copied()
            .filter(|j| *j <= cfg.memory_margin_max)
            .collect();
        let learned = percentile(&mut jumps, cfg.jump_percentile).unwrap_or(0.0);
        (learned * cfg.jump_factor).clamp(cfg.memory_margin, cfg.memory_margin_max)
    }

    fn boost_now(&self, cfg: &SnugConfig, at: f64) -> f64 {
        let age = (at - self.boost_at).max(0.0);
        self.boost * (-age / cfg.oom_relax_half_life_s).exp2()
    }
}

impl MemoryModel {
    /// An OOM kill at `limit`: the next limit is at least max(limit + 100 MiB, limit × 1.2) for
    /// a while, and the headroom widens.
    pub(super) fn oom_killed(&mut self, cfg: &SnugConfig, at: f64, limit: f64) {
        if !(limit.is_finite() && limit >= 0.0) {
            return;
        }
        let floor = (limit + OOM_MIN_BUMP_BYTES).max(limit * OOM_BUMP_RATIO);
        let me = &mut self.state;
        let floor = me
            .oom_floor
            .filter(|(until, _)| at < *until)
            .map_or(floor, |(_, f)| f.max(floor));
        me.oom_floor = Some((at + cfg.oom_floor_s, floor));
        me.boost = me.boost_now(cfg, at) + cfg.oom_margin_step;
        me.boost_at = at;
        // as VPA does: the bumped need counts as a peak of the day
        self.daily.add(floor, at, true);
    }

    pub(super) fn estimate(&self, cfg: &SnugConfig, at: f64) -> MemoryEstimate {
        let peak = self.base(cfg, at);
        let me = &self.state;
        let floor = me
            .oom_floor
            .filter(|(until, _)| at < *until)
            .map_or(0.0, |(_, f)| f);
        let headroom = me.learned_headroom(cfg) + me.boost_now(cfg, at);
        let limit = peak.max(floor) * (1.0 + headroom) + cfg.memory_headroom_bytes;
        let widest = peak.max(floor) * (1.0 + cfg.memory_margin_max) + cfg.memory_headroom_bytes;
        MemoryEstimate {
            limit,
            lower: peak,
            upper: widest.max(limit),
        }
    }
}
