//! A usage distribution for the profile's `cpu` and `memory` percentiles: a sparse histogram
//! with buckets 5% apart, so any percentile is known within 5% whatever the scale (millicores or
//! gigabytes), and its size stays bounded (a few hundred buckets over twelve decades) however
//! long the profile runs. The recommenders keep their own state; this is what people read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use snug_api::UsageDistribution;

/// Ratio between bucket bounds.
const GROWTH: f64 = 1.05;

/// Counts of samples by bucket index; bucket `i` holds values in `(GROWTH^(i-1), GROWTH^i]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Bucket index → samples (zero values sit in `i32::MIN`).
    buckets: BTreeMap<i32, u64>,
    /// Highest value seen.
    max: f64,
}

impl Distribution {
    /// Adds one sample; negative and non-finite values are ignored.
    pub fn add(&mut self, value: f64) {
        if !(value.is_finite() && value >= 0.0) {
            return;
        }
        let index = if value == 0.0 {
            i32::MIN
        } else {
            (value.ln() / GROWTH.ln()).ceil() as i32
        };
        *self.buckets.entry(index).or_default() += 1;
        self.max = self.max.max(value);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.buckets.values().sum()
    }

    /// The `q` quantile (0..=1), as its bucket's upper bound (never below the true value),
    /// capped at the maximum seen; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (&index, &count) in &self.buckets {
            seen += count;
            if seen >= rank {
                let upper = if index == i32::MIN {
                    0.0
                } else {
                    GROWTH.powi(index)
                };
                return Some(upper.min(self.max));
            }
        }
        Some(self.max)
    }

    /// The percentiles a profile shows.
    pub fn summary(&self) -> UsageDistribution {
        let q = |q| self.quantile(q).unwrap_or(0.0);
        UsageDistribution {
            p50: q(0.5),
            p90: q(0.9),
            p95: q(0.95),
            p99: q(0.99),
            max: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentiles_of_a_known_series() {
        let mut d = Distribution::default();
        for i in 1..=100 {
            d.add(i as f64 / 100.0);
        }
        let s = d.summary();
        assert!(s.p50 >= 0.50 && s.p50 <= 0.50 * GROWTH, "{}", s.p50);
        assert!(s.p99 >= 0.99 && s.p99 <= 1.0);
        assert_eq!(s.max, 1.0);
        assert_eq!(d.count(), 100);
        d.add(f64::NAN);
        d.add(-1.0);
        assert_eq!(d.count(), 100);
        assert_eq!(Distribution::default().quantile(0.5), None);
    }

    proptest! {
        #[test]
        fn a_single_value_comes_back_within_five_percent(v in 1e-4f64..1e12) {
            let mut d = Distribution::default();
            d.add(v);
            let q = d.quantile(0.5).unwrap();
            prop_assert!(q >= v * (1.0 - 1e-12) && q <= v * GROWTH * (1.0 + 1e-12));
        }
    }
}
