//! The admin port: `/metrics` (Prometheus text), `/live`, `/ready` (ready once every listener is
//! bound, not ready again once draining starts, so the pod leaves its Services first).

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use snug_api::ports::{LIVE_PATH, METRICS_PATH, READY_PATH};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::lifecycle::Lifecycle;

/// The content type of prometheus-client's text exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the admin endpoints read.
#[derive(Debug)]
pub struct Admin {
    /// The sidecar's metrics.
    pub registry: Registry,
    /// Whether the sidecar takes traffic.
    pub ready: AtomicBool,
}

impl Admin {
    /// Answers one admin request.
    pub fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_owned());
        }
        match req.uri().path() {
            METRICS_PATH => {
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, &self.registry) {
                    Ok(()) => {
                        let mut response = text(StatusCode::OK, body);
                        response.headers_mut().insert(
                            header::CONTENT_TYPE,
                            http::HeaderValue::from_static(OPENMETRICS),
                        );
                        response
                    }
                    Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")),
                }
            }
            LIVE_PATH => text(StatusCode::OK, "live\n".to_owned()),
            READY_PATH if self.ready.load(Ordering::Relaxed) => {
                text(StatusCode::OK, "ready\n".to_owned())
            }
            READY_PATH => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned()),
            _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serves the admin port until the sidecar stops.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, lifecycle: Lifecycle) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = lifecycle.stop.cancelled() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                warn!(%error, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        let stop = lifecycle.stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = admin.respond(&req);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => if let Err(error) = result {
                    debug!(%error, "admin connection failed");
                },
                () = stop.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(ready: bool) -> Admin {
        Admin {
            registry: Registry::default(),
            ready: AtomicBool::new(ready),
        }
    }

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    #[test]
    fn routes_health_and_metrics() {
        let up = admin(true);
        assert_eq!(up.respond(&get("/live")).status(), StatusCode::OK);
        assert_eq!(up.respond(&get("/ready")).status(), StatusCode::OK);
        let metrics = up.respond(&get("/metrics"));
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(metrics.headers()[header::CONTENT_TYPE], OPENMETRICS);
        assert_eq!(up.respond(&get("/nope")).status(), StatusCode::NOT_FOUND);
        let post = Request::post("/ready").body(()).unwrap();
        assert_eq!(up.respond(&post).status(), StatusCode::METHOD_NOT_ALLOWED);

        let draining = admin(false);
        assert_eq!(
            draining.respond(&get("/ready")).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(draining.respond(&get("/live")).status(), StatusCode::OK);
    }
}
