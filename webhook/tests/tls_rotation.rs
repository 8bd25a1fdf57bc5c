//! The serving certificate rotates without a restart, over real sockets on 127.0.0.1: a new
//! pair is served once both files are in place, a broken pair is refused and the old one keeps
//! serving. Certificates are generated in the test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: a failure is a test failure

mod common;

use std::{path::Path, sync::Arc};

use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use snug_webhook::{
    certs::{Bundle, generate},
    server::serve_tls,
    tls::{Reload, ReloadingCert},
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

const NAME: &str = "snug-webhook.snug-system.svc";

fn write_pair(dir: &Path, cert: &str, key: &str) {
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
}

fn connector(ca: &Bundle) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Posts a review over a fresh TLS connection trusting `ca`; the HTTP status, or the TLS error.
async fn admit_over_tls(addr: std::net::SocketAddr, ca: &Bundle) -> Result<u16, String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector(ca)
        .connect(ServerName::try_from(NAME).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = common::review(&common::yaml_file("pods/deployment.yaml"), "CREATE").to_string();
    let request = http::Request::post("/mutate")
        .header("host", NAME)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let review: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(review["response"]["patch"].is_array(), "{review}");
    Ok(status)
}

#[tokio::test]
async fn certificates_rotate_in_place_and_a_broken_pair_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = generate("snug-webhook", "snug-system", 30).unwrap();
    let second = generate("snug-webhook", "snug-system", 30).unwrap();
    write_pair(dir.path(), &first.cert_pem, &first.key_pem);

    let cert = ReloadingCert::load(dir.path().join("tls.crt"), dir.path().join("tls.key")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_tls(
        listener,
        cert.server_config().unwrap(),
        common::test_router(),
        async move {
            let _ = stopped.await;
        },
    ));

    assert_eq!(admit_over_tls(addr, &first).await, Ok(200));
    assert!(
        admit_over_tls(addr, &second).await.is_err(),
        "second CA must not verify yet"
    );
    assert_eq!(cert.reload_if_changed(), Reload::Unchanged);

    // Half a rotation: the new certificate with the old key. Refused; the old pair serves on.
    write_pair(dir.path(), &second.cert_pem, &first.key_pem);
    assert_eq!(cert.reload_if_changed(), Reload::Refused);
    assert_eq!(admit_over_tls(addr, &first).await, Ok(200));
    // Garbage is refused too.
    write_pair(dir.path(), "not a certificate", "not a key");
    assert_eq!(cert.reload_if_changed(), Reload::Refused);
    std::fs::remove_file(dir.path().join("tls.key")).unwrap();
    assert_eq!(cert.reload_if_changed(), Reload::Refused);
    assert_eq!(admit_over_tls(addr, &first).await, Ok(200));

    // Both files replaced: the new pair is served to new connections, without a restart.
    write_pair(dir.path(), &second.cert_pem, &second.key_pem);
    assert_eq!(cert.reload_if_changed(), Reload::Reloaded);
    assert_eq!(admit_over_tls(addr, &second).await, Ok(200));
    assert!(
        admit_over_tls(addr, &first).await.is_err(),
        "old CA must no longer verify"
    );
    assert_eq!(cert.reload_if_changed(), Reload::Unchanged);

    stop.send(()).unwrap();
    server.await.unwrap();
}

#[test]
fn the_webhook_does_not_start_without_a_valid_pair() {
    let dir = tempfile::tempdir().unwrap();
    let first = generate("snug-webhook", "snug-system", 30).unwrap();
    let second = generate("snug-webhook", "snug-system", 30).unwrap();
    write_pair(dir.path(), &first.cert_pem, &second.key_pem);
    let err =
        ReloadingCert::load(dir.path().join("tls.crt"), dir.path().join("tls.key")).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    let err = ReloadingCert::load(dir.path().join("missing.crt"), dir.path().join("tls.key"))
        .unwrap_err();
    assert!(err.to_string().contains("missing.crt"), "{err}");
}
