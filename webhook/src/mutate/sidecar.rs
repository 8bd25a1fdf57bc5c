//! The sidecar container as the webhook writes it into a pod, written straight as JSON.

use std::{fmt::Write as _, sync::OnceLock};

use snug_api::{
    PortMap, PortMapping, WorkloadProfile,
    ports::{self, ADMIN_PORT, ADMIN_PORT_NAME, SIDECAR_CONTAINER_NAME, SIDECAR_UID},
};

use crate::{
    config::InjectConfig,
    patch::{push_int, push_str},
};

/// Writes the sidecar as a JSON object: one port per taken-over name, the admin port, a
/// hardened security context (non-root with an explicit uid, so a pod-level `runAsUser: 0`
/// cannot make the sidecar root). Fields whose API default is what the sidecar needs (a
/// port's `protocol: TCP`, a probe's `failureThreshold: 3`, `privileged: false`) are left to
/// the API server, which defaults the patched pod: the answer stays short.
pub fn write_sidecar(
    out: &mut String,
    config: &InjectConfig,
    taken: &[(&str, PortMapping)],
    profile: Option<&WorkloadProfile>,
    native: bool,
) {
    let fixed = Fixed::get();
    out.push_str(r#"{"env":[{"name":"#);
    push_str(out, ports::ENV_PORTS);
    out.push_str(r#","value":""#);
    PortMap::write(out, taken.iter().map(|(_, m)| m));
    out.push_str(r#""},"#);
    out.push_str(&fixed.admin_env);
    out.push_str(r#"],"image":"#);
    push_str(out, &config.sidecar_image);
    out.push_str(r#","imagePullPolicy":"IfNotPresent","livenessProbe":"#);
    out.push_str(&fixed.liveness);
    out.push_str(r#","name":"#);
    push_str(out, SIDECAR_CONTAINER_NAME);
    out.push_str(r#","ports":["#);
    for (name, m) in taken {
        tcp_port(out, name, m.listen);
        out.push(',');
    }
    out.push_str(&fixed.admin_port);
    out.push_str(r#"],"readinessProbe":"#);
    out.push_str(&fixed.readiness);
    out.push_str(r#","resources":"#);
    sidecar_resources(out, config, profile);
    if native {
        out.push_str(r#","restartPolicy":"Always""#);
    }
    out.push_str(&fixed.tail);
}

/// The parts of the sidecar that depend on no setting and no pod, written once per process.
struct Fixed {
    admin_env: String,
    liveness: String,
    admin_port: String,
    readiness: String,
    tail: String,
}

impl Fixed {
    fn get() -> &'static Fixed {
        static FIXED: OnceLock<Fixed> = OnceLock::new();
        FIXED.get_or_init(|| {
            let mut admin_env = String::from(r#"{"name":"#);
            push_str(&mut admin_env, ports::ENV_ADMIN_PORT);
            write!(admin_env, r#","value":"{ADMIN_PORT}"}}"#).ok();
            let mut liveness = String::new();
            admin_probe(&mut liveness, ports::LIVE_PATH, 10);
            let mut readiness = String::new();
            admin_probe(&mut readiness, ports::READY_PATH, 5);
            let mut admin_port = String::new();
            tcp_port(&mut admin_port, ADMIN_PORT_NAME, ADMIN_PORT);
            let tail = format!(
                concat!(
                    r#","securityContext":{{"allowPrivilegeEscalation":false,"capabilities":{{"drop":["ALL"]}},"#,
                    r#""readOnlyRootFilesystem":true,"runAsGroup":{uid},"runAsNonRoot":true,"#,
                    r#""runAsUser":{uid},"seccompProfile":{{"type":"RuntimeDefault"}}}},"#,
                    r#""terminationMessagePolicy":"FallbackToLogsOnError"}}"#
                ),
                uid = SIDECAR_UID
            );
            Fixed {
                admin_env,
                liveness,
                admin_port,
                readiness,
                tail,
            }
        })
    }
}

fn tcp_port(out: &mut String, name: &str, port: u16) {
    out.push_str(r#"{"containerPort":"#);
    push_int(out, port);
    out.push_str(r#","name":"#);
    push_str(out, name);
    out.push('}');
}

fn admin_probe(out: &mut String, path: &str, period: i32) {
    out.push_str(r#"{"httpGet":{"path":"#);
    push_str(out, path);
    write!(out, r#","port":{ADMIN_PORT}}},"periodSeconds":{period}}}"#).ok();
}

/// The sidecar's own entry of a confident profile, else the configured defaults (no CPU
/// limit: throttling the proxy would show up as the app's latency).
fn sidecar_resources(out: &mut String, config: &InjectConfig, profile: Option<&WorkloadProfile>) {
    let learned = profile
        .filter(|p| p.is_confident())
        .and_then(|p| p.container(SIDECAR_CONTAINER_NAME))
        .map(|c| &c.recommendation);
    let amounts = |out: &mut String, a: &snug_api::ResourceAmounts| {
        out.push('{');
        if let Some(cpu) = &a.cpu {
            out.push_str(r#""cpu":"#);
            push_str(out, &cpu.0);
        }
        if let Some(memory) = &a.memory {
            if a.cpu.is_some() {
                out.push(',');
            }
            out.push_str(r#""memory":"#);
            push_str(out, &memory.0);
        }
        out.push('}');
    };
    if let Some(rec) = learned.filter(|r| r.requests.cpu.is_some() || r.requests.memory.is_some()) {
        out.push('{');
        if rec.limits.cpu.is_some() || rec.limits.memory.is_some() {
            out.push_str(r#""limits":"#);
            amounts(out, &rec.limits);
            out.push(',');
        }
        out.push_str(r#""requests":"#);
        amounts(out, &rec.requests);
        out.push('}');
        return;
    }
    out.push_str(r#"{"limits":{"memory":"#);
    push_str(out, &config.sidecar_memory_limit.0);
    out.push_str(r#"},"requests":{"cpu":"#);
    push_str(out, &config.sidecar_cpu.0);
    out.push_str(r#","memory":"#);
    push_str(out, &config.sidecar_memory.0);
    out.push_str("}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Container;

    #[test]
    fn the_sidecar_is_a_valid_hardened_container() {
        let taken = [
            (
                "http",
                PortMapping {
                    listen: 4700,
                    app: 8080,
                },
            ),
            (
                "grpc",
                PortMapping {
                    listen: 4701,
                    app: 9090,
                },
            ),
        ];
        for native in [true, false] {
            let mut out = String::new();
            write_sidecar(&mut out, &InjectConfig::default(), &taken, None, native);
            let c: Container = serde_json::from_str(&out).unwrap();
            assert_eq!(c.name, SIDECAR_CONTAINER_NAME);
            assert_eq!(c.restart_policy.is_some(), native);
            let ports: Vec<_> = c
                .ports
                .unwrap()
                .into_iter()
                .map(|p| (p.name.unwrap(), p.container_port))
                .collect();
            assert_eq!(
                ports,
                [
                    ("http".to_owned(), 4700),
                    ("grpc".to_owned(), 4701),
                    ("snug-admin".to_owned(), 4790)
                ]
            );
            let env = c.env.unwrap();
            assert_eq!(env[0].value.as_deref(), Some("4700:8080,4701:9090"));
            let security = c.security_context.unwrap();
            assert_eq!(security.run_as_user, Some(SIDECAR_UID));
            assert_eq!(security.run_as_non_root, Some(true));
            assert_eq!(security.allow_privilege_escalation, Some(false));
            let resources = c.resources.unwrap();
            assert!(!resources.limits.unwrap().contains_key("cpu"));
            assert_eq!(resources.requests.unwrap()["cpu"].0, "10m");
        }
    }
}
