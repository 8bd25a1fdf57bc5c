//! What the demo prints: the profile as `kubectl get workloadprofiles` shows it (columns taken
//! from the CRD itself), the per-peer traffic, and what the webhook's patch did to the pod.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::CustomResourceExt;
use serde_json::Value;
use snug_api::WorkloadProfile;

/// The profile as `kubectl get workloadprofiles -n <ns>` prints it: NAME, then the CRD's
/// default printer columns.
pub fn profile_table(profile: &WorkloadProfile) -> String {
    let crd = WorkloadProfile::crd();
    let columns = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.additional_printer_columns.clone())
        .unwrap_or_default();
    let json = serde_json::to_value(profile).unwrap_or_default();
    let mut header = vec!["NAME".to_owned()];
    let mut row = vec![profile.metadata.name.clone().unwrap_or_default()];
    for column in columns.iter().filter(|c| c.priority.unwrap_or(0) == 0) {
        header.push(column.name.to_uppercase());
        row.push(match column.type_.as_str() {
            "date" => age(lookup(&json, &column.json_path)),
            _ => lookup(&json, &column.json_path)
                .map(plain)
                .unwrap_or_else(|| "<none>".to_owned()),
        });
    }
    table(&[header, row])
}

/// Who talks to the workload, as the profile records it.
pub fn peers(profile: &WorkloadProfile) -> String {
    let mut rows = vec![vec![
        "PEER".to_owned(),
        "RECEIVED/S".to_owned(),
        "SENT/S".to_owned(),
        "REQUESTS/MIN".to_owned(),
    ]];
    for peer in profile.status.iter().flat_map(|s| &s.peers) {
        rows.push(vec![
            peer.peer.clone(),
            bytes(peer.received_bytes_per_second),
            bytes(peer.sent_bytes_per_second),
            format!("{:.0}", peer.requests_per_minute),
        ]);
    }
    table(&rows)
}

/// What the patch changed: containers added, ports renamed, resources before → after, and the
/// labels and annotations the webhook wrote.
pub fn patch_summary(before: &Value, after: &Pod) -> String {
    let before: Pod = serde_json::from_value(before.clone()).unwrap_or_default();
    let mut out = String::new();
    let old = containers(&before);
    for c in containers(after)
        .into_iter()
        .filter(|c| !old.iter().any(|o| o.name == c.name))
    {
        let ports: Vec<String> = c
            .ports
            .iter()
            .flatten()
            .map(|p| format!("{}:{}", p.name.as_deref().unwrap_or("-"), p.container_port))
            .collect();
        let _ = writeln!(
            out,
            "  + container {} ({}), ports {}",
            c.name,
            c.image.as_deref().unwrap_or("-"),
            ports.join(", ")
        );
        for env in c.env.iter().flatten() {
            let _ = writeln!(
                out,
                "      env {}={}",
                env.name,
                env.value.as_deref().unwrap_or("")
            );
        }
    }
    for (was, now) in old.iter().filter_map(|o| {
        containers(after)
            .into_iter()
            .find(|c| c.name == o.name)
            .map(|c| (*o, c))
    }) {
        for (p, q) in was.ports.iter().flatten().zip(now.ports.iter().flatten()) {
            if p.name != q.name {
                let _ = writeln!(
                    out,
                    "  ~ {} port {} renamed {} (the sidecar took the name)",
                    was.name,
                    p.container_port,
                    q.name.as_deref().unwrap_or("-")
                );
            }
        }
        let probe_port = |c: &Container| {
            c.readiness_probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .map(|g| match &g.port {
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => {
                        n.to_string()
                    }
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => {
                        s.clone()
                    }
                })
        };
        if let (Some(p), Some(q)) = (probe_port(was), probe_port(now))
            && p != q
        {
            let _ = writeln!(
                out,
                "  ~ {} readinessProbe port {p} → {q} (kubelet probes bypass the sidecar)",
                was.name
            );
        }
        let _ = writeln!(out, "  ~ {} resources:", was.name);
        let _ = writeln!(out, "      requests  {}", resources(was, now, true));
        let _ = writeln!(out, "      limits    {}", resources(was, now, false));
    }
    let labels = added(&before.metadata.labels, &after.metadata.labels);
    let annotations = added(&before.metadata.annotations, &after.metadata.annotations);
    for (key, value) in labels.into_iter().chain(annotations) {
        let _ = writeln!(out, "  + {key}: {}", shorten(&value, 100));
    }
    out
}

