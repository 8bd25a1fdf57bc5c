//! Measuring a request: [`RequestRecord`] times it from its head to the end of its response and
//! counts it with its class (or as an abort). [`MeasuredBody`] does so for an HTTP/2 response
//! as it streams, when the last frame leaves, not when the head does. Frames pass through
//! untouched.

use std::{
    ops::Deref,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::metrics::{Class, PortMetrics, ProtocolMetrics};

/// One request in flight. Dropped before [`RequestRecord::finish`], it counts as an abort: the
/// client went away (or the sidecar was stopped) before the response was complete.
///
/// It holds its series by `Arc` where the record must outlive the connection's task (an HTTP/2
/// response body), and by reference where it does not (HTTP/1): an `Arc` clone and drop per
/// request is an atomic write to a count every core shares.
#[derive(Debug)]
pub struct RequestRecord<M = Arc<ProtocolMetrics>, P = Arc<PortMetrics>>
where
    M: Deref<Target = ProtocolMetrics>,
    P: Deref<Target = PortMetrics>,
{
    metrics: M,
    port: P,
    started: Instant,
    done: bool,
}

impl<M, P> RequestRecord<M, P>
where
    M: Deref<Target = ProtocolMetrics>,
    P: Deref<Target = PortMetrics>,
{
    /// Starts timing a request whose head was just received.
    pub fn start(metrics: M, port: P) -> Self {
        Self {
            metrics,
            port,
            started: Instant::now(),
            done: false,
        }
    }

    /// The response head is on its way to the client.
    pub fn headers_sent(&self) {
        self.metrics
            .response_headers
            .observe(self.started.elapsed());
    }

    /// The response is complete.
    pub fn finish(&mut self, class: Class) {
        if !self.done {
            self.done = true;
            self.metrics
                .request_duration
                .observe(self.started.elapsed());
            self.metrics.request(class);
        }
    }

    /// The sidecar answered the request itself with a 502 (the app could not): counted as a
    /// `5xx` and as a proxy error of `kind`.
    pub fn bad_gateway(mut self, kind: &'static str) {
        self.port.proxy_error(kind);
        self.headers_sent();
        self.finish(Class::Status(5));
    }

    /// The response failed part-way (the app reset it, say), counted as `kind`.
    pub fn fail(&mut self, kind: &'static str) {
        if !self.done {
            self.done = true;
            self.metrics.request(Class::Error);
            self.port.proxy_error(kind);
        }
    }
}

impl<M, P> Drop for RequestRecord<M, P>
where
    M: Deref<Target = ProtocolMetrics>,
    P: Deref<Target = PortMetrics>,
{
    fn drop(&mut self) {
        self.fail("client_abort");
    }
}

/// Where a request's class comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Known from the response head.
    Known(Class),
    /// A gRPC call answered 200 without `grpc-status` in its head: the trailers will say.
    GrpcTrailers,
}

impl Outcome {
    /// The outcome of a response head; `grpc` when the request was a gRPC call.
    pub fn of_head(status: http::StatusCode, headers: &HeaderMap, grpc: bool) -> Self {
        if !grpc || status != http::StatusCode::OK {
            return Outcome::Known(Class::of_status(status));
        }
        match grpc_status(headers) {
            Some(class) => Outcome::Known(class),
            None => Outcome::GrpcTrailers,
        }
    }

    /// The class to count once the response is complete: a gRPC call whose trailers never
    /// said otherwise is a server error.
    fn final_class(self) -> Class {
        match self {
            Outcome::Known(class) => class,
            Outcome::GrpcTrailers => Class::GrpcServerError,
        }
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<Class> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Class::of_grpc(code))
}

pin_project_lite::pin_project! {
    /// A response body from the app, counted when its last frame passes.
    #[derive(Debug)]
    pub struct MeasuredBody {
        #[pin]
        inner: Incoming,
        record: RequestRecord,
        outcome: Outcome,
    }
}

impl MeasuredBody {
    /// Measures `inner`; an already empty body completes the record at once.
    pub fn new(inner: Incoming, mut record: RequestRecord, outcome: Outcome) -> Self {
        if inner.is_end_stream() {
            record.finish(outcome.final_class());
        }
        Self {
            inner,
            record,
            outcome,
        }
    }
}

impl Body for MeasuredBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let poll = this.inner.as_mut().poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Outcome::GrpcTrailers) =
                    (frame.trailers_ref(), *this.outcome)
                    && let Some(found) = grpc_status(trailers)
                {
                    *this.outcome = Outcome::Known(found);
                }
                if this.inner.is_end_stream() {
                    this.record.finish(this.outcome.final_class());
                }
            }
            Poll::Ready(None) => this.record.finish(this.outcome.final_class()),
            Poll::Ready(Some(Err(_))) => this.record.fail("upstream_reset"),
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
