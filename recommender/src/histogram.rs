//! The decaying exponential histogram VPA keeps per container, with VPA's bucket scheme.
//!
//! Buckets grow by a fixed ratio (5%: each bucket is 5% wider than the one before), so the
//! relative error of a percentile is the same at every scale. Each sample's weight is multiplied
//! by `2^((t - reference) / half_life)`: newer samples count more, and since percentiles only
//! depend on relative weights, old samples fade without ever being visited again.
use serde::{Deserialize, Serialize};

/// Beyond this many half-lives past the reference the weights are renormalised (as VPA does), so
/// the exponent never overflows.
const MAX_DECAY_EXPONENT: f64 = 100.0;

/// The bucket scheme: bucket `n >= 1` starts at `first * (ratio^n - 1) / (ratio - 1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketScheme {
    first_bucket_size: f64,
    ratio: f64,
    num_buckets: usize,
    /// A bucket lighter than this counts as empty.
    epsilon: f64,
}

impl BucketScheme {
    /// Buckets from 0 up to at least `max_value`, the first `first_bucket_size` wide, each next
    /// one `ratio` times wider.
    pub fn exponential(max_value: f64, first_bucket_size: f64, ratio: f64, epsilon: f64) -> Self {
        let n = (max_value * (ratio - 1.0) / first_bucket_size + 1.0).ln() / ratio.ln();
        // n is finite and positive for the positive constants this is called with.
        let num_buckets = n.ceil() as usize + 1;
        Self {
            first_bucket_size,
            ratio,
            num_buckets,
            epsilon,
        }
    }

    /// Number of buckets.
    pub fn num_buckets(&self) -> usize {
        self.num_buckets
    }

    /// The bucket a value falls in (the first or last one for values out of range).
    pub fn bucket_of(&self, value: f64) -> usize {
        if value.is_nan() || value < self.first_bucket_size {
            return 0;
        }
        let b = ((value * (self.ratio - 1.0) / self.first_bucket_size + 1.0).ln() / self.ratio.ln())
            as usize;
        b.min(self.num_buckets - 1)
    }

    /// Where bucket `bucket` starts.
    pub fn bucket_start(&self, bucket: usize) -> f64 {
        if bucket == 0 {
            return 0.0;
        }
        self.first_bucket_size * (self.ratio.powi(bucket as i32) - 1.0) / (self.ratio - 1.0)
    }
}

/// A histogram whose samples lose half their weight every `half_life` seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct DecayingHistogram {
    scheme: BucketScheme,
    half_life: f64,
    /// Time (s) at which a sample has weight factor 1; a multiple of `half_life`.
    reference: f64,
    weights: Vec<f64>,
    total: f64,
}

impl DecayingHistogram {
    /// An empty histogram.
    pub fn new(scheme: BucketScheme, half_life: f64) -> Self {
        Self {
            scheme,
            half_life,
            reference: 0.0,
            weights: vec![0.0; scheme.num_buckets],
            total: 0.0,
        }
    }

    /// The half-life, seconds.
    pub fn half_life(&self) -> f64 {
        self.half_life
    }

    /// Adds `value` with `weight` as seen at time `at`.
    pub fn add(&mut self, value: f64, weight: f64, at: f64) {
        if !crate::is_amount(weight) || !value.is_finite() {
            return;
        }
        let w = weight * self.decay_factor(at);
        let b = self.scheme.bucket_of(value);
        self.weights[b] += w;
        self.total += w;
    }

    /// Removes a sample added earlier with the same value, weight and time; never below zero.
    pub fn subtract(&mut self, value: f64, weight: f64, at: f64) {
        if !crate::is_amount(weight) || !value.is_finite() {
            return;
        }
        let mut w = weight * self.decay_factor(at);
        let b = self.scheme.bucket_of(value);
        if w > self.weights[b] - self.scheme.epsilon {
            w = self.weights[b];
        }
        self.weights[b] -= w;
        self.total -= w;
    }

    /// True when no bucket holds a weight of at least epsilon.
    pub fn is_empty(&self) -> bool {
        self.weights.iter().all(|w| *w < self.scheme.epsilon)
    }

    /// The `p` percentile (0..1) as VPA reports it: the end of the bucket where the cumulative
    /// weight reaches `p` of the total (the start of the last bucket, which has no end). 0 when
    /// empty.
    pub fn percentile(&self, p: f64) -> f64 {
        let Some((min, max)) = self.occupied_range() else {
            return 0.0;
        };
        let threshold = p * self.total;
        let mut sum = 0.0;
        let mut bucket = min;
        while bucket < max {
            sum += self.weights[bucket];
            if sum >= threshold {
                break;
            }
            bucket += 1;
        }
        if bucket < self.scheme.num_buckets - 1 {
            self.scheme.bucket_start(bucket + 1)
        } else {
            self.scheme.bucket_start(bucket)
        }
    }

    /// Indexes of the first and last bucket that are not empty.
    fn occupied_range(&self) -> Option<(usize, usize)> {
        let eps = self.scheme.epsilon;
        let min = self.weights.iter().position(|w| *w >= eps)?;
        let max = self.weights.iter().rposition(|w| *w >= eps)?;
        Some((min, max))
    }

    /// `2^((at - reference) / half_life)`, renormalising first when the exponent grows too big.
    fn decay_factor(&mut self, at: f64) -> f64 {
        if at > self.reference + self.half_life * MAX_DECAY_EXPONENT {
            self.shift_reference(at);
        }
        ((at - self.reference) / self.half_life).exp2()
    }

