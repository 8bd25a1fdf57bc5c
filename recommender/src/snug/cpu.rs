//! Snug's CPU model: a time-of-day profile, a recent-level histogram for shifts the profile has
//! not seen yet, traffic × cores per request, and a margin that grows under starvation or
//! throttling.
use serde::{Deserialize, Serialize};

use super::SnugConfig;
use super::profile::TimeOfDayProfile;
use crate::histogram::{DecayingHistogram, SparseHistogram};
use crate::vpa::cpu_scheme;
use crate::{Error, Result};

/// Traffic older than this (seconds) is not used to size CPU.
const TRAFFIC_FRESH_S: f64 = 600.0;
/// Weight of a new cores-per-request observation in its moving average.
const TRAFFIC_ALPHA: f64 = 0.05;

/// CPU learned so far.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CpuModel {
    state: CpuState,
    recent: DecayingHistogram,
}

/// Everything but the histogram, as checkpointed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct CpuState {
    profile: TimeOfDayProfile,
    /// Extra margin from starvation and throttling, as of `pressure_at`.
    pressure: f64,
    pressure_at: f64,
    /// CPU request in force (to notice starvation).
    request_in_force: Option<f64>,
    /// Moving average of cores per request/s, and the last traffic reading (at, req/s).
    cores_per_rps: Option<f64>,
    last_traffic: Option<(f64, f64)>,
    recent: Option<SparseHistogram>,
}

/// The CPU estimate at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct CpuEstimate {
    pub request: f64,
    pub lower: f64,
    pub upper: f64,
}

impl CpuModel {
    pub(super) fn new(cfg: &SnugConfig) -> Self {
        Self {
            state: CpuState {
                profile: TimeOfDayProfile::new(&cfg.cpu_rule()),
                pressure: 0.0,
                pressure_at: 0.0,
                request_in_force: None,
                cores_per_rps: None,
                last_traffic: None,
                recent: None,
            },
            recent: DecayingHistogram::new(cpu_scheme(), cfg.recent_half_life_s),
        }
    }

    pub(super) fn state(&self) -> CpuState {
        CpuState {
            recent: Some(self.recent.to_sparse()),
            ..self.state.clone()
        }
    }

    pub(super) fn from_state(cfg: &SnugConfig, mut state: CpuState) -> Result<Self> {
        if !state.profile.fits(&cfg.cpu_rule()) {
            return Err(Error::Checkpoint(
                "CPU profile does not match the configuration".into(),
            ));
        }
        let sparse = state
            .recent
            .take()
            .ok_or_else(|| Error::Checkpoint("no CPU histogram".into()))?;
        let recent = DecayingHistogram::from_sparse(cpu_scheme(), cfg.recent_half_life_s, &sparse)
            .ok_or_else(|| Error::Checkpoint("CPU histogram out of range".into()))?;
        Ok(Self { state, recent })
    }

    pub(super) fn observe(&mut self, cfg: &SnugConfig, at: f64, cores: f64) {
        self.state.profile.observe(&cfg.cpu_rule(), at, cores);
        self.recent.add(cores, 1.0, at);
        if self.state.request_in_force.is_some_and(|r| cores > r) {
            self.pressure(cfg, at, cfg.cpu_pressure_step);
        }
        if let Some((t, rps)) = self.state.last_traffic
            && at - t <= TRAFFIC_FRESH_S
            && rps > 0.0
        {
            let ratio = cores / rps;
            let avg = self
                .state
                .cores_per_rps
                .map_or(ratio, |a| a + (ratio - a) * TRAFFIC_ALPHA);
            self.state.cores_per_rps = Some(avg);
        }
    }

    /// Starved or throttled: widen the margin by `step` for a while.
    pub(super) fn pressure(&mut self, cfg: &SnugConfig, at: f64, step: f64) {
        if step <= 0.0 {
            return;
        }
        self.state.pressure = (self.pressure_now(cfg, at) + step).min(cfg.cpu_pressure_max);
        self.state.pressure_at = at;
    }

    fn pressure_now(&self, cfg: &SnugConfig, at: f64) -> f64 {
        let age = (at - self.state.pressure_at).max(0.0);
        self.state.pressure * (-age / cfg.cpu_pressure_half_life_s).exp2()
    }

    pub(super) fn applied(&mut self, request: Option<f64>) {
        self.state.request_in_force = request;
    }

    pub(super) fn observe_traffic(&mut self, at: f64, rps: f64) {
        self.state.last_traffic = Some((at, rps));
    }

    pub(super) fn estimate(&self, cfg: &SnugConfig, at: f64) -> CpuEstimate {
        let rule = cfg.cpu_rule();
        let recent_level = self.recent.percentile(cfg.recent_percentile);
        let base = match self.state.profile.ahead(&rule, at, cfg.horizon_s) {
            Some(profile) => profile.max(recent_level),
            // less than a day seen: the recent history's high end stands in for the profile
            None => self.recent.percentile(cfg.slot_percentile),
        };
        let traffic = match (self.state.cores_per_rps, self.state.last_traffic) {
            (Some(cpr), Some((t, rps))) if at - t <= TRAFFIC_FRESH_S => cpr * rps,
            _ => 0.0,
        };
        let margin = 1.0 + cfg.cpu_margin + self.pressure_now(cfg, at);
        let request = base.max(traffic) * margin + cfg.cpu_headroom_cores;
        CpuEstimate {
            request,
            lower: self.state.profile.lowest().unwrap_or(recent_level),
            upper: self.state.profile.highest().map_or(request, |h| h * margin),
        }
    }
}
