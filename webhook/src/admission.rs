//! `POST /mutate`: AdmissionReview in, AdmissionReview out. Whatever arrives, a pod is never
//! refused: garbage gets a 400 (the API server then applies `failurePolicy: Ignore`), anything
//! readable but unexpected is allowed unchanged with a warning.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Instant};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State, rejection::BytesRejection},
    http::{StatusCode, header::CONTENT_TYPE},
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
    mutate::{self, Change, Decision, Inputs},
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
    // The common case in one typed pass; anything unusual takes the slow path, which says
    // precisely what is wrong.
    if let Some((request, pod)) = read_typed(&body) {
        return answer(&admission, &request, pod, started);
    }
    match read_review(&body) {
        Ok((request, pod)) => answer(&admission, &request, pod, started),
        Err(message) => {
            tracing::warn!(error = %message, "bad admission request");
            admission
                .metrics
                .admission(Outcome::Invalid, started.elapsed().as_secs_f64());
            (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
        }
    }
}

fn answer<T: kube::Resource>(
    admission: &Admission,
    request: &AdmissionRequest<T>,
    pod: Result<Pod, String>,
    started: Instant,
) -> Response {
    let span = tracing::debug_span!(
        "admission",
        uid = %request.uid,
        namespace = request.namespace.as_deref().unwrap_or(""),
        outcome = tracing::field::Empty,
    );
    let (response, outcome) = span.in_scope(|| admission.review(request, pod));
    span.record("outcome", tracing::field::debug(outcome));
    admission
        .metrics
        .admission(outcome, started.elapsed().as_secs_f64());
    encode(response)
}

/// The review as JSON, with the patch base64-encoded as the API server requires (kube-core
/// serializes `patch` as an array of numbers, which `[]byte` in the API server does not take:
/// kube-rs/kube#1781). Written in one pass, straight into the response body.
fn encode(mut response: AdmissionResponse) -> Response {
    use base64::Engine as _;
    #[derive(serde::Serialize)]
    struct Review<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'a str,
        kind: &'a str,
        response: Body<'a>,
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        #[serde(flatten)]
        response: &'a AdmissionResponse,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
    }
    let patch = response
        .patch
        .take()
        .map(|p| base64::engine::general_purpose::STANDARD.encode(p));
    let review = Review {
        api_version: &response.types.api_version,
        kind: &response.types.kind,
        response: Body {
            response: &response,
            patch,
        },
    };
    match serde_json::to_vec(&review) {
        Ok(json) => ([(CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "response did not encode");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "response did not encode\n",
            )
                .into_response()
        }
    }
}

/// A well-formed review of a readable pod, read straight into typed structures.
fn read_typed(body: &[u8]) -> Option<(AdmissionRequest<Pod>, Result<Pod, String>)> {
    let review: AdmissionReview<Pod> = serde_json::from_slice(body).ok()?;
    let mut request: AdmissionRequest<Pod> = review.try_into().ok()?;
    let pod = request
        .object
        .take()
        .ok_or_else(|| "the review has no object".to_owned());
    Some((request, pod))
}

/// Splits any body into the request (without its object) and the pod, if the object reads
/// as one.
fn read_review(
    body: &[u8],
) -> Result<(AdmissionRequest<DynamicObject>, Result<Pod, String>), String> {
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
    let pod = serde_json::from_value(object).map_err(|e| e.to_string());
    Ok((request, pod))
}

impl Admission {
    /// Answers one review. Never refuses the pod.
    pub fn review<T: kube::Resource>(
        &self,
        request: &AdmissionRequest<T>,
        pod: Result<Pod, String>,
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
        let pod: Pod = match pod {
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
            std::panic::catch_unwind(AssertUnwindSafe(|| self.patch_for(&namespace, pod)));
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
        pod: Pod,
    ) -> Result<(Option<json_patch::Patch>, Vec<String>, Outcome), Outcome> {
        let inputs = Inputs {
            config: &self.config,
            native_sidecars: self.native_sidecars,
            profiles: self.profiles.as_ref(),
            namespaces: self.namespaces.as_ref(),
        };
        let decision = mutate::decide(inputs, namespace, pod).map_err(|e| {
            tracing::error!(error = %e, "patch value did not serialize");
            Outcome::Error
        })?;
        match decision {
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
                let Change {
                    patch, warnings, ..
                } = *change;
                if patch.0.is_empty() {
                    return Ok((None, warnings, Outcome::Unchanged));
                }
                Ok((Some(patch), warnings, Outcome::Patched))
            }
        }
    }
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
