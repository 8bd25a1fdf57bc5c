//! The demo's traffic: two client peers on their own loopback addresses, with rates that change,
//! a mix of cheap, heavy and slow requests, and a few errors — what a real service sees.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// One client peer of the demo.
#[derive(Debug, Clone)]
pub struct Peer {
    /// What the peer stands for (`frontend`, `batch`).
    pub name: &'static str,
    /// The loopback address its connections leave from (the sidecar sees it as the peer).
    pub address: IpAddr,
    /// Requests per second at the start and at the end of the run; the rate moves in between.
    pub rate: (f64, f64),
    /// Memory the app is asked to hold, MiB, at the start and at the end of the run.
    pub memory_mib: (u32, u32),
}

/// What one peer sent and got back.
#[derive(Debug, Default)]
pub struct PeerTally {
    /// Requests answered (any status).
    pub requests: AtomicU64,
    /// Requests answered 5xx.
    pub errors: AtomicU64,
    /// Requests that got no answer.
    pub failures: AtomicU64,
}

/// The demo's two peers.
pub fn demo_peers() -> Vec<Peer> {
    vec![
        Peer {
            name: "frontend",
            address: IpAddr::from([127, 0, 0, 2]),
            rate: (20.0, 60.0),
            memory_mib: (24, 96),
        },
        Peer {
            name: "batch",
            address: IpAddr::from([127, 0, 0, 3]),
            rate: (10.0, 5.0),
            memory_mib: (24, 64),
        },
    ]
}

/// Sends `peer`'s traffic to `target` (`http://host:port`), counting into `tally`, until `stop`
/// is set. The rate and memory move from their start to their end values over `ramp`, then hold.
pub async fn drive(
    peer: Peer,
    target: String,
    ramp: Duration,
    stop: Arc<AtomicBool>,
    tally: Arc<PeerTally>,
) {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(peer.address));
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut in_flight = tokio::task::JoinSet::new();
    while !stop.load(Ordering::Relaxed) {
        let progress = (started.elapsed().as_secs_f64() / ramp.as_secs_f64()).min(1.0);
        let rate = peer.rate.0 + (peer.rate.1 - peer.rate.0) * progress;
        let memory = peer.memory_mib.0 as f64
            + (peer.memory_mib.1 as f64 - peer.memory_mib.0 as f64) * progress;
        let path = request_path(sent, memory as u32);
        let uri = format!("{target}{path}");
        let (client, tally) = (client.clone(), tally.clone());
        in_flight.spawn(async move { send(&client, &uri, &tally).await });
        sent += 1;
        tokio::time::sleep(Duration::from_secs_f64(1.0 / rate.max(0.1))).await;
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

/// The n-th request of the mix: mostly light work, every 10th heavy, every 25th slow, every
/// 40th an error.
fn request_path(n: u64, memory_mib: u32) -> String {
    if n % 40 == 39 {
        "/status/500".to_owned()
    } else if n % 25 == 24 {
        format!("/work?cpu_ms=120&memory_mib={memory_mib}")
    } else if n % 10 == 9 {
        format!("/work?cpu_ms=25&memory_mib={memory_mib}")
    } else {
        format!("/work?cpu_ms=3&memory_mib={memory_mib}")
    }
}

async fn send(client: &Client<HttpConnector, Empty<Bytes>>, uri: &str, tally: &PeerTally) {
    let Ok(uri) = uri.parse::<http::Uri>() else {
        tally.failures.fetch_add(1, Ordering::Relaxed);
        return;
    };
    match client.get(uri).await {
        Ok(response) => {
            let status = response.status();
            let _ = response.into_body().collect().await;
            tally.requests.fetch_add(1, Ordering::Relaxed);
            if status.is_server_error() {
                tally.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(_) => {
            tally.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_light_heavy_slow_and_failing_requests() {
        let paths: Vec<String> = (0..200).map(|n| request_path(n, 32)).collect();
        let count = |needle: &str| paths.iter().filter(|p| p.contains(needle)).count();
        assert_eq!(count("/status/500"), 5);
        // Request 199 is both a 25th and a 40th: the error wins.
        assert_eq!(count("cpu_ms=120"), 7);
        assert_eq!(count("cpu_ms=25"), 12);
        assert!(count("cpu_ms=3") > 150);
        assert!(paths.iter().all(|p| p.starts_with('/')));
    }
}
