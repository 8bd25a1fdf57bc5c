//! A fake API server for tests: a `tower-test` mock behind a real `kube::Client`, which asserts
//! each request (method, path, query) and answers it.

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::{Client, client::Body};
use serde_json::Value;

/// The server side of the fake.
pub(crate) struct FakeApi {
    handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
}

/// A request the fake received.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) content_type: String,
    pub(crate) accept: String,
    pub(crate) body: Value,
}

/// A client talking to a fresh fake.
pub(crate) fn client() -> (Client, FakeApi) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), FakeApi { handle })
}

impl FakeApi {
    /// Waits for the next request, checks its method and path, answers `status` with `body`.
    pub(crate) async fn expect(
        &mut self,
        method: &str,
        path: &str,
        status: u16,
        body: Value,
    ) -> Received {
        let (request, send) = self
            .handle
            .next_request()
            .await
            .expect("the client sent no request");
        let (parts, request_body) = request.into_parts();
        let bytes = request_body
            .collect()
            .await
            .expect("request body")
            .to_bytes();
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let received = Received {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            content_type: header(http::header::CONTENT_TYPE),
            accept: header(http::header::ACCEPT),
            body: if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("JSON body")
            },
        };
        assert_eq!(
            (received.method.as_str(), received.path.as_str()),
            (method, path),
            "{received:?}"
        );
        send.send_response(
            Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&body).expect("JSON")))
                .expect("response"),
        );
        received
    }
}

/// A `Status` error body with `code`.
pub(crate) fn status(code: u16, reason: &str) -> Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": reason, "reason": reason, "code": code})
}
