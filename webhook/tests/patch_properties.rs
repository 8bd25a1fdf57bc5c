//! Property test: for generated pods, the patch applies to the pod as sent, the result is a
//! valid Pod, port names stay valid and unique, and a second admission adds nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failure is a test failure

mod common;

use std::{collections::HashSet, sync::Arc};

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::Operation;
use proptest::prelude::*;
use serde_json::{Value, json};
use snug_webhook::{
    Admission,
    admission::{KindView, REVIEW_API_VERSION, Request},
    metrics::Outcome,
    store::{StaticNamespaces, StaticProfiles},
    view::PodView,
};

const PORT_NAMES: [&str; 8] = [
    "http",
    "grpc",
    "metrics-public",
    "metrics-private",
    "admin",
    "http-alt",
    "a",
    "web-frontend-1",
];

fn port() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(prop::sample::select(&PORT_NAMES[..])),
        prop_oneof![1u16..=65535, 4698u16..4705, Just(8080u16)],
        prop::sample::select(&[None, Some("TCP"), Some("UDP")][..]),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(name, number, protocol, host)| {
            let mut p = json!({"containerPort": number});
            if let Some(name) = name {
                p["name"] = json!(name);
            }
            if let Some(protocol) = protocol {
                p["protocol"] = json!(protocol);
            }
            if host {
                p["hostPort"] = json!(number);
            }
            p
        })
}

fn container(index: usize) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(&["app", "web", "istio-proxy", "worker"][..]),
        prop::collection::vec(port(), 0..4),
        proptest::option::of(prop_oneof![
            prop::sample::select(&PORT_NAMES[..]).prop_map(|n| json!(n)),
            (1u16..=65535).prop_map(|n| json!(n)),
        ]),
        proptest::option::of(prop::sample::select(&["100m", "1", "2500m"][..])),
        proptest::option::of(prop::sample::select(&["64Mi", "1Gi", "300M"][..])),
    )
        .prop_map(move |(name, mut ports, probe, cpu_limit, memory)| {
            // Kubernetes refuses two ports with one name in a container; keep the first.
            let mut seen = HashSet::new();
            ports.retain(|p| p["name"].as_str().is_none_or(|n| seen.insert(n.to_owned())));
            let mut c =
                json!({"name": format!("{name}-{index}"), "image": "example:1", "ports": ports});
            if index == 0 && name == "istio-proxy" {
                c["name"] = json!("istio-proxy");
            }
            if let Some(port) = probe {
                c["readinessProbe"] = json!({"httpGet": {"path": "/", "port": port}});
                c["lifecycle"] = json!({"preStop": {"tcpSocket": {"port": port}}});
            }
            let mut resources = json!({});
            if let Some(cpu) = cpu_limit {
                resources["limits"] = json!({"cpu": cpu});
            }
            if let Some(memory) = memory {
                resources["requests"] = json!({"memory": memory});
            }
            c["resources"] = resources;
            c
        })
}

fn pod() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(any::<u8>(), 1..4).prop_flat_map(|v| {
            (0..v.len()).map(container).collect::<Vec<_>>()
        }),
        prop::collection::vec(port(), 0..2),
        prop::sample::select(&[None, Some("observe"), Some("apply"), Some("off"), Some("bogus")][..]),
        prop::sample::select(&[None, Some("ReplicaSet"), Some("StatefulSet"), Some("Job")][..]),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.1),
        proptest::option::of(prop::sample::select(&["50m", "2", "x"][..])),
    )
        .prop_map(|(containers, init_ports, mode, owner, host_network, windows, max_cpu)| {
            let mut annotations = json!({});
            if let Some(mode) = mode {
                annotations["snug.dev/mode"] = json!(mode);
            }
            if let Some(max) = max_cpu {
                annotations["snug.dev/max-cpu"] = json!(max);
            }
            let mut pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "web-abc12-", "namespace": "shop",
                              "labels": {"pod-template-hash": "abc12"}, "annotations": annotations},
                "spec": {"containers": containers,
                         "initContainers": [{"name": "init", "image": "busybox", "ports": init_ports}]}
            });
            if let Some(kind) = owner {
                let name = if kind == "ReplicaSet" { "web-abc12" } else { "web" };
                let api = if kind == "Job" { "batch/v1" } else { "apps/v1" };
                pod["metadata"]["ownerReferences"] =
                    json!([{"apiVersion": api, "kind": kind, "name": name, "uid": "u", "controller": true}]);
            }
            if host_network {
                pod["spec"]["hostNetwork"] = json!(true);
            }
            if windows {
                pod["spec"]["os"] = json!({"name": "windows"});
            }
            pod
        })
}

