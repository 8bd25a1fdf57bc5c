//! `snug-webhook certs`: a CA and a serving certificate for the webhook's Service, written as
//! files for kustomize or kept in a Secret by a Job in the cluster.

mod cluster;
mod files;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::{
    RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};

use crate::{Error, Result};

pub use cluster::{InCluster, Report, SecretAction, ensure_in_cluster};
pub use files::{
    WEBHOOK_NAME, cabundle_patch, cabundle_patch_value, secret, secret_manifest, write_files,
};

/// Name of the TLS Secret the webhook mounts.
pub const SECRET_NAME: &str = "snug-webhook-tls";
/// Name of the MutatingWebhookConfiguration whose caBundle is set.
pub const WEBHOOK_CONFIGURATION: &str = "snug-webhook";

/// Flags of `snug-webhook certs`.
#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Write ca.crt, tls.crt, tls.key, secret.yaml and cabundle-patch.yaml into this directory.
    #[arg(long, env = "SNUG_CERTS_OUT", required_unless_present = "in_cluster")]
    pub out: Option<std::path::PathBuf>,
    /// Keep the Secret in the cluster valid and the webhook configuration's caBundle in step
    /// (run by the install's Job).
    #[arg(long, env = "SNUG_CERTS_IN_CLUSTER", conflicts_with = "out")]
    pub in_cluster: bool,
    /// The webhook's Service name.
    #[arg(long, env = "SNUG_CERTS_SERVICE", default_value = "snug-webhook")]
    pub service: String,
    /// The webhook's namespace.
    #[arg(long, env = "SNUG_CERTS_NAMESPACE", default_value = snug_api::keys::SNUG_NAMESPACE)]
    pub namespace: String,
    /// Validity of new certificates, in days.
    #[arg(long, env = "SNUG_CERTS_VALID_DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub valid_days: u32,
    /// In-cluster: renew when the certificate expires within this many days.
    #[arg(long, env = "SNUG_CERTS_RENEW_BEFORE_DAYS", default_value_t = 30)]
    pub renew_before_days: u32,
}

/// A CA and a serving certificate signed by it, PEM-encoded.
#[derive(Clone)]
pub struct Bundle {
    /// The CA certificate (what the API server trusts: the caBundle).
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key.
    pub key_pem: String,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The DNS names the API server may use for the Service.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_owned(),
    ]
}

/// Makes a fresh CA and a serving certificate for `service.namespace.svc`, valid from an hour
/// ago (clock skew) for `valid_days`.
pub fn generate(service: &str, namespace: &str, valid_days: u32) -> Result<Bundle> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let not_before =
        rcgen::date_time_ymd(1970, 1, 1) + now.saturating_sub(Duration::from_secs(3600));
    let not_after = rcgen::date_time_ymd(1970, 1, 1)
        + now
        + Duration::from_secs(u64::from(valid_days) * 86_400);

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name(&format!("{service}.{namespace} webhook CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (ca.not_before, ca.not_after) = (not_before, not_after);
    let ca_cert = ca.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let names = service_names(service, namespace);
    let mut leaf = CertificateParams::new(names.clone())?;
    leaf.distinguished_name = name(&names[0]);
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    (leaf.not_before, leaf.not_after) = (not_before, not_after);
    let cert = leaf.signed_by(&key, &Issuer::new(ca, &ca_key))?;
    Ok(Bundle {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "snug");
    dn
}

/// Checks that `cert_pem` chains to `ca_pem` and is valid for `dns_name` at `at`, the way a
/// TLS client (the API server) would.
pub fn verify(ca_pem: &str, cert_pem: &str, dns_name: &str, at: SystemTime) -> Result<()> {
    let tls = |what: &str, e: &dyn std::fmt::Display| Error::Tls(format!("{what}: {e}"));
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| tls("CA", &e))?)
            .map_err(|e| tls("CA", &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| tls("verifier", &e))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls("certificate", &e))?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| Error::Tls("no certificate".into()))?;
    let server = ServerName::try_from(dns_name.to_owned()).map_err(|e| tls("name", &e))?;
    let at = UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap_or_default());
    verifier
        .verify_server_cert(leaf, intermediates, &server, &[], at)
        .map(|_| ())
        .map_err(|e| tls(dns_name, &e))
}

/// Runs the subcommand.
pub async fn run(args: CertsArgs) -> Result<()> {
    match &args.out {
        Some(dir) => {
            let bundle = generate(&args.service, &args.namespace, args.valid_days)?;
            write_files(dir, &bundle, &args.namespace)?;
            tracing::info!(dir = %dir.display(), "certificates written");
            Ok(())
        }
        None => {
            let client = kube::Client::try_default().await?;
            let report = ensure_in_cluster(client, &InCluster::from(&args)).await?;
            tracing::info!(?report, "certificates in place");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_chain_verifies_for_the_service_names_only() {
        let bundle = generate("snug-webhook", "snug-system", 365).unwrap();
        let now = SystemTime::now();
        for name in [
            "snug-webhook.snug-system.svc",
            "snug-webhook.snug-system.svc.cluster.local",
        ] {
            verify(&bundle.ca_pem, &bundle.cert_pem, name, now).unwrap();
        }
        assert!(verify(&bundle.ca_pem, &bundle.cert_pem, "evil.example.com", now).is_err());
        assert!(
            verify(
                &bundle.ca_pem,
                &bundle.cert_pem,
                "snug-webhook.other.svc",
                now
            )
            .is_err()
        );
        // Expired after its validity, and another CA does not vouch for it.
        let later = now + Duration::from_secs(366 * 86_400);
        assert!(
            verify(
                &bundle.ca_pem,
                &bundle.cert_pem,
                "snug-webhook.snug-system.svc",
                later
            )
            .is_err()
        );
        let other = generate("snug-webhook", "snug-system", 365).unwrap();
        assert!(
            verify(
                &other.ca_pem,
                &bundle.cert_pem,
                "snug-webhook.snug-system.svc",
                now
            )
            .is_err()
        );
    }
}
