//! A container's command line and environment as a kubelet would give them, resolved against
//! the pod, plus the one liberty the fake kubelet takes: the pod's network namespace is a
//! loopback address of its own, so addresses that mean "this pod" become that address.

use std::{collections::HashMap, net::Ipv4Addr};

use k8s_openapi::api::core::v1::{Container, Pod};
use snug_api::{ports, quantity};

/// Environment variable every process gets: the pod's address, which the sample app binds.
pub const POD_IP_ENV: &str = "SNUG_E2E_POD_IP";

/// What a pod-local process would see as "this pod": every address a container binds or dials
/// inside its pod. Locally the pod is one loopback address, so these become it.
const POD_LOCAL_HOSTS: [&str; 4] = ["0.0.0.0", "127.0.0.1", "localhost", "[::]"];

/// Node capacity the downward API reports for a resource without a limit.
const NODE_CPU_CORES: f64 = 2.0;
const NODE_MEMORY_BYTES: f64 = 8.0 * 1024.0 * 1024.0 * 1024.0;

/// Arguments after the entrypoint: `command[1..]` then `args` (the image's binary stands in
/// for `command[0]`), with `$(VAR)` references expanded and pod-local hosts rewritten.
pub fn arguments(container: &Container, env: &[(String, String)], ip: Ipv4Addr) -> Vec<String> {
    let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    container
        .command
        .iter()
        .flatten()
        .skip(1)
        .chain(container.args.iter().flatten())
        .map(|a| to_pod_address(&expand(a, &vars), ip))
        .collect()
}

/// The environment of `container`: its `env` entries in order (values, downward-API fields
/// and resources), with pod-local hosts rewritten; the sidecar's bind and app addresses
/// default to the pod's address (in a real pod their defaults, `0.0.0.0` and `127.0.0.1`,
/// mean exactly that).
pub fn environment(
    pod: &Pod,
    container: &Container,
    ip: Ipv4Addr,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => {
                let known: HashMap<&str, &str> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                expand(v, &known)
            }
            (None, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    field_value(pod, &field.field_path, ip)?
                } else if let Some(res) = &from.resource_field_ref {
                    let divisor = res.divisor.as_ref().map(|d| d.0.as_str()).unwrap_or("1");
                    resource_value(container, &res.resource, divisor)?
                } else {
                    return Err(format!(
                        "env {}: only fieldRef and resourceFieldRef are supported",
                        var.name
                    ));
                }
            }
            (None, None) => String::new(),
        };
        env.push((var.name.clone(), to_pod_address(&value, ip)));
    }
    for name in [ports::ENV_LISTEN_ADDR, ports::ENV_APP_ADDR] {
        if !env.iter().any(|(k, _)| k == name) {
            env.push((name.to_owned(), ip.to_string()));
        }
    }
    env.push((POD_IP_ENV.to_owned(), ip.to_string()));
    Ok(env)
}

fn field_value(pod: &Pod, path: &str, ip: Ipv4Addr) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let label = |map: &Option<std::collections::BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.hostIP" => ip.to_string(),
        "status.podIPs" | "status.hostIPs" => ip.to_string(),
        other => {
            if let Some(key) = bracketed(other, "metadata.labels") {
                label(&meta.labels, key)
            } else if let Some(key) = bracketed(other, "metadata.annotations") {
                label(&meta.annotations, key)
            } else {
                return Err(format!("fieldRef {other} is not supported"));
            }
        }
    })
}

/// `metadata.labels['key']` → `key`.
fn bracketed<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path
        .strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    Some(rest.trim_matches(|c| c == '\'' || c == '"'))
}

/// The downward API's value: the amount divided by the divisor, rounded up, as the kubelet
/// does; a missing limit reports the node's capacity.
fn resource_value(container: &Container, resource: &str, divisor: &str) -> Result<String, String> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("resourceFieldRef {resource} is not supported"))?;
    let resources = container.resources.as_ref();
    let map = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("resourceFieldRef {resource} is not supported")),
    };
    let amount = match map.and_then(|m| m.get(name)) {
        Some(q) => quantity::parse_quantity(q).map_err(|e| e.to_string())?,
        None if name == "cpu" => NODE_CPU_CORES,
        None if name == "memory" => NODE_MEMORY_BYTES,
        None => return Err(format!("resourceFieldRef {resource} is not supported")),
    };
    let divisor = quantity::parse(divisor).map_err(|e| e.to_string())?;
    if divisor <= 0.0 {
        return Err(format!(
            "resourceFieldRef {resource}: divisor must be positive"
        ));
    }
    Ok(format!("{}", (amount / divisor).ceil() as u64))
}

