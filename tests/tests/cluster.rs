//! End to end against a real Kubernetes 1.20 control plane (etcd, kube-apiserver,
//! kube-controller-manager built from Debian's source package, see tests/cluster/README.md),
//! with the harness's kubelet running pods as local processes and its metrics.k8s.io API.
//!
//! One cluster for the whole binary; the scenarios run in sequence against it. Run a subset
//! with `SNUG_CLUSTER_SCENARIOS=crd,deployment cargo test --workspace --test cluster`.
//! If the control plane cannot be built or started, the test fails and says why.

#[path = "cluster/profiler.rs"]
mod profiler;
#[path = "cluster/snug.rs"]
mod snug;

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context, Result, anyhow, ensure};
use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    apps::v1::Deployment,
    core::v1::{Pod, PodStatus},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use snug_api::{WorkloadProfile, keys};
use snug_e2e::{
    Cluster, Kubelet,
    kubelet::{Dirs, Images},
    metrics_api::MetricsApi,
    wait::{self, PATIENCE},
};

/// The sample app's image; the fake kubelet runs it with the sample-app binary.
const SAMPLE_IMAGE: &str = "ghcr.io/snug-dev/sample-app:e2e";
/// The namespace of the scenarios without Snug.
const PLAIN: &str = "e2e-plain";

/// Everything one run needs. Fields drop in order: processes first, the cluster last.
struct Env {
    snug: tokio::sync::Mutex<snug::Snug>,
    shop_ready: AtomicBool,
    plain_ready: AtomicBool,
    _metrics: MetricsApi,
    kubelet: Kubelet,
    cluster: Cluster,
}

impl Env {
    async fn start() -> Result<Self> {
        let cluster = Cluster::start().await?;
        let images = Images::default()
            .with("sample-app", env!("CARGO_BIN_EXE_snug-sample-app"))
            .with(
                snug_api::ports::SIDECAR_CONTAINER_NAME,
                snug_e2e::process::workspace_binary("snug-sidecar")?,
            );
        let dirs = Dirs {
            logs: cluster.log_dir(),
            pids: cluster.pid_dir(),
        };
        let kubelet = Kubelet::start(cluster.client(), images, dirs);
        let metrics = MetricsApi::start(cluster.client(), &kubelet).await?;
        Ok(Env {
            snug: tokio::sync::Mutex::default(),
            shop_ready: AtomicBool::new(false),
            plain_ready: AtomicBool::new(false),
            _metrics: metrics,
            kubelet,
            cluster,
        })
    }

    fn client(&self) -> kube::Client {
        self.cluster.client()
    }

    /// A namespace whose pods the kubelet runs.
    async fn namespace(&self, name: &str, labels: &[(&str, &str)]) -> Result<()> {
        self.cluster.create_namespace(name, labels).await?;
        self.kubelet.run_pods_in(name);
        Ok(())
    }

    /// The ready pod of Deployment `web` in namespace `e2e-plain` (no Snug), created by the
    /// first scenario that needs it.
    async fn plain_web(&self) -> Result<Pod> {
        if !self.plain_ready.swap(true, Ordering::SeqCst) {
            self.namespace(PLAIN, &[]).await?;
            Api::<Deployment>::namespaced(self.client(), PLAIN)
                .create(&PostParams::default(), &sample_deployment("web", PLAIN)?)
                .await?;
        }
        Ok(ready_pods(self, PLAIN, "web", 1).await?.remove(0))
    }

    async fn kubectl(&self, args: &[&str]) -> Result<String> {
        Ok(self.cluster.kubectl(args).await?)
    }

