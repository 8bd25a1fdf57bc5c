//! The plain-HTTP side (`/live`, `/ready`, `/metrics`) and running from a profiles directory
//! with no cluster at all.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failure is a test failure

mod common;

use std::{sync::Arc, time::Duration};

use axum::{body::Body, http::Request};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use snug_webhook::{
    certs::generate,
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

fn free_port() -> std::net::SocketAddr {
    // Bound and released: a tiny window for another process to take it, fine for a test.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .ok()?;
    tokio::spawn(conn);
    let request = Request::get(path)
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn admit_over_tls(addr: std::net::SocketAddr, ca_pem: &str) -> serde_json::Value {
    use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("snug-webhook.snug-system.svc").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let body = common::review(&common::yaml_file("pods/deployment.yaml"), "CREATE").to_string();
    let request = Request::post("/mutate")
        .header("host", "snug-webhook.snug-system.svc")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn the_whole_server_runs_from_a_directory_and_stops_on_request() {
    if std::env::var_os("KUBECONFIG").is_some()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
    {
        eprintln!("skipped: a cluster configuration is present in this environment");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = generate("snug-webhook", "snug-system", 30).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &bundle.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &bundle.key_pem).unwrap();
    let (listen, health_listen) = (free_port(), free_port());
    let config = Config {
        listen,
        health_listen,
        tls_cert: dir.path().join("tls.crt"),
        tls_key: dir.path().join("tls.key"),
        tls_reload_interval: Duration::from_secs(1),
        profiles_dir: Some(common::data("profiles")),
        profiles_poll: Duration::from_secs(1),
        sync_timeout: Duration::from_secs(1),
        native_sidecars: NativeSidecars::Auto,
        max_body_bytes: 1 << 20,
        inject: InjectConfig::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(snug_webhook::server::run_until(config, async move {
        let _ = stopped.await;
    }));
    let mut ready = None;
    for _ in 0..500 {
        ready = http_get(health_listen, "/ready").await;
        if ready.as_ref().is_some_and(|(status, _)| *status == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready.map(|r| r.0), Some(200), "never ready");
    let review = admit_over_tls(listen, &bundle.ca_pem).await;
    assert!(review["response"]["patch"].is_string(), "{review}");
    let (_, metrics) = http_get(health_listen, "/metrics").await.unwrap();
    assert!(metrics.contains("snug_webhook_profiles 3"), "{metrics}");
    assert!(
        metrics.contains("snug_webhook_admissions_total{outcome=\"patched\"} 1"),
        "{metrics}"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
