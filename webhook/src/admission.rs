//! `POST /mutate`: AdmissionReview in, AdmissionReview out. Whatever arrives, a pod is never
//! refused: garbage gets a 400 (the API server then applies `failurePolicy: Ignore`), anything
//! readable but unexpected is allowed unchanged with a warning.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Instant};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State, rejection::BytesRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use k8s_openapi::api::core::v1::Pod;
use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use serde_json::Value;

use crate::{
    config::InjectConfig,
    metrics::{Metrics, Outcome},
    mutate::{self, Decision, Inputs},
    store::{NamespaceStore, ProfileStore},
};

/// The API version of the reviews the webhook is registered for.
pub const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";

/// What the admission handler shares across requests.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Decision settings.
    pub config: Arc<InjectConfig>,
    /// Whether sidecars are injected as native sidecars.
    pub native_sidecars: bool,
    /// Profiles.
    pub profiles: Arc<dyn ProfileStore>,
    /// Namespace modes and limits.
    pub namespaces: Arc<dyn NamespaceStore>,
    /// Metrics.
    pub metrics: Metrics,
}

/// The HTTPS router: `POST /mutate`, with bodies over `max_body_bytes` refused with 413.
pub fn router(admission: Admission, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(admission)
}

async fn mutate(
    State(admission): State<Admission>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            tracing::warn!(%status, error = %rejection.body_text(), "admission body refused");
            return (
                status,
                format!("request body refused: {}\n", rejection.body_text()),
            )
                .into_response();
        }
    };
    let (request, object) = match read_review(&body) {
        Ok(parts) => parts,
        Err(message) => {
            tracing::warn!(error = %message, "bad admission request");
            admission
                .metrics
                .admission(Outcome::Invalid, started.elapsed().as_secs_f64());
            return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response();
        }
    };
    let (response, outcome) = admission.review(&request, object);
    admission
        .metrics
        .admission(outcome, started.elapsed().as_secs_f64());
    Json(response.into_review()).into_response()
}

/// Splits a body into the request (without its object) and the raw object.
fn read_review(body: &[u8]) -> Result<(AdmissionRequest<DynamicObject>, Value), String> {
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    // The object is read separately, so an unreadable pod is answered (allowed, with a warning)
    // instead of failing the whole review; the old object is never needed for CREATE.
    let object = value
        .pointer_mut("/request/object")
        .map(Value::take)
        .unwrap_or(Value::Null);
    if let Some(old) = value.pointer_mut("/request/oldObject") {
        old.take();
    }
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(value).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    let request = review
        .try_into()
        .map_err(|_| "not an AdmissionReview: it has no request".to_owned())?;
    Ok((request, object))
}

