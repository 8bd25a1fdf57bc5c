//! The overlays: cert-manager replaces the certs Job; monitoring scrapes every component and
//! its PromQL names only metrics that exist.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use snug_api::{keys, ports};

use crate::{
    HEALTH_PORT, promql,
    render::{rendered, strings},
};

#[test]
fn the_cert_manager_overlay_replaces_the_certs_job() {
    let r = rendered("manifests/overlays/cert-manager");
    assert!(!r.has("CronJob", "snug-webhook-certs-renew"));
    for kind in [
        "Job",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "NetworkPolicy",
    ] {
        assert!(
            !r.has(kind, "snug-webhook-certs"),
            "{kind} snug-webhook-certs left behind"
        );
    }
    let config = r.get("MutatingWebhookConfiguration", "snug-webhook");
    assert_eq!(
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "snug-system/snug-webhook"
    );
    let cert = r.get("Certificate", "snug-webhook");
    assert_eq!(cert["spec"]["secretName"], "snug-webhook-tls");
    assert!(strings(&cert["spec"]["dnsNames"]).contains(&"snug-webhook.snug-system.svc"));
    let issuer = cert["spec"]["issuerRef"]["name"].as_str().unwrap();
    assert!(
        r.has("Issuer", issuer),
        "Certificate issued by missing Issuer {issuer}"
    );
    assert_eq!(r.of_kind("Deployment").count(), 2, "the components stay");
}

#[test]
fn the_monitoring_overlay_scrapes_every_component() {
    let r = rendered("manifests/overlays/monitoring");
    let sidecars = r.get("PodMonitor", "snug-sidecars");
    assert_eq!(sidecars["spec"]["namespaceSelector"]["any"], true);
    assert_eq!(
        sidecars["spec"]["selector"]["matchLabels"][keys::INJECTED],
        "true"
    );
    assert_eq!(
        sidecars["spec"]["podMetricsEndpoints"][0]["port"],
        ports::ADMIN_PORT_NAME
    );
    assert_eq!(
        sidecars["spec"]["podMetricsEndpoints"][0]["path"],
        ports::METRICS_PATH
    );
    for component in ["snug-webhook", "snug-profiler"] {
        let monitor = r.get("ServiceMonitor", component);
        let service = r.get("Service", component);
        for (label, value) in monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap()
        {
            assert_eq!(
                &service["metadata"]["labels"][label], value,
                "{component}: selector"
            );
        }
        let port = &monitor["spec"]["endpoints"][0]["port"];
        let target = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == *port);
        assert_eq!(
            target.expect("ServiceMonitor port on the Service")["port"],
            HEALTH_PORT
        );
    }
    assert_eq!(
        r.get("ServiceMonitor", "snug-profiler")["spec"]["endpoints"][0]["honorLabels"],
        true
    );
}

#[test]
fn alerts_and_dashboard_query_only_metrics_that_exist() {
    let r = rendered("manifests/overlays/monitoring");

    let rule = r.get("PrometheusRule", "snug");
    let mut known = promql::snug_series();
    known.extend(promql::EXTERNAL_METRICS.iter().map(|m| m.to_string()));
    let rules: Vec<&Value> = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    known.extend(
        rules
            .iter()
            .filter_map(|r| r["record"].as_str())
            .map(str::to_owned),
    );
    let mut used = BTreeSet::new();
    for rule in &rules {
        let what = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
        used.extend(promql::metric_names(rule["expr"].as_str().unwrap(), what));
    }
    let alerts: Vec<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for alert in [
        "SnugWebhookErrors",
        "SnugProfilerScrapeFailures",
        "SnugOOMKills",
        "SnugRecommendationFarFromRequests",
    ] {
        assert!(alerts.contains(&alert), "missing alert {alert}");
    }

    let dashboard = r.get("ConfigMap", "snug-grafana-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value =
        serde_json::from_str(dashboard["data"]["snug.json"].as_str().unwrap()).unwrap();
    let mut panels_by_title = BTreeMap::new();
    for panel in json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
    {
        let title = panel["title"].as_str().unwrap();
        let mut names = BTreeSet::new();
        for target in panel["targets"].as_array().unwrap() {
            let expr = promql::substitute_grafana_variables(target["expr"].as_str().unwrap());
            names.extend(promql::metric_names(&expr, title));
        }
        used.extend(names.iter().cloned());
        panels_by_title.insert(title.to_owned(), names);
    }
    let unknown: Vec<_> = used.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "queries name metrics nobody exports: {unknown:?}"
    );
    // What the issue asks the dashboard to show, by the series behind it.
    let shows = |metric: &str| panels_by_title.values().any(|names| names.contains(metric));
    for metric in [
        snug_api::metrics::RECOMMENDATION.to_owned(),
        "snug:container_requests:max".to_owned(),
        format!("{}_bucket", snug_api::metrics::REQUEST_DURATION_SECONDS),
        snug_api::metrics::PEER_RECEIVED_BYTES_TOTAL.to_owned(),
        snug_api::metrics::PEER_SENT_BYTES_TOTAL.to_owned(),
        snug_api::metrics::PROFILER_OOM_KILLS_TOTAL.to_owned(),
    ] {
        assert!(shows(&metric), "no dashboard panel shows {metric}");
    }
    assert!(
        used.contains("kube_pod_container_resource_requests"),
        "requests compared with recommendations"
    );
}

#[test]
fn overlays_combine_through_the_monitoring_component() {
    let r = rendered("manifests/overlays/cert-manager-monitoring");
    assert!(
        !r.has("Job", "snug-webhook-certs"),
        "cert-manager replaces the Job"
    );
    assert!(r.has("Certificate", "snug-webhook"));
    for (kind, name) in [
        ("PodMonitor", "snug-sidecars"),
        ("ServiceMonitor", "snug-webhook"),
        ("ServiceMonitor", "snug-profiler"),
        ("PrometheusRule", "snug"),
        ("ConfigMap", "snug-grafana-dashboard"),
    ] {
        assert!(r.has(kind, name), "{kind} {name} missing");
    }
}
