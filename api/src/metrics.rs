//! Metric names, as they appear in the Prometheus exposition (and so in PromQL).
//!
//! Counters end in `_total`; a registry that appends the suffix itself (prometheus-client) is
//! given the name without it ([`registered_name`]). Histograms expose `_bucket`, `_sum` and
//! `_count` series under the name given here, with the bucket layout of [`crate::latency`].

/// Label: the sidecar's inbound port a series belongs to.
pub const LABEL_PORT: &str = "port";
/// Label: `http1`, `h2`, `grpc` or `tcp`.
pub const LABEL_PROTOCOL: &str = "protocol";
/// Label: response class, `1xx`..`5xx` for HTTP, `grpc_ok`, `grpc_client_error`,
/// `grpc_server_error` for gRPC, `error` for a request that got no response.
pub const LABEL_CLASS: &str = "class";
/// Label: the client IP of per-peer series, or [`PEER_OTHER`].
pub const LABEL_PEER: &str = "peer";
/// Label: the kind of proxy error (`upstream_refused`, `header_timeout`, `client_abort`, ...).
pub const LABEL_KIND: &str = "kind";
/// The peer label value that collects every peer beyond the sidecar's peer limit.
pub const PEER_OTHER: &str = "other";

/// Sidecar, counter: requests completed, by port, protocol and class.
pub const REQUESTS_TOTAL: &str = "snug_requests_total";
/// Sidecar, histogram (seconds): time from request headers received to response headers sent,
/// by port and protocol.
pub const RESPONSE_HEADERS_SECONDS: &str = "snug_response_headers_seconds";
/// Sidecar, histogram (seconds): time from request headers received to the end of the response
/// body, by port and protocol.
pub const REQUEST_DURATION_SECONDS: &str = "snug_request_duration_seconds";
/// Sidecar, counter: connections accepted, by port and protocol.
pub const CONNECTIONS_OPENED_TOTAL: &str = "snug_connections_opened_total";
/// Sidecar, gauge: connections open now, by port and protocol.
pub const CONNECTIONS_OPEN: &str = "snug_connections_open";
/// Sidecar, histogram (seconds): lifetime of opaque TCP connections, by port.
pub const TCP_CONNECTION_DURATION_SECONDS: &str = "snug_tcp_connection_duration_seconds";
/// Sidecar, counter: bytes received from a peer (client → app), by peer.
pub const PEER_RECEIVED_BYTES_TOTAL: &str = "snug_peer_received_bytes_total";
/// Sidecar, counter: bytes sent to a peer (app → client), by peer.
pub const PEER_SENT_BYTES_TOTAL: &str = "snug_peer_sent_bytes_total";
/// Sidecar, counter: requests from a peer, by peer.
pub const PEER_REQUESTS_TOTAL: &str = "snug_peer_requests_total";
/// Sidecar, counter: connections from a peer, by peer.
pub const PEER_CONNECTIONS_TOTAL: &str = "snug_peer_connections_total";
/// Sidecar, counter: proxy errors by port and kind.
pub const PROXY_ERRORS_TOTAL: &str = "snug_proxy_errors_total";

/// Webhook, counter: admission reviews handled, by `outcome` (`patched`, `unchanged`, `skipped`,
/// `invalid`, `error`).
pub const WEBHOOK_ADMISSIONS_TOTAL: &str = "snug_webhook_admissions_total";
/// Webhook, histogram (seconds): admission handling time.
pub const WEBHOOK_ADMISSION_DURATION_SECONDS: &str = "snug_webhook_admission_duration_seconds";
/// Webhook, counter: container ports that could not be intercepted (numeric target ports).
pub const WEBHOOK_PORTS_NOT_INTERCEPTED_TOTAL: &str = "snug_webhook_ports_not_intercepted_total";

/// Webhook, counter: certificate reloads by `result` (`ok`, `error`).
pub const WEBHOOK_TLS_RELOADS_TOTAL: &str = "snug_webhook_tls_reloads_total";
/// Webhook, gauge: profiles held in the webhook's store.
pub const WEBHOOK_PROFILES: &str = "snug_webhook_profiles";
/// Webhook, counter: admissions answered with a warning, by `reason` (`wrong_kind`,
/// `unreadable_pod`, `internal`).
pub const WEBHOOK_WARNINGS_TOTAL: &str = "snug_webhook_warnings_total";

/// Profiler, gauge: the recommendation per `namespace`, `workload`, `container`, `resource`
/// (`cpu_request`, `cpu_limit` in cores; `memory_request`, `memory_limit` in bytes).
pub const RECOMMENDATION: &str = "snug_recommendation";
/// Profiler, counter: scrapes of sidecars by `outcome` (`ok`, `error`, `timeout`, `invalid`).
pub const PROFILER_SCRAPES_TOTAL: &str = "snug_profiler_scrapes_total";

/// The name to give prometheus-client, which appends `_total` to counters itself.
pub fn registered_name(exposed: &str) -> &str {
    exposed.strip_suffix("_total").unwrap_or(exposed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_prefixed_and_counters_strip_their_suffix() {
        for name in [
            REQUESTS_TOTAL,
            RESPONSE_HEADERS_SECONDS,
            PEER_SENT_BYTES_TOTAL,
            WEBHOOK_ADMISSIONS_TOTAL,
            RECOMMENDATION,
        ] {
            assert!(name.starts_with("snug_"), "{name}");
        }
        assert_eq!(registered_name(REQUESTS_TOTAL), "snug_requests");
        assert_eq!(registered_name(CONNECTIONS_OPEN), CONNECTIONS_OPEN);
    }
}
