//! Readiness and shutdown: SIGTERM drains in-flight requests, then the process exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

/// An HTTP/1 app that answers its first request only when told to.
async fn held_app() -> (u16, oneshot::Receiver<()>, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (arrived_tx, arrived) = oneshot::channel();
    let (release, release_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        read_http1_message(&mut stream, &mut buf).await;
        arrived_tx.send(()).unwrap();
        release_rx.await.unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone")
            .await
            .unwrap();
        let _ = stream.read(&mut [0u8; 1]).await;
    });
    (port, arrived, release)
}

async fn free_port() -> u16 {
    closed_port().await
}

#[tokio::test]
async fn sigterm_stops_accepting_finishes_in_flight_requests_and_exits_zero() {
    let (app, arrived, release) = held_app().await;
    let (listen, admin) = (free_port().await, free_port().await);
    let mut child = Command::new(env!("CARGO_BIN_EXE_snug-sidecar"))
        .env("SNUG_PORTS", format!("{listen}:{app}"))
        .env("SNUG_LISTEN_ADDR", "127.0.0.1")
        .env("SNUG_ADMIN_PORT", admin.to_string())
        .env("SNUG_DRAIN_SECONDS", "30")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin_addr = ([127, 0, 0, 1], admin).into();
    patiently(async {
        while TcpStream::connect(admin_addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(admin_get(admin_addr, "/ready").await.0, 200);

    let mut client = TcpStream::connect(("127.0.0.1", listen)).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    patiently(arrived).await.unwrap();

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // Draining: not ready, no new connections, but the request in flight goes on.
    patiently(async {
        while admin_get(admin_addr, "/ready").await.0 != 503 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(TcpStream::connect(("127.0.0.1", listen)).await.is_err());
    release.send(()).unwrap();
    let mut buf = Vec::new();
    let response = read_http1_message(&mut client, &mut buf).await;
    // While draining, the one header hyper adds tells the client not to reuse the connection.
    assert_eq!(
        String::from_utf8(response).unwrap(),
        "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndone"
    );

    let status = patiently(tokio::task::spawn_blocking(move || child.wait()))
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn connections_still_open_at_the_end_of_the_grace_period_are_closed() {
    let app = echo_app().await;
    let mut proxy = Proxy::start(app, |c| c.drain = Duration::from_millis(200)).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client.write_all(b"\x00binary").await.unwrap();
    let mut echoed = [0u8; 7];
    patiently(client.read_exact(&mut echoed)).await.unwrap();

    let stopped = proxy.shutdown();
    patiently(stopped).await.unwrap().unwrap();
    assert!(read_to_close(&mut client).await.is_empty());
}
