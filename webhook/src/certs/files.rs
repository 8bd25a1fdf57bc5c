//! File mode: the PEM files, the Secret and the caBundle patch, for kustomize.

use std::{collections::BTreeMap, io::Write, path::Path};

use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::{Bundle, SECRET_NAME, WEBHOOK_CONFIGURATION};
use crate::{Error, Result};

/// The webhook's name in its MutatingWebhookConfiguration.
pub const WEBHOOK_NAME: &str = "inject.snug.dev";

/// Writes `ca.crt`, `tls.crt`, `tls.key` (mode 0600), `secret.yaml` and `cabundle-patch.yaml`.
pub fn write_files(dir: &Path, bundle: &Bundle, namespace: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    write(dir, "ca.crt", bundle.ca_pem.as_bytes(), false)?;
    write(dir, "tls.crt", bundle.cert_pem.as_bytes(), false)?;
    write(dir, "tls.key", bundle.key_pem.as_bytes(), true)?;
    // The Secret holds the private key too: as private as the key file.
    write(
        dir,
        "secret.yaml",
        secret_manifest(bundle, namespace)?.as_bytes(),
        true,
    )?;
    write(
        dir,
        "cabundle-patch.yaml",
        cabundle_patch(&bundle.ca_pem, &[WEBHOOK_NAME])?.as_bytes(),
        false,
    )
}

fn write(dir: &Path, name: &str, content: &[u8], private: bool) -> Result<()> {
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&path).map_err(|e| Error::file(&path, e))?;
    // An existing file keeps its old mode through open(); set it explicitly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if private { 0o600 } else { 0o644 };
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::file(&path, e))?;
    }
    file.write_all(content).map_err(|e| Error::file(&path, e))
}

/// The TLS Secret the webhook Deployment mounts.
pub fn secret(bundle: &Bundle, namespace: &str) -> Secret {
    let data = BTreeMap::from([
        (
            "tls.crt".to_owned(),
            ByteString(bundle.cert_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_owned(),
            ByteString(bundle.key_pem.clone().into_bytes()),
        ),
        (
            "ca.crt".to_owned(),
            ByteString(bundle.ca_pem.clone().into_bytes()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(SECRET_NAME.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/part-of".to_owned(),
                "snug".to_owned(),
            )])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// The Secret as YAML.
pub fn secret_manifest(bundle: &Bundle, namespace: &str) -> Result<String> {
    let mut value = serde_json::to_value(secret(bundle, namespace))
        .map_err(|e| Error::Encode(e.to_string()))?;
    // Typed serialization omits apiVersion/kind unless set through the Resource trait.
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), "v1".into());
        map.insert("kind".into(), "Secret".into());
    }
    serde_norway::to_string(&value).map_err(|e| Error::Encode(e.to_string()))
}

/// A strategic-merge patch setting the caBundle of the named webhooks (webhooks merge by name).
pub fn cabundle_patch_value(ca_pem: &str, webhooks: &[&str]) -> serde_json::Value {
    let ca = serde_json::to_value(ByteString(ca_pem.as_bytes().to_vec())).unwrap_or_default();
    serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIGURATION},
        "webhooks": webhooks.iter().map(|name| serde_json::json!({
            "name": name,
            "clientConfig": {"caBundle": ca},
        })).collect::<Vec<_>>(),
    })
}

/// [`cabundle_patch_value`] as YAML, for kustomize `patches:`.
pub fn cabundle_patch(ca_pem: &str, webhooks: &[&str]) -> Result<String> {
    serde_norway::to_string(&cabundle_patch_value(ca_pem, webhooks))
        .map_err(|e| Error::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_with_private_key_modes_and_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = super::super::generate("snug-webhook", "snug-system", 30).unwrap();
        write_files(dir.path(), &bundle, "snug-system").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |n: &str| {
                std::fs::metadata(dir.path().join(n))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(mode("tls.key"), 0o600);
            assert_eq!(mode("secret.yaml"), 0o600);
            assert_eq!(mode("ca.crt"), 0o644);
        }
        let secret: Secret = serde_norway::from_str(
            &std::fs::read_to_string(dir.path().join("secret.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = secret.data.unwrap();
        assert_eq!(data["tls.key"].0, bundle.key_pem.as_bytes());
        assert_eq!(data["ca.crt"].0, bundle.ca_pem.as_bytes());
        let patch: serde_json::Value = serde_norway::from_str(
            &std::fs::read_to_string(dir.path().join("cabundle-patch.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(patch["metadata"]["name"], "snug-webhook");
        assert_eq!(patch["webhooks"][0]["name"], WEBHOOK_NAME);
        let ca: ByteString =
            serde_json::from_value(patch["webhooks"][0]["clientConfig"]["caBundle"].clone())
                .unwrap();
        assert_eq!(ca.0, bundle.ca_pem.as_bytes());
    }
}
