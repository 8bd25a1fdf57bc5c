//! Snug's scenarios: the webhook and the profiler (local processes) against the real API
//! server, sidecars run by the fake kubelet, usage through the real aggregation layer.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        coordination::v1::Lease,
        core::v1::{Container, Namespace, Pod},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use snug_api::{WorkloadProfile, keys, ports};
use snug_e2e::{
    snug::{PROFILE_PATIENCE, Profiler, Webhook},
    wait::{self, PATIENCE},
};

use super::{Env, SAMPLE_IMAGE, pod_ip, ready_pods};

/// The namespace Snug injects into in these scenarios.
pub const SHOP: &str = "e2e-snug";
/// Profiler flags: short cycles and window so a profile becomes confident in seconds.
const PROFILER_ARGS: [&str; 3] = ["--interval=2s", "--min-window=16s", "--refresh=4s"];

/// Whether the recommender this tree builds recommends after the usage a test can give it:
/// two minutes of samples every 2 s (the profiler's interval here). The scenarios about
/// learned resources need that; a recommender that wants hours of data cannot be tested at
/// this speed, and those scenarios say so instead of running.
pub fn recommender_recommends() -> bool {
    let mut recommender = snug_recommender::RecommenderKind::Snug.build();
    let mut at = 0.0;
    while at < 120.0 {
        recommender.observe(snug_recommender::Usage {
            at,
            cpu_cores: Some(0.25),
            memory_bytes: Some(200.0 * 1024.0 * 1024.0),
        });
        at += 2.0;
    }
    recommender
        .recommend(at, &snug_recommender::CurrentResources::default())
        .is_some()
}

/// The webhook, the profilers and the shop namespace, started once by the first scenario
/// that needs them.
#[derive(Default)]
pub struct Snug {
    pub webhook: Option<Webhook>,
    pub profilers: Vec<Profiler>,
}

impl Env {
    /// Starts what the Snug scenarios need, unless already running.
    pub async fn snug(&self) -> Result<tokio::sync::MutexGuard<'_, Snug>> {
        let mut snug = self.snug.lock().await;
        if snug.webhook.is_none() {
            self.apply_crds().await?;
            snug.webhook = Some(Webhook::start(&self.cluster, &[]).await?);
        }
        if snug.profilers.is_empty() {
            self.cluster.ensure_namespace(keys::SNUG_NAMESPACE).await?;
            snug.profilers
                .push(Profiler::start(&self.cluster, "profiler-a", &PROFILER_ARGS).await?);
        }
        if !self
            .shop_ready
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.namespace(SHOP, &[(keys::INJECT, keys::INJECT_ENABLED)])
                .await?;
            for name in ["api", "frontend"] {
                Api::<Deployment>::namespaced(self.client(), SHOP)
                    .create(&PostParams::default(), &snug_deployment(name)?)
                    .await?;
            }
        }
        Ok(snug)
    }
}

/// A Deployment of the sample app as a user would write it: a named port a Service targets,
/// probes on that name, requests and a memory limit.
fn snug_deployment(name: &str) -> Result<Deployment> {
    deployment_in(SHOP, name)
}

fn deployment_in(namespace: &str, name: &str) -> Result<Deployment> {
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

fn container<'a>(pod: &'a Pod, name: &str) -> Result<&'a Container> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == name))
        .with_context(|| format!("pod {} has no container {name}", pod.name_any()))
}

/// The port a Service with `targetPort: <name>` reaches on this pod, as kube-proxy resolves it.
fn named_port(pod: &Pod, name: &str) -> Result<u16> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name))
        .map(|p| p.container_port as u16)
        .with_context(|| format!("no container port named {name}"))
}

