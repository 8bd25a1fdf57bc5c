//! Shared helpers: AdmissionReviews from pod files, the router with the test profiles, and
//! one-shot requests through it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is a test failure

use std::{path::PathBuf, sync::Arc};

use axum::{Router, body::Body, http::Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use snug_webhook::{
    Admission, InjectConfig,
    metrics::Metrics,
    store::{DirProfiles, NamespaceStore, NoNamespaces, ProfileStore},
};
use tower::ServiceExt;

pub const MAX_BODY: usize = 64 * 1024;

pub fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

pub fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(data(path)).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// An AdmissionReview of `pod` as the API server sends it.
pub fn review(pod: &Value, operation: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"].as_str().unwrap_or(""),
            "namespace": pod["metadata"]["namespace"].as_str().unwrap_or("shop"),
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

pub fn admission(
    profiles: Arc<dyn ProfileStore>,
    namespaces: Arc<dyn NamespaceStore>,
    native: bool,
) -> Admission {
    Admission {
        config: Arc::new(InjectConfig::default()),
        native_sidecars: native,
        profiles,
        namespaces,
        metrics: Metrics::default(),
    }
}

/// The router over the profiles in `tests/data/profiles`, native sidecars on.
pub fn test_router() -> Router {
    snug_webhook::router(test_admission(), MAX_BODY)
}

pub fn test_admission() -> Admission {
    admission(
        DirProfiles::open(data("profiles")),
        Arc::new(NoNamespaces),
        true,
    )
}

/// Posts `body` to `/mutate`; returns the status and the body (JSON if it parses, else text).
pub async fn post(router: Router, body: impl Into<Body>) -> (u16, Value) {
    let request = Request::post("/mutate")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// The JSON patch of a review response, if any.
pub fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let bytes: Vec<u8> = serde_json::from_value(response["response"]["patch"].clone()).ok()?;
    assert_eq!(response["response"]["patchType"], "JSONPatch");
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// `pod` with `patch` applied.
pub fn patched(pod: &Value, patch: &json_patch::Patch) -> Value {
    let mut out = pod.clone();
    json_patch::patch(&mut out, patch).unwrap();
    out
}
