//! Synthetic sidecar expositions, written with prometheus-client — the library the sidecar uses —
//! under the contract's metric names and latency bucket layout. For tests and the scale
//! benchmark; a fixture captured from the real sidecar binary backs the parser test as well.

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use snug_api::{latency, metrics};

type Labels = Vec<(&'static str, String)>;

/// What a synthetic sidecar has counted so far.
#[derive(Debug, Clone, Default)]
pub struct SidecarTraffic {
    /// `(class, count)` request counters on port 4700, HTTP/1.
    pub requests: Vec<(&'static str, u64)>,
    /// Request durations to record, in seconds.
    pub durations: Vec<f64>,
    /// `(peer, received bytes, sent bytes, requests)`.
    pub peers: Vec<(String, u64, u64, u64)>,
}

/// Renders `traffic` as the sidecar's `/metrics` body would carry it.
pub fn sidecar_exposition(traffic: &SidecarTraffic) -> String {
    let mut registry = Registry::default();
    let requests = Family::<Labels, Counter>::default();
    let durations = Family::<Labels, Histogram>::new_with_constructor(|| {
        Histogram::new(latency::bucket_bounds())
    });
    let headers = Family::<Labels, Histogram>::new_with_constructor(|| {
        Histogram::new(latency::bucket_bounds())
    });
    let connections = Family::<Labels, Counter>::default();
    let received = Family::<Labels, Counter>::default();
    let sent = Family::<Labels, Counter>::default();
    let peer_requests = Family::<Labels, Counter>::default();
    let counter = |name| metrics::registered_name(name);
    registry.register(
        counter(metrics::REQUESTS_TOTAL),
        "Requests completed",
        requests.clone(),
    );
    registry.register(
        metrics::REQUEST_DURATION_SECONDS,
        "Request duration",
        durations.clone(),
    );
    // Series the profiler does not use, as the sidecar serves them: the parser must skip them.
    registry.register(
        metrics::RESPONSE_HEADERS_SECONDS,
        "Time to response headers",
        headers.clone(),
    );
    registry.register(
        counter(metrics::CONNECTIONS_OPENED_TOTAL),
        "Connections accepted",
        connections.clone(),
    );
    registry.register(
        counter(metrics::PEER_RECEIVED_BYTES_TOTAL),
        "Bytes from peer",
        received.clone(),
    );
    registry.register(
        counter(metrics::PEER_SENT_BYTES_TOTAL),
        "Bytes to peer",
        sent.clone(),
    );
    registry.register(
        counter(metrics::PEER_REQUESTS_TOTAL),
        "Requests from peer",
        peer_requests.clone(),
    );
    let port = |extra: Option<(&'static str, &str)>| {
        let mut labels: Labels = vec![
            (metrics::LABEL_PORT, "4700".into()),
            (metrics::LABEL_PROTOCOL, "http1".into()),
        ];
        labels.extend(extra.map(|(k, v)| (k, v.to_owned())));
        labels
    };
    for (class, count) in &traffic.requests {
        requests
            .get_or_create(&port(Some((metrics::LABEL_CLASS, class))))
            .inc_by(*count);
    }
    let histogram = durations.get_or_create(&port(None));
    let header_histogram = headers.get_or_create(&port(None));
    for duration in &traffic.durations {
        histogram.observe(*duration);
        header_histogram.observe(duration * 0.8);
    }
    drop((histogram, header_histogram));
    let opened: u64 = traffic.requests.iter().map(|(_, n)| n).sum();
    connections.get_or_create(&port(None)).inc_by(opened / 10);
    for (peer, rx, tx, reqs) in &traffic.peers {
        let labels: Labels = vec![(metrics::LABEL_PEER, peer.clone())];
        received.get_or_create(&labels).inc_by(*rx);
        sent.get_or_create(&labels).inc_by(*tx);
        peer_requests.get_or_create(&labels).inc_by(*reqs);
    }
    let mut body = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut body, &registry);
    body
}

/// A test double of a recommender with numbers simple enough to check by hand: requests at the
/// peak usage seen (+10% CPU, +20% memory), memory limit twice the request, and after an OOM
/// kill at least double the limit in force. Its checkpoint is its whole state, as JSON.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeakRecommender {
    /// Highest CPU seen, cores.
    pub cpu_peak: f64,
    /// Highest memory seen, bytes.
    pub memory_peak: f64,
    /// Observations folded in.
    pub observed: u64,
    /// Memory floor after OOM kills, bytes.
    pub memory_floor: f64,
    /// Requests per second last reported.
    pub requests_per_second: f64,
}

impl PeakRecommender {
    /// A factory building this double under the name of `kind`.
    pub fn factory(kind: snug_recommender::RecommenderKind) -> crate::model::RecommenderFactory {
        crate::model::RecommenderFactory::custom(
            kind,
            |_| Box::new(PeakRecommender::default()),
            |_, state| {
                serde_json::from_str::<PeakRecommender>(state)
                    .map(|r| Box::new(r) as Box<dyn snug_recommender::Recommender>)
                    .map_err(|e| snug_recommender::Error::Checkpoint(e.to_string()))
            },
        )
    }
}

impl snug_recommender::Recommender for PeakRecommender {
    fn name(&self) -> &'static str {
        "peak"
    }

    fn observe(&mut self, usage: snug_recommender::Usage) {
        self.cpu_peak = self.cpu_peak.max(usage.cpu_cores.unwrap_or(0.0));
        self.memory_peak = self.memory_peak.max(usage.memory_bytes.unwrap_or(0.0));
        self.observed += 1;
    }

    fn oom_killed(&mut self, _at: f64, memory_limit: f64) {
        self.memory_floor = self.memory_floor.max(memory_limit * 2.0);
    }

    fn observe_traffic(&mut self, _at: f64, requests_per_second: f64) {
        self.requests_per_second = requests_per_second;
    }

    fn recommend(
        &self,
        _at: f64,
        current: &snug_recommender::CurrentResources,
    ) -> Option<snug_recommender::Recommendation> {
        if self.observed < 2 {
            return None;
        }
        let cpu = self.cpu_peak * 1.1;
        let memory = (self.memory_peak * 1.2).max(self.memory_floor);
        Some(snug_recommender::Recommendation {
            cpu_request: cpu,
            cpu_limit: current.cpu_limit.map(|_| cpu * 2.0),
            memory_request: memory,
            memory_limit: memory * 2.0,
            cpu_lower_bound: cpu / 2.0,
            cpu_upper_bound: cpu * 2.0,
            memory_lower_bound: memory / 2.0,
            memory_upper_bound: memory * 2.0,
            confidence: 1.0,
        })
    }

    fn state_json(&self) -> snug_recommender::Result<String> {
        serde_json::to_string(self).map_err(|e| snug_recommender::Error::Checkpoint(e.to_string()))
    }
}
