//! The HTTP proxy: hyper on both sides; app connections as [`crate::upstream`] lays out.
//!
//! Nothing is added to what passes through: HTTP/1 header case is preserved, the `date` header
//! hyper's servers add by default is turned off, bodies stream frame by frame (never buffered
//! whole), trailers pass on. `Expect: 100-continue` is answered when the request body is first
//! read (when the app connection starts sending it). An `Upgrade` (WebSocket) that the app
//! accepts with 101 becomes a byte tunnel, still counted by the client connection's sensor.

use std::{convert::Infallible, io, sync::Arc};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::{body::Incoming, server::conn, service::service_fn, upgrade::OnUpgrade};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::debug;

use crate::{
    body::{MeasuredBody, Outcome, RequestRecord},
    detect::Protocol,
    listener::Client,
    metrics::{Class, OpenConnection, ProtocolLabel},
    prefixed::PrefixedIo,
    sensor::Sensor,
    upstream::{Lease, Sent, Upstream, UpstreamError, Version},
};

/// The header naming the sidecar as the source of a response it made itself (a 502).
pub use snug_api::ports::SIDECAR_ERROR_HEADER;

/// A response body: the app's, measured, or the sidecar's own.
pub type ProxyBody = Either<MeasuredBody, Full<Bytes>>;

type ClientIo = TokioIo<PrefixedIo<Sensor<TcpStream>>>;

/// Serves one HTTP client connection until it ends.
pub async fn serve(
    client: Arc<Client>,
    protocol: Protocol,
    stream: Sensor<TcpStream>,
    prefix: Bytes,
    upstream: io::Result<TcpStream>,
) {
    let (version, label) = match protocol {
        Protocol::Http2 => (Version::Http2, ProtocolLabel::H2),
        _ => (Version::Http1, ProtocolLabel::Http1),
    };
    let listener = client.listener.clone();
    let open = Arc::new(listener.port.protocol(label).open_connection());
    let proxy = Proxy {
        upstream: Arc::new(Upstream::new(
            listener.app,
            version,
            upstream,
            listener.pool.clone(),
        )),
        client,
        _open: open,
        version,
    };
    let io = TokioIo::new(PrefixedIo::new(prefix, stream));
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.forward(req).await) }
    });
    let result = match version {
        Version::Http1 => {
            serve_http1(io, service, &listener.lifecycle, listener.header_timeout).await
        }
        Version::Http2 => serve_http2(io, service, &listener.lifecycle).await,
    };
    match result {
        Some(Err(error)) if error.is_timeout() => {
            debug!("request head timed out");
            listener.port.proxy_error("header_timeout");
        }
        Some(Err(error)) => debug!(%error, "client connection ended with an error"),
        Some(Ok(())) => {}
        None => debug!("client connection closed at the end of the grace period"),
    }
}

async fn serve_http1<S>(
    io: ClientIo,
    service: S,
    lifecycle: &crate::lifecycle::Lifecycle,
    header_timeout: std::time::Duration,
) -> Option<hyper::Result<()>>
where
    S: hyper::service::HttpService<Incoming, ResBody = ProxyBody> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = conn::http1::Builder::new();
    builder
        .preserve_header_case(true)
        .title_case_headers(false)
        .auto_date_header(false)
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    lifecycle.drive(connection, |c| c.graceful_shutdown()).await
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
    /// Keeps the connection counted as open while tunnels outlive the HTTP connection.
    _open: Arc<OpenConnection>,
    version: Version,
}

impl Proxy {
    async fn forward(self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let grpc = self.version == Version::Http2 && is_grpc(&req);
        let label = match self.version {
            Version::Http1 => ProtocolLabel::Http1,
            Version::Http2 if grpc => ProtocolLabel::Grpc,
            Version::Http2 => ProtocolLabel::H2,
        };
        let port = self.client.listener.port.clone();
        let record = RequestRecord::start(port.protocol(label), port.clone());
        self.client
            .traffic
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.client.listener.x_forwarded_for {
            let ip = HeaderValue::from_str(&self.client.ip.to_string());
            if let Ok(ip) = ip {
                req.headers_mut().append("x-forwarded-for", ip);
            }
        }
        let client_upgrade = (self.version == Version::Http1
            && req.headers().contains_key(header::UPGRADE))
        .then(|| hyper::upgrade::on(&mut req));

        match self.upstream.send(req).await {
            Ok(Sent {
                mut response,
                mut lease,
            }) => {
                record.headers_sent();
                if response.status() == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(client_upgrade) = client_upgrade
                {
                    let app_upgrade = hyper::upgrade::on(&mut response);
                    // The app connection now belongs to the tunnel.
                    self.tunnel(client_upgrade, app_upgrade, lease.take());
                }
                let outcome = Outcome::of_head(response.status(), response.headers(), grpc);
                response.map(|body| Either::Left(MeasuredBody::new(body, record, outcome, lease)))
            }
            Err(error) => {
                debug!(%error, "request not forwarded");
                port.proxy_error(error.metric_label());
                let mut record = record;
                record.headers_sent();
                record.finish(Class::Status(5));
                bad_gateway(&error)
            }
        }
    }

    /// After a 101, copies bytes both ways between the client and the app until either closes.
    fn tunnel(&self, client: OnUpgrade, app: OnUpgrade, lease: Option<Lease>) {
        let proxy = self.clone();
        let lifecycle = self.client.listener.lifecycle.clone();
        lifecycle.tracker.clone().spawn(async move {
            let (client, app) = match tokio::try_join!(client, app) {
                Ok(pair) => pair,
                Err(error) => {
                    debug!(%error, "upgrade failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut app = TokioIo::new(app);
            tokio::select! {
                copied = tokio::io::copy_bidirectional(&mut client, &mut app) => {
                    if let Err(error) = copied {
                        debug!(%error, "upgraded connection ended with an error");
                    }
                }
                () = lifecycle.stop.cancelled() => {}
            }
            drop((proxy, lease));
        });
    }
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn bad_gateway(error: &UpstreamError) -> Response<ProxyBody> {
    let body = format!("snug-sidecar: {error}\n");
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
