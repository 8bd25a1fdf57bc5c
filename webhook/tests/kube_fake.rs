//! The cluster path through a `tower-test` fake API server that checks every request: the
//! profile and namespace reflectors, server version detection, and `certs --in-cluster`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failure is a test failure

use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode};
use k8s_openapi::ByteString;
use kube::{Client, client::Body};
use serde_json::{Value, json};
use snug_api::Mode;
use snug_webhook::{
    certs::{self, InCluster, SecretAction, ensure_in_cluster, generate, verify},
    store::{
        ClusterNamespaces, ClusterProfiles, NamespaceStore, ProfileStore,
        server_supports_native_sidecars,
    },
};
use tower_test::mock::{self, Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn fake_api() -> (Client, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn reply(send: SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    send.send_response(response);
}

async fn next(handle: &mut ApiHandle) -> (Request<Body>, SendResponse<Response<Body>>) {
    tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("the client should have sent a request")
        .expect("the client is gone")
}

async fn json_body(request: Request<Body>) -> Value {
    let bytes = request.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Waits (without asserting on how long) until `condition` holds.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn server_version_decides_native_sidecars() {
    for (minor, native) in [("28+", false), ("29", true), ("33", true)] {
        let (client, mut handle) = fake_api();
        let check =
            tokio::spawn(async move { server_supports_native_sidecars(&client).await.unwrap() });
        let (request, send) = next(&mut handle).await;
        assert_eq!(request.uri().path(), "/version");
        reply(
            send,
            StatusCode::OK,
            &json!({"major": "1", "minor": minor, "gitVersion": format!("v1.{minor}.0"),
            "gitCommit": "", "gitTreeState": "", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23",
            "compiler": "gc", "platform": "linux/amd64"}),
        );
        assert_eq!(check.await.unwrap(), native, "1.{minor}");
    }
}

fn profile_json() -> Value {
    json!({
        "apiVersion": "snug.dev/v1alpha1", "kind": "WorkloadProfile",
        "metadata": {"name": "deployment-web", "namespace": "shop", "resourceVersion": "7",
                     "managedFields": [{"manager": "snug-profiler", "operation": "Apply"}]},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
        "status": {"confidence": 0.9, "checkpoint": "big-opaque-state",
                   "containers": [{"name": "web", "recommendation": {"requests": {"cpu": "250m"}}}]}
    })
}

#[tokio::test]
async fn profile_reflector_is_ready_once_listed_and_serves_from_memory() {
    let (client, mut handle) = fake_api();
    let store = ClusterProfiles::start(client, Duration::from_secs(3600));
    let (request, send) = next(&mut handle).await;
    assert_eq!(request.method(), "GET");
    assert_eq!(
        request.uri().path(),
        "/apis/snug.dev/v1alpha1/workloadprofiles"
    );
    assert!(
        !request.uri().query().unwrap_or("").contains("watch=true"),
        "a list comes first"
    );
    assert!(!store.is_ready(), "not ready before the list is in");
    reply(
        send,
        StatusCode::OK,
        &json!({
            "apiVersion": "snug.dev/v1alpha1", "kind": "WorkloadProfileList",
            "metadata": {"resourceVersion": "10"}, "items": [profile_json()]
        }),
    );
    // Then a watch from the list's version, which this fake leaves open and silent.
    let (watch, _held) = next(&mut handle).await;
    let query = watch.uri().query().unwrap().to_owned();
    assert!(
        query.contains("watch=true") && query.contains("resourceVersion=10"),
        "{query}"
    );

    eventually("profiles synced", || store.is_ready()).await;
    let profile = store
        .get("shop", "deployment-web")
        .expect("profile from the list");
    assert_eq!(profile.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(
        profile.status.as_ref().unwrap().checkpoint,
        None,
        "checkpoint dropped"
    );
    assert_eq!(profile.metadata.managed_fields, None);
    assert!(store.get("shop", "deployment-api").is_none());
    assert_eq!(store.len(), 1);
    // Lookups make no request: nothing more reaches the fake API server.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), handle.next_request())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_unsynced_profile_watch_turns_ready_after_the_timeout_and_serves_sidecar_only() {
    let (client, mut handle) = fake_api();
    let store = ClusterProfiles::start(client, Duration::from_millis(100));
    let (_list, _never_answered) = next(&mut handle).await;
    eventually("ready after the sync timeout", || store.is_ready()).await;
    assert!(store.get("shop", "deployment-web").is_none());
}

#[tokio::test]
async fn namespace_modes_and_limit_ranges_come_from_watches() {
    let (client, mut handle) = fake_api();
    let store = ClusterNamespaces::start(client);
    let mut held = Vec::new();
    for _ in 0..2 {
        let (request, send) = next(&mut handle).await;
        match request.uri().path() {
            "/api/v1/namespaces" => {
                let accept = request.headers()["accept"].to_str().unwrap().to_owned();
                assert!(
                    accept.contains("PartialObjectMetadataList"),
                    "metadata only: {accept}"
                );
                reply(
                    send,
                    StatusCode::OK,
                    &json!({
                        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                        "metadata": {"resourceVersion": "5"},
                        "items": [
                            {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                             "metadata": {"name": "shop", "annotations": {"snug.dev/mode": "apply"}}},
                            {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                             "metadata": {"name": "blog", "annotations": {"snug.dev/mode": "sideways"}}}
                        ]
                    }),
                );
            }
            "/api/v1/limitranges" => reply(
                send,
                StatusCode::OK,
                &json!({
                    "apiVersion": "v1", "kind": "LimitRangeList", "metadata": {"resourceVersion": "6"},
                    "items": [{"metadata": {"name": "caps", "namespace": "shop"},
                               "spec": {"limits": [{"type": "Container", "max": {"cpu": "1500m", "memory": "1Gi"}}]}}]
                }),
            ),
            other => panic!("unexpected request {other}"),
        }
    }
    // Both watches follow; keep them open.
    for _ in 0..2 {
        held.push(next(&mut handle).await);
    }
    eventually("namespace mode", || store.mode("shop") == Some(Mode::Apply)).await;
    eventually("limit range", || store.limit_max("shop").cpu == Some(1.5)).await;
    assert_eq!(store.mode("blog"), None, "an invalid mode is ignored");
    assert_eq!(store.mode("absent"), None);
    assert_eq!(store.limit_max("blog").cpu, None);
}

fn target(valid_days: u32) -> InCluster {
    InCluster {
        service: "snug-webhook".into(),
        namespace: "snug-system".into(),
        valid_days,
        renew_before: Duration::from_secs(30 * 86_400),
    }
}

const SECRET_PATH: &str = "/api/v1/namespaces/snug-system/secrets/snug-webhook-tls";
const MWC_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/snug-webhook";

fn mwc(ca: Option<&str>) -> Value {
    let mut webhook = json!({
        "name": "inject.snug.dev", "admissionReviewVersions": ["v1"], "sideEffects": "None",
        "clientConfig": {"service": {"name": "snug-webhook", "namespace": "snug-system", "path": "/mutate"}}
    });
    if let Some(ca) = ca {
        webhook["clientConfig"]["caBundle"] =
            serde_json::to_value(ByteString(ca.as_bytes().to_vec())).unwrap();
    }
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
           "metadata": {"name": "snug-webhook", "resourceVersion": "3"}, "webhooks": [webhook]})
}

fn ca_bundle_in_patch(patch: &Value) -> String {
    let ca: ByteString =
        serde_json::from_value(patch["webhooks"][0]["clientConfig"]["caBundle"].clone()).unwrap();
    String::from_utf8(ca.0).unwrap()
}

fn secret_pem(secret: &Value, key: &str) -> String {
    let bytes: ByteString = serde_json::from_value(secret["data"][key].clone()).unwrap();
    String::from_utf8(bytes.0).unwrap()
}

#[tokio::test]
async fn in_cluster_creates_the_secret_and_sets_the_ca_bundle() {
    let (client, mut handle) = fake_api();
    let run = tokio::spawn(async move { ensure_in_cluster(client, &target(365)).await.unwrap() });

    let (request, send) = next(&mut handle).await;
    assert_eq!(
        (request.method().as_str(), request.uri().path()),
        ("GET", SECRET_PATH)
    );
    reply(
        send,
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "NotFound", "code": 404, "message": "secrets \"snug-webhook-tls\" not found"}),
    );

    let (request, send) = next(&mut handle).await;
    assert_eq!(
        (request.method().as_str(), request.uri().path()),
        ("GET", MWC_PATH)
    );
    reply(send, StatusCode::OK, &mwc(None));

    let (request, send) = next(&mut handle).await;
    assert_eq!(
        (request.method().as_str(), request.uri().path()),
        ("PATCH", MWC_PATH)
    );
    assert_eq!(
        request.headers()["content-type"],
        "application/strategic-merge-patch+json"
    );
    let patch = json_body(request).await;
    assert_eq!(patch["webhooks"][0]["name"], "inject.snug.dev");
    let ca = ca_bundle_in_patch(&patch);
    reply(send, StatusCode::OK, &mwc(Some(&ca)));

    let (request, send) = next(&mut handle).await;
    assert_eq!(
        (request.method().as_str(), request.uri().path()),
        ("POST", "/api/v1/namespaces/snug-system/secrets")
    );
    let secret = json_body(request).await;
    assert_eq!(secret["metadata"]["name"], "snug-webhook-tls");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(
        secret_pem(&secret, "ca.crt"),
        ca,
        "the Secret's CA is the one the API server trusts"
    );
    for name in [
        "snug-webhook.snug-system.svc",
        "snug-webhook.snug-system.svc.cluster.local",
    ] {
        verify(
            &ca,
            &secret_pem(&secret, "tls.crt"),
            name,
            SystemTime::now(),
        )
        .unwrap();
    }
    reply(send, StatusCode::CREATED, &secret);

    let report = run.await.unwrap();
    assert_eq!(report.secret, SecretAction::Created);
    assert!(report.ca_bundle_patched);
}

