//! Snug's scenarios, profiler side: profiles written by server-side apply with traffic and
//! peers, learned resources on a rollout, OOM kills, leader election.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Namespace, Pod},
};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;
use snug_api::{WorkloadProfile, keys};
use snug_e2e::{
    snug::{PROFILE_PATIENCE, Profiler},
    wait::{self, PATIENCE},
};

use super::{
    Env, pod_ip, ready_pods,
    snug::{PROFILER_ARGS, SHOP, container, named_port},
};

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
            let sized = status
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
        [
            &summary.cpu,
            &summary.memory,
            &summary.latency_p99,
            &summary.requests_per_second
        ]
        .iter()
        .all(|v| !v.is_empty()),
        "{summary:?}"
    );
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
