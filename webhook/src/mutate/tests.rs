use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::util::intstr::IntOrString};
use serde_json::json;
use snug_api::WorkloadProfile;

use super::*;
use crate::store::{LimitMax, StaticNamespaces, StaticProfiles};

fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).unwrap()
}

fn web_pod() -> Pod {
    pod(json!({
        "metadata": {
            "generateName": "web-5d4f8c7b9-",
            "labels": {"app": "web", "pod-template-hash": "5d4f8c7b9"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4f8c7b9",
                                 "uid": "1", "controller": true}]
        },
        "spec": {
            "securityContext": {"runAsUser": 0},
            "containers": [{
                "name": "app", "image": "web:1",
                "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                "livenessProbe": {"tcpSocket": {"port": 8080}},
                "lifecycle": {"preStop": {"httpGet": {"path": "/quit", "port": "http"}}},
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
            }]
        }
    }))
}

fn profile(confidence: f64) -> WorkloadProfile {
    serde_json::from_value(json!({
        "apiVersion": "snug.dev/v1alpha1", "kind": "WorkloadProfile",
        "metadata": {"name": "deployment-web", "namespace": "shop", "resourceVersion": "42"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
        "status": {"confidence": confidence, "containers": [
            {"name": "app", "recommendation": {"requests": {"cpu": "250m", "memory": "300Mi"}}},
            {"name": "snug-sidecar", "recommendation": {"requests": {"cpu": "5m", "memory": "20Mi"}}}
        ]}
    }))
    .unwrap()
}

struct World {
    config: InjectConfig,
    profiles: StaticProfiles,
    namespaces: StaticNamespaces,
    native: bool,
}

impl World {
    fn new() -> Self {
        World {
            config: InjectConfig::default(),
            profiles: StaticProfiles::new([profile(0.9)]),
            namespaces: StaticNamespaces::default(),
            native: true,
        }
    }

    fn decide(&self, namespace: &str, pod: &Pod) -> Decision {
        let inputs = Inputs {
            config: &self.config,
            native_sidecars: self.native,
            profiles: &self.profiles,
            namespaces: &self.namespaces,
        };
        let mut text = serde_json::to_vec(pod).unwrap();
        let view: PodView = crate::view::read(&mut text).unwrap();
        decide(inputs, namespace, &view)
    }

    /// The change: the pod as sent with the patch applied (which must give a valid Pod).
    fn change(&self, namespace: &str, pod: &Pod) -> Changed {
        let change = match self.decide(namespace, pod) {
            Decision::Change(change) => *change,
            other => panic!("expected a change, got {other:?}"),
        };
        let patch: json_patch::Patch =
            serde_json::from_str(change.patch.as_deref().unwrap_or("[]")).unwrap();
        let mut patched = serde_json::to_value(pod).unwrap();
        json_patch::patch(&mut patched, &patch).unwrap();
        Changed {
            pod: serde_json::from_value(patched).unwrap(),
            not_intercepted: change.not_intercepted,
            warnings: change.warnings,
        }
    }
}

/// A decided change, applied.
struct Changed {
    pod: Pod,
    not_intercepted: usize,
    warnings: Vec<String>,
}

fn annotation_of<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

#[test]
fn named_port_is_taken_over_and_probes_go_straight_to_the_app() {
    let change = World::new().change("shop", &web_pod());
    let spec = change.pod.spec.as_ref().unwrap();
    let app = &spec.containers[0];
    let ports = app.ports.as_ref().unwrap();
    assert_eq!(ports[0].name.as_deref(), Some("snug-app-http"));
    assert_eq!(ports[1].name, None);
    let probe_port = &app
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap()
        .port;
    assert_eq!(probe_port, &IntOrString::Int(8080));
    let hook = app.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
    assert_eq!(hook.http_get.as_ref().unwrap().port, IntOrString::Int(8080));

    // Native sidecar: an init container that keeps running, holding the original port name.
    let sidecar = spec.init_containers.as_ref().unwrap().last().unwrap();
    assert_eq!(sidecar.name, SIDECAR_CONTAINER_NAME);
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    let sidecar_ports = sidecar.ports.as_ref().unwrap();
    assert_eq!(sidecar_ports[0].name.as_deref(), Some("http"));
    assert_eq!(sidecar_ports[0].container_port, 4700);
    let env = sidecar.env.as_ref().unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "SNUG_PORTS" && e.value.as_deref() == Some("4700:8080"))
    );

    // The pod runs as root; the sidecar does not.
    let security = sidecar.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_user, Some(65532));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.read_only_root_filesystem, Some(true));

    assert_eq!(label(&change.pod, keys::INJECTED), Some("true"));
    assert_eq!(
        annotation_of(&change.pod, keys::NOT_INTERCEPTED),
        Some("app:9090")
    );
    assert_eq!(change.not_intercepted, 1);
    assert_eq!(
        annotation_of(&change.pod, keys::PROFILE),
        Some("shop/deployment-web@42")
    );
}

