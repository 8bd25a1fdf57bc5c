//! VPA's memory aggregation: one peak per interval (24 h by default) in a decaying histogram. A
//! bigger sample in the same interval replaces the interval's peak (subtract, then add).
use serde::{Deserialize, Serialize};

use crate::histogram::{BucketScheme, DecayingHistogram, SparseHistogram};

/// Peaks per interval, in a decaying histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalPeaks {
    histogram: DecayingHistogram,
    interval_s: f64,
    window: PeakWindow,
}

/// The interval in progress; checkpointed as is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeakWindow {
    /// End (exclusive) of the current interval.
    pub window_end: Option<f64>,
    last_sample: Option<f64>,
    /// Largest usage seen in the current interval.
    pub memory_peak: f64,
    /// Largest OOM-derived need in the current interval.
    oom_peak: f64,
}

/// Checkpoint form of [`IntervalPeaks`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalPeaksState {
    h: SparseHistogram,
    w: PeakWindow,
}

impl IntervalPeaks {
    /// Empty, with `scheme` buckets, `half_life_s` decay and one peak per `interval_s`.
    pub fn new(scheme: BucketScheme, half_life_s: f64, interval_s: f64) -> Self {
        Self {
            histogram: DecayingHistogram::new(scheme, half_life_s),
            interval_s,
            window: PeakWindow::default(),
        }
    }

    /// The histogram of peaks.
    pub fn histogram(&self) -> &DecayingHistogram {
        &self.histogram
    }

    /// The interval in progress.
    pub fn window(&self) -> &PeakWindow {
        &self.window
    }

    /// Checkpoint form.
    pub fn state(&self) -> IntervalPeaksState {
        IntervalPeaksState {
            h: self.histogram.to_sparse(),
            w: self.window.clone(),
        }
    }

    /// Rebuilds from [`Self::state`]; `None` when the histogram does not fit `scheme`.
    pub fn from_state(
        scheme: BucketScheme,
        half_life_s: f64,
        interval_s: f64,
        s: &IntervalPeaksState,
    ) -> Option<Self> {
        Some(Self {
            histogram: DecayingHistogram::from_sparse(scheme, half_life_s, &s.h)?,
            interval_s,
            window: s.w.clone(),
        })
    }

    /// Adds a usage sample (`is_oom`: a need derived from an OOM kill, taken even out of order).
    pub fn add(&mut self, bytes: f64, at: f64, is_oom: bool) {
        let w = &mut self.window;
        if !crate::is_amount(bytes) || (!is_oom && w.last_sample.is_some_and(|last| at < last)) {
            return;
        }
        w.last_sample = Some(at);
        let mut window_end = *w.window_end.get_or_insert(at);
        let mut add_new_peak = false;
        if at < window_end {
            let old_peak = w.memory_peak.max(w.oom_peak);
            if old_peak != 0.0 && bytes > old_peak {
                self.histogram.subtract(old_peak, 1.0, window_end);
                add_new_peak = true;
            }
        } else {
            window_end +=
                ((at - window_end) / self.interval_s).floor() * self.interval_s + self.interval_s;
            w.window_end = Some(window_end);
            w.memory_peak = 0.0;
            w.oom_peak = 0.0;
            add_new_peak = true;
        }
        if add_new_peak {
            self.histogram.add(bytes, 1.0, window_end);
            if is_oom {
                w.oom_peak = bytes;
            } else {
                w.memory_peak = bytes;
            }
        }
    }
}