fn containers(pod: &Pod) -> Vec<&Container> {
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .collect()
}

fn resources(was: &Container, now: &Container, requests: bool) -> String {
    let pick = |c: &Container, name: &str| {
        let r = c.resources.as_ref()?;
        let map = if requests { &r.requests } else { &r.limits };
        map.as_ref()?.get(name).map(|q| q.0.clone())
    };
    ["cpu", "memory"]
        .iter()
        .map(|name| {
            let old = pick(was, name).unwrap_or_else(|| "-".into());
            let new = pick(now, name).unwrap_or_else(|| "-".into());
            format!("{name} {old:>5} → {new:<6}")
        })
        .collect::<Vec<_>>()
        .join("   ")
}

fn added(
    before: &Option<std::collections::BTreeMap<String, String>>,
    after: &Option<std::collections::BTreeMap<String, String>>,
) -> Vec<(String, String)> {
    after
        .iter()
        .flatten()
        .filter(|(k, v)| before.as_ref().and_then(|b| b.get(*k)) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Follows a simple JSONPath of the kind printer columns use (`.status.summary.cpu`).
fn lookup<'a>(json: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.')
        .split('.')
        .try_fold(json, |v, key| v.get(key))
        .filter(|v| !v.is_null())
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) if s.is_empty() => "<none>".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn age(timestamp: Option<&Value>) -> String {
    let Some(ts) = timestamp.and_then(Value::as_str) else {
        return "<unknown>".to_owned();
    };
    let Ok(then) = ts.parse::<jiff::Timestamp>() else {
        return "<unknown>".to_owned();
    };
    let seconds = (jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

fn bytes(per_second: f64) -> String {
    match per_second {
        b if b >= 1024.0 * 1024.0 => format!("{:.1} MiB", b / 1024.0 / 1024.0),
        b if b >= 1024.0 => format!("{:.1} KiB", b / 1024.0),
        b => format!("{b:.0} B"),
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}

fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("   ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn profile_table_uses_the_crd_columns_and_values() {
        let profile: WorkloadProfile = serde_json::from_value(json!({
            "apiVersion": "snug.dev/v1alpha1", "kind": "WorkloadProfile",
            "metadata": {"name": "deployment-web", "namespace": "shop"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
            "status": {"summary": {"workload": "Deployment/web", "cpu": "120m", "memory": "96Mi",
                "latencyP99": "31ms", "requestsPerSecond": "42.0", "confidence": "80%"}}
        }))
        .unwrap();
        let text = profile_table(&profile);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].split_whitespace().eq([
            "NAME",
            "WORKLOAD",
            "CPU",
            "MEMORY",
            "P99",
            "RPS",
            "CONFIDENCE",
            "AGE"
        ]));
        assert!(lines[1].split_whitespace().eq([
            "deployment-web",
            "Deployment/web",
            "120m",
            "96Mi",
            "31ms",
            "42.0",
            "80%",
            "<unknown>"
        ]));
    }

    #[test]
    fn patch_summary_shows_added_sidecar_and_resource_change() {
        let before = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app",
            "resources": {"requests": {"cpu": "1"}}}]}});
        let after: Pod = serde_json::from_value(json!({"metadata": {"name": "p",
            "labels": {"snug.dev/injected": "true"}}, "spec": {"containers": [
            {"name": "app", "resources": {"requests": {"cpu": "120m"}}},
            {"name": "snug-sidecar", "image": "sidecar:1", "ports": [{"name": "http", "containerPort": 4700}]}
        ]}}))
        .unwrap();
        let text = patch_summary(&before, &after);
        assert!(
            text.contains("+ container snug-sidecar (sidecar:1), ports http:4700"),
            "{text}"
        );
        assert!(text.contains("cpu     1 → 120m"), "{text}");
        assert!(text.contains("+ snug.dev/injected: true"), "{text}");
    }
}