/// Injection on 1.20: the stored pod has the sidecar as a plain container (no native
/// sidecars), the app's named port renamed and taken over, its probes rewritten to the number;
/// the kubelet runs the sidecar with the env the webhook wrote, and traffic to the named port
/// goes through the sidecar to the app.
pub async fn injection_on_1_20(env: &Env) -> Result<()> {
    drop(env.snug().await?);
    let pod = ready_pods(env, SHOP, "api", 1).await?.remove(0);
    let spec = pod.spec.as_ref().context("no spec")?;
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    ensure!(
        names == ["app", ports::SIDECAR_CONTAINER_NAME],
        "containers {names:?}"
    );
    ensure!(
        spec.init_containers
            .iter()
            .flatten()
            .all(|c| c.name != ports::SIDECAR_CONTAINER_NAME),
        "1.20 has no native sidecars, yet the sidecar is an init container"
    );
    ensure!(
        pod.labels().get(keys::INJECTED).map(String::as_str) == Some("true"),
        "labels {:?}",
        pod.labels()
    );
    let app = container(&pod, "app")?;
    let app_ports: Vec<(Option<&str>, i32)> = app
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    ensure!(
        app_ports == [(Some("snug-app-http"), 8080)],
        "app ports {app_ports:?}"
    );
    for (kind, probe) in [
        ("readiness", &app.readiness_probe),
        ("liveness", &app.liveness_probe),
    ] {
        let port = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|h| h.port.clone());
        ensure!(
            port == Some(IntOrString::Int(8080)),
            "{kind} probe port {port:?}"
        );
    }
    let sidecar = container(&pod, ports::SIDECAR_CONTAINER_NAME)?;
    let listen = named_port(&pod, "http")?;
    ensure!(
        listen == ports::FIRST_INBOUND_PORT,
        "named port http → {listen}"
    );
    let env_ports = sidecar
        .env
        .iter()
        .flatten()
        .find(|e| e.name == ports::ENV_PORTS)
        .and_then(|e| e.value.clone());
    ensure!(
        env_ports.as_deref() == Some("4700:8080"),
        "SNUG_PORTS {env_ports:?}"
    );
    // The process the kubelet started carries exactly that environment.
    let running = env
        .kubelet
        .pod(SHOP, &pod.name_any())
        .context("kubelet does not run the pod")?;
    let pid = running
        .pid(ports::SIDECAR_CONTAINER_NAME)
        .context("sidecar not running")?;
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    ensure!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"SNUG_PORTS=4700:8080"),
        "sidecar process environment lacks SNUG_PORTS=4700:8080"
    );
    // A Service targeting `http` now reaches the sidecar, which forwards to the app.
    let ip = pod_ip(&pod)?;
    let answer = snug_e2e::http::get(&format!("http://{ip}:{listen}/"), None).await?;
    ensure!(
        answer.status == 200
            && answer.body == "ok\n"
            && !answer.headers.contains_key(ports::SIDECAR_ERROR_HEADER),
        "through the sidecar: {answer:?}"
    );
    Ok(())
}

/// Sends `rounds` requests from the frontend pod to the api's `http` port (the sidecar), so
/// the api's sidecar sees the frontend as its peer, and a few directly from the test.
async fn traffic(env: &Env, rounds: usize) -> Result<()> {
    let api = ready_pods(env, SHOP, "api", 1).await?.remove(0);
    let frontend = ready_pods(env, SHOP, "frontend", 1).await?.remove(0);
    let target = format!(
        "http://{}:{}/work?cpu_ms=20%26memory_mib=40",
        pod_ip(&api)?,
        named_port(&api, "http")?
    );
    // The frontend's own app port: its sidecar passes the call in, the app makes the outbound
    // call from the frontend's address.
    let frontend_url = format!(
        "http://{}:{}/call?url={target}",
        pod_ip(&frontend)?,
        named_port(&frontend, "http")?
    );
    for _ in 0..rounds {
        let answer = snug_e2e::http::get(&frontend_url, None).await?;
        ensure!(answer.status == 200, "frontend → api: {answer:?}");
    }
    Ok(())
}

