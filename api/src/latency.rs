//! The latency histogram layout shared by the sidecar (which records) and the profiler (which
//! merges and reads quantiles), and the quantile estimate both trust.
//!
//! Buckets grow geometrically by [`BUCKET_GROWTH`] from [`FIRST_BUCKET_SECONDS`] to past
//! [`LAST_BUCKET_SECONDS`]. A quantile is estimated at the geometric middle of its bucket, so its
//! relative error is at most `sqrt(BUCKET_GROWTH) - 1` (≈ 9.5%) anywhere in that range.

/// Upper bound of the first latency bucket: 100 µs.
pub const FIRST_BUCKET_SECONDS: f64 = 100e-6;
/// The last finite bucket bound reaches at least this: 60 s.
pub const LAST_BUCKET_SECONDS: f64 = 60.0;
/// Ratio between consecutive bucket bounds.
pub const BUCKET_GROWTH: f64 = 1.2;

/// Worst-case relative error of [`quantile`] for values inside the bucket range.
pub fn max_relative_error() -> f64 {
    BUCKET_GROWTH.sqrt() - 1.0
}

/// The finite upper bounds of the latency buckets, ascending (the `+Inf` bucket is implied).
pub fn bucket_bounds() -> Vec<f64> {
    let mut bounds = Vec::with_capacity(80);
    let mut bound = FIRST_BUCKET_SECONDS;
    loop {
        bounds.push(bound);
        if bound >= LAST_BUCKET_SECONDS {
            return bounds;
        }
        bound *= BUCKET_GROWTH;
    }
}

/// Estimates the `q` quantile (0..=1) of a histogram given as ascending `(upper_bound, count)`
/// pairs of *non-cumulative* counts; an infinite bound may close the list. Returns `None` for an
/// empty histogram.
///
/// Inside a bucket the estimate is the geometric middle of its bounds (the first bucket's lower
/// bound is taken as `bound / BUCKET_GROWTH`); in the `+Inf` bucket it is the last finite bound.
pub fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().map(|(_, c)| c).sum();
    if total == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    let mut lower = None;
    let mut last_finite = 0.0;
    for &(upper, count) in buckets {
        seen += count;
        if seen >= rank {
            if upper.is_infinite() {
                return Some(last_finite);
            }
            let lower = lower.unwrap_or(upper / BUCKET_GROWTH);
            return Some((lower * upper).sqrt());
        }
        if upper.is_finite() {
            last_finite = upper;
        }
        lower = Some(upper);
    }
    Some(last_finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_100us_to_60s() {
        let bounds = bucket_bounds();
        assert!((bounds[0] - 100e-6).abs() < 1e-12);
        assert!(*bounds.last().unwrap() >= 60.0);
        assert!(bounds[bounds.len() - 2] < 60.0);
        assert!(
            bounds
                .windows(2)
                .all(|w| (w[1] / w[0] - BUCKET_GROWTH).abs() < 1e-9)
        );
    }

    /// Every value in range, put alone in the histogram, comes back within the promised error.
    #[test]
    fn quantile_error_is_bounded_across_the_range() {
        let bounds = bucket_bounds();
        let mut value = 100e-6;
        while value < 60.0 {
            let mut buckets: Vec<(f64, u64)> = bounds.iter().map(|&b| (b, 0)).collect();
            let i = bounds.iter().position(|&b| value <= b).unwrap();
            buckets[i].1 = 1;
            let estimate = quantile(&buckets, 0.99).unwrap();
            let error = (estimate - value).abs() / value;
            assert!(
                error <= max_relative_error() + 1e-9,
                "{value}: {estimate} ({error})"
            );
            value *= 1.013;
        }
        assert!(max_relative_error() <= 0.10);
    }

    #[test]
    fn quantile_picks_the_right_rank() {
        // 90 fast (~1 ms), 10 slow (~1 s): p50 is fast, p95 is slow.
        let bounds = bucket_bounds();
        let mut buckets: Vec<(f64, u64)> = bounds.iter().map(|&b| (b, 0)).collect();
        let fast = bounds.iter().position(|&b| b >= 1e-3).unwrap();
        let slow = bounds.iter().position(|&b| b >= 1.0).unwrap();
        buckets[fast].1 = 90;
        buckets[slow].1 = 10;
        assert!(quantile(&buckets, 0.5).unwrap() < 2e-3);
        assert!(quantile(&buckets, 0.95).unwrap() > 0.5);
        assert_eq!(quantile(&[(1.0, 0)], 0.5), None);
    }

    #[test]
    fn overflow_bucket_reports_last_finite_bound() {
        assert_eq!(quantile(&[(1.0, 0), (f64::INFINITY, 3)], 0.99), Some(1.0));
    }
}
