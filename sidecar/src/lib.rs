//! snug-sidecar: the measuring proxy Snug puts in front of an app's ports.
//!
//! Each `listen:app` pair of the configuration gets a listener; every connection is forwarded to
//! the app, its protocol recognised from its first bytes (HTTP/1.x, HTTP/2 prior knowledge, or
//! opaque TCP) and measured. Metrics are served on the admin port. [`Sidecar::bind`] binds every
//! port, [`Sidecar::run`] serves until the shutdown future resolves, then drains.

pub mod admin;
pub mod body;
pub mod class;
pub mod config;
pub mod detect;
pub mod error;
pub mod h1;
pub mod histogram;
pub mod http;
pub mod lifecycle;
pub mod listener;
pub mod metrics;
pub mod peers;
pub mod prefixed;
pub mod sensor;
pub mod tcp;
pub mod upstream;
pub mod workers;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool, atomic::Ordering},
};

use prometheus_client::registry::Registry;
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::Semaphore,
};
use tracing::{info, warn};

pub use config::{Args, Config, LogFormat};
pub use error::{Error, Result};

use crate::{
    admin::Admin,
    lifecycle::Lifecycle,
    listener::Listener,
    metrics::{Metrics, PortMetrics},
    workers::Workers,
};

/// Backlog of the inbound listeners: where clients wait while the connection cap is reached.
const BACKLOG: u32 = 1024;

/// A sidecar with every port bound, ready to [`run`](Sidecar::run).
#[derive(Debug)]
pub struct Sidecar {
    config: Config,
    inbound: Vec<(TcpListener, Arc<Listener>)>,
    admin_listener: TcpListener,
    admin: Arc<Admin>,
    lifecycle: Lifecycle,
    workers: Arc<Workers>,
}

impl Sidecar {
    /// Binds the inbound listeners and the admin port, and starts the worker threads.
    pub async fn bind(config: Config) -> Result<Self> {
        if config.ports.is_empty() {
            return Err(Error::Config("no ports to proxy".to_owned()));
        }
        let workers = Arc::new(Workers::start(config.workers).map_err(Error::Workers)?);
        let mut registry = Registry::default();
        let metrics = Arc::new(Metrics::register(&mut registry, config.max_peers));
        let lifecycle = Lifecycle::default();
        let mut inbound = Vec::new();
        for mapping in config.ports.iter() {
            let tcp = bind(SocketAddr::new(config.listen_addr, mapping.listen))?;
            let port = tcp.local_addr().map_or(mapping.listen, |a| a.port());
            let listener = Listener {
                port: Arc::new(PortMetrics::new(metrics.clone(), port)),
                app: SocketAddr::new(config.app_addr, mapping.app),
                pools: (0..workers.len()).map(|_| Default::default()).collect(),
                header_timeout: config.header_timeout,
                x_forwarded_for: config.x_forwarded_for,
                lifecycle: lifecycle.clone(),
                metrics: metrics.clone(),
            };
            inbound.push((tcp, Arc::new(listener)));
        }
        let admin_listener = bind(SocketAddr::new(config.listen_addr, config.admin_port))?;
        let admin = Arc::new(Admin {
            registry,
            ready: AtomicBool::new(false),
        });
        Ok(Self {
            config,
            inbound,
            admin_listener,
            admin,
            lifecycle,
            workers,
        })
    }

    /// The bound inbound addresses, in port-map order.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.inbound
            .iter()
            .filter_map(|(tcp, _)| tcp.local_addr().ok())
            .collect()
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener.local_addr().ok()
    }

    /// Serves until `shutdown` resolves; then stops accepting, reports not ready, lets in-flight
    /// requests and connections finish for up to the drain period, and closes the rest.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Sidecar {
            config,
            inbound,
            admin_listener,
            admin,
            lifecycle,
            workers,
        } = self;
        let admin_task = tokio::spawn(admin::serve(
            admin_listener,
            admin.clone(),
            lifecycle.clone(),
        ));
        let permits = Arc::new(Semaphore::new(config.max_connections));
        for (tcp, listener) in inbound {
            let task = listener::accept_loop(tcp, listener, permits.clone(), workers.clone());
            lifecycle.tracker.spawn(task);
        }
        admin.ready.store(true, Ordering::Relaxed);
        info!(ports = %config.ports, "serving");

        shutdown.await;
        info!(drain = ?config.drain, "shutting down: draining connections");
        admin.ready.store(false, Ordering::Relaxed);
        lifecycle.draining.cancel();
        lifecycle.tracker.close();
        if tokio::time::timeout(config.drain, lifecycle.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                open = lifecycle.tracker.len(),
                "grace period over, closing the remaining connections"
            );
        }
        lifecycle.stop.cancel();
        lifecycle.tracker.wait().await;
        let _ = admin_task.await;
        info!("stopped");
        Ok(())
    }
}

/// Binds with address reuse (a restarted sidecar need not wait for TIME_WAIT) and a deep backlog.
fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let bind_error = |source| Error::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_error)?;
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(addr).map_err(bind_error)?;
    socket.listen(BACKLOG).map_err(bind_error)
}

/// Binds every port of `config` and serves until `shutdown` resolves (then drains).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    Sidecar::bind(config).await?.run(shutdown).await
}