async fn profile(env: &Env, name: &str) -> Option<WorkloadProfile> {
    Api::<WorkloadProfile>::namespaced(env.client(), SHOP)
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

/// The profiler, against this API server, writes the api's profile with server-side apply:
/// usage from the metrics API, traffic from the sidecar, the frontend as a peer by workload,
/// and `kubectl get workloadprofiles` prints it.
pub async fn profiler_writes_profiles(env: &Env) -> Result<()> {
    drop(env.snug().await?);
    let recommends = recommender_recommends();
    let written = wait::until(
        "a profile of Deployment/api with traffic and peers",
        PROFILE_PATIENCE,
        || async {
            traffic(env, 5).await.ok()?;
            let p = profile(env, "deployment-api").await?;
            let status = p.status.clone()?;
            let has_peer = status
                .peers
                .iter()
                .any(|peer| peer.peer == "Deployment/frontend");
            let has_traffic = status
                .traffic
                .as_ref()
                .is_some_and(|t| t.requests_per_second > 0.0);
            let has_app = status
                .containers
                .iter()
                .any(|c| c.name == "app" && c.memory.max > 0.0);
            // Sized columns need a recommender that recommends (see recommender_recommends).
            let sized = !recommends
                || status
                    .summary
                    .as_ref()
                    .is_some_and(|s| !s.cpu.is_empty() && !s.memory.is_empty());
            (has_peer && has_traffic && has_app && sized && status.samples > 0).then_some(p)
        },
    )
    .await;
    let written = match written {
        Ok(p) => p,
        Err(e) => {
            let last = profile(env, "deployment-api").await.and_then(|p| p.status);
            bail!("{e}; last status: {}", serde_json::to_string(&last)?);
        }
    };
    let applied = written.managed_fields().iter().any(|f| {
        f.manager.as_deref() == Some(keys::PROFILER_FIELD_MANAGER)
            && f.operation.as_deref() == Some("Apply")
    });
    ensure!(
        applied,
        "no server-side apply by {}",
        keys::PROFILER_FIELD_MANAGER
    );
    let summary = written
        .status
        .as_ref()
        .and_then(|s| s.summary.clone())
        .context("no summary")?;
    let table = env
        .kubectl(&["get", "workloadprofiles", "-n", SHOP])
        .await?;
    let row = super::table_row(&table, "deployment-api")?;
    let cell = |column: &str| row.get(column).map(String::as_str).unwrap_or("<missing>");
    for (column, want) in [
        ("WORKLOAD", "Deployment/api"),
        ("CPU", summary.cpu.as_str()),
        ("MEMORY", summary.memory.as_str()),
        ("P99", summary.latency_p99.as_str()),
        ("RPS", summary.requests_per_second.as_str()),
        ("CONFIDENCE", summary.confidence.as_str()),
    ] {
        ensure!(
            cell(column) == want,
            "column {column}: {:?} in\n{table}",
            cell(column)
        );
    }
    ensure!(
        !summary.latency_p99.is_empty() && !summary.requests_per_second.is_empty(),
        "{summary:?}"
    );
    if recommends {
        ensure!(
            !summary.cpu.is_empty() && !summary.memory.is_empty(),
            "{summary:?}"
        );
    }
    Ok(())
}

/// In apply mode, once the profile is confident, a rollout's new pod gets the learned
/// requests; the original ones are kept in an annotation.
pub async fn rollout_applies_learned_resources(env: &Env) -> Result<()> {
    drop(env.snug().await?);
    let namespaces = Api::<Namespace>::all(env.client());
    let annotate = json!({"metadata": {"annotations": {keys::MODE: "apply"}}});
    namespaces
        .patch(SHOP, &PatchParams::default(), &Patch::Merge(&annotate))
        .await?;
    wait::until(
        "a confident profile of Deployment/api",
        PROFILE_PATIENCE,
        || async {
            traffic(env, 3).await.ok()?;
            profile(env, "deployment-api")
                .await?
                .is_confident()
                .then_some(())
        },
    )
    .await?;
    let before = ready_pods(env, SHOP, "api", 1).await?.remove(0);
    env.kubectl(&["rollout", "restart", "deployment/api", "-n", SHOP])
        .await?;
    let pods = Api::<Pod>::namespaced(env.client(), SHOP);
    let after = wait::until("the rolled-out api pod", PATIENCE, || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels("app=api"))
            .await
            .ok()?;
        list.items
            .into_iter()
            .find(|p| p.uid() != before.uid() && super::is_ready(p))
    })
    .await?;
    let annotations = after.annotations();
    ensure!(
        annotations.contains_key(keys::PROFILE),
        "annotations {annotations:?}"
    );
    let original = annotations
        .get(keys::ORIGINAL_RESOURCES)
        .context("no original-resources annotation")?;
    ensure!(original.contains("100m"), "original resources {original}");
    let requests = container(&after, "app")?
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    let got = |k: &str| requests.get(k).map(|q| q.0.clone()).unwrap_or_default();
    ensure!(
        (got("cpu").as_str(), got("memory").as_str()) != ("100m", "64Mi"),
        "requests unchanged after the rollout: {requests:?}"
    );
    // The pod names the profile version it was sized from; while that is still the current
    // version, the requests are exactly its recommendation.
    let used = annotations[keys::PROFILE].clone();
    if let Some(now) = profile(env, "deployment-api").await
        && used.ends_with(&format!("@{}", now.resource_version().unwrap_or_default()))
    {
        let learned = now
            .container("app")
            .context("profile without app")?
            .recommendation
            .requests
            .clone();
        let want = |q: &Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
            q.as_ref().map(|q| q.0.clone()).unwrap_or_default()
        };
        ensure!(
            got("cpu") == want(&learned.cpu) && got("memory") == want(&learned.memory),
            "requests {requests:?} differ from profile {used}: {learned:?}"
        );
    }
    Ok(())
}

