//! `/metrics`, `/live` and `/ready` on the health port (8080).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{encoding::text::encode, registry::Registry};

/// What the health endpoints read.
#[derive(Debug, Clone)]
pub struct Health {
    /// The profiler's metrics.
    pub registry: Arc<Registry>,
    /// Set once the pod index is synced (or at once in local mode).
    pub ready: Arc<AtomicBool>,
}

/// The health and metrics router.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/live", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .with_state(health)
}

async fn metrics(State(health): State<Health>) -> impl IntoResponse {
    let mut body = String::new();
    match encode(&mut body, &health.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn ready(State(health): State<Health>) -> impl IntoResponse {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "pod index not synced yet")
    }
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> crate::Result<()> {
    axum::serve(listener, router)
        .await
        .map_err(crate::Error::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::pods::WorkloadKey;
    use http_body_util::BodyExt;
    use snug_api::WorkloadRef;
    use tower::ServiceExt;

    async fn get_text(router: &Router, path: &str) -> (StatusCode, String) {
        let request = http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn metrics_export_recommendations_and_ready_follows_the_flag() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let key = WorkloadKey {
            namespace: "shop".into(),
            workload: WorkloadRef::new("apps/v1", "Deployment", "web"),
        };
        let recommendation = snug_recommender::Recommendation {
            cpu_request: 0.25,
            cpu_limit: None,
            memory_request: 1e8,
            memory_limit: 2e8,
            cpu_lower_bound: 0.1,
            cpu_upper_bound: 0.5,
            memory_lower_bound: 5e7,
            memory_upper_bound: 4e8,
            confidence: 1.0,
        };
        metrics.set_recommendation(&key, "app", Some(&recommendation));
        metrics.scrape("timeout");
        let ready = Arc::new(AtomicBool::new(false));
        let router = router(Health {
            registry: Arc::new(registry),
            ready: ready.clone(),
        });
        let (status, body) = get_text(&router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains(
            "snug_recommendation{namespace=\"shop\",workload=\"Deployment/web\",container=\"app\",resource=\"cpu_request\"} 0.25"
        ), "{body}");
        assert!(
            body.contains("resource=\"memory_limit\"} 200000000"),
            "{body}"
        );
        assert!(!body.contains("cpu_limit"), "no CPU limit, no series");
        assert!(
            body.contains("snug_profiler_scrapes_total{outcome=\"timeout\"} 1"),
            "{body}"
        );
        assert_eq!(get_text(&router, "/live").await.0, StatusCode::OK);
        assert_eq!(
            get_text(&router, "/ready").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get_text(&router, "/ready").await.0, StatusCode::OK);
    }
}
