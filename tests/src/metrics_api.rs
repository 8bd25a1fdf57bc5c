//! The resource metrics API (`metrics.k8s.io/v1beta1`, PodMetrics) as metrics-server serves it,
//! answered from the fake kubelet's procfs samples, served over TLS and registered with the
//! API server's aggregation layer so clients (the profiler, `kubectl get --raw`) reach it
//! through the API server exactly as in a cluster.
//!
//! Kubernetes 1.20 refuses Endpoints on loopback addresses, and without kube-proxy no
//! ClusterIP reaches the harness, so the APIService's Service is an `ExternalName` Service
//! naming 127.0.0.1: the aggregator then dials `127.0.0.1:<spec.service.port>` with the TLS
//! server name `<service>.<namespace>.svc`, which the serving certificate carries.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::IntoResponse,
    routing::get,
};
use k8s_openapi::{
    api::core::v1::Service, jiff::Timestamp,
    kube_aggregator::pkg::apis::apiregistration::v1::APIService,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    error::{Error, Result},
    kubelet::{Kubelet, RunningPod},
    tls::ServingCert,
};

/// Namespace and name of the Service the APIService points at.
pub const SERVICE_NAMESPACE: &str = "kube-system";
/// Name of that Service.
pub const SERVICE_NAME: &str = "snug-e2e-metrics";
/// The APIService's name.
pub const API_SERVICE: &str = "v1beta1.metrics.k8s.io";
const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// The pods whose usage is served.
pub type PodSource = Arc<dyn Fn() -> Vec<Arc<RunningPod>> + Send + Sync>;

/// The running metrics API; dropping it stops serving (the APIService then turns unavailable).
#[derive(Debug)]
pub struct MetricsApi {
    /// The local port it serves on.
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for MetricsApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MetricsApi {
    /// Serves the fake kubelet's pods and registers the APIService; returns once the
    /// aggregator reports it Available.
    pub async fn start(client: kube::Client, kubelet: &Kubelet) -> Result<Self> {
        let cert = ServingCert::generate(&[&format!("{SERVICE_NAME}.{SERVICE_NAMESPACE}.svc")])?;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(Error::io("127.0.0.1:0"))?;
        let port = listener
            .local_addr()
            .map_err(Error::io("metrics API listener"))?
            .port();
        let task = tokio::spawn(crate::serve::tls(
            listener,
            cert.server_config()?,
            router(kubelet.pod_source()),
        ));
        let api = MetricsApi { port, task };
        register(&client, port, &cert.ca_pem).await?;
        wait_available(&client).await?;
        Ok(api)
    }
}

/// The HTTP surface: discovery, pod metrics (all, per namespace, one), empty node metrics.
pub fn router(pods: PodSource) -> Router {
    let base = "/apis/metrics.k8s.io/v1beta1";
    Router::new()
        .route(base, get(discovery))
        .route(&format!("{base}/pods"), get(all_pods))
        .route(
            &format!("{base}/namespaces/{{namespace}}/pods"),
            get(namespace_pods),
        )
        .route(
            &format!("{base}/namespaces/{{namespace}}/pods/{{name}}"),
            get(one_pod),
        )
        .route(&format!("{base}/nodes"), get(nodes))
        .with_state(pods)
}

async fn discovery() -> Json<Value> {
    let resource = |name: &str, kind: &str, namespaced: bool| json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]});
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [resource("nodes", "NodeMetrics", false), resource("pods", "PodMetrics", true)],
    }))
}

async fn all_pods(
    State(pods): State<PodSource>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    Json(list(&pods(), None, q.get("labelSelector")))
}

async fn namespace_pods(
    State(pods): State<PodSource>,
    Path(namespace): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    Json(list(&pods(), Some(&namespace), q.get("labelSelector")))
}

async fn one_pod(
    State(pods): State<PodSource>,
    Path((namespace, name)): Path<(String, String)>,
) -> impl IntoResponse {
    let key = format!("{namespace}/{name}");
    match pods()
        .iter()
        .find(|p| p.key() == key)
        .and_then(|p| pod_metrics(p))
    {
        Some(metrics) => (StatusCode::OK, Json(metrics)),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                "code": 404, "message": format!("podmetrics.metrics.k8s.io \"{key}\" not found"),
            })),
        ),
    }
}

