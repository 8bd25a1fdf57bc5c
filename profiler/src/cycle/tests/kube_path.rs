//! The cycle against the API server: the tower-test fake asserts every request.

use super::*;
use crate::{fake_api, model::WorkloadModel, store::kube::KubeStore};
use serde_json::json;
use snug_recommender::Usage;

const PROFILE: &str = "/apis/snug.dev/v1alpha1/namespaces/shop/workloadprofiles/deployment-web";

/// The checkpoint a previous profiler left: three samples, peak 0.5 cores / 300 MiB, and the
/// OOM kill of web-1's first run counted.
fn previous_checkpoint() -> String {
    let mut model = WorkloadModel::new(web(), PeakRecommender::factory(RecommenderKind::Snug));
    for (at, memory) in [(0.0, 300.0), (10.0, 200.0), (20.0, 100.0)] {
        let sample = Usage {
            at,
            cpu_cores: Some(0.5),
            memory_bytes: Some(memory * MIB),
        };
        model.observe_usage(sample, "app", Default::default());
    }
    model.observe_oom(5.0, "uid-web-1/app/0".into(), "app", Some(128.0 * MIB));
    model.checkpoint().unwrap().encode().unwrap()
}

fn stored(status: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "snug.dev/v1alpha1", "kind": "WorkloadProfile",
        "metadata": {"name": "deployment-web", "namespace": "shop", "resourceVersion": "9"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
        "status": status})
}

fn oom_killed_web_1() -> Arc<PodInfo> {
    let mut web_1 = (*pod(
        "web-1",
        Some(web().workload),
        "10.0.0.1",
        Some("http://127.0.0.1:1/metrics".into()),
    ))
    .clone();
    web_1.containers[0].last_oom_killed = true;
    Arc::new(web_1)
}

#[tokio::test]
async fn a_restarted_profiler_resumes_from_the_checkpoint_in_the_api_server() {
    let (client, mut api) = fake_api::client();
    let mut h = harness(KubeStore::new(client), vec![oom_killed_web_1()]);
    let checkpoint = previous_checkpoint();
    let server = tokio::spawn(async move {
        api.expect(
            "GET",
            PROFILE,
            200,
            stored(json!({"samples": 3, "checkpoint": checkpoint})),
        )
        .await;
        // Already created by the previous leader: only the status is applied.
        api.expect(
            "PATCH",
            &format!("{PROFILE}/status"),
            200,
            stored(json!({})),
        )
        .await
    });
    h.queue_usage(usage_report(vec![usage("web-1", 0.1, 50.0)]));
    let report = h.profiler.cycle(30.0).await;
    let apply = server.await.unwrap();
    assert_eq!(report.written, 1);
    assert_eq!(report.oom_kills, 0, "counted before the restart");
    assert!(
        apply.query.contains("fieldManager=snug-profiler"),
        "{}",
        apply.query
    );
    assert_eq!(apply.content_type, "application/apply-patch+yaml");
    let status = &apply.body["status"];
    assert_eq!(status["samples"], 4);
    assert_eq!(status["oomKills"], 1);
    assert_eq!(status["windowSeconds"], 30.0);
    let requests = &status["containers"][0]["recommendation"]["requests"];
    // Learned before the restart: 0.5 cores × 1.1; memory floor 2 × 128 MiB < 300 MiB × 1.2.
    assert_eq!(requests["cpu"], "550m");
    assert_eq!(requests["memory"], "360Mi");
    assert!(status["checkpoint"].as_str().is_some_and(|c| !c.is_empty()));
}

#[tokio::test]
async fn a_workload_deleted_mid_cycle_is_dropped_counted_and_the_loop_goes_on() {
    let (client, mut api) = fake_api::client();
    let mut h = harness(KubeStore::new(client), vec![oom_killed_web_1()]);
    let server = tokio::spawn(async move {
        api.expect("GET", PROFILE, 404, fake_api::status(404, "NotFound"))
            .await;
        api.expect(
            "GET",
            "/apis/apps/v1/namespaces/shop/deployments/web",
            404,
            fake_api::status(404, "NotFound"),
        )
        .await;
    });
    h.queue_usage(usage_report(vec![usage("web-1", 0.1, 50.0)]));
    let report = h.profiler.cycle(0.0).await;
    server.await.unwrap();
    assert_eq!(report.written, 0);
    assert!(
        h.profiler.model(&web()).is_none(),
        "state of a deleted workload is dropped"
    );
    let metrics = h.metrics_text();
    assert!(
        metrics.contains("snug_profiler_skipped_total{reason=\"workload_gone\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("snug_profiler_writes_total{outcome=\"workload_gone\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_unreachable_api_server_never_overwrites_learned_state() {
    let (client, mut api) = fake_api::client();
    let mut h = harness(KubeStore::new(client), vec![oom_killed_web_1()]);
    let server = tokio::spawn(async move {
        api.expect(
            "GET",
            PROFILE,
            503,
            fake_api::status(503, "ServiceUnavailable"),
        )
        .await;
    });
    h.queue_usage(usage_report(vec![usage("web-1", 0.1, 50.0)]));
    let report = h.profiler.cycle(0.0).await;
    server.await.unwrap();
    assert_eq!(report.written, 0);
    assert!(
        h.profiler.model(&web()).is_none(),
        "left for the next cycle, not started afresh"
    );
}
