//! Running the webhook: stores, the HTTPS admission server with reloading certificates, and
//! the plain-HTTP health and metrics server.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use kube::Client;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{
    Error, Result,
    admission::{Admission, router},
    config::{Config, NativeSidecars},
    metrics::Metrics,
    store::{
        ClusterNamespaces, ClusterProfiles, DirProfiles, NamespaceStore, NoNamespaces,
        ProfileStore, server_supports_native_sidecars,
    },
    tls::ReloadingCert,
};

/// How long a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight admissions get after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What `/ready` and `/metrics` read.
#[derive(Debug, Clone)]
pub struct Health {
    /// The metrics registry.
    pub registry: Arc<Registry>,
    /// The profile store whose readiness is the webhook's.
    pub profiles: Arc<dyn ProfileStore>,
}

/// The plain-HTTP router: `/live`, `/ready`, `/metrics`.
pub fn health_router(health: Health) -> Router {
    Router::new()
        .route("/live", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn ready(State(health): State<Health>) -> impl IntoResponse {
    if health.profiles.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "profiles not synced yet\n")
    }
}

async fn metrics(State(health): State<Health>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &health.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The stores and the native-sidecar decision, from the cluster or the directory.
pub async fn connect(
    config: &Config,
    metrics: &Metrics,
) -> Result<(Arc<dyn ProfileStore>, Arc<dyn NamespaceStore>, bool)> {
    let client = match &config.profiles_dir {
        // The local demo and tests run without a cluster: use one only if one answers.
        Some(_) => reachable_client().await,
        None => Some(Client::try_default().await?),
    };
    let native = match (config.native_sidecars, &client) {
        (NativeSidecars::Always, _) | (NativeSidecars::Auto, None) => true,
        (NativeSidecars::Never, _) => false,
        (NativeSidecars::Auto, Some(client)) => server_supports_native_sidecars(client).await?,
    };
    let namespaces: Arc<dyn NamespaceStore> = match &client {
        Some(client) => ClusterNamespaces::start(client.clone()),
        None => Arc::new(NoNamespaces),
    };
    let profiles: Arc<dyn ProfileStore> = match (&config.profiles_dir, client) {
        (Some(dir), _) => {
            let store = DirProfiles::open(dir);
            metrics.profiles.set(store.len() as i64);
            tokio::spawn(
                store
                    .clone()
                    .watch(config.profiles_poll, metrics.profiles.clone()),
            );
            store
        }
        (None, Some(client)) => {
            let store = ClusterProfiles::start(client, config.sync_timeout);
            tokio::spawn(track_count(store.clone(), metrics.profiles.clone()));
            store
        }
        (None, None) => return Err(Error::Config("no profile source".into())),
    };
    tracing::info!(native_sidecars = native, "stores ready to serve");
    Ok((profiles, namespaces, native))
}

async fn reachable_client() -> Option<Client> {
    let client = Client::try_default().await.ok()?;
    match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await {
        Ok(Ok(_)) => Some(client),
        _ => {
            tracing::info!("no cluster reachable; running from the profiles directory alone");
            None
        }
    }
}

async fn track_count(store: Arc<ClusterProfiles>, gauge: prometheus_client::metrics::gauge::Gauge) {
    loop {
        gauge.set(store.len() as i64);
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
}

/// Runs the webhook until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> Result<()> {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let cert = ReloadingCert::load(&config.tls_cert, &config.tls_key)?;
    tokio::spawn(
        cert.clone()
            .watch(config.tls_reload_interval, metrics.clone()),
    );
    let (profiles, namespaces, native_sidecars) = connect(&config, &metrics).await?;
    let admission = Admission {
        config: Arc::new(config.inject.clone()),
        native_sidecars,
        profiles: profiles.clone(),
        namespaces,
        metrics,
    };
    let app = router(admission, config.max_body_bytes);
    let health = health_router(Health {
        registry: Arc::new(registry),
        profiles,
    });
    let health_listener = bind(config.health_listen).await?;
    let listener = bind(config.listen).await?;
    tracing::info!(listen = %config.listen, health = %config.health_listen, "serving");
    let health_task = tokio::spawn(async move {
        axum::serve(health_listener, health)
            .with_graceful_shutdown(shutdown_signal())
            .await
    });
    serve_tls(listener, cert.server_config()?, app, shutdown_signal()).await;
    health_task.abort();
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(Error::Serve)
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then drains.
pub async fn serve_tls(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, builder) = (acceptor.clone(), app.clone(), builder.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = TowerToHyperService::new(app);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down; draining connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out");
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
