//! The local demo, end to end: the sample app as its own process, the real sidecar, profiler
//! (local mode) and webhook (TLS), real traffic. Asserts what the reader of the demo would check.

use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use snug_api::quantity::parse_quantity;
use snug_e2e::demo::{DemoConfig, run};

#[tokio::test(flavor = "multi_thread")]
async fn demo_learns_a_profile_and_the_webhook_applies_it() {
    let out = tempfile::tempdir().unwrap();
    let config = DemoConfig {
        duration: Duration::from_secs(8),
        out: out.path().to_path_buf(),
        app_exe: env!("CARGO_BIN_EXE_snug-demo").into(),
    };
    let outcome = run(&config).await.unwrap_or_else(|e| panic!("{e}"));

    // Both peers were served.
    assert!(
        outcome.requests.iter().all(|(_, n)| *n > 0),
        "{:?}",
        outcome.requests
    );

    // The profile the webhook read is the one the profiler wrote, with traffic and peers.
    let status = outcome.profile.status.as_ref().unwrap();
    assert!(outcome.profile.is_confident());
    let traffic = status.traffic.as_ref().unwrap();
    assert!(traffic.requests_per_second > 0.0 && traffic.latency_p99_seconds > 0.0);
    for peer in ["127.0.0.2", "127.0.0.3"] {
        assert!(
            status.peers.iter().any(|p| p.peer == peer),
            "{peer} missing"
        );
    }

    // The stored pod carries the sidecar, the renamed port and the learned requests, within the
    // pod's snug.dev/max-memory bound of 1Gi.
    let spec = outcome.pod_after.spec.as_ref().unwrap();
    let all: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .collect();
    assert!(all.iter().any(|c| c.name == "snug-sidecar"));
    let app = all.iter().find(|c| c.name == "app").unwrap();
    assert_eq!(
        app.ports.as_ref().unwrap()[0].name.as_deref(),
        Some("snug-app-http")
    );
    let request = |container: &Container, resource: &str| {
        snug_e2e::demo::admit::requested(container, resource).unwrap()
    };
    let recommended = &outcome
        .profile
        .container("app")
        .unwrap()
        .recommendation
        .requests;
    let cpu = parse_quantity(recommended.cpu.as_ref().unwrap()).unwrap();
    let memory = parse_quantity(recommended.memory.as_ref().unwrap()).unwrap();
    assert!((request(app, "cpu") - cpu).abs() < 0.0011);
    assert!(
        (request(app, "memory") - memory.min(1024.0 * 1024.0 * 1024.0)).abs()
            < 1.1 * 1024.0 * 1024.0
    );

    // It is the profile the demo showed, version and all.
    let used = outcome.pod_after.metadata.annotations.as_ref().unwrap()["snug.dev/profile"].clone();
    let version = outcome.profile.metadata.resource_version.clone().unwrap();
    assert_eq!(used, format!("shop/deployment-web@{version}"));

    // What the demo leaves behind is where it says.
    assert!(out.path().join("certs/ca.crt").exists());
    assert!(
        out.path()
            .join("profiles/shop/deployment-web.yaml")
            .exists()
    );
}
