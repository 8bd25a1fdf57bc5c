//! A small HTTP app to run in test pods, whose CPU and memory follow its requests, so the
//! profiler has something real to measure:
//!
//! - `GET /` and `GET /healthz`: `ok`
//! - `GET /work?cpu_ms=N&memory_mib=M&sleep_ms=S`: spins N ms of CPU, grows the memory it holds
//!   to at least M MiB (held until exit, as a leaky cache would), then waits S ms before
//!   answering (as a call to a slow backend would: latency without CPU)
//! - `GET /status/{code}`: answers with that status (for error ratios)
//! - `GET /call?url=U`: fetches U from the app's own address, so the callee sees this pod as
//!   the peer, and answers with the upstream status

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::get,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// The app's settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "snug-sample-app",
    about = "Sample HTTP app for Snug's end-to-end tests"
)]
pub struct Config {
    /// Address to listen on (the fake kubelet sets the pod's address).
    #[arg(long, env = "SNUG_E2E_POD_IP", default_value = "0.0.0.0")]
    pub address: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "SAMPLE_APP_PORT", default_value_t = 8080)]
    pub port: u16,
}

#[derive(Clone)]
struct App {
    held: Arc<Mutex<Vec<Vec<u8>>>>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// The app's routes; outbound calls leave from `address`.
pub fn router(address: IpAddr) -> Router {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(address).filter(|a| !a.is_unspecified()));
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let app = App {
        held: Arc::default(),
        client: Client::builder(TokioExecutor::new()).build(connector),
    };
    Router::new()
        .route("/", get(|| async { "ok\n" }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/work", get(work))
        .route("/status/{code}", get(status))
        .route("/call", get(call))
        .with_state(app)
}

/// Serves until the process is killed.
pub async fn run(config: Config) -> std::io::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::new(config.address, config.port)).await?;
    eprintln!("snug-sample-app listening on {}", listener.local_addr()?);
    axum::serve(listener, router(config.address)).await
}

async fn work(State(app): State<App>, Query(q): Query<HashMap<String, u64>>) -> String {
    let cpu_ms = q.get("cpu_ms").copied().unwrap_or(0).min(10_000);
    let memory_mib = q.get("memory_mib").copied().unwrap_or(0).min(4096);
    let sleep_ms = q.get("sleep_ms").copied().unwrap_or(0).min(60_000);
    tokio::task::spawn_blocking(move || spin(Duration::from_millis(cpu_ms)))
        .await
        .unwrap_or_default();
    let held = {
        let mut held = app
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while held.len() < memory_mib as usize {
            // Written, not just allocated, so the pages count in the resident set.
            held.push(vec![1u8; 1024 * 1024]);
        }
        held.len()
    };
    tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
    format!("spun {cpu_ms} ms, holding {held} MiB\n")
}

fn spin(how_long: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < how_long {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(std::hint::black_box(1));
    }
    x
}

async fn status(Path(code): Path<u16>) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
}

async fn call(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, String) {
    let Some(uri) = q.get("url").and_then(|u| u.parse::<http::Uri>().ok()) else {
        return (StatusCode::BAD_REQUEST, "url=... required\n".into());
    };
    match app.client.get(uri).await {
        Ok(response) => {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("upstream: {e}\n")),
    }
}