async fn nodes() -> Json<Value> {
    Json(
        json!({"kind": "NodeMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": []}),
    )
}

fn list(pods: &[Arc<RunningPod>], namespace: Option<&str>, selector: Option<&String>) -> Value {
    let mut items: Vec<Value> = pods
        .iter()
        .filter(|p| namespace.is_none_or(|ns| p.pod.metadata.namespace.as_deref() == Some(ns)))
        .filter(|p| selector.is_none_or(|s| matches_selector(p, s)))
        .filter_map(|p| pod_metrics(p))
        .collect();
    items.sort_by_key(|m| m["metadata"]["name"].as_str().map(str::to_owned));
    json!({"kind": "PodMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})
}

/// Equality selectors (`a=b,c==d,e!=f`), the forms clients of this API send.
fn matches_selector(pod: &RunningPod, selector: &str) -> bool {
    let labels = pod.pod.metadata.labels.clone().unwrap_or_default();
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels.get(k.trim()).map(String::as_str) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            labels.get(k.trim()).map(String::as_str) == Some(v.trim_start_matches('=').trim())
        } else {
            labels.contains_key(term.trim())
        }
    })
}

/// A pod's PodMetrics, or none until every container has two samples (as metrics-server
/// leaves out pods it has no complete window for).
fn pod_metrics(pod: &RunningPod) -> Option<Value> {
    let usage = pod.usage();
    if usage.is_empty() || usage.len() < pod.containers.len() {
        return None;
    }
    let containers: Vec<Value> = usage
        .iter()
        .map(|c| {
            json!({"name": c.name, "usage": {
                "cpu": format!("{}n", (c.cores * 1e9).round() as u64),
                "memory": format!("{}Ki", c.memory_bytes / 1024),
            }})
        })
        .collect();
    let now = serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        Timestamp::now(),
    ))
    .ok()?;
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": {
            "name": pod.pod.metadata.name,
            "namespace": pod.pod.metadata.namespace,
            "labels": pod.pod.metadata.labels,
            "creationTimestamp": now,
        },
        "timestamp": now,
        "window": "1s",
        "containers": containers,
    }))
}

async fn register(client: &kube::Client, port: u16, ca_pem: &str) -> Result<()> {
    let apply = PatchParams::apply("snug-e2e").force();
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE},
        "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
    }))?;
    Api::<Service>::namespaced(client.clone(), SERVICE_NAMESPACE)
        .patch(SERVICE_NAME, &apply, &Patch::Apply(&service))
        .await?;
    let api_service: APIService = serde_json::from_value(json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": API_SERVICE},
        "spec": {
            "group": "metrics.k8s.io", "version": "v1beta1",
            "service": {"namespace": SERVICE_NAMESPACE, "name": SERVICE_NAME, "port": port},
            "caBundle": k8s_openapi::ByteString(ca_pem.as_bytes().to_vec()),
            "groupPriorityMinimum": 100, "versionPriority": 100,
        },
    }))?;
    // The 1.20 aggregator panics on server-side apply of APIServices ("FieldManager must be
    // installed to run apply"): create, or replace what a previous registration left.
    let api_services = Api::<APIService>::all(client.clone());
    match api_services.get_opt(API_SERVICE).await? {
        None => {
            api_services
                .create(&PostParams::default(), &api_service)
                .await?;
        }
        Some(existing) => {
            let mut replacement = api_service;
            replacement.metadata.resource_version = existing.metadata.resource_version;
            api_services
                .replace(API_SERVICE, &PostParams::default(), &replacement)
                .await?;
        }
    }
    Ok(())
}

async fn wait_available(client: &kube::Client) -> Result<()> {
    let api = Api::<APIService>::all(client.clone());
    let mut last = String::new();
    for _ in 0..240 {
        let service = api.get(API_SERVICE).await?;
        let available = service
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .find(|c| c.type_ == "Available");
        if let Some(c) = available {
            if c.status == "True" {
                return Ok(());
            }
            last = format!(
                "{}: {}",
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(Error::Timeout {
        what: format!("APIService {API_SERVICE} to be Available (last: {last})"),
        seconds: 60,
    })
}