#[test]
fn observe_records_the_recommendation_and_touches_no_resources() {
    let change = World::new().change("shop", &web_pod());
    let app = &change.pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        app.resources,
        web_pod().spec.unwrap().containers[0].resources
    );
    let rec: serde_json::Value =
        serde_json::from_str(annotation_of(&change.pod, keys::RECOMMENDATION).unwrap()).unwrap();
    assert_eq!(rec["app"]["requests"]["cpu"], "250m");
    assert_eq!(rec["app"]["limits"]["cpu"], "500m");
    assert!(annotation_of(&change.pod, keys::ORIGINAL_RESOURCES).is_none());
    // The sidecar gets its own learned entry.
    let sidecar = change
        .pod
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .as_ref()
        .unwrap()[0]
        .clone();
    let requests = sidecar.resources.unwrap().requests.unwrap();
    assert_eq!(requests["memory"].0, "20Mi");
}

#[test]
fn apply_sets_resources_and_keeps_the_originals() {
    let mut world = World::new();
    world.namespaces.modes.insert("shop".into(), Mode::Apply);
    world.namespaces.limits.insert(
        "shop".into(),
        LimitMax {
            cpu: Some(0.4),
            memory: None,
        },
    );
    let change = world.change("shop", &web_pod());
    let resources = change.pod.spec.as_ref().unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    assert_eq!(resources.requests.unwrap()["cpu"].0, "250m");
    assert_eq!(
        resources.limits.as_ref().unwrap()["cpu"].0,
        "400m",
        "2x ratio capped by the LimitRange"
    );
    assert_eq!(resources.limits.unwrap()["memory"].0, "300Mi");
    let originals: serde_json::Value =
        serde_json::from_str(annotation_of(&change.pod, keys::ORIGINAL_RESOURCES).unwrap())
            .unwrap();
    assert_eq!(originals["app"]["requests"]["cpu"], "1");
}

#[test]
fn apply_waits_for_a_confident_profile() {
    let mut world = World::new();
    world.profiles = StaticProfiles::new([profile(0.1)]);
    world.config.default_mode = Mode::Apply;
    let change = world.change("shop", &web_pod());
    let app = &change.pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        app.resources,
        web_pod().spec.unwrap().containers[0].resources
    );
    assert!(annotation_of(&change.pod, keys::RECOMMENDATION).is_some());
}

#[test]
fn pod_mode_beats_namespace_mode_and_off_leaves_everything() {
    let mut world = World::new();
    world.namespaces.modes.insert("shop".into(), Mode::Off);
    assert!(matches!(
        world.decide("shop", &web_pod()),
        Decision::Leave { skipped: true, .. }
    ));
    let mut p = web_pod();
    p.metadata.annotations = Some([(keys::MODE.to_owned(), "apply".to_owned())].into());
    let change = world.change("shop", &p);
    assert!(annotation_of(&change.pod, keys::ORIGINAL_RESOURCES).is_some());
}

#[test]
fn excluded_namespaces_and_opt_outs_are_left_alone() {
    let world = World::new();
    for ns in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "snug-system",
    ] {
        assert!(
            matches!(
                world.decide(ns, &web_pod()),
                Decision::Leave { skipped: true, .. }
            ),
            "{ns}"
        );
    }
    let mut by_label = web_pod();
    by_label
        .metadata
        .labels
        .get_or_insert_default()
        .insert(keys::INJECT.into(), "disabled".into());
    assert!(matches!(
        world.decide("shop", &by_label),
        Decision::Leave { skipped: true, .. }
    ));
    let mut by_annotation = web_pod();
    by_annotation.metadata.annotations =
        Some([(keys::INJECT.to_owned(), "disabled".to_owned())].into());
    assert!(matches!(
        world.decide("shop", &by_annotation),
        Decision::Leave { skipped: true, .. }
    ));
}

