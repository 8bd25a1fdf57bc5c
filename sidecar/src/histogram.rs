//! A latency histogram that records without a lock: one atomic add to the bucket and one to the
//! sum per observation, the bucket found by binary search over the shared layout
//! (`snug_api::latency`). The count is the buckets' total, summed when the metric is encoded.
//!
//! prometheus-client's own histogram takes a mutex and scans its buckets in order on every
//! observation; with every request observed twice (time to headers and to the end), on every
//! core, that was a measurable part of the sidecar's cost per request.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, TypedMetric},
};

/// A latency histogram over fixed bucket bounds, in seconds.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Finite upper bounds, ascending.
    bounds: Box<[f64]>,
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    /// Sum of the observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// A histogram with the finite upper `bounds` (seconds, ascending).
    pub fn new(bounds: Vec<f64>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(Inner {
                bounds: bounds.into_boxed_slice(),
                counts,
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        // The first bucket whose bound is not below the value (`le` is inclusive).
        let bucket = self.inner.bounds.partition_point(|bound| *bound < seconds);
        self.inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = Duration::from_nanos(inner.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::{encoding::text::encode, registry::Registry};

    use super::*;

    fn exposition(histogram: &LatencyHistogram) -> String {
        let mut registry = Registry::default();
        registry.register("latency_seconds", "Latency", histogram.clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn encodes_as_prometheus_client_histogram_does() {
        let bounds = vec![0.001, 0.01, 0.1];
        let ours = LatencyHistogram::new(bounds.clone());
        let theirs = prometheus_client::metrics::histogram::Histogram::new(bounds);
        // On a bound, below the first, between, and past the last.
        for millis in [1, 0, 5, 10, 50, 250, 7] {
            let elapsed = Duration::from_millis(millis);
            ours.observe(elapsed);
            theirs.observe(elapsed.as_secs_f64());
        }
        let mut registry = Registry::default();
        registry.register("latency_seconds", "Latency", theirs);
        let mut expected = String::new();
        encode(&mut expected, &registry).unwrap();
        assert_eq!(exposition(&ours), expected);
        assert_eq!(ours.count(), 7);
    }

    #[test]
    fn counts_from_every_thread() {
        let histogram = LatencyHistogram::new(snug_api::latency::bucket_bounds());
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for micros in 0..1000 {
                        histogram.observe(Duration::from_micros(micros));
                    }
                });
            }
        });
        assert_eq!(histogram.count(), 4000);
        let text = exposition(&histogram);
        assert!(
            text.contains("latency_seconds_bucket{le=\"+Inf\"} 4000\n"),
            "{text}"
        );
        // 4 × Σ 0..1000 µs = 1.998 s.
        assert!(text.contains("latency_seconds_sum 1.998\n"), "{text}");
        assert!(
            text.contains("latency_seconds_bucket{le=\"0.0001\"} 404\n"),
            "{text}"
        );
    }
}
