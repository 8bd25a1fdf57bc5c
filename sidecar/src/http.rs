//! The HTTP/2 proxy (gRPC included): hyper on both sides, each client connection's streams
//! multiplexed on an app HTTP/2 connection of its own ([`crate::upstream`]).
//!
//! Nothing is added to what passes through: the `date` header hyper's servers add by default is
//! turned off, bodies stream frame by frame (never buffered whole), trailers pass on. A gRPC
//! call's class comes from `grpc-status`, in the head or the trailers. HTTP/1 has a proxy of its
//! own ([`crate::h1`]).

use std::{convert::Infallible, io, sync::Arc};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::{body::Incoming, server::conn, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::debug;

use crate::{
    body::{MeasuredBody, Outcome, RequestRecord},
    listener::Client,
    metrics::{OpenConnection, ProtocolLabel},
    prefixed::PrefixedIo,
    sensor::Sensor,
    upstream::{Upstream, UpstreamError},
};

/// The header naming the sidecar as the source of a response it made itself (a 502).
pub use snug_api::ports::SIDECAR_ERROR_HEADER;

/// A response body: the app's, measured, or the sidecar's own.
pub type ProxyBody = Either<MeasuredBody, Full<Bytes>>;

type ClientIo = TokioIo<PrefixedIo<Sensor<TcpStream>>>;

/// Serves one HTTP/2 client connection until it ends.
pub async fn serve(
    client: Arc<Client>,
    stream: Sensor<TcpStream>,
    prefix: Bytes,
    upstream: io::Result<TcpStream>,
) {
    let listener = client.listener.clone();
    let open = Arc::new(listener.port.protocol(ProtocolLabel::H2).open_connection());
    let proxy = Proxy {
        upstream: Arc::new(Upstream::new(listener.app, upstream)),
        client,
        _open: open,
    };
    let io = TokioIo::new(PrefixedIo::new(prefix, stream));
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.forward(req).await) }
    });
    match serve_http2(io, service, &listener.lifecycle).await {
        Some(Err(error)) => debug!(%error, "client connection ended with an error"),
        Some(Ok(())) => {}
        None => debug!("client connection closed at the end of the grace period"),
    }
}

async fn serve_http2<S>(
    io: ClientIo,
    service: S,
    lifecycle: &crate::lifecycle::Lifecycle,
) -> Option<hyper::Result<()>>
where
    S: hyper::service::HttpService<Incoming, ResBody = ProxyBody> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = conn::http2::Builder::new(TokioExecutor::new());
    builder
        .auto_date_header(false)
        .adaptive_window(true)
        .timer(TokioTimer::new());
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    lifecycle.drive(connection, |c| c.graceful_shutdown()).await
}

#[derive(Debug, Clone)]
struct Proxy {
    client: Arc<Client>,
    upstream: Arc<Upstream>,
    /// Keeps the connection counted as open while its streams run.
    _open: Arc<OpenConnection>,
}

impl Proxy {
    async fn forward(self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let grpc = is_grpc(&req);
        let label = if grpc {
            ProtocolLabel::Grpc
        } else {
            ProtocolLabel::H2
        };
        let port = self.client.listener.port.clone();
        let record = RequestRecord::start(port.protocol(label), port.clone());
        self.client
            .traffic
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.client.listener.x_forwarded_for
            && let Ok(ip) = HeaderValue::from_str(&self.client.ip.to_string())
        {
            req.headers_mut().append("x-forwarded-for", ip);
        }
        match self.upstream.send(req).await {
            Ok(response) => {
                record.headers_sent();
                let outcome = Outcome::of_head(response.status(), response.headers(), grpc);
                response.map(|body| Either::Left(MeasuredBody::new(body, record, outcome)))
            }
            Err(error) => {
                debug!(%error, "request not forwarded");
                record.bad_gateway(error.metric_label());
                bad_gateway(&error)
            }
        }
    }
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn bad_gateway(error: &UpstreamError) -> Response<ProxyBody> {
    let body = error.body();
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        SIDECAR_ERROR_HEADER,
        HeaderValue::from_static(error.header_value()),
    );
    response
}