#[test]
fn a_second_pass_changes_nothing() {
    let world = World::new();
    let once = world.change("shop", &web_pod()).pod;
    assert!(matches!(
        world.decide("shop", &once),
        Decision::Leave { skipped: false, .. }
    ));
}

#[test]
fn plain_container_when_native_sidecars_are_off_and_jobs_then_skip() {
    let mut world = World::new();
    world.native = false;
    let change = world.change("shop", &web_pod());
    let spec = change.pod.spec.as_ref().unwrap();
    assert_eq!(spec.containers.last().unwrap().name, SIDECAR_CONTAINER_NAME);
    assert_eq!(spec.containers.last().unwrap().restart_policy, None);

    let mut job = web_pod();
    job.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "migrate".into(),
            uid: "2".into(),
            controller: Some(true),
            ..Default::default()
        },
    ]);
    let change = world.change("shop", &job);
    assert!(
        annotation_of(&change.pod, keys::SIDECAR_SKIPPED)
            .unwrap()
            .contains("job")
    );
    assert_eq!(change.pod.spec.as_ref().unwrap().containers.len(), 1);
    assert_eq!(label(&change.pod, keys::INJECTED), None);
}

#[test]
fn host_network_and_windows_pods_get_no_sidecar_but_still_resources() {
    let mut world = World::new();
    world.config.default_mode = Mode::Apply;
    let mut host = web_pod();
    host.spec.as_mut().unwrap().host_network = Some(true);
    let mut windows = web_pod();
    windows.spec.as_mut().unwrap().node_selector =
        Some([("kubernetes.io/os".to_owned(), "windows".to_owned())].into());
    for p in [host, windows] {
        let change = world.change("shop", &p);
        let spec = change.pod.spec.as_ref().unwrap();
        assert!(spec.init_containers.is_none());
        assert_eq!(
            spec.containers[0].ports.as_ref().unwrap()[0]
                .name
                .as_deref(),
            Some("http")
        );
        assert!(annotation_of(&change.pod, keys::SIDECAR_SKIPPED).is_some());
        assert_eq!(
            spec.containers[0]
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["cpu"]
                .0,
            "250m"
        );
        assert!(
            matches!(world.decide("shop", &change.pod), Decision::Leave { .. }),
            "idempotent"
        );
    }
}

#[test]
fn mesh_sidecars_keep_their_ports_and_resources() {
    let mut world = World::new();
    world.config.default_mode = Mode::Apply;
    let mut p = web_pod();
    p.spec.as_mut().unwrap().containers.push(
        serde_json::from_value(json!({
            "name": "istio-proxy", "image": "istio/proxyv2",
            "ports": [{"name": "http-envoy-prom", "containerPort": 15090}],
            "resources": {"requests": {"cpu": "100m"}}
        }))
        .unwrap(),
    );
    let change = world.change("shop", &p);
    let istio = &change.pod.spec.as_ref().unwrap().containers[1];
    assert_eq!(istio, &p.spec.as_ref().unwrap().containers[1]);
}

#[test]
fn cronjob_runs_use_the_cronjob_profile() {
    let mut cron = profile(0.9);
    cron.metadata.name = Some("cronjob-nightly".into());
    let mut world = World::new();
    world.profiles = StaticProfiles::new([cron]);
    let job = pod(json!({
        "metadata": {"name": "nightly-29000000-abcde", "ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "Job", "name": "nightly-29000000", "uid": "3", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "x"}]}
    }));
    let change = world.change("shop", &job);
    assert_eq!(
        annotation_of(&change.pod, keys::PROFILE),
        Some("shop/cronjob-nightly@42")
    );
    assert!(
        annotation_of(&change.pod, keys::SIDECAR_SKIPPED)
            .unwrap()
            .contains("no named TCP port")
    );
}

#[test]
fn an_invalid_pod_mode_is_reported_and_ignored() {
    let mut p = web_pod();
    p.metadata.annotations = Some([(keys::MODE.to_owned(), "enforce".to_owned())].into());
    let change = World::new().change("shop", &p);
    assert!(change.warnings.iter().any(|w| w.contains("enforce")));
}
