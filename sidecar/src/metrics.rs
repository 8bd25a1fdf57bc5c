//! The sidecar's Prometheus metrics: one registry, names from `snug_api::metrics`, latency buckets
//! from `snug_api::latency` (so the profiler can merge histograms from every sidecar).
//!
//! Labelled series are resolved once per listener and protocol ([`ProtocolMetrics`]), and request
//! classes once per protocol, so serving a request only increments handles.

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use prometheus_client::{
    encoding::{EncodeLabel, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use snug_api::{
    latency::bucket_bounds,
    metrics::{
        CONNECTIONS_OPEN, CONNECTIONS_OPENED_TOTAL, LABEL_CLASS, LABEL_KIND, LABEL_PORT,
        LABEL_PROTOCOL, PROXY_ERRORS_TOTAL, REQUEST_DURATION_SECONDS, REQUESTS_TOTAL,
        RESPONSE_HEADERS_SECONDS, TCP_CONNECTION_DURATION_SECONDS, registered_name,
    },
};

pub use crate::class::{CLASS_COUNT, Class};
use crate::{histogram::LatencyHistogram, peers::PeerTable};

/// The `protocol` label of request and connection series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolLabel {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2 other than gRPC.
    H2,
    /// gRPC (HTTP/2 with a `application/grpc` content type).
    Grpc,
    /// Opaque TCP.
    Tcp,
}

impl ProtocolLabel {
    fn as_str(self) -> &'static str {
        match self {
            ProtocolLabel::Http1 => "http1",
            ProtocolLabel::H2 => "h2",
            ProtocolLabel::Grpc => "grpc",
            ProtocolLabel::Tcp => "tcp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PortLabels {
    port: u16,
    protocol: ProtocolLabel,
}

impl EncodeLabelSet for PortLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        label(encoder, LABEL_PORT, self.port)?;
        label(encoder, LABEL_PROTOCOL, self.protocol.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RequestLabels {
    port: u16,
    protocol: ProtocolLabel,
    class: Class,
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        label(encoder, LABEL_PORT, self.port)?;
        label(encoder, LABEL_PROTOCOL, self.protocol.as_str())?;
        label(encoder, LABEL_CLASS, self.class.label())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ErrorLabels {
    port: u16,
    kind: &'static str,
}

impl EncodeLabelSet for ErrorLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        label(encoder, LABEL_PORT, self.port)?;
        label(encoder, LABEL_KIND, self.kind)
    }
}

/// Writes one `key="value"` pair of a label set.
fn label(
    encoder: &mut LabelSetEncoder,
    key: &'static str,
    value: impl EncodeLabelValue,
) -> Result<(), fmt::Error> {
    EncodeLabel::encode(&(key, value), encoder.encode_label())
}

type HistogramFamily<L> = Family<L, LatencyHistogram, fn() -> LatencyHistogram>;

fn latency_histogram() -> LatencyHistogram {
    LatencyHistogram::new(bucket_bounds())
}

/// All of the sidecar's metrics.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    response_headers: HistogramFamily<PortLabels>,
    request_duration: HistogramFamily<PortLabels>,
    connections_opened: Family<PortLabels, Counter>,
    connections_open: Family<PortLabels, Gauge>,
    tcp_duration: HistogramFamily<PortLabels>,
    proxy_errors: Family<ErrorLabels, Counter>,
    /// Per-peer traffic, bounded.
    pub peers: Arc<PeerTable>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry, max_peers: usize) -> Self {
        let metrics = Self {
            requests: Family::default(),
            response_headers: Family::new_with_constructor(latency_histogram),
            request_duration: Family::new_with_constructor(latency_histogram),
            connections_opened: Family::default(),
            connections_open: Family::default(),
            tcp_duration: Family::new_with_constructor(latency_histogram),
            proxy_errors: Family::default(),
            peers: Arc::new(PeerTable::new(max_peers)),
        };
        registry.register(
            registered_name(REQUESTS_TOTAL),
            "Requests completed, by inbound port, protocol and class.",
            metrics.requests.clone(),
        );
        registry.register(
            RESPONSE_HEADERS_SECONDS,
            "Time from request headers received to response headers sent.",
            metrics.response_headers.clone(),
        );
        registry.register(
            REQUEST_DURATION_SECONDS,
            "Time from request headers received to the end of the response body.",
            metrics.request_duration.clone(),
        );
        registry.register(
            registered_name(CONNECTIONS_OPENED_TOTAL),
            "Connections accepted, by inbound port and protocol.",
            metrics.connections_opened.clone(),
        );
        registry.register(
            CONNECTIONS_OPEN,
            "Connections open now, by inbound port and protocol.",
            metrics.connections_open.clone(),
        );
        registry.register(
            TCP_CONNECTION_DURATION_SECONDS,
            "Lifetime of opaque TCP connections, by inbound port.",
            metrics.tcp_duration.clone(),
        );
        registry.register(
            registered_name(PROXY_ERRORS_TOTAL),
            "Proxy errors, by inbound port and kind.",
            metrics.proxy_errors.clone(),
        );
        registry.register_collector(Box::new(metrics.peers.clone()));
        metrics
    }

    /// Counts a proxy error of `kind` on `port`.
    pub fn proxy_error(&self, port: u16, kind: &'static str) {
        self.proxy_errors
            .get_or_create(&ErrorLabels { port, kind })
            .inc();
    }
}

