//! Snug installed into the test cluster as `manifests/` describes it, its programs run as local
//! processes: the webhook behind the `snug-webhook` Service and the MutatingWebhookConfiguration
//! from `manifests/base/webhook/` (caBundle filled in), and profilers against the API server.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    time::Duration,
};

use k8s_openapi::{
    ByteString,
    api::{admissionregistration::v1::MutatingWebhookConfiguration, core::v1::Service},
};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::{
    cluster::Cluster,
    error::{Error, Result},
    process::{LocalProcess, workspace_binary},
    tls::ServingCert,
    wait,
};

/// The webhook configuration the install applies.
pub const WEBHOOK_MANIFEST: &str = "manifests/base/webhook/mutatingwebhookconfiguration.yaml";

/// The install's namespace, ServiceAccounts and RBAC, applied as they are: the webhook and the
/// profilers run as their ServiceAccounts, so a permission the manifests lack fails the tests.
pub const RBAC_MANIFESTS: [&str; 5] = [
    "manifests/base/namespace.yaml",
    "manifests/base/webhook/serviceaccount.yaml",
    "manifests/base/webhook/rbac.yaml",
    "manifests/base/profiler/serviceaccount.yaml",
    "manifests/base/profiler/rbac.yaml",
];

/// The running webhook.
#[derive(Debug)]
pub struct Webhook {
    process: LocalProcess,
    /// Its HTTPS port (what the webhook configuration points at).
    pub port: u16,
    /// Its health and metrics port.
    pub health_port: u16,
}

impl Webhook {
    /// Starts `snug-webhook` with a fresh serving certificate for
    /// `snug-webhook.snug-system.svc`, waits until it is ready, and registers it.
    pub async fn start(cluster: &Cluster, extra_args: &[&str]) -> Result<Self> {
        let tls_dir = cluster.dir().join("snug-webhook-tls");
        std::fs::create_dir_all(&tls_dir).map_err(Error::io(&tls_dir))?;
        let service_host = format!("snug-webhook.{}.svc", snug_api::keys::SNUG_NAMESPACE);
        let cert = ServingCert::generate(&[&service_host])?;
        for (file, pem) in [
            ("tls.crt", &cert.cert_pem),
            ("tls.key", &cert.key_pem),
            ("ca.crt", &cert.ca_pem),
        ] {
            let path = tls_dir.join(file);
            std::fs::write(&path, pem).map_err(Error::io(&path))?;
        }
        let (port, health_port) = (free_port()?, free_port()?);
        let mut args = vec![
            format!("--listen=127.0.0.1:{port}"),
            format!("--health-listen=127.0.0.1:{health_port}"),
            format!("--tls-cert={}", tls_dir.join("tls.crt").display()),
            format!("--tls-key={}", tls_dir.join("tls.key").display()),
        ];
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        let kubeconfig = service_account(cluster, "snug-webhook").await?;
        let process = LocalProcess::spawn(
            cluster,
            "snug-webhook",
            &workspace_binary("snug-webhook")?,
            &args,
            &[("KUBECONFIG", kubeconfig.display().to_string())],
        )?;
        let webhook = Webhook {
            process,
            port,
            health_port,
        };
        wait_ready("snug-webhook", health_port).await?;
        register(cluster, port, &cert.ca_pem).await?;
        Ok(webhook)
    }

    /// Kills the webhook process (the registration stays, as when its pods are down).
    pub async fn stop(&mut self) {
        self.process.kill().await;
    }

    /// Its `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.health_port);
        Ok(crate::http::get(&url, None).await?.body)
    }
}

/// A running profiler.
#[derive(Debug)]
pub struct Profiler {
    process: LocalProcess,
    /// Its identity in the Lease.
    pub identity: String,
    /// Its health and metrics port.
    pub health_port: u16,
}