impl Admission {
    /// Answers one review. Never refuses the pod.
    pub fn review(
        &self,
        request: &AdmissionRequest<DynamicObject>,
        object: Value,
    ) -> (AdmissionResponse, Outcome) {
        let response = AdmissionResponse::from(request);
        let warn = |response: AdmissionResponse, reason: &'static str, message: String| {
            self.metrics.warning(reason);
            tracing::warn!(uid = %request.uid, reason, %message, "admission allowed unchanged");
            (with_warnings(response, vec![message]), Outcome::Invalid)
        };
        if request.types.api_version != REVIEW_API_VERSION
            || request.types.kind != "AdmissionReview"
        {
            let message = format!(
                "snug: expected {REVIEW_API_VERSION} AdmissionReview, got {} {}",
                request.types.api_version, request.types.kind
            );
            return warn(response, "wrong_kind", message);
        }
        let kind = &request.kind;
        if (
            kind.group.as_str(),
            kind.version.as_str(),
            kind.kind.as_str(),
        ) != ("", "v1", "Pod")
        {
            let message = format!(
                "snug: only v1 Pods are handled, got {}/{} {}",
                kind.group, kind.version, kind.kind
            );
            return warn(response, "wrong_kind", message);
        }
        if request.operation != Operation::Create {
            return (response, Outcome::Unchanged);
        }
        let pod: Pod = match serde_json::from_value(object) {
            Ok(pod) => pod,
            Err(e) => {
                return warn(
                    response,
                    "unreadable_pod",
                    format!("snug: unreadable pod: {e}"),
                );
            }
        };
        let namespace = request
            .namespace
            .clone()
            .or_else(|| pod.metadata.namespace.clone())
            .unwrap_or_default();
        // A bug must not cost anyone their pod: a panic while deciding allows it unchanged.
        let decided =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.patch_for(&namespace, &pod)));
        match decided {
            Ok(Ok((Some(patch), warnings, outcome))) => match response.clone().with_patch(patch) {
                Ok(patched) => (with_warnings(patched, warnings), outcome),
                Err(e) => warn(
                    response,
                    "internal",
                    format!("snug: patch not encoded: {e}"),
                ),
            },
            Ok(Ok((None, warnings, outcome))) => (with_warnings(response, warnings), outcome),
            Ok(Err(outcome)) => (response, outcome),
            Err(_) => {
                self.metrics.warning("internal");
                tracing::error!(uid = %request.uid, "panic while deciding; pod allowed unchanged");
                (response, Outcome::Error)
            }
        }
    }

    /// The patch for a pod (if any), the warnings for its owner and the outcome.
    fn patch_for(
        &self,
        namespace: &str,
        pod: &Pod,
    ) -> Result<(Option<json_patch::Patch>, Vec<String>, Outcome), Outcome> {
        let inputs = Inputs {
            config: &self.config,
            native_sidecars: self.native_sidecars,
            profiles: self.profiles.as_ref(),
            namespaces: self.namespaces.as_ref(),
        };
        match mutate::decide(inputs, namespace, pod) {
            Decision::Leave {
                skipped,
                reason,
                warnings,
            } => {
                tracing::debug!(namespace, reason, "pod left unchanged");
                let outcome = if skipped {
                    Outcome::Skipped
                } else {
                    Outcome::Unchanged
                };
                Ok((None, warnings, outcome))
            }
            Decision::Change(change) => {
                self.metrics.ports_not_intercepted(change.not_intercepted);
                let patch = pod_patch(pod, &change.pod).map_err(|e| {
                    tracing::error!(error = %e, "pod did not serialize");
                    Outcome::Error
                })?;
                if patch.0.is_empty() {
                    return Ok((None, change.warnings, Outcome::Unchanged));
                }
                Ok((Some(patch), change.warnings, Outcome::Patched))
            }
        }
    }
}

/// The JSON patch from `before` to `after`. Both sides go through the same typed
/// serialization, so fields the typed model does not know are never touched.
pub fn pod_patch(before: &Pod, after: &Pod) -> Result<json_patch::Patch, serde_json::Error> {
    let before = serde_json::to_value(before)?;
    let after = serde_json::to_value(after)?;
    Ok(json_patch::diff(&before, &after))
}

fn with_warnings(mut response: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        response.warnings.get_or_insert_default().extend(warnings);
    }
    response
}

/// An "allow everything" `/mutate`, the benchmark's baseline: it reads only the uid and
/// allows the pod, so measuring it beside [`router`] shows what Snug's decisions cost.
pub fn allow_everything_router(max_body_bytes: usize) -> Router {
    #[derive(serde::Deserialize)]
    struct Review {
        request: Option<Uid>,
    }
    #[derive(serde::Deserialize)]
    struct Uid {
        uid: String,
    }
    async fn allow(body: Bytes) -> Response {
        match serde_json::from_slice::<Review>(&body) {
            Ok(Review {
                request: Some(Uid { uid }),
            }) => Json(serde_json::json!({
                "apiVersion": REVIEW_API_VERSION,
                "kind": "AdmissionReview",
                "response": {"uid": uid, "allowed": true}
            }))
            .into_response(),
            _ => StatusCode::BAD_REQUEST.into_response(),
        }
    }
    Router::new()
        .route("/mutate", post(allow))
        .layer(DefaultBodyLimit::max(max_body_bytes))
}
