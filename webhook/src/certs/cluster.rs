//! In-cluster mode, run by the install's one-shot Job: keep the Secret valid for the Service
//! names, and every webhook of the configuration trusting its CA. Idempotent: a second run with
//! nothing to do writes nothing. Needs only get/create/update on the one Secret and get/patch
//! on the one MutatingWebhookConfiguration.

use std::time::{Duration, SystemTime};

use k8s_openapi::{
    ByteString, api::admissionregistration::v1::MutatingWebhookConfiguration, api::core::v1::Secret,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};

use super::{Bundle, CertsArgs, SECRET_NAME, WEBHOOK_CONFIGURATION, files, generate, verify};
use crate::Result;

/// Field manager of the caBundle patch.
const FIELD_MANAGER: &str = "snug-webhook-certs";

/// What the in-cluster run works on.
#[derive(Debug, Clone)]
pub struct InCluster {
    /// The webhook's Service.
    pub service: String,
    /// Its namespace (and the Secret's).
    pub namespace: String,
    /// Validity of new certificates.
    pub valid_days: u32,
    /// Renew when expiring within this.
    pub renew_before: Duration,
}

impl From<&CertsArgs> for InCluster {
    fn from(args: &CertsArgs) -> Self {
        InCluster {
            service: args.service.clone(),
            namespace: args.namespace.clone(),
            valid_days: args.valid_days,
            renew_before: Duration::from_secs(u64::from(args.renew_before_days) * 86_400),
        }
    }
}

/// What happened to the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretAction {
    /// It was valid and kept.
    Kept,
    /// It did not exist and was created.
    Created,
    /// It was invalid or expiring and was replaced.
    Rotated,
}

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The Secret.
    pub secret: SecretAction,
    /// Whether the caBundles were patched.
    pub ca_bundle_patched: bool,
}

/// Makes sure the Secret is valid and the webhook configuration trusts its CA.
pub async fn ensure_in_cluster(client: Client, target: &InCluster) -> Result<Report> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &target.namespace);
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client);
    let existing = secrets.get_opt(SECRET_NAME).await?;
    let current = existing.as_ref().and_then(bundle_of);
    let valid = current.as_ref().filter(|b| still_valid(b, target));
    let (bundle, action) = match (valid, &existing) {
        (Some(b), _) => (b.clone(), SecretAction::Kept),
        (None, None) => (
            generate(&target.service, &target.namespace, target.valid_days)?,
            SecretAction::Created,
        ),
        (None, Some(_)) => (
            generate(&target.service, &target.namespace, target.valid_days)?,
            SecretAction::Rotated,
        ),
    };
    // While rotating, trust the old CA too until the webhook has reloaded the new pair.
    let mut trusted = bundle.ca_pem.clone();
    if action == SecretAction::Rotated
        && let Some(old) = &current
    {
        trusted.push_str(&old.ca_pem);
    }
    let ca_bundle_patched = patch_ca_bundle(&configs, &trusted).await?;
    match (action, existing) {
        (SecretAction::Kept, _) => {}
        (SecretAction::Created, _) | (SecretAction::Rotated, None) => {
            secrets
                .create(
                    &PostParams::default(),
                    &files::secret(&bundle, &target.namespace),
                )
                .await?;
        }
        (SecretAction::Rotated, Some(old)) => {
            let mut secret = files::secret(&bundle, &target.namespace);
            secret.metadata.resource_version = old.metadata.resource_version;
            secrets
                .replace(SECRET_NAME, &PostParams::default(), &secret)
                .await?;
        }
    }
    Ok(Report {
        secret: action,
        ca_bundle_patched,
    })
}

fn bundle_of(secret: &Secret) -> Option<Bundle> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
    Some(Bundle {
        ca_pem: text("ca.crt")?,
        cert_pem: text("tls.crt")?,
        key_pem: text("tls.key")?,
    })
}

/// Valid for both in-cluster names now and still after `renew_before`.
fn still_valid(bundle: &Bundle, target: &InCluster) -> bool {
    let names = super::service_names(&target.service, &target.namespace);
    let later = SystemTime::now() + target.renew_before;
    names.iter().take(2).all(|name| {
        [SystemTime::now(), later]
            .into_iter()
            .all(|at| verify(&bundle.ca_pem, &bundle.cert_pem, name, at).is_ok())
    })
}

async fn patch_ca_bundle(
    configs: &Api<MutatingWebhookConfiguration>,
    ca_pem: &str,
) -> Result<bool> {
    let config = configs.get(WEBHOOK_CONFIGURATION).await?;
    let stale: Vec<&str> = config
        .webhooks
        .iter()
        .flatten()
        .filter(|w| {
            w.client_config.ca_bundle.as_ref() != Some(&ByteString(ca_pem.as_bytes().to_vec()))
        })
        .map(|w| w.name.as_str())
        .collect();
    if stale.is_empty() {
        return Ok(false);
    }
    let patch = files::cabundle_patch_value(ca_pem, &stale);
    configs
        .patch(
            WEBHOOK_CONFIGURATION,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Strategic(patch),
        )
        .await?;
    Ok(true)
}