impl Profiler {
    /// Starts `snug-profiler run` as `identity`, with `extra_args` (interval, window, ...).
    pub async fn start(cluster: &Cluster, identity: &str, extra_args: &[&str]) -> Result<Self> {
        let health_port = free_port()?;
        let mut args = vec![
            "run".to_owned(),
            format!("--identity={identity}"),
            format!("--health-listen=127.0.0.1:{health_port}"),
        ];
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        let kubeconfig = service_account(cluster, "snug-profiler").await?;
        let process = LocalProcess::spawn(
            cluster,
            identity,
            &workspace_binary("snug-profiler")?,
            &args,
            &[("KUBECONFIG", kubeconfig.display().to_string())],
        )?;
        let profiler = Profiler {
            process,
            identity: identity.to_owned(),
            health_port,
        };
        wait_live(identity, health_port).await?;
        Ok(profiler)
    }

    /// Kills it outright, as a node failure would.
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// Its `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.health_port);
        Ok(crate::http::get(&url, None).await?.body)
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        self.process.log()
    }
}

/// Applies the install's RBAC ([`RBAC_MANIFESTS`]) and returns a kubeconfig acting as
/// ServiceAccount `snug-system/<name>` (the one Snug's processes are started with).
pub async fn service_account(cluster: &Cluster, name: &str) -> Result<PathBuf> {
    let root = repository_root();
    let files: Vec<String> = RBAC_MANIFESTS
        .iter()
        .map(|f| root.join(f).display().to_string())
        .collect();
    let mut args = vec!["apply"];
    for file in &files {
        args.extend(["-f", file.as_str()]);
    }
    cluster.kubectl(&args).await?;
    cluster.kubeconfig_as(snug_api::keys::SNUG_NAMESPACE, name)
}

/// The Service and the webhook configuration from the manifests, pointed at the local webhook:
/// the Service is an ExternalName for 127.0.0.1 (1.20 refuses loopback Endpoints), so the API
/// server dials 127.0.0.1 on the configuration's port, which becomes the local port.
async fn register(cluster: &Cluster, port: u16, ca_pem: &str) -> Result<()> {
    let namespace = snug_api::keys::SNUG_NAMESPACE;
    let apply = PatchParams::apply("snug-e2e").force();
    cluster.ensure_namespace(namespace).await?;
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "snug-webhook", "namespace": namespace},
        "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
    }))?;
    Api::<Service>::namespaced(cluster.client(), namespace)
        .patch("snug-webhook", &apply, &Patch::Apply(&service))
        .await?;
    let mut config = webhook_configuration()?;
    for webhook in config.webhooks.iter_mut().flatten() {
        webhook.client_config.ca_bundle = Some(ByteString(ca_pem.as_bytes().to_vec()));
        if let Some(service) = webhook.client_config.service.as_mut() {
            service.port = Some(i32::from(port));
        }
    }
    let name = config.metadata.name.clone().unwrap_or_default();
    config.metadata.managed_fields = None;
    Api::<MutatingWebhookConfiguration>::all(cluster.client())
        .patch(&name, &apply, &Patch::Apply(&config))
        .await?;
    Ok(())
}

/// The MutatingWebhookConfiguration of the install (`manifests/base/webhook/`).
fn webhook_configuration() -> Result<MutatingWebhookConfiguration> {
    let path = repository_root().join(WEBHOOK_MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    serde_norway::from_str(&text).map_err(|e| Error::Command {
        command: format!("parse {}", path.display()),
        reason: e.to_string(),
    })
}

async fn wait_ready(name: &str, port: u16) -> Result<()> {
    wait_for_path(name, port, "/ready").await
}

async fn wait_live(name: &str, port: u16) -> Result<()> {
    wait_for_path(name, port, "/live").await
}

async fn wait_for_path(name: &str, port: u16, path: &str) -> Result<()> {
    let url = format!("http://127.0.0.1:{port}{path}");
    wait::until(
        &format!("{name} to answer {url}"),
        wait::PATIENCE,
        || async {
            let response = crate::http::get(&url, None).await.ok()?;
            (response.status == 200).then_some(())
        },
    )
    .await
}

/// A port free right now on 127.0.0.1 (the OS picks it; the short window before the program
/// binds it is harmless on a test machine).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(Error::io("127.0.0.1:0"))?;
    Ok(listener
        .local_addr()
        .map_err(Error::io("127.0.0.1:0"))?
        .port())
}

/// The repository's root (the parent of this crate).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// How long a profile may take to appear: a few profiler cycles.
pub const PROFILE_PATIENCE: Duration = Duration::from_secs(120);