    /// Applies the generated CRD from manifests/crds/ and waits until it is served. The file,
    /// not the directory: the directory also holds its kustomization.
    async fn apply_crds(&self) -> Result<()> {
        let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../manifests/crds")
            .join(snug_profiler::crd::CRD_FILE);
        self.kubectl(&["apply", "-f", &crds.display().to_string()])
            .await?;
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/workloadprofiles.snug.dev",
        ])
        .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scenarios() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "snug_e2e=info".into()),
        )
        .with_test_writer()
        .try_init();
    let env = match Env::start().await {
        Ok(env) => env,
        Err(e) => panic!("the test cluster did not start: {e:#}"),
    };
    let selected = std::env::var("SNUG_CLUSTER_SCENARIOS").unwrap_or_default();
    let wanted = |name: &str| selected.is_empty() || selected.split(',').any(|s| s.trim() == name);
    macro_rules! scenario {
        ($name:literal, $f:path) => {
            if wanted($name) {
                eprintln!("[scenario] {}", $name);
                let started = std::time::Instant::now();
                let outcome = $f(&env).await;
                eprintln!(
                    "[scenario] {} {} after {:.1} s",
                    $name,
                    if outcome.is_ok() { "passed" } else { "FAILED" },
                    started.elapsed().as_secs_f64()
                );
                if let Err(e) = outcome {
                    panic!(
                        "scenario {} failed: {e:#}\n\nlast log lines:\n{}",
                        $name,
                        env.cluster.log_tails(15)
                    );
                }
            }
        };
    }
    scenario!("crd", crd_columns_show_real_values);
    scenario!("deployment", deployment_pods_run_and_report_status);
    scenario!("oom", oom_kill_shows_in_container_status);
    scenario!("metrics", metrics_api_answers_through_the_aggregator);
    scenario!(
        "webhook-unreachable",
        unreachable_webhook_with_ignore_admits_pods
    );
    scenario!("inject", snug::injection_on_1_20);
    scenario!("profile", profiler::profiler_writes_profiles);
    scenario!("untouched", snug::unlabelled_and_opted_out_untouched);
    scenario!("apply-rollout", profiler::rollout_applies_learned_resources);
    scenario!("oom-profile", profiler::oom_kill_raises_memory);
    scenario!("leader", profiler::leader_takeover_keeps_state);
    scenario!(
        "apply-stored-profile",
        snug::apply_mode_sizes_from_stored_profile
    );
    scenario!("webhook-down", snug::webhook_down_pods_still_created);
    scenario!("rbac", snug::least_privilege);
    env.cluster.passed();
}

/// The CRD from manifests/ applies; after a server-side apply of a status, `kubectl get
/// workloadprofiles` prints the printer columns with those values.
async fn crd_columns_show_real_values(env: &Env) -> Result<()> {
    env.apply_crds().await?;
    env.namespace("e2e-crd", &[]).await?;
    let profiles = Api::<WorkloadProfile>::namespaced(env.client(), "e2e-crd");
    let apply = PatchParams::apply(keys::PROFILER_FIELD_MANAGER).force();
    let profile = json!({
        "apiVersion": snug_api::API_VERSION, "kind": "WorkloadProfile",
        "metadata": {"name": "deployment-web", "namespace": "e2e-crd"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
    });
    profiles
        .patch("deployment-web", &apply, &Patch::Apply(&profile))
        .await?;
    let status = json!({
        "apiVersion": snug_api::API_VERSION, "kind": "WorkloadProfile",
        "status": {
            "oomKills": 2, "samples": 1440, "confidence": 0.9, "windowSeconds": 86400.0,
            "summary": {"workload": "Deployment/web", "cpu": "350m", "memory": "320Mi",
                        "latencyP99": "12ms", "requestsPerSecond": "35.2", "confidence": "90%"},
        },
    });
    profiles
        .patch_status("deployment-web", &apply, &Patch::Apply(&status))
        .await?;
    // Read back through the typed client: the schema must keep every field (no pruning).
    let stored = profiles.get("deployment-web").await?;
    let summary = stored
        .status
        .as_ref()
        .and_then(|s| s.summary.clone())
        .context("status.summary was pruned")?;
    ensure!(summary.latency_p99 == "12ms", "stored summary: {summary:?}");
    let table = env
        .kubectl(&["get", "workloadprofiles", "-n", "e2e-crd", "-o", "wide"])
        .await?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure!(
        header
            == [
                "NAME",
                "WORKLOAD",
                "CPU",
                "MEMORY",
                "P99",
                "RPS",
                "CONFIDENCE",
                "OOM",
                "SAMPLES",
                "AGE"
            ],
        "columns: {table}"
    );
    let row = table_row(&table, "deployment-web")?;
    for (column, want) in [
        ("WORKLOAD", "Deployment/web"),
        ("CPU", "350m"),
        ("MEMORY", "320Mi"),
        ("P99", "12ms"),
        ("RPS", "35.2"),
        ("CONFIDENCE", "90%"),
        ("OOM", "2"),
        ("SAMPLES", "1440"),
    ] {
        ensure!(
            row.get(column).map(String::as_str) == Some(want),
            "{column} in\n{table}"
        );
    }
    // The short name and category from the CRD work too.
    let short = env
        .kubectl(&["get", "wp", "-n", "e2e-crd", "-o", "name"])
        .await?;
    ensure!(
        short.trim() == "workloadprofile.snug.dev/deployment-web",
        "{short}"
    );
    Ok(())
}

/// A Deployment of the sample app as a user would write it: a named port (what a Service
/// targets), probes on that name, requests and a memory limit.
fn sample_deployment(name: &str, namespace: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": SAMPLE_IMAGE,
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "64Mi"},
                        "limits": {"memory": "512Mi"},
                    },
                }]},
            },
        },
    }))?)
}

