//! Snug's scenarios, webhook side, and the setup all Snug scenarios share: the webhook and
//! the profiler as local processes against the real API server, sidecars run by the fake
//! kubelet.

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
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
    snug::{Profiler, Webhook, service_account},
    wait::{self, PATIENCE},
};

use super::{Env, SAMPLE_IMAGE, pod_ip, ready_pods, sample_deployment};

/// The namespace Snug injects into in these scenarios.
pub const SHOP: &str = "e2e-snug";
/// Profiler flags: short cycles and window so a profile becomes confident in seconds.
pub const PROFILER_ARGS: [&str; 3] = ["--interval=2s", "--min-window=16s", "--refresh=4s"];

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
                    .create(&PostParams::default(), &sample_deployment(name, SHOP)?)
                    .await?;
            }
        }
        Ok(snug)
    }
}

pub fn container<'a>(pod: &'a Pod, name: &str) -> Result<&'a Container> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == name))
        .with_context(|| format!("pod {} has no container {name}", pod.name_any()))
}

/// The port a Service with `targetPort: <name>` reaches on this pod, as kube-proxy resolves it.
pub fn named_port(pod: &Pod, name: &str) -> Result<u16> {
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
        .create(
            &PostParams::default(),
            &sample_deployment("sized", namespace)?,
        )
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

/// The webhook and the profiler run as their ServiceAccounts with the install's RBAC: the
/// kubeconfigs they are started with are allowed what the programs do, and refused what they
/// have no business doing (secrets, deleting or creating pods, writing workloads).
pub async fn least_privilege(env: &Env) -> Result<()> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    // (ServiceAccount, verb, group, resource, subresource, namespace, allowed)
    let checks: [(&str, &str, &str, &str, &str, &str, bool); 21] = [
        ("snug-profiler", "watch", "", "pods", "", "", true),
        ("snug-profiler", "watch", "batch", "jobs", "", "", true),
        ("snug-profiler", "delete", "batch", "jobs", "", SHOP, false),
        ("snug-profiler", "list", "", "namespaces", "", "", true),
        (
            "snug-profiler",
            "list",
            "metrics.k8s.io",
            "pods",
            "",
            SHOP,
            true,
        ),
        (
            "snug-profiler",
            "patch",
            "snug.dev",
            "workloadprofiles",
            "status",
            SHOP,
            true,
        ),
        (
            "snug-profiler",
            "create",
            "snug.dev",
            "workloadprofiles",
            "",
            SHOP,
            true,
        ),
        (
            "snug-profiler",
            "update",
            "coordination.k8s.io",
            "leases",
            "",
            keys::SNUG_NAMESPACE,
            true,
        ),
        (
            "snug-profiler",
            "get",
            "apps",
            "deployments",
            "",
            SHOP,
            true,
        ),
        ("snug-profiler", "get", "", "secrets", "", SHOP, false),
        ("snug-profiler", "delete", "", "pods", "", SHOP, false),
        (
            "snug-profiler",
            "update",
            "apps",
            "deployments",
            "",
            SHOP,
            false,
        ),
        (
            "snug-profiler",
            "delete",
            "snug.dev",
            "workloadprofiles",
            "",
            SHOP,
            false,
        ),
        (
            "snug-profiler",
            "update",
            "coordination.k8s.io",
            "leases",
            "",
            SHOP,
            false,
        ),
        (
            "snug-webhook",
            "watch",
            "snug.dev",
            "workloadprofiles",
            "",
            "",
            true,
        ),
        ("snug-webhook", "watch", "", "namespaces", "", "", true),
        ("snug-webhook", "list", "", "limitranges", "", "", true),
        (
            "snug-webhook",
            "patch",
            "snug.dev",
            "workloadprofiles",
            "",
            SHOP,
            false,
        ),
        ("snug-webhook", "list", "", "pods", "", SHOP, false),
        ("snug-webhook", "get", "", "secrets", "", SHOP, false),
        ("snug-webhook", "create", "", "pods", "", SHOP, false),
    ];
    let mut wrong = Vec::new();
    for account in ["snug-profiler", "snug-webhook"] {
        let path = service_account(&env.cluster, account).await?;
        let kubeconfig = kube::config::Kubeconfig::read_from(&path)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        let client = kube::Client::try_from(config)?;
        let reviews = Api::<SelfSubjectAccessReview>::all(client);
        for (_, verb, group, resource, subresource, namespace, allowed) in
            checks.iter().filter(|c| c.0 == account)
        {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some((*verb).into()),
                        group: Some((*group).into()),
                        resource: Some((*resource).into()),
                        subresource: Some((*subresource).into()),
                        namespace: Some((*namespace).into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = reviews.create(&PostParams::default(), &review).await?;
            let got = answer.status.is_some_and(|s| s.allowed);
            if got != *allowed {
                wrong.push(format!(
                    "{account} {verb} {group}/{resource}/{subresource} in {namespace:?}: \
                     allowed={got}, want {allowed}"
                ));
            }
        }
    }
    ensure!(wrong.is_empty(), "RBAC:\n{}", wrong.join("\n"));
    Ok(())
}
