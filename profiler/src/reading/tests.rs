use super::*;
use crate::fixture::{SidecarTraffic, sidecar_exposition};

fn traffic(ok: u64, errors: u64, durations: &[f64]) -> SidecarTraffic {
    SidecarTraffic {
        requests: vec![("2xx", ok), ("5xx", errors)],
        durations: durations.to_vec(),
        peers: vec![("10.0.0.7".into(), 1000, 5000, ok + errors)],
    }
}

#[test]
fn reads_what_prometheus_client_wrote() {
    let body = sidecar_exposition(&traffic(90, 10, &[0.001, 0.002, 0.5]));
    let reading = SidecarReading::parse(&body).unwrap();
    assert_eq!(reading.requests, 100.0);
    assert_eq!(reading.errors, 10.0);
    assert_eq!(
        reading.duration_buckets.len(),
        latency::bucket_bounds().len() + 1
    );
    assert_eq!(*reading.duration_buckets.last().unwrap(), 3.0);
    let peer = reading.peers["10.0.0.7"];
    assert_eq!(
        (peer.received_bytes, peer.sent_bytes, peer.requests),
        (1000.0, 5000.0, 100.0)
    );
}

#[test]
fn delta_turns_cumulative_buckets_into_interval_counts() {
    let before = SidecarReading::parse(&sidecar_exposition(&traffic(10, 0, &[0.001]))).unwrap();
    let after =
        SidecarReading::parse(&sidecar_exposition(&traffic(30, 2, &[0.001, 1.0, 1.0]))).unwrap();
    let delta = after.since(&before, 10.0);
    assert!(!delta.reset);
    assert_eq!((delta.requests, delta.errors), (22.0, 2.0));
    let buckets: Vec<(f64, u64)> = latency::bucket_bounds()
        .into_iter()
        .chain([f64::INFINITY])
        .zip(delta.duration_buckets.iter().map(|c| *c as u64))
        .collect();
    assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 2);
    let p50 = latency::quantile(&buckets, 0.5).unwrap();
    assert!(
        (p50 - 1.0).abs() / 1.0 <= latency::max_relative_error(),
        "{p50}"
    );
    assert_eq!(delta.peers["10.0.0.7"].requests, 22.0);
}

#[test]
fn a_counter_that_went_down_is_a_restart() {
    let before = SidecarReading::parse(&sidecar_exposition(&traffic(500, 5, &[0.1; 4]))).unwrap();
    let after = SidecarReading::parse(&sidecar_exposition(&traffic(7, 0, &[0.1]))).unwrap();
    let delta = after.since(&before, 5.0);
    assert!(delta.reset);
    assert_eq!(delta.requests, 7.0);
    assert_eq!(delta.errors, 0.0);
    assert_eq!(delta.duration_buckets.iter().sum::<f64>(), 1.0);
}

#[test]
fn foreign_bucket_layouts_and_negative_counters_are_invalid() {
    let foreign = "snug_request_duration_seconds_bucket{le=\"0.25\"} 3\n";
    assert!(matches!(
        SidecarReading::parse(foreign),
        Err(ReadingError::UnknownBucket(_))
    ));
    let negative = "snug_requests_total{class=\"2xx\"} -4\n";
    assert!(matches!(
        SidecarReading::parse(negative),
        Err(ReadingError::BadValue(_))
    ));
    assert!(matches!(
        SidecarReading::parse("<html>oops</html>"),
        Err(ReadingError::Syntax(_))
    ));
    // Other programs' series are not the profiler's business.
    let other = "process_cpu_seconds_total 3.5\n";
    assert_eq!(SidecarReading::parse(other).unwrap().requests, 0.0);
}

/// Captured from the real `snug-sidecar` binary in front of a static file server: 21 GETs
/// answered 200 (one from 127.0.0.2), 3 answered 404.
const REAL_SIDECAR: &str = include_str!("../../tests/data/sidecar-metrics.txt");

#[test]
fn reads_the_real_sidecar_exposition() {
    let reading = SidecarReading::parse(REAL_SIDECAR).unwrap();
    assert_eq!(reading.requests, 24.0);
    assert_eq!(
        reading.errors, 0.0,
        "4xx is the client's error, not the app's"
    );
    assert_eq!(*reading.duration_buckets.last().unwrap(), 24.0);
    assert_eq!(reading.peers["127.0.0.1"].requests, 23.0);
    assert_eq!(reading.peers["127.0.0.2"].sent_bytes, 190.0);
    assert_eq!(reading.peers["other"].requests, 0.0);
    let buckets: Vec<(f64, u64)> = latency::bucket_bounds()
        .into_iter()
        .chain([f64::INFINITY])
        .zip(reading.duration_buckets.iter().map(|c| *c as u64))
        .scan(0u64, |below, (bound, cumulative)| {
            let count = cumulative - *below;
            *below = cumulative;
            Some((bound, count))
        })
        .collect();
    let mean = 0.102056963 / 24.0;
    let p50 = latency::quantile(&buckets, 0.5).unwrap();
    assert!(p50 > 0.0 && p50 < 10.0 * mean, "p50 {p50}, mean {mean}");
}
