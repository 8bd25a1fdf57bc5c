use super::*;
use crate::fake_api::{self, status};
use serde_json::json;
use snug_api::WorkloadRef;

fn key() -> WorkloadKey {
    WorkloadKey {
        namespace: "shop".into(),
        workload: WorkloadRef::new("apps/v1", "Deployment", "web"),
    }
}

fn profile_json(status: Value) -> Value {
    json!({"apiVersion": "snug.dev/v1alpha1", "kind": "WorkloadProfile",
        "metadata": {"name": "deployment-web", "namespace": "shop", "resourceVersion": "5"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
        "status": status})
}

use serde_json::Value;

const PROFILE: &str = "/apis/snug.dev/v1alpha1/namespaces/shop/workloadprofiles/deployment-web";

#[tokio::test]
async fn first_write_creates_with_owner_then_applies_status() {
    let (client, mut api) = fake_api::client();
    let store = KubeStore::new(client);
    let written = WorkloadProfileStatus {
        samples: 12,
        confidence: 0.75,
        ..Default::default()
    };
    let server = tokio::spawn(async move {
        api.expect(
            "GET",
            "/apis/apps/v1/namespaces/shop/deployments/web",
            200,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": "shop", "uid": "dep-uid-1"}}),
        )
        .await;
        let create = api
            .expect("PATCH", PROFILE, 200, profile_json(json!({})))
            .await;
        let apply = api
            .expect(
                "PATCH",
                &format!("{PROFILE}/status"),
                200,
                profile_json(json!({})),
            )
            .await;
        // The second write of the same workload only applies the status.
        let again = api
            .expect(
                "PATCH",
                &format!("{PROFILE}/status"),
                200,
                profile_json(json!({})),
            )
            .await;
        (create, apply, again)
    });
    store.save(&key(), &written).await.unwrap();
    store.save(&key(), &written).await.unwrap();
    let (create, apply, again) = server.await.unwrap();
    for request in [&create, &apply, &again] {
        assert_eq!(request.content_type, "application/apply-patch+yaml");
        assert!(
            request.query.contains("fieldManager=snug-profiler"),
            "{}",
            request.query
        );
        assert!(request.query.contains("force=true"), "{}", request.query);
    }
    assert_eq!(
        create.body["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "dep-uid-1"}])
    );
    assert_eq!(create.body["spec"]["targetRef"]["name"], "web");
    assert!(
        create.body.get("status").is_none(),
        "status goes through /status"
    );
    assert_eq!(apply.body["status"]["samples"], 12);
    assert_eq!(apply.body["status"]["confidence"], 0.75);
    assert_eq!(apply.body["kind"], "WorkloadProfile");
}

#[tokio::test]
async fn a_deleted_workload_is_reported_as_gone_and_nothing_is_written() {
    let (client, mut api) = fake_api::client();
    let store = KubeStore::new(client);
    let server = tokio::spawn(async move {
        api.expect(
            "GET",
            "/apis/apps/v1/namespaces/shop/deployments/web",
            404,
            status(404, "NotFound"),
        )
        .await;
    });
    let result = store.save(&key(), &WorkloadProfileStatus::default()).await;
    server.await.unwrap();
    assert!(matches!(result, Err(Error::WorkloadGone(_))), "{result:?}");
}

#[tokio::test]
async fn load_returns_the_stored_profile_and_skips_creation_afterwards() {
    let (client, mut api) = fake_api::client();
    let store = KubeStore::new(client);
    let server = tokio::spawn(async move {
        api.expect(
            "GET",
            PROFILE,
            200,
            profile_json(json!({"samples": 99, "checkpoint": "abc"})),
        )
        .await;
        api.expect(
            "PATCH",
            &format!("{PROFILE}/status"),
            200,
            profile_json(json!({})),
        )
        .await;
        // Gone since (garbage-collected): re-created, and the workload turns out to be gone.
        api.expect(
            "PATCH",
            &format!("{PROFILE}/status"),
            404,
            status(404, "NotFound"),
        )
        .await;
        api.expect(
            "GET",
            "/apis/apps/v1/namespaces/shop/deployments/web",
            404,
            status(404, "NotFound"),
        )
        .await;
    });
    let profile = store.load(&key()).await.unwrap().unwrap();
    assert_eq!(profile.status.unwrap().checkpoint.as_deref(), Some("abc"));
    store
        .save(&key(), &WorkloadProfileStatus::default())
        .await
        .unwrap();
    let result = store.save(&key(), &WorkloadProfileStatus::default()).await;
    server.await.unwrap();
    assert!(matches!(result, Err(Error::WorkloadGone(_))), "{result:?}");
}

#[test]
fn workload_kinds_map_to_their_resources() {
    let rollout = api_resource(&WorkloadRef::new("argoproj.io/v1alpha1", "Rollout", "r"));
    assert_eq!(
        (rollout.group.as_str(), rollout.plural.as_str()),
        ("argoproj.io", "rollouts")
    );
    let pod = api_resource(&WorkloadRef::new("v1", "Pod", "p"));
    assert_eq!(
        (
            pod.group.as_str(),
            pod.version.as_str(),
            pod.plural.as_str()
        ),
        ("", "v1", "pods")
    );
}
