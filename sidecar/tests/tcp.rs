//! Opaque TCP, the peer bound and the connection cap, on real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Sends `payload`, reads as many bytes back; returns them.
async fn round_trip(stream: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    let (mut reader, mut writer) = stream.split();
    let mut back = vec![0u8; payload.len()];
    let (written, read) =
        patiently(async { tokio::join!(writer.write_all(payload), reader.read_exact(&mut back)) })
            .await;
    written.unwrap();
    read.unwrap();
    back
}

#[tokio::test]
async fn opaque_bytes_pass_unchanged_and_are_counted_while_open() {
    let app = echo_app().await;
    let proxy = Proxy::start(app, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    // Starts like a TLS ClientHello: not HTTP, so copied as is.
    let mut payload = vec![0x16, 0x03, 0x01, 0x02, 0x00];
    payload.extend(random_bytes(1024 * 1024));
    let back = round_trip(&mut client, &payload).await;
    assert!(back == payload);

    let metrics = proxy.metrics().await;
    let peer = [("peer", "127.0.0.1")];
    let len = payload.len() as u64;
    assert_eq!(
        count(&metrics, "snug_peer_received_bytes_total", &peer),
        len
    );
    assert_eq!(count(&metrics, "snug_peer_sent_bytes_total", &peer), len);
    let port = proxy.port();
    let tcp = [("port", port.as_str()), ("protocol", "tcp")];
    assert_eq!(count(&metrics, "snug_connections_open", &tcp), 1);
    assert_eq!(count(&metrics, "snug_connections_opened_total", &tcp), 1);

    // A half-close is passed on: the app sees EOF, answers it by closing too.
    client.shutdown().await.unwrap();
    assert!(read_to_close(&mut client).await.is_empty());
    let mut metrics = proxy.metrics().await;
    while count(&metrics, "snug_connections_open", &tcp) != 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        metrics = proxy.metrics().await;
    }
    assert_eq!(
        count(&metrics, "snug_tcp_connection_duration_seconds_count", &tcp),
        1
    );
}

#[tokio::test]
async fn an_app_that_speaks_first_is_not_kept_waiting() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream
            .write_all(b"220 mail.example ESMTP\r\n")
            .await
            .unwrap();
        let mut line = [0u8; 6];
        stream.read_exact(&mut line).await.unwrap();
        stream.write_all(b"250 hi\r\n").await.unwrap();
    });
    // The header timeout is long: only recognising the app's greeting can deliver it.
    let proxy = Proxy::start(app, |c| c.header_timeout = PATIENCE * 10).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut greeting = [0u8; 24];
    patiently(client.read_exact(&mut greeting)).await.unwrap();
    assert_eq!(&greeting, b"220 mail.example ESMTP\r\n");
    client.write_all(b"EHLO\r\n").await.unwrap();
    let mut reply = [0u8; 8];
    patiently(client.read_exact(&mut reply)).await.unwrap();
    assert_eq!(&reply, b"250 hi\r\n");
}

#[tokio::test]
async fn unreachable_app_closes_the_tcp_connection() {
    let proxy = Proxy::start(closed_port().await, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(&[0, 0, 0, 8, 4, 210, 22, 47])
        .await
        .unwrap();
    assert!(read_to_close(&mut client).await.is_empty());
    let metrics = proxy.metrics().await;
    let port = proxy.port();
    let refused = [("port", port.as_str()), ("kind", "upstream_refused")];
    assert_eq!(count(&metrics, "snug_proxy_errors_total", &refused), 1);
}

#[tokio::test]
async fn peers_beyond_the_limit_are_counted_as_other() {
    let app = echo_app().await;
    let proxy = Proxy::start(app, |c| c.max_peers = 2).await;
    for (last, len) in [(1u8, 3000usize), (2, 2000), (3, 1000)] {
        let mut client = connect_from([127, 0, 0, last], proxy.addr).await;
        let payload = random_bytes(len);
        assert!(round_trip(&mut client, &payload).await == payload);
    }
    let metrics = proxy.metrics().await;
    for (peer, bytes) in [("127.0.0.1", 3000), ("127.0.0.2", 2000), ("other", 1000)] {
        let labels = [("peer", peer)];
        assert_eq!(
            count(&metrics, "snug_peer_received_bytes_total", &labels),
            bytes,
            "{peer}"
        );
        assert_eq!(
            count(&metrics, "snug_peer_sent_bytes_total", &labels),
            bytes,
            "{peer}"
        );
        assert_eq!(
            count(&metrics, "snug_peer_connections_total", &labels),
            1,
            "{peer}"
        );
    }
    let named = metrics
        .lines()
        .filter(|l| l.starts_with("snug_peer_received_bytes_total{"))
        .count();
    assert_eq!(named, 3, "two named peers and other:\n{metrics}");
    assert!(!metrics.contains("127.0.0.3"));
}

#[tokio::test]
async fn at_the_connection_cap_new_clients_wait_instead_of_failing() {
    let app = echo_app().await;
    let proxy = Proxy::start(app, |c| c.max_connections = 1).await;
    let mut first = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(round_trip(&mut first, b"first").await, b"first");

    // The kernel queues the second client; the sidecar does not serve it yet.
    let mut second = TcpStream::connect(proxy.addr).await.unwrap();
    second.write_all(b"second").await.unwrap();
    let mut buf = [0u8; 6];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read_exact(&mut buf)).await;
    assert!(early.is_err(), "served past the cap");
    let metrics = proxy.metrics().await;
    let port = proxy.port();
    let limit = [("port", port.as_str()), ("kind", "connection_limit")];
    assert!(count(&metrics, "snug_proxy_errors_total", &limit) >= 1);

    // Once the first closes, the second is served, its bytes intact.
    drop(first);
    patiently(second.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"second");
}
