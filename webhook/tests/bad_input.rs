//! Every bad-input path through `router()`: garbage gets a 400 with a message, oversized bodies
//! a 413, and anything readable but unexpected is allowed unchanged with a warning.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failure is a test failure

mod common;

use std::sync::Arc;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use snug_webhook::{
    metrics::Metrics,
    store::{NoNamespaces, ProfileStore},
};

fn deployment_review() -> Value {
    review(&yaml_file("pods/deployment.yaml"), "CREATE")
}

#[tokio::test]
async fn malformed_json_is_a_400_with_a_message() {
    let (status, body) = post(test_router(), "{\"apiVersion\": ").await;
    assert_eq!(status, 400);
    assert!(body.as_str().unwrap().contains("malformed JSON"), "{body}");
}

#[tokio::test]
async fn json_that_is_not_a_review_is_a_400_not_a_422() {
    for (input, expect) in [
        (json!([1, 2, 3]), "not an AdmissionReview"),
        (json!({"hello": "world"}), "not an AdmissionReview"),
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
            "no request",
        ),
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}}),
            "not an AdmissionReview",
        ),
    ] {
        let (status, body) = post(test_router(), input.to_string()).await;
        assert_eq!(status, 400, "{input}");
        assert!(body.as_str().unwrap().contains(expect), "{input}: {body}");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let mut review = deployment_review();
    review["request"]["object"]["metadata"]["annotations"] = json!({"big": "x".repeat(MAX_BODY)});
    let (status, body) = post(test_router(), review.to_string()).await;
    assert_eq!(status, 413, "{body}");
}

fn assert_allowed_unchanged_with_warning(body: &Value, needle: &str) {
    assert_eq!(body["response"]["allowed"], true, "{body}");
    assert!(body["response"].get("patch").is_none(), "{body}");
    let warnings = body["response"]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains(needle)),
        "{body}"
    );
}

#[tokio::test]
async fn a_wrong_review_version_is_allowed_with_a_warning() {
    let mut review = deployment_review();
    review["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let (status, body) = post(test_router(), review.to_string()).await;
    assert_eq!(status, 200);
    assert_allowed_unchanged_with_warning(&body, "admission.k8s.io/v1beta1");
    // The answer keeps the version it was asked in, and the uid.
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(
        body["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
}

#[tokio::test]
async fn a_review_of_something_else_than_a_pod_is_allowed_with_a_warning() {
    let mut review = deployment_review();
    review["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let (status, body) = post(test_router(), review.to_string()).await;
    assert_eq!(status, 200);
    assert_allowed_unchanged_with_warning(&body, "only v1 Pods");
}

#[tokio::test]
async fn an_unreadable_pod_is_allowed_with_a_warning() {
    for object in [
        json!("a string"),
        json!({"spec": {"containers": "nope"}}),
        Value::Null,
    ] {
        let mut review = deployment_review();
        review["request"]["object"] = object.clone();
        let (status, body) = post(test_router(), review.to_string()).await;
        assert_eq!(status, 200, "{object}");
        assert_allowed_unchanged_with_warning(&body, "unreadable pod");
    }
}

#[tokio::test]
async fn only_create_mutates() {
    for operation in ["UPDATE", "DELETE", "CONNECT"] {
        let review = review(&yaml_file("pods/deployment.yaml"), operation);
        let (status, body) = post(test_router(), review.to_string()).await;
        assert_eq!(status, 200);
        assert_eq!(body["response"]["allowed"], true);
        assert!(
            body["response"].get("patch").is_none(),
            "{operation}: {body}"
        );
    }
}

/// A store that panics, standing in for any bug on the decision path.
#[derive(Debug)]
struct PanickingStore;

impl ProfileStore for PanickingStore {
    fn get(&self, _: &str, _: &str) -> Option<Arc<snug_api::WorkloadProfile>> {
        panic!("bug in a store");
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn len(&self) -> usize {
        0
    }
}

#[tokio::test]
async fn a_panic_while_deciding_allows_the_pod_unchanged_and_is_counted() {
    let mut registry = prometheus_client::registry::Registry::default();
    let mut admission = admission(Arc::new(PanickingStore), Arc::new(NoNamespaces), true);
    admission.metrics = Metrics::register(&mut registry);
    let router = snug_webhook::router(admission, MAX_BODY);
    let (status, body) = post(router, deployment_review().to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("snug_webhook_admissions_total{outcome=\"error\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn outcomes_and_unintercepted_ports_are_counted() {
    let mut registry = prometheus_client::registry::Registry::default();
    let mut admission = test_admission();
    admission.metrics = Metrics::register(&mut registry);
    let router = snug_webhook::router(admission, MAX_BODY);
    let (_, body) = post(
        router.clone(),
        review(&yaml_file("pods/numeric-ports.yaml"), "CREATE").to_string(),
    )
    .await;
    let patch = patch_of(&body).unwrap();
    let pod: Pod =
        serde_json::from_value(patched(&yaml_file("pods/numeric-ports.yaml"), &patch)).unwrap();
    assert_eq!(
        pod.metadata.annotations.unwrap()["snug.dev/not-intercepted"],
        "legacy:80,legacy:443"
    );
    post(router.clone(), "garbage").await;
    let mut wrong = deployment_review();
    wrong["request"]["object"] = json!(3);
    post(router, wrong.to_string()).await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "snug_webhook_ports_not_intercepted_total 2",
        "snug_webhook_admissions_total{outcome=\"patched\"} 1",
        "snug_webhook_admissions_total{outcome=\"invalid\"} 2",
        "snug_webhook_warnings_total{reason=\"unreadable_pod\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}
