//! Named-port takeover: the app's named TCP ports get new names, the sidecar takes the original
//! names (so Services with a named `targetPort` reach the sidecar), and the app's probes and
//! lifecycle hooks that used a renamed name are rewritten to the numeric port, so kubelet
//! still talks to the app directly.

use std::borrow::Cow;

use snug_api::{
    PortMapping,
    ports::{ADMIN_PORT, FIRST_INBOUND_PORT, LAST_INBOUND_PORT, RENAMED_PORT_PREFIX},
};

use crate::{
    patch::PodPatch,
    view::{ContainerView, HandlerView, IntOrStr, PodView},
};

/// Longest port name Kubernetes accepts (IANA service name).
const MAX_PORT_NAME: usize = 15;

/// What the takeover did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Takeover<'v> {
    /// The sidecar's ports: the original name and the sidecar's listen port, with the app port.
    pub taken: Vec<(&'v str, PortMapping)>,
    /// Ports left alone, as `container:port` (numeric-only, non-TCP, host ports, duplicates,
    /// or past the sidecar's listener range).
    pub not_intercepted: Vec<String>,
}

/// Whether the takeover can work in this pod at all: the sidecar's admin port must be free.
pub fn admin_port_free(pod: &PodView<'_>) -> bool {
    !pod.all_ports()
        .any(|p| p.container_port == i32::from(ADMIN_PORT))
}

/// Renames the named TCP ports of `app_containers` (indexes into `spec.containers`) and
/// rewrites their probes and hooks, recording each change in `patch`; returns the sidecar's
/// side of it.
pub fn take_over<'v>(
    pod: &'v PodView<'_>,
    app_containers: &[usize],
    patch: &mut PodPatch<'_>,
) -> Takeover<'v> {
    let mut takeover = Takeover::default();
    let Some(spec) = pod.spec.as_ref() else {
        return takeover;
    };
    // A pod has a handful of ports: lists searched in order beat hashing here.
    let mut names: Vec<Cow<'_, str>> = pod
        .all_ports()
        .filter_map(|p| p.name.as_deref().map(Cow::Borrowed))
        .collect();
    let mut used_numbers: Vec<i32> = pod.all_ports().map(|p| p.container_port).collect();
    let mut next_listen = FIRST_INBOUND_PORT;
    for &index in app_containers {
        let Some(container) = spec.containers.get(index) else {
            continue;
        };
        // This container's ports are the ones taken from here on.
        let first_taken = takeover.taken.len();
        for (port_index, port) in container.ports.iter().flatten().enumerate() {
            let label = || format!("{}:{}", container.name, port.container_port);
            let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) else {
                takeover.not_intercepted.push(label());
                continue;
            };
            let tcp = port.protocol.as_deref().is_none_or(|p| p == "TCP");
            let name_taken = takeover.taken.iter().any(|(taken, _)| *taken == name);
            if !tcp || port.host_port.is_some() || name_taken {
                takeover.not_intercepted.push(label());
                continue;
            }
            let Some(listen) = free_listen_port(&mut next_listen, &used_numbers) else {
                takeover.not_intercepted.push(label());
                continue;
            };
            used_numbers.push(i32::from(listen));
            let Ok(app) = u16::try_from(port.container_port) else {
                takeover.not_intercepted.push(label());
                continue;
            };
            let new_name = unique_name(name, |n| names.iter().any(|m| m == n));
            patch.replace_str(
                crate::path!["/spec/containers/", index, "/ports/", port_index, "/name"],
                &new_name,
            );
            names.push(Cow::Owned(new_name));
            takeover.taken.push((name, PortMapping { listen, app }));
        }
        rewrite_named_references(container, index, &takeover.taken[first_taken..], patch);
    }
    takeover
}

fn free_listen_port(next: &mut u16, used: &[i32]) -> Option<u16> {
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
pub fn unique_name(original: &str, taken: impl Fn(&str) -> bool) -> String {
    let mut full = [RENAMED_PORT_PREFIX, original].concat();
    let base = trim_name(&full, MAX_PORT_NAME);
    if !taken(base) {
        full.truncate(base.len());
        return full;
    }
    (2u32..)
        .map(|n| {
            let suffix = n.to_string();
            [trim_name(&full, MAX_PORT_NAME - suffix.len()), &suffix].concat()
        })
        .find(|candidate| !taken(candidate))
        .unwrap_or_else(|| base.to_owned()) // unreachable: the range is unbounded
}

/// The first `max` characters of `name`, without trailing hyphens.
fn trim_name(name: &str, max: usize) -> &str {
    // Port names are ASCII (IANA service names) once validated; cut at a character anyway.
    let cut = name
        .char_indices()
        .nth(max)
        .map_or(name.len(), |(at, _)| at);
    name[..cut].trim_end_matches('-')
}

/// Probes and lifecycle hooks of `container` (at `index` in `spec.containers`) that name a
/// renamed port get its number instead.
fn rewrite_named_references(
    container: &ContainerView<'_>,
    index: usize,
    renamed: &[(&str, PortMapping)],
    patch: &mut PodPatch<'_>,
) {
    if renamed.is_empty() {
        return;
    }
    let mut numeric = |handler: &Option<HandlerView<'_>>, field: &str| {
        let Some(handler) = handler else { return };
        for (action, port) in [
            ("httpGet", handler.http_get.as_ref()),
            ("tcpSocket", handler.tcp_socket.as_ref()),
        ] {
            if let Some(port) = port
                && let IntOrStr::Str(name) = &port.port
                && let Some((_, mapping)) = renamed.iter().find(|(n, _)| *name == **n)
            {
                patch.replace_int(
                    crate::path!["/spec/containers/", index, "/", field, "/", action, "/port"],
                    i64::from(mapping.app),
                );
            }
        }
    };
    numeric(&container.liveness_probe, "livenessProbe");
    numeric(&container.readiness_probe, "readinessProbe");
    numeric(&container.startup_probe, "startupProbe");
    if let Some(lifecycle) = &container.lifecycle {
        numeric(&lifecycle.post_start, "lifecycle/postStart");
        numeric(&lifecycle.pre_stop, "lifecycle/preStop");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashSet;

    #[test]
    fn renamed_ports_are_valid_unique_service_names() {
        let mut taken = HashSet::new();
        let a = unique_name("metrics-a", |n| taken.contains(n));
        assert_eq!(a, "snug-app-metric");
        taken.insert(a);
        let b = unique_name("metrics-b", |n| taken.contains(n));
        assert_eq!(b, "snug-app-metri2");
        assert_eq!(unique_name("https-admin", |_| false), "snug-app-https");
        assert_eq!(unique_name("http", |_| false), "snug-app-http");
        for name in [a_long_name(), "x".into(), "a-b".into()] {
            let n = unique_name(&name, |_| false);
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
        let used = [4700, 4702];
        let mut next = FIRST_INBOUND_PORT;
        assert_eq!(free_listen_port(&mut next, &used), Some(4701));
        assert_eq!(free_listen_port(&mut next, &used), Some(4703));
        let mut next = LAST_INBOUND_PORT;
        assert_eq!(free_listen_port(&mut next, &used), Some(LAST_INBOUND_PORT));
        assert_eq!(free_listen_port(&mut next, &used), None);
    }
}