/// The pods of `app` in `namespace` that the kubelet reports Ready.
async fn ready_pods(env: &Env, namespace: &str, app: &str, count: usize) -> Result<Vec<Pod>> {
    let pods = Api::<Pod>::namespaced(env.client(), namespace);
    let selector = format!("app={app}");
    Ok(wait::until(
        &format!("{count} ready pod(s) of {namespace}/{app}"),
        PATIENCE,
        || async {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            let ready: Vec<Pod> = list.items.into_iter().filter(is_ready).collect();
            (ready.len() == count).then_some(ready)
        },
    )
    .await?)
}

/// The cells of the row named `name` in kubectl's table output, by column header. Columns are
/// cut where the headers start, so empty cells stay empty instead of shifting the row.
fn table_row(table: &str, name: &str) -> Result<std::collections::BTreeMap<String, String>> {
    let mut lines = table.lines();
    let header = lines.next().context("empty table")?;
    let mut starts: Vec<(usize, &str)> = Vec::new();
    let mut offset = 0;
    for word in header.split_whitespace() {
        let at = header[offset..].find(word).map_or(offset, |i| i + offset);
        starts.push((at, word));
        offset = at + word.len();
    }
    let line = lines
        .find(|l| l.split_whitespace().next() == Some(name))
        .with_context(|| format!("no row {name} in\n{table}"))?;
    Ok(starts
        .iter()
        .enumerate()
        .map(|(i, (at, word))| {
            let end = starts.get(i + 1).map_or(line.len(), |(next, _)| *next);
            let cell = line.get(*at..end.min(line.len())).unwrap_or("").trim();
            ((*word).to_owned(), cell.to_owned())
        })
        .collect())
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> Result<IpAddr> {
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
    ip.context("pod without podIP")?
        .parse()
        .map_err(|e| anyhow!("podIP: {e}"))
}

/// A Deployment becomes a ReplicaSet and a pod through the real controller-manager; the
/// kubelet runs the pod on its own address, the readiness probe passes, the status lands, and
/// the Deployment counts the replica available.
async fn deployment_pods_run_and_report_status(env: &Env) -> Result<()> {
    let pod = env.plain_web().await?;
    let deployments = Api::<Deployment>::namespaced(env.client(), PLAIN);
    let owner = pod
        .owner_references()
        .first()
        .context("pod without owner")?;
    ensure!(
        owner.kind == "ReplicaSet" && owner.name.starts_with("web-"),
        "owner {owner:?}"
    );
    let ip = pod_ip(&pod)?;
    ensure!(ip.to_string().starts_with("127."), "podIP {ip}");
    let status: &PodStatus = pod.status.as_ref().context("no status")?;
    ensure!(status.phase.as_deref() == Some("Running"));
    let container = &status
        .container_statuses
        .as_ref()
        .context("no containerStatuses")?[0];
    ensure!(container.name == "app" && container.ready && container.restart_count == 0);
    let answer = snug_e2e::http::get(&format!("http://{ip}:8080/"), None).await?;
    ensure!(answer.status == 200 && answer.body == "ok\n", "{answer:?}");
    wait::until(
        "Deployment web to count 1 available replica",
        PATIENCE,
        || async {
            let d = deployments.get("web").await.ok()?;
            (d.status?.available_replicas == Some(1)).then_some(())
        },
    )
    .await?;
    Ok(())
}

/// The kubelet's OOM simulation shows as a real kubelet reports it, and the container runs
/// again.
async fn oom_kill_shows_in_container_status(env: &Env) -> Result<()> {
    let pod = env.plain_web().await?;
    let name = pod.name_any();
    env.kubelet.oom_kill(PLAIN, &name, "app")?;
    let pods = Api::<Pod>::namespaced(env.client(), PLAIN);
    let restarted = wait::until("the OOM kill in the pod status", PATIENCE, || async {
        let pod = pods.get(&name).await.ok()?;
        let c = pod
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .first()?
            .clone();
        let reason = c.last_state?.terminated?.reason;
        (reason.as_deref() == Some("OOMKilled") && c.restart_count == 1 && c.ready).then_some(pod)
    })
    .await?;
    let answer =
        snug_e2e::http::get(&format!("http://{}:8080/", pod_ip(&restarted)?), None).await?;
    ensure!(answer.status == 200, "restarted app answers: {answer:?}");
    Ok(())
}

/// Usage measured from procfs reaches clients through the aggregation layer, as
/// metrics-server's would: memory grows when the app holds more.
async fn metrics_api_answers_through_the_aggregator(env: &Env) -> Result<()> {
    let pod = env.plain_web().await?;
    let ip = pod_ip(&pod)?;
    let answer = snug_e2e::http::get(
        &format!("http://{ip}:8080/work?cpu_ms=300&memory_mib=48"),
        None,
    )
    .await?;
    ensure!(answer.status == 200, "{answer:?}");
    let path = &format!("/apis/metrics.k8s.io/v1beta1/namespaces/{PLAIN}/pods");
    let usage = wait::until("pod metrics showing the app's 48 MiB", PATIENCE, || async {
        let raw = env.kubectl(&["get", "--raw", path]).await.ok()?;
        let list: serde_json::Value = serde_json::from_str(&raw).ok()?;
        let item = list["items"]
            .as_array()?
            .iter()
            .find(|i| i["metadata"]["name"] == pod.name_any())?
            .clone();
        let memory = item["containers"][0]["usage"]["memory"].as_str()?;
        let bytes = snug_api::quantity::parse(memory).ok()?;
        (bytes >= 48.0 * 1024.0 * 1024.0).then_some(item)
    })
    .await?;
    ensure!(usage["kind"] == "PodMetrics", "{usage}");
    ensure!(usage["containers"][0]["name"] == "app", "{usage}");
    // `kubectl top` is the client users run against this API.
    let top = env
        .kubectl(&["top", "pod", "-n", PLAIN, "--no-headers"])
        .await?;
    ensure!(top.contains(&pod.name_any()), "kubectl top: {top}");
    Ok(())
}

/// A webhook that cannot be reached, with failurePolicy Ignore, does not stop pods: the
/// Deployment's pod is created as written.
async fn unreachable_webhook_with_ignore_admits_pods(env: &Env) -> Result<()> {
    env.namespace("e2e-nowebhook", &[(keys::INJECT, keys::INJECT_ENABLED)])
        .await?;
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "e2e-unreachable"},
        "webhooks": [{
            "name": "unreachable.e2e.snug.dev",
            // Nothing listens on port 1.
            "clientConfig": {"url": "https://127.0.0.1:1/mutate"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {keys::INJECT: keys::INJECT_ENABLED}},
            "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 2,
        }],
    }))?;
    let configs = Api::<MutatingWebhookConfiguration>::all(env.client());
    configs.create(&PostParams::default(), &config).await?;
    let result = async {
        Api::<Deployment>::namespaced(env.client(), "e2e-nowebhook")
            .create(
                &PostParams::default(),
                &sample_deployment("web", "e2e-nowebhook")?,
            )
            .await?;
        let pod = ready_pods(env, "e2e-nowebhook", "web", 1).await?.remove(0);
        let containers: Vec<&str> = pod
            .spec
            .as_ref()
            .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
            .unwrap_or_default();
        ensure!(containers == ["app"], "containers {containers:?}");
        Ok(())
    }
    .await;
    configs
        .delete("e2e-unreachable", &DeleteParams::default())
        .await?;
    result
}