/// An OOM kill of the app shows in the pod status and in the profile, and raises the memory
/// recommendation.
pub async fn oom_kill_raises_memory(env: &Env) -> Result<()> {
    drop(env.snug().await?);
    let memory_of = |p: &WorkloadProfile| -> Option<f64> {
        let q = p.container("app")?.recommendation.requests.memory.clone()?;
        snug_api::quantity::parse_quantity(&q).ok()
    };
    let before = wait::until(
        "a profile with an app memory recommendation",
        PROFILE_PATIENCE,
        || async {
            traffic(env, 2).await.ok()?;
            let p = profile(env, "deployment-api").await?;
            memory_of(&p).map(|m| (m, p.status.as_ref().map_or(0, |s| s.oom_kills)))
        },
    )
    .await?;
    let pod = ready_pods(env, SHOP, "api", 1).await?.remove(0);
    env.kubelet.oom_kill(SHOP, &pod.name_any(), "app")?;
    wait::until(
        "the profile to count the OOM kill and raise memory",
        PROFILE_PATIENCE,
        || async {
            traffic(env, 2).await.ok()?;
            let p = profile(env, "deployment-api").await?;
            let kills = p.status.as_ref()?.oom_kills;
            let memory = memory_of(&p)?;
            (kills > before.1 && memory > before.0).then_some(())
        },
    )
    .await?;
    Ok(())
}

