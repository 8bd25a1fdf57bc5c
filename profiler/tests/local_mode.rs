//! `snug-profiler local` end to end on 127.0.0.1: a sidecar whose counters grow at each scrape,
//! this test process as the app read from the real /proc, profiles into a temp directory.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, routing::get};
use snug_api::WorkloadRef;
use snug_profiler::{
    LocalConfig,
    fixture::{SidecarTraffic, sidecar_exposition},
    run_local,
    store::dir::read_profile,
};
use snug_recommender::RecommenderKind;

/// A sidecar that has served 50 more requests (5 of them 5xx) each time it is scraped.
async fn growing_sidecar() -> String {
    let scrapes = Arc::new(Mutex::new(0u64));
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let scrapes = scrapes.clone();
            async move {
                let mut n = scrapes.lock().unwrap();
                *n += 1;
                sidecar_exposition(&SidecarTraffic {
                    requests: vec![("2xx", 45 * *n), ("5xx", 5 * *n)],
                    durations: vec![0.004; 50 * *n as usize],
                    peers: vec![("127.0.0.1".into(), 200 * *n, 4000 * *n, 50 * *n)],
                })
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

#[tokio::test]
async fn local_mode_writes_a_profile_with_traffic_and_procfs_usage() {
    let dir = tempfile::tempdir().unwrap();
    let config = LocalConfig {
        scrape: vec![growing_sidecar().await],
        pids: vec![std::process::id()],
        procfs: "/proc".into(),
        cgroupfs: "/sys/fs/cgroup".into(),
        workload: WorkloadRef::new("apps/v1", "Deployment", "demo"),
        namespace: "demo".into(),
        container: "app".into(),
        profiles_dir: dir.path().to_owned(),
        interval: Duration::from_millis(100),
        refresh: Duration::from_millis(1),
        min_window: Duration::from_secs(1),
        scrape_timeout: Duration::from_secs(5),
        recommender: RecommenderKind::Snug,
        health_listen: None,
        cycles: Some(4),
    };
    run_local(config, std::future::pending()).await.unwrap();

    let profile = read_profile(&dir.path().join("demo/deployment-demo.yaml"))
        .unwrap()
        .expect("profile written");
    assert_eq!(profile.metadata.namespace.as_deref(), Some("demo"));
    assert_eq!(profile.spec.target_ref.name, "demo");
    let status = profile.status.unwrap();
    assert_eq!(status.samples, 4, "one usage sample per cycle");
    let app = &status.containers[0];
    assert_eq!(app.name, "app");
    assert!(
        app.memory.max > 1024.0 * 1024.0,
        "this process' RSS: {:?}",
        app.memory
    );
    let traffic = status.traffic.expect("traffic after two scrapes");
    assert!(traffic.requests_per_second > 0.0);
    assert!((traffic.error_ratio - 0.1).abs() < 1e-9, "{traffic:?}");
    let p99 = traffic.latency_p99_seconds;
    assert!(
        (p99 - 0.004).abs() / 0.004 <= snug_api::latency::max_relative_error(),
        "{p99}"
    );
    assert_eq!(status.peers[0].peer, "127.0.0.1");
    assert!(status.checkpoint.is_some());
}
