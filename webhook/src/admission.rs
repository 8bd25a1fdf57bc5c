//! `POST /mutate`: AdmissionReview in, AdmissionReview out. Whatever arrives, a pod is never
//! refused: garbage gets a 400 (the API server then applies `failurePolicy: Ignore`), anything
//! readable but unexpected is allowed unchanged with a warning.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, OnceLock},
    time::Instant,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State, rejection::BytesRejection},
    http::{StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::post,
};
use kube::core::{
    DynamicObject, Status,
    admission::{AdmissionRequest, AdmissionReview, Operation},
};
use serde_json::Value;

use crate::{
    config::InjectConfig,
    metrics::{Metrics, Outcome},
    mutate::{self, Change, Decision, Inputs},
    patch::push_str,
    store::{NamespaceStore, ProfileStore},
    view::{
        self, FromJson, JsonValue, PodView, Str, Unreadable, members, nullable, opt_string,
        required, string,
    },
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
        // One `Arc` clone per request rather than one per field.
        .with_state(Arc::new(admission))
}

async fn mutate(
    State(admission): State<Arc<Admission>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
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
    match admission.handle(&body) {
        Ok(json) => ([(CONTENT_TYPE, "application/json")], json).into_response(),
        Err(message) => (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    }
}

/// The parts of an AdmissionReview the webhook reads, the pod included, borrowed from the
/// body. Fields a review must have but the webhook does not read (`resource`, `userInfo`)
/// must be there; anything unusual is left to the slow path, which says what is wrong.
struct ReviewView<'a> {
    request: Request<'a>,
    object: Option<PodView<'a>>,
}

impl<'a> FromJson<'a> for ReviewView<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let (mut api_version, mut review_kind, mut request) = (None, None, None);
        members(value, |key, v| {
            match key {
                "apiVersion" => api_version = Some(string(v)?),
                "kind" => review_kind = Some(string(v)?),
                "request" => request = Some(v),
                _ => {}
            }
            Ok(())
        })?;
        let (api_version, review_kind) = (
            required(api_version, "apiVersion")?,
            required(review_kind, "kind")?,
        );
        let (mut uid, mut kind, mut namespace, mut operation) = (None, None, None, None);
        let (mut resource, mut user_info, mut object) = (false, false, None);
        members(required(request, "request")?, |key, v| {
            match key {
                "uid" => uid = Some(string(v)?),
                "kind" => kind = Some(KindView::from_json(v)?),
                "namespace" => namespace = opt_string(v)?,
                "operation" => operation = Some(operation_of(v)?),
                "resource" => resource = true,
                "userInfo" => user_info = true,
                "object" => object = nullable(v, PodView::from_json)?,
                _ => {}
            }
            Ok(())
        })?;
        required(resource.then_some(()), "resource")?;
        required(user_info.then_some(()), "userInfo")?;
        Ok(ReviewView {
            request: Request {
                api_version,
                review_kind,
                uid: required(uid, "uid")?,
                kind: required(kind, "kind")?,
                namespace,
                operation: required(operation, "operation")?,
            },
            object,
        })
    }
}

fn operation_of(value: JsonValue<'_, '_>) -> Result<Operation, Unreadable> {
    Ok(match &*string(value)? {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        "CONNECT" => Operation::Connect,
        _ => return Err(Unreadable::expected("CREATE, UPDATE, DELETE or CONNECT")),
    })
}

/// The group, version and kind of the reviewed object.
#[derive(Debug)]
pub struct KindView<'a> {
    /// Group (empty for the core group).
    pub group: Str<'a>,
    /// Version.
    pub version: Str<'a>,
    /// Kind.
    pub kind: Str<'a>,
}

