//! The serving certificate: loaded from PEM files, swapped in place when the files change
//! (a rotated Secret), and kept as it is when the new files do not make a valid pair, so a
//! half-written rotation never takes the webhook down.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::{Error, Result, metrics::Metrics};

/// The current certificate, shared by every TLS handshake.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    state: RwLock<Loaded>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    /// File contents the current key came from, to notice changes.
    files: (Vec<u8>, Vec<u8>),
    /// The last pair that failed, so a broken pair is reported once, not every poll.
    failed: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// What a reload check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The files are what is being served.
    Unchanged,
    /// A new pair is being served.
    Reloaded,
    /// The files changed but do not make a valid pair; the old certificate stays.
    Refused,
}

impl ReloadingCert {
    /// Loads the pair; fails if it is not valid (the webhook cannot start without one).
    pub fn load(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Result<Arc<Self>> {
        let (cert_path, key_path) = (cert_path.into(), key_path.into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let files = read_pair(&cert_path, &key_path)?;
        let key = certified_key(&files, &provider)?;
        Ok(Arc::new(ReloadingCert {
            cert_path,
            key_path,
            provider,
            state: RwLock::new(Loaded {
                key: Arc::new(key),
                files,
                failed: None,
            }),
        }))
    }

    /// Reloads if the files changed. Both files are read together and must make a valid pair
    /// (the key matches the certificate): during a rotation where only one file has been
    /// replaced yet, the pair does not match, the old one keeps serving, and the next check
    /// picks up the complete pair.
    pub fn reload_if_changed(&self) -> Reload {
        let files = match read_pair(&self.cert_path, &self.key_path) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(error = %e, "certificate files unreadable; still serving the loaded pair");
                return Reload::Refused;
            }
        };
        {
            let Ok(state) = self.state.read() else {
                return Reload::Refused;
            };
            if state.files == files {
                return Reload::Unchanged;
            }
            if state.failed.as_ref() == Some(&files) {
                return Reload::Refused;
            }
        }
        let Ok(mut state) = self.state.write() else {
            return Reload::Refused;
        };
        match certified_key(&files, &self.provider) {
            Ok(key) => {
                tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                *state = Loaded {
                    key: Arc::new(key),
                    files,
                    failed: None,
                };
                Reload::Reloaded
            }
            Err(e) => {
                tracing::error!(error = %e, "new certificate pair refused; still serving the previous one");
                state.failed = Some(files);
                Reload::Refused
            }
        }
    }

    /// Checks the files every `interval`, for as long as the task runs.
    pub async fn watch(self: Arc<Self>, interval: Duration, metrics: Metrics) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
                Ok(Reload::Reloaded) => metrics.tls_reload(true),
                Ok(Reload::Refused) => metrics.tls_reload(false),
                Ok(Reload::Unchanged) | Err(_) => {}
            }
        }
    }

    /// A rustls server configuration that serves the current certificate (HTTP/2 and 1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.state.read().ok().map(|s| s.key.clone())
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| Error::file(path, e));
    Ok((read(cert)?, read(key)?))
}

fn certified_key(files: &(Vec<u8>, Vec<u8>), provider: &CryptoProvider) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&files.0)
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("certificate: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Tls("certificate file holds no certificate".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(&files.1).map_err(|e| Error::Tls(format!("key: {e}")))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| Error::Tls(format!("key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| Error::Tls(format!("key does not match the certificate: {e}")))?;
    Ok(certified)
}