/// A namespace without the label and a pod that opts out are left as written, while the
/// webhook is up (a pod created alongside in the labelled namespace is injected).
pub async fn unlabelled_and_opted_out_untouched(env: &Env) -> Result<()> {
    drop(env.snug().await?);
    env.namespace("e2e-unlabelled", &[]).await?;
    let pod = |namespace: &str, name: &str, labels: BTreeMap<&str, &str>| -> Result<Pod> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": SAMPLE_IMAGE,
                                     "ports": [{"name": "http", "containerPort": 8080}]}]},
        }))?)
    };
    let create = |namespace: &'static str, p: Pod| async move {
        Api::<Pod>::namespaced(env.client(), namespace)
            .create(&PostParams::default(), &p)
            .await
    };
    let plain = create(
        "e2e-unlabelled",
        pod("e2e-unlabelled", "plain", BTreeMap::new())?,
    )
    .await?;
    let opted_out = create(
        SHOP,
        pod(
            SHOP,
            "opted-out",
            [(keys::INJECT, keys::INJECT_DISABLED)].into(),
        )?,
    )
    .await?;
    let control = create(SHOP, pod(SHOP, "control", BTreeMap::new())?).await?;
    for p in [&plain, &opted_out] {
        let names: Vec<&str> = p
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .map(|c| c.name.as_str())
            .collect();
        ensure!(
            names == ["app"],
            "{} got containers {names:?}",
            p.name_any()
        );
        ensure!(
            !p.labels().contains_key(keys::INJECTED),
            "{} labelled injected",
            p.name_any()
        );
        let port = named_port(p, "http")?;
        ensure!(port == 8080, "{} port renamed", p.name_any());
    }
    let names: Vec<&str> = control
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| c.name.as_str())
        .collect();
    ensure!(
        names.contains(&ports::SIDECAR_CONTAINER_NAME),
        "control pod not injected: {names:?}"
    );
    Ok(())
}

/// Two profilers: one holds the Lease; killed, the other takes over and carries on from the
/// learned state (the sample count keeps growing from where it was).
pub async fn leader_takeover_keeps_state(env: &Env) -> Result<()> {
    let mut snug = env.snug().await?;
    if snug.profilers.len() < 2 {
        snug.profilers
            .push(Profiler::start(&env.cluster, "profiler-b", &PROFILER_ARGS).await?);
    }
    let leases = Api::<Lease>::namespaced(env.client(), keys::SNUG_NAMESPACE);
    let holder = || async {
        leases
            .get_opt("snug-profiler")
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
    };
    let first = wait::until("a Lease holder", PATIENCE, &holder).await?;
    ensure!(
        first == "profiler-a",
        "profiler-a started first and leads, got {first}"
    );
    let samples = |p: Option<WorkloadProfile>| p.and_then(|p| p.status).map_or(0, |s| s.samples);
    let before = samples(profile(env, "deployment-api").await);
    let leader = snug
        .profilers
        .iter_mut()
        .find(|p| p.identity == first)
        .context("leader not among ours")?;
    leader.kill().await;
    wait::until(
        "profiler-b to take the Lease",
        Duration::from_secs(120),
        || async { (holder().await? == "profiler-b").then_some(()) },
    )
    .await?;
    let after = wait::until(
        "profiler-b to write the profile",
        PROFILE_PATIENCE,
        || async {
            traffic(env, 2).await.ok()?;
            let n = samples(profile(env, "deployment-api").await);
            (n > before).then_some(n)
        },
    )
    .await?;
    ensure!(after > before, "samples {before} → {after}");
    Ok(())
}

