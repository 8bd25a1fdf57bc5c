//! The demo's admission: a pod of the profiled Deployment, as the API server would send it to
//! the webhook (an AdmissionReview over TLS, verified against the CA the demo generated), and
//! the pod as it would be stored once the returned JSON Patch is applied.

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Failure, Result};

/// The pod the demo asks the webhook about: one replica of `Deployment/<workload>` in
/// `namespace`, sized by guesswork (1 CPU, 1 GiB requested) and opted into `apply` mode, with a
/// memory ceiling the webhook must respect.
pub fn demo_pod(namespace: &str, workload: &str) -> Value {
    let hash = "7d9c6b5f4";
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("{workload}-{hash}-"),
            "namespace": namespace,
            "labels": {"app": workload, "pod-template-hash": hash},
            "annotations": {"snug.dev/mode": "apply", "snug.dev/max-memory": "1Gi"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{workload}-{hash}"),
                "uid": "9a0d3c4e-0000-4000-8000-000000000001", "controller": true,
                "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "registry.example/shop/web:1.4.2",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                "resources": {
                    "requests": {"cpu": "1", "memory": "1Gi"},
                    "limits": {"cpu": "2", "memory": "2Gi"}
                }
            }]
        }
    })
}

/// Wraps `pod` in an `admission.k8s.io/v1` CREATE review.
pub fn review(pod: &Value, namespace: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "5f2b6c1e-demo-4c8e-9d7a-000000000042",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// Posts `review` to `https://<server_name>/mutate` at `addr`, trusting only `ca_pem`, and
/// returns the AdmissionReview the webhook answered.
pub async fn post_review(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
    review: &Value,
) -> Result<Value> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| Failure(format!("CA certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Failure(format!("CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| Failure(format!("server name {server_name}: {e}")))?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| Failure(format!("connecting to the webhook at {addr}: {e}")))?;
    let stream = TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| Failure(format!("TLS handshake with the webhook: {e}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure(format!("HTTP to the webhook: {e}")))?;
    tokio::spawn(connection);
    let body = serde_json::to_vec(review).map_err(|e| Failure(e.to_string()))?;
    let request = http::Request::post("/mutate")
        .header("host", server_name)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Failure(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| Failure(format!("POST /mutate: {e}")))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| Failure(format!("reading the webhook's answer: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(Failure(format!(
            "webhook answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| Failure(format!("webhook's answer: {e}")))
}

/// The JSON Patch operations in an AdmissionReview response (none when it allowed the pod
/// unchanged).
pub fn patch_of(answer: &Value) -> Result<json_patch::Patch> {
    let response = &answer["response"];
    if response["allowed"] != json!(true) {
        return Err(Failure(format!("the webhook refused the pod: {response}")));
    }
    // The API server reads the patch as Go `[]byte`: a base64 string or an array of bytes
    // (kube-core sends the latter); take either.
    let bytes: Vec<u8> = match &response["patch"] {
        Value::Null => return Ok(json_patch::Patch(Vec::new())),
        Value::String(encoded) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| Failure(format!("patch is not base64: {e}")))?
        }
        array => serde_json::from_value(array.clone())
            .map_err(|e| Failure(format!("patch is neither base64 nor bytes: {e}")))?,
    };
    serde_json::from_slice(&bytes).map_err(|e| Failure(format!("patch is not JSON Patch: {e}")))
}

/// `pod` with `patch` applied, as the API server would store it.
pub fn apply(pod: &Value, patch: &json_patch::Patch) -> Result<Pod> {
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, patch)
        .map_err(|e| Failure(format!("the webhook's patch does not apply: {e}")))?;
    serde_json::from_value(patched)
        .map_err(|e| Failure(format!("the patched pod is not a valid Pod: {e}")))
}

/// What `container` requests of `resource` (`cpu` in cores, `memory` in bytes), if anything.
pub fn requested(container: &k8s_openapi::api::core::v1::Container, resource: &str) -> Option<f64> {
    let quantity = container
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get(resource)?;
    snug_api::quantity::parse_quantity(quantity).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_pod_is_a_valid_pod_of_its_deployment() {
        let pod: Pod = serde_json::from_value(demo_pod("shop", "web")).unwrap();
        let workload = snug_api::WorkloadRef::from_pod(&pod.metadata).unwrap();
        assert_eq!(workload.profile_name(), "deployment-web");
    }

    #[test]
    fn an_allow_without_patch_yields_no_operations() {
        let answer = json!({"response": {"uid": "x", "allowed": true}});
        assert!(patch_of(&answer).unwrap().0.is_empty());
        let ops = br#"[{"op":"add","path":"/metadata/labels","value":{}}]"#;
        let as_bytes = json!({"response": {"allowed": true, "patch": ops.to_vec()}});
        assert_eq!(patch_of(&as_bytes).unwrap().0.len(), 1);
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(ops);
        let as_base64 = json!({"response": {"allowed": true, "patch": encoded}});
        assert_eq!(patch_of(&as_base64).unwrap().0.len(), 1);
        let refused = json!({"response": {"uid": "x", "allowed": false}});
        assert!(patch_of(&refused).is_err());
    }
}
