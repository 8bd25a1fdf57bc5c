//! Structural checks for kinds whose schemas live in other projects' CRDs (Prometheus Operator,
//! cert-manager), which `kubernetes-validate` cannot see: the fields used must be ones those
//! CRDs define, so a typo (`namespaceSelectors`, `podMetricEndpoints`) fails here rather than
//! being pruned silently by the API server.

use serde_json::Value;

/// Fields each kind's `spec` may have (the subset of the upstream schema Snug uses or may use).
fn spec_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "PodMonitor" => &[
            "selector",
            "namespaceSelector",
            "podMetricsEndpoints",
            "jobLabel",
            "podTargetLabels",
            "sampleLimit",
        ],
        "ServiceMonitor" => &[
            "selector",
            "namespaceSelector",
            "endpoints",
            "jobLabel",
            "targetLabels",
            "podTargetLabels",
            "sampleLimit",
        ],
        "PrometheusRule" => &["groups"],
        "Certificate" => &[
            "secretName",
            "dnsNames",
            "commonName",
            "duration",
            "renewBefore",
            "isCA",
            "privateKey",
            "usages",
            "issuerRef",
            "secretTemplate",
        ],
        "Issuer" => &["selfSigned", "ca"],
        other => panic!("no structural check for kind {other}"),
    }
}

/// Fields of one scrape endpoint (ServiceMonitor `endpoints[]`, PodMonitor
/// `podMetricsEndpoints[]`).
const ENDPOINT_FIELDS: [&str; 9] = [
    "port",
    "path",
    "interval",
    "scrapeTimeout",
    "honorLabels",
    "relabelings",
    "metricRelabelings",
    "scheme",
    "params",
];

/// Fields of a relabeling rule.
const RELABEL_FIELDS: [&str; 7] = [
    "sourceLabels",
    "separator",
    "targetLabel",
    "regex",
    "modulus",
    "replacement",
    "action",
];

/// Fields of a rule in a PrometheusRule group.
const RULE_FIELDS: [&str; 6] = ["record", "alert", "expr", "for", "labels", "annotations"];

fn only_fields(value: &Value, allowed: &[&str], what: &str) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {value}"));
    for key in object.keys() {
        assert!(
            allowed.contains(&key.as_str()),
            "{what}: unknown field {key:?} (allowed: {allowed:?})"
        );
    }
}

/// Checks one object of a CRD-backed kind; panics with the offending field.
pub fn check(object: &Value) {
    let kind = object["kind"].as_str().expect("kind");
    let name = object["metadata"]["name"].as_str().unwrap_or("<unnamed>");
    let what = format!("{kind} {name}");
    let group = match kind {
        "PodMonitor" | "ServiceMonitor" | "PrometheusRule" => "monitoring.coreos.com/v1",
        _ => "cert-manager.io/v1",
    };
    assert_eq!(object["apiVersion"], group, "{what}: apiVersion");
    only_fields(object, &["apiVersion", "kind", "metadata", "spec"], &what);
    assert!(
        object["metadata"]["namespace"].is_string(),
        "{what}: namespaced, needs a namespace"
    );
    let spec = &object["spec"];
    only_fields(spec, spec_fields(kind), &format!("{what} spec"));
    let endpoints = match kind {
        "PodMonitor" => Some(&spec["podMetricsEndpoints"]),
        "ServiceMonitor" => Some(&spec["endpoints"]),
        _ => None,
    };
    if let Some(endpoints) = endpoints {
        assert!(spec["selector"].is_object(), "{what}: selector");
        let endpoints = endpoints
            .as_array()
            .unwrap_or_else(|| panic!("{what}: endpoints"));
        assert!(!endpoints.is_empty(), "{what}: no endpoints");
        for endpoint in endpoints {
            only_fields(endpoint, &ENDPOINT_FIELDS, &format!("{what} endpoint"));
            assert!(
                endpoint["port"].is_string(),
                "{what}: endpoint port by name"
            );
            for rule in endpoint["relabelings"].as_array().into_iter().flatten() {
                only_fields(rule, &RELABEL_FIELDS, &format!("{what} relabeling"));
            }
        }
    }
    if kind == "PrometheusRule" {
        for group in spec["groups"].as_array().expect("groups") {
            only_fields(
                group,
                &["name", "interval", "rules"],
                &format!("{what} group"),
            );
            for rule in group["rules"].as_array().expect("rules") {
                only_fields(rule, &RULE_FIELDS, &format!("{what} rule"));
                assert!(
                    rule["expr"].is_string(),
                    "{what}: rule without expr: {rule}"
                );
                assert!(
                    rule["record"].is_string() != rule["alert"].is_string(),
                    "{what}: a rule is either a record or an alert: {rule}"
                );
            }
        }
    }
    if kind == "Certificate" {
        assert!(spec["secretName"].is_string(), "{what}: secretName");
        assert!(
            spec["issuerRef"]["name"].is_string(),
            "{what}: issuerRef.name"
        );
    }
}