/// The webhook's count of profiles it holds (its reflector of the API server's profiles).
async fn webhook_profiles(webhook: &Webhook) -> Result<f64> {
    let text = webhook.metrics().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(snug_api::metrics::WEBHOOK_PROFILES))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Apply mode, webhook side: a confident profile stored in the API server (written as the
/// profiler writes it, server-side apply of spec and status) sizes the next pod of its
/// workload; the pod names the profile version and keeps the original requests. The
/// profilers are stopped first so the profile stays as written.
pub async fn apply_mode_sizes_from_stored_profile(env: &Env) -> Result<()> {
    let mut snug = env.snug().await?;
    for profiler in snug.profilers.iter_mut() {
        profiler.kill().await;
    }
    let webhook = snug.webhook.as_ref().context("no webhook")?;
    let namespace = "e2e-apply";
    env.namespace(namespace, &[(keys::INJECT, keys::INJECT_ENABLED)])
        .await?;
    let annotate = json!({"metadata": {"annotations": {keys::MODE: "apply"}}});
    Api::<Namespace>::all(env.client())
        .patch(namespace, &PatchParams::default(), &Patch::Merge(&annotate))
        .await?;
    let held_before = webhook_profiles(webhook).await?;
    let profiles = Api::<WorkloadProfile>::namespaced(env.client(), namespace);
    let apply = PatchParams::apply(keys::PROFILER_FIELD_MANAGER).force();
    let spec = json!({
        "apiVersion": snug_api::API_VERSION, "kind": "WorkloadProfile",
        "metadata": {"name": "deployment-sized", "namespace": namespace},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sized"}},
    });
    profiles
        .patch("deployment-sized", &apply, &Patch::Apply(&spec))
        .await?;
    let status = json!({
        "apiVersion": snug_api::API_VERSION, "kind": "WorkloadProfile",
        "status": {
            "containers": [{"name": "app", "recommendation": {
                "requests": {"cpu": "250m", "memory": "96Mi"},
                "limits": {"memory": "192Mi"},
            }}],
            "samples": 600, "windowSeconds": 86400.0, "confidence": 0.9,
            "summary": {"workload": "Deployment/sized", "cpu": "250m", "memory": "96Mi", "confidence": "90%"},
        },
    });
    let written = profiles
        .patch_status("deployment-sized", &apply, &Patch::Apply(&status))
        .await?;
    ensure!(
        written.is_confident(),
        "the written profile is not confident: {written:?}"
    );
    wait::until("the webhook to hold the new profile", PATIENCE, || async {
        (webhook_profiles(webhook).await.ok()? > held_before).then_some(())
    })
    .await?;
    Api::<Deployment>::namespaced(env.client(), namespace)
        .create(&PostParams::default(), &deployment_in(namespace, "sized")?)
        .await?;
    let pod = ready_pods(env, namespace, "sized", 1).await?.remove(0);
    let app = container(&pod, "app")?;
    let resources = app.resources.clone().unwrap_or_default();
    let amount =
        |map: &Option<
            BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >,
         key: &str| { map.as_ref().and_then(|m| m.get(key)).map(|q| q.0.clone()) };
    ensure!(
        amount(&resources.requests, "cpu").as_deref() == Some("250m")
            && amount(&resources.requests, "memory").as_deref() == Some("96Mi"),
        "requests not from the profile: {resources:?}"
    );
    let annotations = pod.annotations();
    let want = format!(
        "{namespace}/deployment-sized@{}",
        written.resource_version().unwrap_or_default()
    );
    ensure!(
        annotations.get(keys::PROFILE) == Some(&want),
        "profile annotation {:?}, want {want}",
        annotations.get(keys::PROFILE)
    );
    let original = annotations
        .get(keys::ORIGINAL_RESOURCES)
        .context("no original-resources annotation")?;
    ensure!(
        original.contains("100m") && original.contains("64Mi"),
        "original resources {original}"
    );
    Ok(())
}

/// With the webhook down, pods are still created (failurePolicy Ignore), without a sidecar.
pub async fn webhook_down_pods_still_created(env: &Env) -> Result<()> {
    let mut snug = env.snug().await?;
    let Some(webhook) = snug.webhook.as_mut() else {
        bail!("no webhook");
    };
    webhook.stop().await;
    let deployment = serde_json::from_value::<Deployment>(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "late", "namespace": SHOP},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "late"}},
            "template": {"metadata": {"labels": {"app": "late"}},
                "spec": {"containers": [{"name": "app", "image": SAMPLE_IMAGE,
                    "ports": [{"name": "http", "containerPort": 8080}]}]}},
        },
    }))?;
    Api::<Deployment>::namespaced(env.client(), SHOP)
        .create(&PostParams::default(), &deployment)
        .await?;
    let pod = ready_pods(env, SHOP, "late", 1).await?.remove(0);
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| c.name.as_str())
        .collect();
    ensure!(names == ["app"], "containers {names:?}");
    let ip: IpAddr = pod_ip(&pod)?;
    let answer = snug_e2e::http::get(&format!("http://{ip}:8080/"), None).await?;
    ensure!(answer.status == 200, "{answer:?}");
    Ok(())
}
