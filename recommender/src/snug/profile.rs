//! A time-of-day profile: one estimate per slot of the day (e.g. 24 hours), learned from a
//! percentile of each slot's samples. A day that needed more or less moves the slot's estimate
//! part of the way (`rise`, `fall`), so one unusual day neither sets nor undoes it.
use serde::{Deserialize, Serialize};

/// Samples kept for the slot in progress; beyond it every other one is dropped (the percentile
/// of a thinned slot is still a fair estimate).
const MAX_SLOT_SAMPLES: usize = 256;
const DAY_S: f64 = 86_400.0;

/// How a profile learns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ProfileRule {
    /// Slot length, seconds (divides a day).
    pub slot_s: f64,
    /// Percentile (0..1] of a slot's samples that stands for it (1 = the slot's peak).
    pub percentile: f64,
    /// Fraction of the way a higher day moves the estimate up.
    pub rise: f64,
    /// Fraction of the way a lower day moves the estimate down.
    pub fall: f64,
}

/// The learned profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct TimeOfDayProfile {
    /// Per slot of the day: the estimate, `None` until the slot was seen.
    slots: Vec<Option<f64>>,
    /// The slot in progress (slot number since the epoch) and its samples.
    current_slot: Option<i64>,
    current_samples: Vec<f64>,
}

impl TimeOfDayProfile {
    /// An empty profile for `rule`.
    pub(super) fn new(rule: &ProfileRule) -> Self {
        // rule.slot_s divides a day (checked by SnugConfig::validate): a whole, positive count
        let n = (DAY_S / rule.slot_s).round().max(1.0) as usize;
        Self {
            slots: vec![None; n],
            current_slot: None,
            current_samples: Vec::new(),
        }
    }

    /// True when the profile fits `rule` (a checkpoint's profile could come from another config).
    pub(super) fn fits(&self, rule: &ProfileRule) -> bool {
        self.slots.len() == Self::new(rule).slots.len()
            && self.current_samples.len() <= MAX_SLOT_SAMPLES
    }

    pub(super) fn observe(&mut self, rule: &ProfileRule, at: f64, value: f64) {
        let slot = (at / rule.slot_s).floor() as i64;
        if self.current_slot != Some(slot) {
            self.close_slot(rule);
            self.current_slot = Some(slot);
        }
        if self.current_samples.len() >= MAX_SLOT_SAMPLES {
            let mut keep = false;
            self.current_samples.retain(|_| {
                keep = !keep;
                keep
            });
        }
        self.current_samples.push(value);
    }

    fn close_slot(&mut self, rule: &ProfileRule) {
        let Some(slot) = self.current_slot else {
            return;
        };
        let value = percentile(&mut self.current_samples, rule.percentile);
        self.current_samples.clear();
        let Some(value) = value else {
            return;
        };
        let n = self.slots.len() as i64;
        let estimate = &mut self.slots[slot.rem_euclid(n) as usize];
        *estimate = Some(match *estimate {
            Some(old) if value < old => old + (value - old) * rule.fall,
            Some(old) => old + (value - old) * rule.rise,
            None => value,
        });
    }

    /// The highest estimate of the slots `[at, at + horizon_s)` covers (the slot in progress
    /// counts with what it has seen so far); `None` while one of them was never seen.
    pub(super) fn ahead(&self, rule: &ProfileRule, at: f64, horizon_s: f64) -> Option<f64> {
        let first = (at / rule.slot_s).floor() as i64;
        let last = (((at + horizon_s) / rule.slot_s).ceil() as i64 - 1).max(first);
        let n = self.slots.len() as i64;
        let mut highest: f64 = 0.0;
        for slot in first..=last {
            let learned = self.slots[slot.rem_euclid(n) as usize];
            let partial = (self.current_slot == Some(slot))
                .then(|| {
                    self.current_samples
                        .iter()
                        .copied()
                        .fold(f64::NAN, f64::max)
                })
                .filter(|v| !v.is_nan());
            let value = match (learned, partial) {
                (Some(l), Some(p)) => l.max(p),
                (l, p) => l.or(p)?,
            };
            highest = highest.max(value);
        }
        Some(highest)
    }

    /// The highest estimate of any slot.
    pub(super) fn highest(&self) -> Option<f64> {
        self.slots.iter().flatten().copied().reduce(f64::max)
    }

    /// The lowest estimate of any slot.
    pub(super) fn lowest(&self) -> Option<f64> {
        self.slots.iter().flatten().copied().reduce(f64::min)
    }
}

/// Nearest-rank percentile; sorts `samples` in place.
pub(super) fn percentile(samples: &mut [f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    Some(samples[rank - 1])
}
