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

/// Profiler, counter: cycles run, by `outcome` (`ok`, `error`).
pub const PROFILER_CYCLES_TOTAL: &str = "snug_profiler_cycles_total";
/// Profiler, histogram (seconds): wall time of one cycle (scrape, usage, recommend, write).
pub const PROFILER_CYCLE_DURATION_SECONDS: &str = "snug_profiler_cycle_duration_seconds";
/// Profiler, counter: profile writes by `outcome` (`written`, `error`).
pub const PROFILER_WRITES_TOTAL: &str = "snug_profiler_writes_total";
/// Profiler, counter: inputs skipped by `reason` (`no_owner`, `workload_gone`,
/// `unknown_pod`, `invalid_usage`).
pub const PROFILER_SKIPPED_TOTAL: &str = "snug_profiler_skipped_total";
/// Profiler, counter: usage reads (metrics.k8s.io per namespace, or procfs) by `outcome`
/// (`ok`, `unavailable`, `timeout`, `error`).
pub const PROFILER_USAGE_READS_TOTAL: &str = "snug_profiler_usage_reads_total";
/// Profiler, counter: container OOM kills seen (each restart once).
pub const PROFILER_OOM_KILLS_TOTAL: &str = "snug_profiler_oom_kills_total";
/// Profiler, gauge: 1 while this replica holds the leader Lease, else 0.
pub const PROFILER_LEADER: &str = "snug_profiler_leader";
/// Profiler, gauge: workloads with a profile in memory.
pub const PROFILER_WORKLOADS: &str = "snug_profiler_workloads";
/// Label of profiler counters: what happened (`ok`, `error`, `timeout`, `invalid`, ...).
pub const LABEL_OUTCOME: &str = "outcome";
/// Label of profiler counters: why an input was skipped.
pub const LABEL_REASON: &str = "reason";
/// Label of [`RECOMMENDATION`]: the workload's namespace.
pub const LABEL_NAMESPACE: &str = "namespace";
/// Label of [`RECOMMENDATION`]: the workload, `Kind/name`.
pub const LABEL_WORKLOAD: &str = "workload";
/// Label of [`RECOMMENDATION`]: the container name.
pub const LABEL_CONTAINER: &str = "container";
/// Label of [`RECOMMENDATION`]: `cpu_request`, `cpu_limit`, `memory_request`, `memory_limit`.
pub const LABEL_RESOURCE: &str = "resource";

/// The name to give prometheus-client, which appends `_total` to counters itself.
pub fn registered_name(exposed: &str) -> &str {
    exposed.strip_suffix("_total").unwrap_or(exposed)
}

/// Whether `name` (as its samples or a selector write it) names the metric family that
/// metadata lines (`# TYPE family ...`) call `family`: the same name, or a counter's with
/// `_total`.
pub fn names_family(name: &str, family: &str) -> bool {
    name == family || registered_name(name) == family
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
        assert!(names_family(REQUESTS_TOTAL, "snug_requests"));
        assert!(names_family(REQUESTS_TOTAL, REQUESTS_TOTAL));
        assert!(!names_family("snug_requests", REQUESTS_TOTAL));
        assert!(!names_family(REQUESTS_TOTAL, "snug_request"));
    }
}