    fn shift_reference(&mut self, at: f64) {
        let new_reference = (at / self.half_life).round() * self.half_life;
        let exponent = ((self.reference - new_reference) / self.half_life).round();
        let factor = exponent.exp2();
        for w in &mut self.weights {
            *w *= factor;
        }
        self.total *= factor;
        self.reference = new_reference;
    }

    /// The state as sparse buckets, for a checkpoint.
    pub fn to_sparse(&self) -> SparseHistogram {
        SparseHistogram {
            reference: self.reference,
            total: self.total,
            buckets: self
                .weights
                .iter()
                .enumerate()
                .filter(|(_, w)| **w != 0.0)
                .map(|(i, w)| (i as u32, *w))
                .collect(),
        }
    }

    /// Rebuilds from [`Self::to_sparse`] output; `None` when a bucket is out of range or a weight
    /// is not a finite non-negative number.
    pub fn from_sparse(
        scheme: BucketScheme,
        half_life: f64,
        sparse: &SparseHistogram,
    ) -> Option<Self> {
        let mut h = Self::new(scheme, half_life);
        if !sparse.reference.is_finite() || !sparse.total.is_finite() {
            return None;
        }
        h.reference = sparse.reference;
        h.total = sparse.total;
        for (i, w) in &sparse.buckets {
            let slot = h.weights.get_mut(*i as usize)?;
            if !(w.is_finite() && *w >= 0.0) {
                return None;
            }
            *slot = *w;
        }
        Some(h)
    }
}

/// Checkpoint form of a [`DecayingHistogram`]: only the buckets that hold weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparseHistogram {
    /// Reference time, seconds.
    #[serde(rename = "r")]
    pub reference: f64,
    /// Total weight.
    #[serde(rename = "t")]
    pub total: f64,
    /// (bucket index, weight) pairs.
    #[serde(rename = "b")]
    pub buckets: Vec<(u32, f64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu() -> BucketScheme {
        BucketScheme::exponential(1000.0, 0.001, 1.05, 1e-4)
    }

    #[test]
    fn buckets_grow_by_five_percent() {
        let s = cpu();
        let w1 = s.bucket_start(11) - s.bucket_start(10);
        let w2 = s.bucket_start(12) - s.bucket_start(11);
        assert!((w2 / w1 - 1.05).abs() < 1e-9);
        assert!(s.bucket_start(s.num_buckets() - 1) >= 1000.0);
        for v in [0.0005, 0.01, 0.5, 3.0, 999.0] {
            let b = s.bucket_of(v);
            assert!(
                s.bucket_start(b) <= v * (1.0 + 1e-12) && v < s.bucket_start(b + 1),
                "{v}"
            );
        }
    }

    #[test]
    fn percentile_is_the_end_of_the_bucket_reaching_it() {
        let mut h = DecayingHistogram::new(cpu(), 86_400.0);
        for i in 1..=100 {
            h.add(i as f64 / 100.0, 1.0, 0.0);
        }
        let p90 = h.percentile(0.9);
        // the bucket holding 0.90 ends within 5% above it
        assert!(p90 > 0.9 && p90 <= 0.9 * 1.051, "{p90}");
        let p50 = h.percentile(0.5);
        assert!(p50 > 0.5 && p50 <= 0.5 * 1.051, "{p50}");
        assert_eq!(DecayingHistogram::new(cpu(), 1.0).percentile(0.9), 0.0);
    }

    #[test]
    fn a_sample_one_half_life_older_weighs_half() {
        let day = 86_400.0;
        // 1 core seen at t=0 with weight 2, 2 cores at t=1 day with weight 1: equal weights after
        // decay, so the median sits at the first value's bucket.
        let mut h = DecayingHistogram::new(cpu(), day);
        h.add(1.0, 2.0, 0.0);
        h.add(2.0, 1.0, day);
        let w = &h.weights;
        let (a, b) = (w[cpu().bucket_of(1.0)], w[cpu().bucket_of(2.0)]);
        assert!((b / a - 1.0).abs() < 1e-12, "{a} {b}");
        // and a third, older sample barely counts once enough half-lives have passed
        h.add(0.1, 1.0, -10.0 * day);
        assert!(h.percentile(0.01) > 0.9);
    }

    #[test]
    fn renormalising_keeps_percentiles() {
        let hl = 3600.0;
        let mut h = DecayingHistogram::new(cpu(), hl);
        h.add(1.0, 1.0, 0.0);
        h.add(5.0, 1.0, 0.0);
        // far beyond 100 half-lives: the reference shifts, old weights shrink, nothing overflows
        h.add(5.0, 1.0, hl * 150.0);
        assert!(h.total.is_finite());
        assert!(h.percentile(0.1) > 4.0);
    }

    #[test]
    fn subtract_removes_a_peak() {
        let mut h = DecayingHistogram::new(cpu(), 86_400.0);
        h.add(1.0, 1.0, 10.0);
        h.add(3.0, 1.0, 10.0);
        h.subtract(3.0, 1.0, 10.0);
        assert!(h.percentile(1.0) < 1.1);
        h.subtract(1.0, 5.0, 10.0);
        assert!(h.is_empty());
    }

    #[test]
    fn sparse_round_trip_is_exact() {
        let mut h = DecayingHistogram::new(cpu(), 86_400.0);
        for i in 0..500 {
            h.add((i % 37) as f64 * 0.013, 0.7, i as f64 * 300.0);
        }
        let back = DecayingHistogram::from_sparse(cpu(), 86_400.0, &h.to_sparse());
        assert_eq!(back.as_ref(), Some(&h));
        let mut bad = h.to_sparse();
        bad.buckets.push((10_000, 1.0));
        assert!(DecayingHistogram::from_sparse(cpu(), 86_400.0, &bad).is_none());
    }
}
