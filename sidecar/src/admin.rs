//! The admin port: `/metrics` (Prometheus text), `/live`, `/ready` (ready once every listener is
//! bound, not ready again once draining starts, so the pod leaves its Services first).
//!
//! `/metrics` serves every family; `/metrics?name[]=a&name[]=b` only the families named (the
//! selector of Prometheus federation's `match[]` and node_exporter's `collect[]`, by metric
//! name). The profiler asks for the few it reads, so the histograms it skips are neither sent
//! nor parsed ten thousand times a cycle; Prometheus scrapes the plain path and gets them all.

use std::{
    borrow::Cow,
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
use snug_api::{
    metrics::names_family,
    ports::{LIVE_PATH, METRICS_NAME_PARAM, METRICS_NAME_PARAM_ENCODED, METRICS_PATH, READY_PATH},
};
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
                        let body = match req.uri().query() {
                            Some(query) => select_families(&body, query).into_owned(),
                            None => body,
                        };
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

/// The families of `exposition` (the text format, as prometheus-client writes it) that the
/// `name[]` parameters of `query` select, in their order, with the closing `# EOF`; all of it
/// when the query names none. A family is selected by the name in its `# TYPE` line, or, for a
/// counter, by that name with `_total` (the name its samples carry); other parameters are
/// ignored, as are names no family has.
pub fn select_families<'a>(exposition: &'a str, query: &str) -> Cow<'a, str> {
    let names: Vec<&str> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| {
            key.eq_ignore_ascii_case(METRICS_NAME_PARAM_ENCODED) || *key == METRICS_NAME_PARAM
        })
        .map(|(_, value)| value)
        .collect();
    if names.is_empty() {
        return Cow::Borrowed(exposition);
    }
    let wanted = |family: &str| names.iter().any(|name| names_family(name, family));
    let mut selected = String::with_capacity(exposition.len() / 2);
    let mut keep = false;
    for line in exposition.split_inclusive('\n') {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.split_whitespace();
            match (words.next(), words.next()) {
                (Some("EOF"), None) => keep = true,
                // A family starts with its metadata; its samples follow.
                (Some("HELP" | "TYPE" | "UNIT"), Some(family)) => keep = wanted(family),
                _ => {}
            }
        }
        if keep {
            selected.push_str(line);
        }
    }
    Cow::Owned(selected)
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

    fn body(response: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let bytes = futures::executor::block_on(response.into_body().collect())
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn metrics_serves_only_the_families_named() {
        use prometheus_client::metrics::{counter::Counter, histogram::Histogram};
        let mut registry = Registry::default();
        let requests = Counter::<u64>::default();
        requests.inc_by(7);
        registry.register("snug_requests", "Requests", requests);
        let durations = Histogram::new([0.1, 1.0]);
        durations.observe(0.5);
        registry.register("snug_request_duration_seconds", "Duration", durations);
        registry.register(
            "snug_response_headers_seconds",
            "Headers",
            Histogram::new([0.1, 1.0]),
        );
        let admin = Admin {
            registry,
            ready: AtomicBool::new(true),
        };
        let everything = body(admin.respond(&get("/metrics")));
        assert!(everything.contains("snug_response_headers_seconds_bucket"));

        let some = admin.respond(&get(
            "/metrics?name%5B%5D=snug_requests_total&name[]=snug_request_duration_seconds",
        ));
        assert_eq!(some.headers()[header::CONTENT_TYPE], OPENMETRICS);
        let some = body(some);
        assert!(some.contains("\nsnug_requests_total 7\n"), "{some}");
        assert!(some.contains("snug_request_duration_seconds_bucket{le=\"1.0\"} 1\n"));
        assert!(some.contains("snug_request_duration_seconds_count 1\n"));
        assert!(!some.contains("snug_response_headers_seconds"), "{some}");
        assert!(some.ends_with("# EOF\n"), "{some}");
        // What is kept is exactly as the full exposition writes it.
        let kept: Vec<&str> = everything
            .lines()
            .filter(|l| !l.contains("snug_response_headers_seconds"))
            .collect();
        assert_eq!(some.lines().collect::<Vec<_>>(), kept);

        let counter_by_family_name = body(admin.respond(&get("/metrics?name[]=snug_requests")));
        assert!(counter_by_family_name.contains("snug_requests_total 7"));
        assert!(!counter_by_family_name.contains("duration"));
        let unknown = body(admin.respond(&get("/metrics?name[]=nope")));
        assert_eq!(unknown, "# EOF\n");
        let other_parameters = body(admin.respond(&get("/metrics?debug=1")));
        assert_eq!(other_parameters, everything);
    }
}
