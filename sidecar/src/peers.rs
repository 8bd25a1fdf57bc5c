//! Per-peer traffic with a bounded number of series.
//!
//! Every client IP gets atomic counters the moment it connects (the hot path only adds to them).
//! At each scrape the table *settles*: the peers with the most bytes (received + sent, since
//! first seen) keep a series of their own, at most `max_peers` of them, and every other peer is
//! folded into the `other` series. Each byte, request and connection is added exactly once to
//! exactly one exposed series, as a delta since the last settlement, so:
//! - no exposed counter ever goes down, and summing the increases of all series gives the exact
//!   traffic (what `sum(increase(...))` in PromQL computes);
//! - a peer that drops out of the top keeps its past in its own (now stale) series and its new
//!   traffic goes to `other`; if it comes back, its series restarts from zero, which Prometheus
//!   reads as a counter reset and counts correctly.
//!
//! Peers without a series and without an open connection are forgotten once settled (their
//! traffic already sits in `other`), so memory stays bounded by open connections plus
//! `max_peers`.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter},
};
use snug_api::metrics::{
    LABEL_PEER, PEER_CONNECTIONS_TOTAL, PEER_OTHER, PEER_RECEIVED_BYTES_TOTAL, PEER_REQUESTS_TOTAL,
    PEER_SENT_BYTES_TOTAL, registered_name,
};

/// Live counters of one client IP, shared by all its connections.
#[derive(Debug, Default)]
pub struct PeerTraffic {
    /// Bytes read from the peer.
    pub received: AtomicU64,
    /// Bytes written to the peer.
    pub sent: AtomicU64,
    /// HTTP requests (and gRPC calls) from the peer.
    pub requests: AtomicU64,
    /// Connections from the peer.
    pub connections: AtomicU64,
}

impl PeerTraffic {
    fn load(&self) -> Totals {
        Totals([
            self.received.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed),
        ])
    }
}

/// Received bytes, sent bytes, requests, connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals(pub [u64; 4]);

impl Totals {
    fn bytes(&self) -> u64 {
        self.0[0] + self.0[1]
    }

    fn add(&mut self, other: Totals) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    fn minus(&self, earlier: Totals) -> Totals {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(earlier.0) {
            *a -= b;
        }
        out
    }
}

/// One exposed view of the table: named peers and `other`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// Peers with a series of their own, most bytes first.
    pub named: Vec<(IpAddr, Totals)>,
    /// Everything counted under `other`.
    pub other: Totals,
}

#[derive(Debug)]
struct Peer {
    traffic: Arc<PeerTraffic>,
    /// What of `traffic` has already been added to an exposed series.
    settled: Totals,
    /// The peer's own exposed series, while it has one.
    series: Option<Totals>,
}

#[derive(Debug, Default)]
struct Table {
    peers: HashMap<IpAddr, Peer>,
    other: Totals,
}

/// The bounded per-peer counters; registered as a Prometheus collector.
pub struct PeerTable {
    max_peers: usize,
    table: Mutex<Table>,
}

impl fmt::Debug for PeerTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTable")
            .field("max_peers", &self.max_peers)
            .finish_non_exhaustive()
    }
}

impl PeerTable {
    /// A table that names at most `max_peers` peers.
    pub fn new(max_peers: usize) -> Self {
        Self {
            max_peers,
            table: Mutex::new(Table::default()),
        }
    }

    /// The counters of `ip` for a new connection (counted as one connection).
    pub fn connect(&self, ip: IpAddr) -> Arc<PeerTraffic> {
        let mut table = self.lock();
        // Settle early when many peers come and go between scrapes, so memory stays bounded.
        if table.peers.len() >= self.max_peers.saturating_mul(4).max(1024) {
            self.settle(&mut table);
        }
        let peer = table.peers.entry(ip).or_insert_with(|| Peer {
            traffic: Arc::default(),
            settled: Totals::default(),
            series: None,
        });
        peer.traffic.connections.fetch_add(1, Ordering::Relaxed);
        peer.traffic.clone()
    }

    /// Settles the table and returns what to expose.
    pub fn snapshot(&self) -> PeerSnapshot {
        let mut table = self.lock();
        self.settle(&mut table);
        let mut named: Vec<(IpAddr, Totals)> = table
            .peers
            .iter()
            .filter_map(|(ip, peer)| peer.series.map(|series| (*ip, series)))
            .collect();
        named.sort_by(|a, b| b.1.bytes().cmp(&a.1.bytes()).then(a.0.cmp(&b.0)));
        PeerSnapshot {
            named,
            other: table.other,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table holds plain numbers: a panic elsewhere cannot leave it inconsistent.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Picks the named peers by bytes so far, then adds each peer's unsettled traffic to its own
    /// series or to `other`.
    fn settle(&self, table: &mut Table) {
        let now: HashMap<IpAddr, Totals> = table
            .peers
            .iter()
            .map(|(ip, peer)| (*ip, peer.traffic.load()))
            .collect();
        let mut ranked: Vec<(IpAddr, u64)> = now.iter().map(|(ip, t)| (*ip, t.bytes())).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top: Vec<IpAddr> = ranked.iter().take(self.max_peers).map(|r| r.0).collect();

        let Table { peers, other } = table;
        for (ip, peer) in peers.iter_mut() {
            let current = now[ip];
            let delta = current.minus(peer.settled);
            peer.settled = current;
            if top.contains(ip) {
                peer.series.get_or_insert_with(Totals::default).add(delta);
            } else {
                peer.series = None;
                other.add(delta);
            }
        }
        // Forget settled peers that have no series and no open connection.
        peers.retain(|_, peer| peer.series.is_some() || Arc::strong_count(&peer.traffic) > 1);
    }
}

const HELP: [(&str, &str); 4] = [
    (
        PEER_RECEIVED_BYTES_TOTAL,
        "Bytes received from a client IP (client to app), on the wire.",
    ),
    (
        PEER_SENT_BYTES_TOTAL,
        "Bytes sent to a client IP (app to client), on the wire.",
    ),
    (
        PEER_REQUESTS_TOTAL,
        "HTTP requests and gRPC calls from a client IP.",
    ),
    (PEER_CONNECTIONS_TOTAL, "Connections from a client IP."),
];

impl Collector for PeerTable {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = self.snapshot();
        for (i, (name, help)) in HELP.iter().enumerate() {
            let mut metric = encoder.encode_descriptor(
                registered_name(name),
                help,
                None,
                MetricType::Counter,
            )?;
            for (ip, totals) in &snapshot.named {
                let labels = [(LABEL_PEER, ip.to_string())];
                ConstCounter::new(totals.0[i]).encode(metric.encode_family(&labels)?)?;
            }
            let labels = [(LABEL_PEER, PEER_OTHER.to_owned())];
            ConstCounter::new(snapshot.other.0[i]).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
