//! PromQL in alerts, recording rules and the dashboard: it must parse, and every metric it names
//! must be one Snug exports (the constants in `snug_api::metrics`), a recording rule defined
//! beside it, or a series of the documented outside sources.

use std::collections::BTreeSet;

use promql_parser::parser::{self, Expr};
use snug_api::metrics;

/// Metrics from outside Snug the monitoring overlay relies on (kube-state-metrics, the API
/// server, Prometheus itself); docs/monitoring.md names their sources.
pub const EXTERNAL_METRICS: [&str; 9] = [
    "up",
    "kube_pod_owner",
    "kube_replicaset_owner",
    "kube_pod_container_resource_requests",
    "kube_pod_container_status_restarts_total",
    "kube_pod_container_status_last_terminated_reason",
    "kube_pod_container_info",
    "kube_pod_init_container_info",
    "apiserver_admission_webhook_fail_open_count",
];

/// Every series name Snug's components expose, histograms with their `_bucket`/`_sum`/`_count`.
pub fn snug_series() -> BTreeSet<String> {
    let histograms = [
        metrics::RESPONSE_HEADERS_SECONDS,
        metrics::REQUEST_DURATION_SECONDS,
        metrics::TCP_CONNECTION_DURATION_SECONDS,
        metrics::WEBHOOK_ADMISSION_DURATION_SECONDS,
        metrics::PROFILER_CYCLE_DURATION_SECONDS,
    ];
    let plain = [
        metrics::REQUESTS_TOTAL,
        metrics::CONNECTIONS_OPENED_TOTAL,
        metrics::CONNECTIONS_OPEN,
        metrics::PEER_RECEIVED_BYTES_TOTAL,
        metrics::PEER_SENT_BYTES_TOTAL,
        metrics::PEER_REQUESTS_TOTAL,
        metrics::PEER_CONNECTIONS_TOTAL,
        metrics::PROXY_ERRORS_TOTAL,
        metrics::WEBHOOK_ADMISSIONS_TOTAL,
        metrics::WEBHOOK_PORTS_NOT_INTERCEPTED_TOTAL,
        metrics::WEBHOOK_TLS_RELOADS_TOTAL,
        metrics::WEBHOOK_PROFILES,
        metrics::WEBHOOK_WARNINGS_TOTAL,
        metrics::RECOMMENDATION,
        metrics::PROFILER_SCRAPES_TOTAL,
        metrics::PROFILER_CYCLES_TOTAL,
        metrics::PROFILER_WRITES_TOTAL,
        metrics::PROFILER_SKIPPED_TOTAL,
        metrics::PROFILER_USAGE_READS_TOTAL,
        metrics::PROFILER_OOM_KILLS_TOTAL,
        metrics::PROFILER_LEADER,
        metrics::PROFILER_WORKLOADS,
    ];
    let mut names: BTreeSet<String> = plain.iter().map(|n| n.to_string()).collect();
    for h in histograms {
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{h}{suffix}"));
        }
    }
    names
}

/// Grafana's variables replaced by values PromQL accepts, so dashboard queries parse.
pub fn substitute_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("${namespace}", ".*")
        .replace("$namespace", ".*")
        .replace("${workload}", ".*")
        .replace("$workload", ".*")
}

/// The metric names an expression selects; panics with the parser's message if it is not PromQL.
pub fn metric_names(expr: &str, what: &str) -> BTreeSet<String> {
    let ast =
        parser::parse(expr).unwrap_or_else(|e| panic!("{what}: invalid PromQL {expr:?}: {e}"));
    let mut names = BTreeSet::new();
    collect(&ast, &mut names);
    assert!(!names.is_empty(), "{what}: {expr:?} selects no metric");
    names
}

fn collect(expr: &Expr, names: &mut BTreeSet<String>) {
    match expr {
        Expr::Aggregate(e) => {
            collect(&e.expr, names);
            if let Some(p) = &e.param {
                collect(p, names);
            }
        }
        Expr::Unary(e) => collect(&e.expr, names),
        Expr::Binary(e) => {
            collect(&e.lhs, names);
            collect(&e.rhs, names);
        }
        Expr::Paren(e) => collect(&e.expr, names),
        Expr::Subquery(e) => collect(&e.expr, names),
        Expr::VectorSelector(vs) => names.extend(vs.name.clone()),
        Expr::MatrixSelector(ms) => names.extend(ms.vs.name.clone()),
        Expr::Call(call) => call.args.args.iter().for_each(|a| collect(a, names)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

#[test]
fn metric_names_walks_every_part_of_an_expression() {
    let names = metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) / on (x) (b > 0) or -c",
        "example",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["a_bucket", "b", "c"]
    );
}

#[test]
#[should_panic(expected = "invalid PromQL")]
fn metric_names_rejects_what_prometheus_would() {
    metric_names("sum(rate(snug_requests_total[5m])", "unbalanced");
}
