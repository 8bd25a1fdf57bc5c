//! Usage from the resource metrics API (`metrics.k8s.io/v1beta1` PodMetrics, served by
//! metrics-server): CPU in cores and working-set memory, per container, one list per namespace.
//!
//! k8s-openapi has no type for PodMetrics (it is an aggregated API), so the few fields used are
//! declared here.

use std::{collections::BTreeMap, time::Duration};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta};
use kube::Client;
use serde::Deserialize;
use snug_api::quantity;

use super::{ContainerUsage, UsageOutcome, UsageProblem, UsageReport, UsageSource};

/// How many namespaces are listed at once.
const NAMESPACE_CONCURRENCY: usize = 8;

/// `PodMetricsList`, as much of it as the profiler reads.
#[derive(Debug, Clone, Deserialize)]
pub struct PodMetricsList {
    /// The pods.
    #[serde(default)]
    pub items: Vec<PodMetrics>,
}

/// `PodMetrics`: one pod's container usage over a short window.
#[derive(Debug, Clone, Deserialize)]
pub struct PodMetrics {
    /// Namespace and name of the pod.
    pub metadata: ObjectMeta,
    /// Per container usage.
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

/// One container's usage.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerMetrics {
    /// Container name.
    pub name: String,
    /// `cpu` and `memory` quantities.
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// Reads PodMetrics through the API server.
#[derive(Clone)]
pub struct MetricsApiUsage {
    client: Client,
    timeout: Duration,
}

impl std::fmt::Debug for MetricsApiUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsApiUsage")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl MetricsApiUsage {
    /// A source that gives each namespace's list `timeout` to answer.
    pub fn new(client: Client, timeout: Duration) -> Self {
        MetricsApiUsage { client, timeout }
    }

    async fn read_namespace(&self, namespace: &str) -> Result<Vec<ContainerUsage>, UsageProblem> {
        let problem = |outcome, message: String| UsageProblem {
            scope: namespace.to_owned(),
            outcome,
            message,
        };
        let request = http::Request::get(format!(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"
        ))
        .body(Vec::new())
        .map_err(|e| problem(UsageOutcome::Error, e.to_string()))?;
        let list =
            tokio::time::timeout(self.timeout, self.client.request::<PodMetricsList>(request))
                .await
                .map_err(|_| {
                    problem(
                        UsageOutcome::Timeout,
                        format!("no answer in {:?}", self.timeout),
                    )
                })?
                .map_err(|e| match &e {
                    kube::Error::Api(status) if matches!(status.code, 404 | 503) => problem(
                        UsageOutcome::Unavailable,
                        format!("metrics.k8s.io not served (is metrics-server installed?): {e}"),
                    ),
                    _ => problem(UsageOutcome::Error, e.to_string()),
                })?;
        Ok(container_usage(list))
    }
}

/// Flattens a PodMetrics list; quantities that do not parse count as "no reading".
pub fn container_usage(list: PodMetricsList) -> Vec<ContainerUsage> {
    let mut out = Vec::new();
    for pod in list.items {
        let (Some(namespace), Some(name)) = (pod.metadata.namespace, pod.metadata.name) else {
            continue;
        };
        for container in pod.containers {
            let value = |key: &str| {
                container
                    .usage
                    .get(key)
                    .and_then(|q| quantity::parse_quantity(q).ok())
            };
            out.push(ContainerUsage {
                namespace: namespace.clone(),
                pod: name.clone(),
                cpu_cores: value("cpu"),
                memory_bytes: value("memory"),
                container: container.name,
                ..Default::default()
            });
        }
    }
    out
}

impl UsageSource for MetricsApiUsage {
    async fn read(&self, namespaces: &[String]) -> UsageReport {
        let results: Vec<_> = futures::stream::iter(namespaces.to_vec())
            .map(|ns| async move { self.read_namespace(&ns).await })
            .buffer_unordered(NAMESPACE_CONCURRENCY)
            .collect()
            .await;
        let mut report = UsageReport::default();
        for result in results {
            match result {
                Ok(usage) => {
                    report.ok += 1;
                    report.usage.extend(usage);
                }
                Err(problem) => report.problems.push(problem),
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    fn client() -> (
        Client,
        tower_test::mock::Handle<Request<Body>, Response<Body>>,
    ) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(service, "default"), handle)
    }

    fn respond(status: u16, body: serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    #[tokio::test]
    async fn reads_pod_metrics_of_each_namespace() {
        let (client, mut handle) = client();
        let server =
            tokio::spawn(async move {
                let (request, send) = handle.next_request().await.unwrap();
                assert_eq!(
                    request.uri().path(),
                    "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods"
                );
                send.send_response(respond(200, serde_json::json!({
                "kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
                "items": [{"metadata": {"name": "web-1", "namespace": "shop"},
                    "timestamp": "2026-01-01T00:00:00Z", "window": "15s",
                    "containers": [{"name": "app", "usage": {"cpu": "250m", "memory": "100Mi"}},
                                   {"name": "odd", "usage": {"cpu": "lots"}}]}]
            })));
            });
        let source = MetricsApiUsage::new(client, Duration::from_secs(5));
        let report = source.read(&["shop".to_owned()]).await;
        server.await.unwrap();
        assert_eq!(report.ok, 1);
        assert_eq!(report.usage.len(), 2);
        assert_eq!(report.usage[0].cpu_cores, Some(0.25));
        assert_eq!(report.usage[0].memory_bytes, Some(100.0 * 1024.0 * 1024.0));
        assert_eq!(report.usage[1].cpu_cores, None, "unparsable is no reading");
    }

    #[tokio::test]
    async fn missing_metrics_server_is_unavailable_not_fatal() {
        for code in [404u16, 503] {
            let (client, mut handle) = client();
            let server = tokio::spawn(async move {
                let (_, send) = handle.next_request().await.unwrap();
                send.send_response(respond(
                    code,
                    serde_json::json!({
                        "kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": "the server could not find the requested resource",
                        "reason": "NotFound", "code": code
                    }),
                ));
            });
            let report = MetricsApiUsage::new(client, Duration::from_secs(5))
                .read(&["shop".to_owned()])
                .await;
            server.await.unwrap();
            assert_eq!(report.ok, 0);
            assert_eq!(
                report.problems[0].outcome,
                UsageOutcome::Unavailable,
                "{code}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slow_metrics_api_times_out() {
        let (client, mut handle) = client();
        // Holds the request without answering until the test ends.
        let server = tokio::spawn(async move {
            let pending = handle.next_request().await;
            std::future::pending::<()>().await;
            drop(pending);
        });
        let report = MetricsApiUsage::new(client, Duration::from_secs(2))
            .read(&["shop".to_owned()])
            .await;
        assert_eq!(report.problems[0].outcome, UsageOutcome::Timeout);
        server.abort();
    }
}
