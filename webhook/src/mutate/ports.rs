//! Named-port takeover: the app's named TCP ports get new names, the sidecar takes the original
//! names (so Services with a named `targetPort` reach the sidecar), and the app's probes and
//! lifecycle hooks that used a renamed name are rewritten to the numeric port, so kubelet
//! still talks to the app directly.

use std::collections::HashSet;

use json_patch::jsonptr::{PointerBuf, Token};
use k8s_openapi::{
    api::core::v1::{Container, ContainerPort, LifecycleHandler, Pod, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use snug_api::{
    PortMapping,
    ports::{ADMIN_PORT, FIRST_INBOUND_PORT, LAST_INBOUND_PORT, RENAMED_PORT_PREFIX},
};

use crate::patch::{PodPatch, container_path, under};

/// Longest port name Kubernetes accepts (IANA service name).
const MAX_PORT_NAME: usize = 15;

/// What the takeover did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// The sidecar's ports: the original name and the sidecar's listen port, with the app port.
    pub taken: Vec<(String, PortMapping)>,
    /// Ports left alone, as `container:port` (numeric-only, non-TCP, host ports, duplicates,
    /// or past the sidecar's listener range).
    pub not_intercepted: Vec<String>,
}

/// Whether the takeover can work in this pod at all: the sidecar's admin port must be free.
pub fn admin_port_free(pod: &Pod) -> bool {
    !all_ports(pod).any(|p| p.container_port == i32::from(ADMIN_PORT))
}

/// Renames the named TCP ports of `app_containers` (indexes into `spec.containers`) and
/// rewrites their probes and hooks, recording each change in `patch`; returns the sidecar's
/// side of it.
pub fn take_over(pod: &mut Pod, app_containers: &[usize], patch: &mut PodPatch) -> Takeover {
    let mut takeover = Takeover::default();
    let Some(spec) = pod.spec.as_mut() else {
        return takeover;
    };
    let mut names: HashSet<String> = all_ports_of(spec).filter_map(|p| p.name.clone()).collect();
    let mut used_numbers: HashSet<i32> = all_ports_of(spec).map(|p| p.container_port).collect();
    let mut next_listen = FIRST_INBOUND_PORT;
    let mut taken_names = HashSet::new();
    for &index in app_containers {
        let Some(container) = spec.containers.get_mut(index) else {
            continue;
        };
        let path = container_path("containers", index);
        let mut renamed = Vec::new();
        for (port_index, port) in container.ports.iter_mut().flatten().enumerate() {
            let label = format!("{}:{}", container.name, port.container_port);
            let Some(name) = port.name.clone().filter(|n| !n.is_empty()) else {
                takeover.not_intercepted.push(label);
                continue;
            };
            let tcp = port.protocol.as_deref().is_none_or(|p| p == "TCP");
            if !tcp || port.host_port.is_some() || !taken_names.insert(name.clone()) {
                takeover.not_intercepted.push(label);
                continue;
            }
            let Some(listen) = free_listen_port(&mut next_listen, &used_numbers) else {
                takeover.not_intercepted.push(label);
                continue;
            };
            used_numbers.insert(i32::from(listen));
            let Ok(app) = u16::try_from(port.container_port) else {
                takeover.not_intercepted.push(label);
                continue;
            };
            let new_name = unique_name(&name, &names);
            names.insert(new_name.clone());
            let name_path = under(
                &path,
                [
                    Token::new("ports"),
                    Token::from(port_index),
                    Token::new("name"),
                ],
            );
            patch.replace(name_path, new_name.clone().into());
            port.name = Some(new_name);
            renamed.push((name.clone(), port.container_port));
            takeover.taken.push((name, PortMapping { listen, app }));
        }
        rewrite_named_references(container, &path, &renamed, patch);
    }
    takeover
}

fn all_ports_of(
    spec: &k8s_openapi::api::core::v1::PodSpec,
) -> impl Iterator<Item = &ContainerPort> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
}

fn all_ports(pod: &Pod) -> impl Iterator<Item = &ContainerPort> {
    pod.spec.iter().flat_map(all_ports_of)
}

fn free_listen_port(next: &mut u16, used: &HashSet<i32>) -> Option<u16> {
    while *next <= LAST_INBOUND_PORT {
        let candidate = *next;
        *next += 1;
        if !used.contains(&i32::from(candidate)) {
            return Some(candidate);
        }
    }
    None
}