impl<'a> FromJson<'a> for KindView<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let (mut group, mut version, mut kind) = (None, None, None);
        members(value, |key, v| {
            match key {
                "group" => group = Some(string(v)?),
                "version" => version = Some(string(v)?),
                "kind" => kind = Some(string(v)?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(KindView {
            group: required(group, "group")?,
            version: required(version, "version")?,
            kind: required(kind, "kind")?,
        })
    }
}

/// What an answer needs from a review.
#[derive(Debug)]
pub struct Request<'a> {
    /// The review's `apiVersion` (echoed in the answer).
    pub api_version: Str<'a>,
    /// The review's `kind` (echoed in the answer).
    pub review_kind: Str<'a>,
    /// The request's uid.
    pub uid: Str<'a>,
    /// What is reviewed.
    pub kind: KindView<'a>,
    /// The request's namespace.
    pub namespace: Option<Str<'a>>,
    /// The operation.
    pub operation: Operation,
}

/// The answer to one review: allowed, with these warnings and, if any, this patch.
#[derive(Debug)]
pub struct Answer {
    /// Warnings for the pod's owner.
    pub warnings: Vec<String>,
    /// The JSON patch.
    pub patch: Option<String>,
}

impl Answer {
    fn allow() -> Self {
        Answer {
            warnings: Vec::new(),
            patch: None,
        }
    }
}

impl Admission {
    /// Answers one `POST /mutate` body: the AdmissionReview to send back, or why the body is
    /// not one (a 400). Records the metrics.
    pub fn handle(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let started = Instant::now();
        // The common case in one pass over the body, the pod included: simd-json parses a copy
        // in place, and the views are read off its tape. Anything unusual takes the slow path,
        // which says precisely what is wrong (serde_json's and the views' messages).
        let mut text = body.to_vec();
        if let Ok(ReviewView { request, object }) = view::read::<ReviewView>(&mut text) {
            let pod = object.as_ref().ok_or("the review has no object");
            return Ok(self.answer(&request, pod, started));
        }
        match read_review(body) {
            Ok((request, object)) => {
                let request = Request {
                    api_version: request.types.api_version.into(),
                    review_kind: request.types.kind.into(),
                    uid: request.uid.into(),
                    kind: KindView {
                        group: request.kind.group.into(),
                        version: request.kind.version.into(),
                        kind: request.kind.kind.into(),
                    },
                    namespace: request.namespace.map(Str::from),
                    operation: request.operation,
                };
                let mut text = object.to_string().into_bytes();
                let pod = view::read::<Option<PodView>>(&mut text)
                    .map_err(|e| e.to_string())
                    .and_then(|p| p.ok_or_else(|| "the review has no object".to_owned()));
                Ok(self.answer(&request, pod.as_ref().map_err(String::as_str), started))
            }
            Err(message) => {
                tracing::warn!(error = %message, "bad admission request");
                self.metrics
                    .admission(Outcome::Invalid, started.elapsed().as_secs_f64());
                Err(message)
            }
        }
    }

    fn answer(
        &self,
        request: &Request<'_>,
        pod: Result<&PodView<'_>, &str>,
        started: Instant,
    ) -> Vec<u8> {
        let span = tracing::debug_span!(
            "admission",
            uid = %request.uid,
            namespace = request.namespace.as_deref().unwrap_or(""),
            outcome = tracing::field::Empty,
        );
        let (answer, outcome) = span.in_scope(|| self.review(request, pod));
        span.record("outcome", tracing::field::debug(outcome));
        self.metrics
            .admission(outcome, started.elapsed().as_secs_f64());
        encode(request, &answer)
    }

    /// Answers one review. Never refuses the pod.
    pub fn review(
        &self,
        request: &Request<'_>,
        pod: Result<&PodView<'_>, &str>,
    ) -> (Answer, Outcome) {
        let warn = |reason: &'static str, message: String| {
            self.metrics.warning(reason);
            tracing::warn!(uid = %request.uid, reason, %message, "admission allowed unchanged");
            let answer = Answer {
                warnings: vec![message],
                patch: None,
            };
            (answer, Outcome::Invalid)
        };
        if request.api_version != REVIEW_API_VERSION || request.review_kind != "AdmissionReview" {
            let message = format!(
                "snug: expected {REVIEW_API_VERSION} AdmissionReview, got {} {}",
                request.api_version, request.review_kind
            );
            return warn("wrong_kind", message);
        }
        let kind = &request.kind;
        if (&*kind.group, &*kind.version, &*kind.kind) != ("", "v1", "Pod") {
            let message = format!(
                "snug: only v1 Pods are handled, got {}/{} {}",
                kind.group, kind.version, kind.kind
            );
            return warn("wrong_kind", message);
        }
        if request.operation != Operation::Create {
            return (Answer::allow(), Outcome::Unchanged);
        }
        let pod = match pod {
            Ok(pod) => pod,
            Err(e) => return warn("unreadable_pod", format!("snug: unreadable pod: {e}")),
        };
        let namespace = request
            .namespace
            .as_deref()
            .or(pod.metadata.namespace.as_deref())
            .unwrap_or_default();
        // A bug must not cost anyone their pod: a panic while deciding allows it unchanged.
        let decided = std::panic::catch_unwind(AssertUnwindSafe(|| self.patch_for(namespace, pod)));
        match decided {
            Ok((patch, warnings, outcome)) => (Answer { warnings, patch }, outcome),
            Err(_) => {
                self.metrics.warning("internal");
                tracing::error!(uid = %request.uid, "panic while deciding; pod allowed unchanged");
                (Answer::allow(), Outcome::Error)
            }
        }
    }

    /// The patch for a pod (if any), the warnings for its owner and the outcome.
    fn patch_for(
        &self,
        namespace: &str,
        pod: &PodView<'_>,
    ) -> (Option<String>, Vec<String>, Outcome) {
        let inputs = Inputs {
            config: &self.config,
            native_sidecars: self.native_sidecars,
            profiles: self.profiles.as_ref(),
            namespaces: self.namespaces.as_ref(),
        };
        let decision = mutate::decide(inputs, namespace, pod);
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
                (None, warnings, outcome)
            }
            Decision::Change(change) => {
                self.metrics.ports_not_intercepted(change.not_intercepted);
                let Change {
                    patch, warnings, ..
                } = *change;
                let outcome = if patch.is_some() {
                    Outcome::Patched
                } else {
                    Outcome::Unchanged
                };
                (patch, warnings, outcome)
            }
        }
    }
}

