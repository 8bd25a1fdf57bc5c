//! The plain-HTTP side (`/live`, `/ready`, `/metrics`) and running from a profiles directory
//! with no cluster at all.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failure is a test failure

mod common;

use std::{sync::Arc, time::Duration};

use axum::{body::Body, http::Request};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use snug_webhook::{
    config::{Config, InjectConfig, NativeSidecars},
    health_router,
    metrics::Metrics,
    server::{Health, connect},
    store::{ProfileStore, StaticProfiles},
};
use tower::ServiceExt;

#[derive(Debug)]
struct NotSynced;

impl ProfileStore for NotSynced {
    fn get(&self, _: &str, _: &str) -> Option<Arc<snug_api::WorkloadProfile>> {
        None
    }
    fn is_ready(&self) -> bool {
        false
    }
    fn len(&self) -> usize {
        0
    }
}

async fn get(router: axum::Router, path: &str) -> (u16, String) {
    let response = router
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn health_and_metrics_endpoints() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    metrics.profiles.set(3);
    let registry = Arc::new(registry);
    let ready = health_router(Health {
        registry: registry.clone(),
        profiles: Arc::new(StaticProfiles::default()),
    });
    assert_eq!(get(ready.clone(), "/live").await.0, 200);
    assert_eq!(get(ready.clone(), "/ready").await.0, 200);
    let (status, text) = get(ready, "/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("snug_webhook_profiles 3"), "{text}");
    assert!(
        text.contains("# TYPE snug_webhook_admission_duration_seconds histogram"),
        "{text}"
    );

    let syncing = health_router(Health {
        registry,
        profiles: Arc::new(NotSynced),
    });
    assert_eq!(get(syncing.clone(), "/live").await.0, 200);
    assert_eq!(get(syncing, "/ready").await.0, 503);
}

#[tokio::test]
async fn a_profiles_directory_runs_without_any_cluster() {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        health_listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: "unused".into(),
        tls_key: "unused".into(),
        tls_reload_interval: Duration::from_secs(10),
        profiles_dir: Some(common::data("profiles")),
        profiles_poll: Duration::from_secs(60),
        sync_timeout: Duration::from_secs(1),
        native_sidecars: NativeSidecars::Auto,
        max_body_bytes: 1 << 20,
        inject: InjectConfig::default(),
    };
    if std::env::var_os("KUBECONFIG").is_some()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
    {
        // A reachable cluster would decide native sidecars from its version instead.
        eprintln!("skipped: a cluster configuration is present in this environment");
        return;
    }
    let (profiles, namespaces, native) = connect(&config, &Metrics::default()).await.unwrap();
    assert!(native, "auto means always without a cluster");
    assert!(profiles.is_ready());
    assert_eq!(profiles.len(), 3);
    assert!(profiles.get("shop", "deployment-web").is_some());
    assert_eq!(namespaces.mode("shop"), None);
}