/// `snug-app-<name>`, cut to 15 characters without a trailing hyphen, made unique with a digit
/// suffix when the cut collides with a name already in the pod.
pub fn unique_name(original: &str, taken: &HashSet<String>) -> String {
    let full = format!("{RENAMED_PORT_PREFIX}{original}");
    let base = trim_name(&full, MAX_PORT_NAME);
    if !taken.contains(&base) {
        return base;
    }
    (2u32..)
        .map(|n| {
            let suffix = n.to_string();
            format!("{}{suffix}", trim_name(&full, MAX_PORT_NAME - suffix.len()))
        })
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or(base) // unreachable: the range is unbounded and `taken` is finite
}

fn trim_name(name: &str, max: usize) -> String {
    // Port names are ASCII (IANA service names), so byte truncation is safe; guard anyway.
    let cut: String = name.chars().take(max).collect();
    cut.trim_end_matches('-').to_owned()
}

/// Probes and lifecycle hooks of `container` (at `path`) that name a renamed port get its
/// number instead.
fn rewrite_named_references(
    container: &mut Container,
    path: &PointerBuf,
    renamed: &[(String, i32)],
    patch: &mut PodPatch,
) {
    if renamed.is_empty() {
        return;
    }
    let mut numeric = |port: &mut IntOrString, at: &[&str]| {
        if let IntOrString::String(name) = port
            && let Some(&(_, number)) = renamed.iter().find(|(n, _)| n == name)
        {
            *port = IntOrString::Int(number);
            patch.replace(
                under(path, at.iter().copied().chain(["port"])),
                number.into(),
            );
        }
    };
    let probes: [(&str, &mut Option<Probe>); 3] = [
        ("livenessProbe", &mut container.liveness_probe),
        ("readinessProbe", &mut container.readiness_probe),
        ("startupProbe", &mut container.startup_probe),
    ];
    for (field, probe) in probes {
        let Some(probe) = probe else { continue };
        if let Some(get) = probe.http_get.as_mut() {
            numeric(&mut get.port, &[field, "httpGet"]);
        }
        if let Some(tcp) = probe.tcp_socket.as_mut() {
            numeric(&mut tcp.port, &[field, "tcpSocket"]);
        }
    }
    let Some(lifecycle) = container.lifecycle.as_mut() else {
        return;
    };
    let hooks: [(&str, &mut Option<LifecycleHandler>); 2] = [
        ("postStart", &mut lifecycle.post_start),
        ("preStop", &mut lifecycle.pre_stop),
    ];
    for (field, hook) in hooks {
        let Some(hook) = hook else { continue };
        if let Some(get) = hook.http_get.as_mut() {
            numeric(&mut get.port, &["lifecycle", field, "httpGet"]);
        }
        if let Some(tcp) = hook.tcp_socket.as_mut() {
            numeric(&mut tcp.port, &["lifecycle", field, "tcpSocket"]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_ports_are_valid_unique_service_names() {
        let mut taken = HashSet::new();
        let a = unique_name("metrics-a", &taken);
        assert_eq!(a, "snug-app-metric");
        taken.insert(a);
        let b = unique_name("metrics-b", &taken);
        assert_eq!(b, "snug-app-metri2");
        assert_eq!(
            unique_name("https-admin", &HashSet::new()),
            "snug-app-https"
        );
        assert_eq!(unique_name("http", &HashSet::new()), "snug-app-http");
        for name in [a_long_name(), "x".into(), "a-b".into()] {
            let n = unique_name(&name, &HashSet::new());
            assert!(
                n.len() <= 15 && !n.ends_with('-') && !n.contains("--"),
                "{n}"
            );
        }
    }

    fn a_long_name() -> String {
        "abcdefghijklmno".into()
    }

    #[test]
    fn listen_ports_skip_numbers_the_pod_uses() {
        let used: HashSet<i32> = [4700, 4702].into();
        let mut next = FIRST_INBOUND_PORT;
        assert_eq!(free_listen_port(&mut next, &used), Some(4701));
        assert_eq!(free_listen_port(&mut next, &used), Some(4703));
        let mut next = LAST_INBOUND_PORT;
        assert_eq!(free_listen_port(&mut next, &used), Some(LAST_INBOUND_PORT));
        assert_eq!(free_listen_port(&mut next, &used), None);
    }
}
