//! A workload's traffic from its sidecars' increments: request rate and error ratio over the last
//! interval, latency percentiles from the pods' histograms merged bucket-wise (decaying with a
//! half-life, so a profile shows recent latency, not the average of its whole life), and the
//! busiest peers, named by workload when the peer is a known pod.

use std::{collections::HashMap, net::IpAddr};

use snug_api::{PeerTraffic, TrafficSummary, latency, metrics::PEER_OTHER};

use crate::reading::ReadingDelta;

/// Half-life of the merged latency histogram, seconds.
pub const LATENCY_HALF_LIFE_SECONDS: f64 = 300.0;
/// Peers kept in a profile, busiest first.
pub const MAX_PEERS: usize = 20;

/// What the sidecars of one workload said, folded over cycles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadTraffic {
    latency: Vec<f64>,
    latency_at: Option<f64>,
    /// The latest summary, `None` before two scrapes of any pod.
    pub summary: Option<TrafficSummary>,
    /// The latest peers, busiest first.
    pub peers: Vec<PeerTraffic>,
}

impl WorkloadTraffic {
    /// Folds in the increments of this cycle's pods (each from its own previous scrape).
    /// Returns the workload's requests per second, when any pod had increments.
    pub fn fold(
        &mut self,
        at: f64,
        deltas: &[ReadingDelta],
        peer_names: &HashMap<IpAddr, String>,
    ) -> Option<f64> {
        let deltas: Vec<&ReadingDelta> = deltas.iter().filter(|d| d.elapsed > 0.0).collect();
        if deltas.is_empty() {
            return None;
        }
        self.decay_latency(at);
        let mut requests_per_second = 0.0;
        let (mut requests, mut errors) = (0.0, 0.0);
        for delta in &deltas {
            requests_per_second += delta.requests / delta.elapsed;
            requests += delta.requests;
            errors += delta.errors;
            if self.latency.len() < delta.duration_buckets.len() {
                self.latency.resize(delta.duration_buckets.len(), 0.0);
            }
            for (sum, count) in self.latency.iter_mut().zip(&delta.duration_buckets) {
                *sum += count;
            }
        }
        let buckets = self.latency_buckets();
        let quantile = |q| latency::quantile(&buckets, q).unwrap_or(0.0);
        self.summary = Some(TrafficSummary {
            requests_per_second,
            latency_p50_seconds: quantile(0.5),
            latency_p95_seconds: quantile(0.95),
            latency_p99_seconds: quantile(0.99),
            error_ratio: if requests > 0.0 {
                errors / requests
            } else {
                0.0
            },
        });
        self.peers = peers(&deltas, peer_names);
        Some(requests_per_second)
    }

    fn decay_latency(&mut self, at: f64) {
        if let Some(then) = self.latency_at {
            let factor = 0.5f64.powf((at - then).max(0.0) / LATENCY_HALF_LIFE_SECONDS);
            self.latency.iter_mut().for_each(|c| *c *= factor);
        }
        self.latency_at = Some(at);
    }

    /// The merged histogram as `latency::quantile` reads it, built once per fold.
    fn latency_buckets(&self) -> Vec<(f64, u64)> {
        // `latency::quantile` takes whole counts; scaling keeps decayed fractions meaningful.
        crate::reading::bucket_bounds()
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.latency)
            .map(|(bound, count)| (bound, (count * 1000.0).round() as u64))
            .collect()
    }
}

fn peers(deltas: &[&ReadingDelta], names: &HashMap<IpAddr, String>) -> Vec<PeerTraffic> {
    let mut by_peer: HashMap<String, PeerTraffic> = HashMap::new();
    for delta in deltas {
        for (peer, counters) in &delta.peers {
            let name = match peer.parse::<IpAddr>() {
                Ok(ip) => names.get(&ip).cloned().unwrap_or_else(|| peer.clone()),
                Err(_) if peer == PEER_OTHER => PEER_OTHER.to_owned(),
                Err(_) => peer.clone(),
            };
            let entry = by_peer.entry(name.clone()).or_insert_with(|| PeerTraffic {
                peer: name,
                ..Default::default()
            });
            entry.received_bytes_per_second += counters.received_bytes / delta.elapsed;
            entry.sent_bytes_per_second += counters.sent_bytes / delta.elapsed;
            entry.requests_per_minute += counters.requests / delta.elapsed * 60.0;
        }
    }
    let mut peers: Vec<PeerTraffic> = by_peer.into_values().collect();
    let bytes = |p: &PeerTraffic| p.received_bytes_per_second + p.sent_bytes_per_second;
    peers.sort_by(|a, b| bytes(b).total_cmp(&bytes(a)).then(a.peer.cmp(&b.peer)));
    peers.truncate(MAX_PEERS);
    peers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::PeerCounters;

    fn delta(elapsed: f64, requests: f64, errors: f64, at_seconds: f64) -> ReadingDelta {
        let bounds = latency::bucket_bounds();
        let mut buckets = vec![0.0; bounds.len() + 1];
        let i = bounds.iter().position(|b| *b >= at_seconds).unwrap();
        buckets[i] = requests;
        let peer = PeerCounters {
            received_bytes: 100.0 * requests,
            sent_bytes: 1000.0 * requests,
            requests,
        };
        ReadingDelta {
            elapsed,
            requests,
            errors,
            duration_buckets: buckets,
            peers: [
                ("10.0.0.9".to_owned(), peer),
                ("10.0.0.10".to_owned(), peer),
            ]
            .into(),
            reset: false,
        }
    }

    #[test]
    fn pods_merge_into_one_rate_latency_and_peer_list() {
        let mut traffic = WorkloadTraffic::default();
        let names = [(
            "10.0.0.9".parse().unwrap(),
            "Deployment/frontend".to_owned(),
        )]
        .into();
        // Two pods: 100 fast requests in 10 s, 100 slow in 10 s.
        let rps = traffic.fold(
            1000.0,
            &[
                delta(10.0, 100.0, 0.0, 0.002),
                delta(10.0, 100.0, 20.0, 0.5),
            ],
            &names,
        );
        assert_eq!(rps, Some(20.0));
        let summary = traffic.summary.clone().unwrap();
        assert!((summary.error_ratio - 0.1).abs() < 1e-12);
        assert!(summary.latency_p50_seconds < 0.003, "{summary:?}");
        let p99 = summary.latency_p99_seconds;
        assert!(
            (p99 - 0.5).abs() / 0.5 <= latency::max_relative_error(),
            "{p99}"
        );
        let peer_names: Vec<_> = traffic.peers.iter().map(|p| p.peer.as_str()).collect();
        assert_eq!(peer_names, ["10.0.0.10", "Deployment/frontend"]);
        assert_eq!(traffic.peers[1].requests_per_minute, 1200.0);
        assert_eq!(traffic.peers[1].received_bytes_per_second, 2000.0);
    }

    #[test]
    fn old_latency_fades_and_no_increments_change_nothing() {
        let mut traffic = WorkloadTraffic::default();
        let names = HashMap::new();
        traffic.fold(0.0, &[delta(10.0, 1000.0, 0.0, 1.0)], &names);
        assert!(traffic.summary.as_ref().unwrap().latency_p50_seconds > 0.5);
        // An hour later (12 half-lives) 100 fast requests outweigh 1000 slow ones.
        traffic.fold(3600.0, &[delta(10.0, 100.0, 0.0, 0.001)], &names);
        assert!(traffic.summary.as_ref().unwrap().latency_p99_seconds < 0.01);
        let before = traffic.clone();
        assert_eq!(traffic.fold(3700.0, &[], &names), None);
        assert_eq!(traffic, before);
    }
}