/// The series of one inbound port, resolved lazily per protocol.
#[derive(Debug)]
pub struct PortMetrics {
    port: u16,
    metrics: Arc<Metrics>,
    protocols: [OnceLock<Arc<ProtocolMetrics>>; 4],
}

impl PortMetrics {
    /// The series of `port`.
    pub fn new(metrics: Arc<Metrics>, port: u16) -> Self {
        Self {
            port,
            metrics,
            protocols: Default::default(),
        }
    }

    /// The inbound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Counts a proxy error of `kind` on this port.
    pub fn proxy_error(&self, kind: &'static str) {
        self.metrics.proxy_error(self.port, kind);
    }

    /// The series of `protocol` on this port.
    pub fn protocol(&self, protocol: ProtocolLabel) -> Arc<ProtocolMetrics> {
        self.protocols[protocol as usize]
            .get_or_init(|| Arc::new(ProtocolMetrics::new(&self.metrics, self.port, protocol)))
            .clone()
    }
}

/// The resolved series of one port and protocol.
#[derive(Debug)]
pub struct ProtocolMetrics {
    labels: RequestLabels,
    requests: Family<RequestLabels, Counter>,
    classes: [OnceLock<Counter>; CLASS_COUNT],
    /// Time to response headers.
    pub response_headers: LatencyHistogram,
    /// Time to the end of the response body.
    pub request_duration: LatencyHistogram,
    /// Connections accepted.
    pub connections_opened: Counter,
    /// Connections open.
    pub connections_open: Gauge,
    /// Opaque TCP connection lifetimes.
    pub tcp_duration: LatencyHistogram,
}

impl ProtocolMetrics {
    fn new(metrics: &Metrics, port: u16, protocol: ProtocolLabel) -> Self {
        let labels = PortLabels { port, protocol };
        let resolve_histogram =
            |family: &HistogramFamily<PortLabels>| family.get_or_create(&labels).clone();
        Self {
            labels: RequestLabels {
                port,
                protocol,
                class: Class::Error,
            },
            requests: metrics.requests.clone(),
            classes: Default::default(),
            response_headers: resolve_histogram(&metrics.response_headers),
            request_duration: resolve_histogram(&metrics.request_duration),
            connections_opened: metrics.connections_opened.get_or_create(&labels).clone(),
            connections_open: metrics.connections_open.get_or_create(&labels).clone(),
            tcp_duration: resolve_histogram(&metrics.tcp_duration),
        }
    }

    /// Counts a completed request of `class`.
    pub fn request(&self, class: Class) {
        self.classes[class.index()]
            .get_or_init(|| {
                let labels = RequestLabels {
                    class,
                    ..self.labels.clone()
                };
                self.requests.get_or_create(&labels).clone()
            })
            .inc();
    }

    /// Counts a connection as opened; it counts as open until the guard is dropped.
    pub fn open_connection(self: &Arc<Self>) -> OpenConnection {
        self.connections_opened.inc();
        self.connections_open.inc();
        OpenConnection {
            metrics: self.clone(),
        }
    }
}

/// Keeps a connection counted in `snug_connections_open`.
#[derive(Debug)]
pub struct OpenConnection {
    metrics: Arc<ProtocolMetrics>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.connections_open.dec();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn histograms_use_the_shared_bucket_layout() {
        let mut registry = Registry::default();
        let metrics = Arc::new(Metrics::register(&mut registry, 8));
        let port = PortMetrics::new(metrics, 4700);
        let http = port.protocol(ProtocolLabel::Http1);
        http.response_headers.observe(Duration::from_micros(200));
        http.request(Class::Status(2));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let buckets = text
            .lines()
            .filter(|l| l.starts_with("snug_response_headers_seconds_bucket"))
            .count();
        assert_eq!(buckets, bucket_bounds().len() + 1, "{text}");
        assert!(
            text.contains("snug_requests_total{port=\"4700\",protocol=\"http1\",class=\"2xx\"} 1"),
            "{text}"
        );
    }
}