fn secret_of(bundle: &certs::Bundle) -> Value {
    let mut secret = serde_json::to_value(certs::secret(bundle, "snug-system")).unwrap();
    secret["metadata"]["resourceVersion"] = json!("41");
    secret
}

#[tokio::test]
async fn in_cluster_is_idempotent_when_everything_is_in_place() {
    let bundle = generate("snug-webhook", "snug-system", 365).unwrap();
    let (client, mut handle) = fake_api();
    let run = tokio::spawn(async move { ensure_in_cluster(client, &target(365)).await.unwrap() });
    let (request, send) = next(&mut handle).await;
    assert_eq!(request.uri().path(), SECRET_PATH);
    reply(send, StatusCode::OK, &secret_of(&bundle));
    let (request, send) = next(&mut handle).await;
    assert_eq!(
        (request.method().as_str(), request.uri().path()),
        ("GET", MWC_PATH)
    );
    reply(send, StatusCode::OK, &mwc(Some(&bundle.ca_pem)));
    let report = run.await.unwrap();
    assert_eq!(report.secret, SecretAction::Kept);
    assert!(!report.ca_bundle_patched, "nothing written");
}

#[tokio::test]
async fn in_cluster_rotates_an_expiring_secret_trusting_both_cas_meanwhile() {
    let old = generate("snug-webhook", "snug-system", 10).unwrap();
    let (client, mut handle) = fake_api();
    let run = tokio::spawn(async move { ensure_in_cluster(client, &target(365)).await.unwrap() });
    let (_, send) = next(&mut handle).await;
    reply(send, StatusCode::OK, &secret_of(&old));
    let (_, send) = next(&mut handle).await;
    reply(send, StatusCode::OK, &mwc(Some(&old.ca_pem)));

    let (request, send) = next(&mut handle).await;
    assert_eq!(request.method(), "PATCH");
    let trusted = ca_bundle_in_patch(&json_body(request).await);
    assert!(
        trusted.ends_with(&old.ca_pem),
        "the old CA stays trusted during the rollover"
    );
    reply(send, StatusCode::OK, &mwc(Some(&trusted)));

    let (request, send) = next(&mut handle).await;
    assert_eq!(
        (request.method().as_str(), request.uri().path()),
        ("PUT", SECRET_PATH)
    );
    let secret = json_body(request).await;
    assert_eq!(
        secret["metadata"]["resourceVersion"], "41",
        "optimistic concurrency on replace"
    );
    let (ca, cert) = (
        secret_pem(&secret, "ca.crt"),
        secret_pem(&secret, "tls.crt"),
    );
    assert_ne!(ca, old.ca_pem);
    assert!(trusted.starts_with(&ca));
    verify(
        &ca,
        &cert,
        "snug-webhook.snug-system.svc",
        SystemTime::now() + Duration::from_secs(300 * 86_400),
    )
    .unwrap();
    reply(send, StatusCode::OK, &secret);

    assert_eq!(run.await.unwrap().secret, SecretAction::Rotated);
}
