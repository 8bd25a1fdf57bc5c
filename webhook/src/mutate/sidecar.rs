//! The sidecar container as the webhook writes it into a pod.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, ContainerPort, EnvVar, HTTPGetAction, Probe, ResourceRequirements,
        SeccompProfile, SecurityContext,
    },
    apimachinery::pkg::{api::resource::Quantity, util::intstr::IntOrString},
};
use snug_api::{
    PortMap, PortMapping, WorkloadProfile,
    ports::{self, ADMIN_PORT, ADMIN_PORT_NAME, SIDECAR_CONTAINER_NAME, SIDECAR_UID},
};

use crate::config::InjectConfig;

/// Builds the sidecar: one port per taken-over name, the admin port, hardened security context.
pub fn sidecar_container(
    config: &InjectConfig,
    taken: &[(String, PortMapping)],
    profile: Option<&WorkloadProfile>,
    native: bool,
) -> Container {
    let map = PortMap(taken.iter().map(|(_, m)| *m).collect());
    let mut container_ports: Vec<ContainerPort> = taken
        .iter()
        .map(|(name, m)| tcp_port(name, m.listen))
        .collect();
    container_ports.push(tcp_port(ADMIN_PORT_NAME, ADMIN_PORT));
    Container {
        name: SIDECAR_CONTAINER_NAME.into(),
        image: Some(config.sidecar_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        env: Some(vec![
            env(ports::ENV_PORTS, map.to_string()),
            env(ports::ENV_ADMIN_PORT, ADMIN_PORT.to_string()),
        ]),
        ports: Some(container_ports),
        readiness_probe: Some(admin_probe(ports::READY_PATH, 5)),
        liveness_probe: Some(admin_probe(ports::LIVE_PATH, 10)),
        resources: Some(sidecar_resources(config, profile)),
        security_context: Some(hardened()),
        restart_policy: native.then(|| "Always".into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

fn tcp_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(port),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..Default::default()
    }
}

fn admin_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(i32::from(ADMIN_PORT)),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// Non-root with an explicit uid, so a pod-level `runAsUser: 0` cannot make the sidecar root.
fn hardened() -> SecurityContext {
    SecurityContext {
        run_as_user: Some(SIDECAR_UID),
        run_as_group: Some(SIDECAR_UID),
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// The sidecar's own entry of a confident profile, else the configured defaults.
fn sidecar_resources(
    config: &InjectConfig,
    profile: Option<&WorkloadProfile>,
) -> ResourceRequirements {
    let learned = profile
        .filter(|p| p.is_confident())
        .and_then(|p| p.container(SIDECAR_CONTAINER_NAME))
        .map(|c| &c.recommendation);
    let amounts = |a: &snug_api::ResourceAmounts| -> BTreeMap<String, Quantity> {
        let mut map = BTreeMap::new();
        if let Some(cpu) = &a.cpu {
            map.insert("cpu".into(), cpu.clone());
        }
        if let Some(memory) = &a.memory {
            map.insert("memory".into(), memory.clone());
        }
        map
    };
    if let Some(rec) = learned.filter(|r| r.requests.cpu.is_some() || r.requests.memory.is_some()) {
        let limits = amounts(&rec.limits);
        return ResourceRequirements {
            requests: Some(amounts(&rec.requests)),
            limits: (!limits.is_empty()).then_some(limits),
            ..Default::default()
        };
    }
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), config.sidecar_cpu.clone()),
            ("memory".into(), config.sidecar_memory.clone()),
        ])),
        // No CPU limit: throttling the proxy would show up as the app's latency.
        limits: Some(BTreeMap::from([(
            "memory".into(),
            config.sidecar_memory_limit.clone(),
        )])),
        ..Default::default()
    }
}