/// Expands `$(VAR)` from `vars`; `$$(VAR)` escapes; unknown references stay as written
/// (the kubelet's rules).
fn expand(text: &str, vars: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(escaped) = after.strip_prefix("$(") {
            out.push_str("$(");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            match vars.get(&body[..end]) {
                Some(v) => out.push_str(v),
                None => out.push_str(&rest[i..i + 2 + end + 1]),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Rewrites every pod-local host in `value` (as a whole token: `0.0.0.0:8080`,
/// `http://localhost/x`, but not `127.0.0.10`) to the pod's address.
pub fn to_pod_address(value: &str, ip: Ipv4Addr) -> String {
    let ip = ip.to_string();
    let mut out = value.to_owned();
    for host in POD_LOCAL_HOSTS {
        let mut from = 0;
        while let Some(pos) = out[from..].find(host).map(|p| p + from) {
            let end = pos + host.len();
            let token_char = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
            let before_ok = out[..pos]
                .chars()
                .next_back()
                .is_none_or(|c| !token_char(c));
            let after_ok = out[end..].chars().next().is_none_or(|c| !token_char(c));
            if before_ok && after_ok {
                out.replace_range(pos..end, &ip);
                from = pos + ip.len();
            } else {
                from = end;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 100);

    #[test]
    fn pod_local_hosts_become_the_pod_address() {
        assert_eq!(to_pod_address("0.0.0.0:8080", IP), "127.0.0.100:8080");
        assert_eq!(
            to_pod_address("http://localhost/x", IP),
            "http://127.0.0.100/x"
        );
        assert_eq!(to_pod_address("127.0.0.1", IP), "127.0.0.100");
        assert_eq!(to_pod_address("[::]:9", IP), "127.0.0.100:9");
        assert_eq!(to_pod_address("127.0.0.10:80", IP), "127.0.0.10:80");
        assert_eq!(to_pod_address("mylocalhost", IP), "mylocalhost");
        assert_eq!(to_pod_address("4700:8080", IP), "4700:8080");
    }

    #[test]
    fn expands_references_like_the_kubelet() {
        let vars: HashMap<&str, &str> = [("A", "1"), ("B", "two")].into();
        assert_eq!(expand("$(A)-$(B)", &vars), "1-two");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("$(C) $A $", &vars), "$(C) $A $");
    }

    #[test]
    fn environment_resolves_fields_and_defaults_the_sidecar_addresses() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": [{
                "name": "snug-sidecar",
                "image": "ghcr.io/snug-dev/snug-sidecar:0.1.0",
                "args": ["--name", "$(POD_NAME)"],
                "resources": {"limits": {"memory": "64Mi"}},
                "env": [
                    {"name": "SNUG_PORTS", "value": "4700:8080"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "SNUG_APP_ADDR", "value": "127.0.0.1"}
                ]
            }]}
        }))
        .unwrap();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let env = environment(&pod, container, IP).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("SNUG_PORTS"), Some("4700:8080"));
        assert_eq!(get("POD_NAME"), Some("web-1"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("MEM"), Some("64"));
        assert_eq!(get("SNUG_APP_ADDR"), Some("127.0.0.100"));
        assert_eq!(get("SNUG_LISTEN_ADDR"), Some("127.0.0.100"));
        assert_eq!(arguments(container, &env, IP), ["--name", "web-1"]);
    }

    #[test]
    fn unsupported_sources_are_refused_with_the_variable_name() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
            ]}]}
        }))
        .unwrap();
        let err = environment(&pod, &pod.spec.as_ref().unwrap().containers[0], IP).unwrap_err();
        assert!(err.contains("TOKEN"), "{err}");
    }
}