/// The answering AdmissionReview, written in one pass: the patch base64-encoded straight into
/// the body, as the API server requires (`[]byte` in Go). The fields are those kube-core's
/// `AdmissionResponse` writes.
fn encode(request: &Request<'_>, answer: &Answer) -> Vec<u8> {
    static STATUS: OnceLock<String> = OnceLock::new();
    let status = STATUS.get_or_init(|| {
        serde_json::to_string(&Status::default()).unwrap_or_else(|_| "{}".to_owned())
    });
    let patch_len = answer.patch.as_ref().map_or(0, |p| p.len() * 4 / 3 + 4);
    let warnings_len: usize = answer.warnings.iter().map(|w| w.len() + 3).sum();
    let mut head = String::with_capacity(256 + status.len() + patch_len + warnings_len);
    head.push_str(r#"{"apiVersion":"#);
    push_str(&mut head, &request.api_version);
    head.push_str(r#","kind":"#);
    push_str(&mut head, &request.review_kind);
    head.push_str(r#","response":{"uid":"#);
    push_str(&mut head, &request.uid);
    head.push_str(r#","allowed":true,"status":"#);
    head.push_str(status);
    let mut out = head.into_bytes();
    if let Some(patch) = &answer.patch {
        out.extend_from_slice(br#","patch":""#);
        // Straight into the body as bytes: no intermediate string, no UTF-8 check of the
        // encoded text, no escape scan (base64 needs none).
        base64_simd::STANDARD.encode_append(patch.as_bytes(), &mut out);
        out.extend_from_slice(br#"","patchType":"JSONPatch""#);
    }
    if !answer.warnings.is_empty() {
        let mut tail = String::with_capacity(warnings_len + 16);
        tail.push_str(r#","warnings":["#);
        for (i, warning) in answer.warnings.iter().enumerate() {
            if i > 0 {
                tail.push(',');
            }
            push_str(&mut tail, warning);
        }
        tail.push(']');
        out.extend_from_slice(tail.as_bytes());
    }
    out.extend_from_slice(b"}}");
    out
}

/// Splits any body into the request (without its object) and the object, saying precisely
/// what is wrong with a body that is no review.
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