fn admission_for_properties(native: bool) -> Admission {
    let profile = |kind: &str| -> snug_api::WorkloadProfile {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{}-web", kind.to_lowercase()), "namespace": "shop", "resourceVersion": "1"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": kind, "name": "web"}},
            "status": {"confidence": 0.9, "containers": [
                {"name": "app-0", "recommendation": {"requests": {"cpu": "200m", "memory": "100Mi"}}},
                {"name": "web-1", "recommendation": {"requests": {"cpu": "3", "memory": "2Gi"}, "limits": {"memory": "3Gi"}}}
            ]}
        }))
        .unwrap()
    };
    admission(
        Arc::new(StaticProfiles::new(
            ["Deployment", "StatefulSet", "Job"].map(profile),
        )),
        Arc::new(StaticNamespaces::default()),
        native,
    )
}

/// The patch and outcome of admitting `pod`, decided on the pod read alone; the whole
/// handler (review in, review out) must answer with the same patch.
fn admit(admission: &Admission, pod: &Value) -> (Option<json_patch::Patch>, Outcome) {
    let mut text = pod.to_string().into_bytes();
    let view: PodView = snug_webhook::view::read(&mut text).unwrap();
    let request = Request {
        api_version: REVIEW_API_VERSION.into(),
        review_kind: "AdmissionReview".into(),
        uid: "1".into(),
        kind: KindView {
            group: "".into(),
            version: "v1".into(),
            kind: "Pod".into(),
        },
        namespace: Some("shop".into()),
        operation: Operation::Create,
    };
    let (answer, outcome) = admission.review(&request, Ok(&view));
    let patch: Option<json_patch::Patch> = answer
        .patch
        .map(|text| serde_json::from_str(&text).unwrap());
    let body = review(pod, "CREATE").to_string();
    let response: Value =
        serde_json::from_slice(&admission.handle(body.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        patch_of(&response),
        patch,
        "the handler answered another patch"
    );
    (patch, outcome)
}

fn all_port_names(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.as_ref().unwrap();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| p.name.clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn patches_apply_give_valid_pods_and_are_idempotent(pod in pod(), native in any::<bool>()) {
        let admission = admission_for_properties(native);
        let (patch, outcome) = admit(&admission, &pod);
        prop_assert!(outcome != Outcome::Error && outcome != Outcome::Invalid, "{outcome:?}");
        let Some(patch) = patch else { return Ok(()) };
        let mut result = pod.clone();
        json_patch::patch(&mut result, &patch).map_err(|e| TestCaseError::fail(format!("{e}: {patch:?}")))?;
        let typed: Pod = serde_json::from_value(result.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;

        // Only what the webhook decides on changes: everything else in the pod is as sent.
        let untouched = |mut pod: Value| {
            for map in ["labels", "annotations"] {
                if let Some(m) = pod["metadata"][map].as_object_mut() {
                    m.retain(|k, _| !k.starts_with("snug.dev/"));
                }
            }
            let spec = pod["spec"].as_object_mut().unwrap();
            for list in ["containers", "initContainers"] {
                let Some(list) = spec.get_mut(list).and_then(Value::as_array_mut) else { continue };
                list.retain(|c| c["name"] != "snug-sidecar");
                for c in list {
                    let c = c.as_object_mut().unwrap();
                    for field in ["ports", "resources", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle"] {
                        c.remove(field);
                    }
                }
            }
            pod
        };
        prop_assert_eq!(untouched(result.clone()), untouched(pod.clone()));

        let names = all_port_names(&typed);
        for name in &names {
            prop_assert!(name.len() <= 15 && !name.ends_with('-') && !name.contains("--"), "{name}");
        }
        // Renaming never creates a duplicate name the pod did not already have.
        let duplicates = |names: &[String]| names.len() - names.iter().collect::<HashSet<_>>().len();
        let before = all_port_names(&serde_json::from_value(pod.clone()).unwrap());
        prop_assert!(duplicates(&names) <= duplicates(&before), "{names:?}");

        let spec = typed.spec.as_ref().unwrap();
        if let Some(sidecar) = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == "snug-sidecar") {
            let security = sidecar.security_context.as_ref().unwrap();
            prop_assert_eq!(security.run_as_user, Some(65532));
            prop_assert_eq!(sidecar.restart_policy.is_some(), native);
        }

        let (again, _) = admit(&admission, &result);
        prop_assert!(again.is_none(), "second pass patched: {:?}", again);
    }
}
