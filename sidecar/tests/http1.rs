//! HTTP/1.1 through the sidecar, on real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[tokio::test]
async fn requests_and_responses_pass_byte_for_byte_and_nothing_is_added() {
    let body = random_bytes(64 * 1024);
    let mut response =
        b"HTTP/1.1 200 Fine Thanks\r\nX-Mixed-Case: Kept\r\nSET-COOKIE: a=b\r\ncontent-length: "
            .to_vec();
    response.extend_from_slice(format!("{}\r\n\r\n", body.len()).as_bytes());
    response.extend_from_slice(&body);
    let (app, mut events) = raw_http1_app(Some(response.clone())).await;
    let proxy = Proxy::start(app, |_| {}).await;

    let payload = random_bytes(100 * 1024);
    let mut post = format!(
        "POST /upload?x=1 HTTP/1.1\r\nHost: app.example\r\nX-Request-ID: AbC\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    post.extend_from_slice(&payload);
    let get = b"GET /again HTTP/1.1\r\nhost: app.example\r\nACCEPT: */*\r\n\r\n".to_vec();

    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    assert!(matches!(next_event(&mut events).await, AppEvent::Connected));
    for request in [&post, &get] {
        client.write_all(request).await.unwrap();
        let received = read_http1_message(&mut client, &mut buf).await;
        assert!(
            received == response,
            "the client got exactly what the app sent"
        );
        match next_event(&mut events).await {
            AppEvent::Request(seen) => {
                assert!(seen == *request, "the app got exactly what the client sent")
            }
            other => panic!("one app connection carries both requests: {other:?}"),
        }
    }

    let metrics = proxy.metrics().await;
    let peer = [("peer", "127.0.0.1")];
    let sent_by_client = (post.len() + get.len()) as u64;
    let sent_to_client = 2 * response.len() as u64;
    assert_eq!(
        count(&metrics, "snug_peer_received_bytes_total", &peer),
        sent_by_client
    );
    assert_eq!(
        count(&metrics, "snug_peer_sent_bytes_total", &peer),
        sent_to_client
    );
    assert_eq!(count(&metrics, "snug_peer_requests_total", &peer), 2);
    assert_eq!(count(&metrics, "snug_peer_connections_total", &peer), 1);
    let http1 = [("port", proxy.port()), ("protocol", "http1".to_owned())];
    let labels: Vec<(&str, &str)> = http1.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let with_class = [labels.clone(), vec![("class", "2xx")]].concat();
    assert_eq!(count(&metrics, "snug_requests_total", &with_class), 2);
    assert_eq!(count(&metrics, "snug_connections_opened_total", &labels), 1);
    assert_eq!(count(&metrics, "snug_connections_open", &labels), 1);
    assert_eq!(
        count(&metrics, "snug_response_headers_seconds_count", &labels),
        2
    );
    assert_eq!(
        count(&metrics, "snug_request_duration_seconds_count", &labels),
        2
    );

    // Between requests the app connection belongs to the port's idle pool, not to the client:
    // it stays open for the next request when the client leaves.
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        events.try_recv().is_err(),
        "the idle app connection is kept"
    );
}

#[tokio::test]
async fn bodies_stream_both_ways_without_being_buffered() {
    let app = http_app(echo).await;
    let proxy = Proxy::start(app, |_| {}).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, hyper::Error>>(1);
    let body = StreamBody::new(tokio_stream_from(rx));
    let req = Request::post("/echo")
        .header("host", "app")
        .body(body)
        .unwrap();
    let response = patiently(sender.send_request(req)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut echoed = response.into_body();
    // Ping-pong: each chunk must come back before the next is sent, which a proxy that buffers
    // a whole body could never do.
    for _ in 0..20 {
        let chunk = random_bytes(16 * 1024);
        tx.send(Ok(Frame::data(Bytes::from(chunk.clone()))))
            .await
            .unwrap();
        let mut back = Vec::new();
        while back.len() < chunk.len() {
            let frame = patiently(echoed.frame()).await.unwrap().unwrap();
            back.extend_from_slice(&frame.into_data().unwrap());
        }
        assert!(back == chunk);
    }
    drop(tx);
    assert!(
        patiently(echoed.frame()).await.is_none(),
        "the body ends when the request does"
    );
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let app = http_app(echo).await;
    let proxy = Proxy::start(app, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(
            b"POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n",
        )
        .await
        .unwrap();
    let mut interim = vec![0u8; b"HTTP/1.1 100 Continue\r\n\r\n".len()];
    patiently(client.read_exact(&mut interim)).await.unwrap();
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.write_all(b"hello world").await.unwrap();
    let mut buf = Vec::new();
    let response = read_http1_message(&mut client, &mut buf).await;
    assert!(
        response.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert!(response.ends_with(b"\r\n\r\nhello world"));
}

#[tokio::test]
async fn websocket_upgrade_becomes_a_counted_tunnel() {
    let app = upgrade_echo_app().await;
    let proxy = Proxy::start(app, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let upgrade = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    client.write_all(upgrade).await.unwrap();
    let mut head = vec![0u8; SWITCHING.len()];
    patiently(client.read_exact(&mut head)).await.unwrap();
    assert_eq!(head, SWITCHING);

    let payload = random_bytes(256 * 1024);
    let (mut reader, mut writer) = client.into_split();
    let write = {
        let payload = payload.clone();
        tokio::spawn(async move {
            writer.write_all(&payload).await.unwrap();
            writer
        })
    };
    let mut back = vec![0u8; payload.len()];
    patiently(reader.read_exact(&mut back)).await.unwrap();
    assert!(back == payload, "tunnelled bytes come back unchanged");
    let _writer = write.await.unwrap();

    // Still open: the counters already include the tunnelled bytes.
    let metrics = proxy.metrics().await;
    let peer = [("peer", "127.0.0.1")];
    let received = (upgrade.len() + payload.len()) as u64;
    let sent = (SWITCHING.len() + payload.len()) as u64;
    assert_eq!(
        count(&metrics, "snug_peer_received_bytes_total", &peer),
        received
    );
    assert_eq!(count(&metrics, "snug_peer_sent_bytes_total", &peer), sent);
    let port = proxy.port();
    let labels = [("port", port.as_str()), ("protocol", "http1")];
    assert_eq!(count(&metrics, "snug_connections_open", &labels), 1);
    let class = [labels[0], labels[1], ("class", "1xx")];
    assert_eq!(count(&metrics, "snug_requests_total", &class), 1);
}

const SWITCHING: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

/// An app that accepts any upgrade with a 101 and then echoes bytes.
async fn upgrade_echo_app() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let _ = read_http1_message(&mut stream, &mut buf).await;
                stream.write_all(SWITCHING).await.unwrap();
                stream.write_all(&buf).await.unwrap();
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn requests_are_counted_by_status_class() {
    let app = http_app(|req: Request<hyper::body::Incoming>| async move {
        let status: u16 = req.uri().path().trim_start_matches('/').parse().unwrap();
        let mut response = Response::new(full("x"));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response
    })
    .await;
    let proxy = Proxy::start(app, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    for status in [200, 201, 302, 404, 404, 503] {
        let request = format!("GET /{status} HTTP/1.1\r\nHost: a\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let response = read_http1_message(&mut client, &mut buf).await;
        assert!(response.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
    }
    let metrics = proxy.metrics().await;
    let port = proxy.port();
    for (class, expected) in [("2xx", 2), ("3xx", 1), ("4xx", 2), ("5xx", 1), ("1xx", 0)] {
        let labels = [
            ("port", port.as_str()),
            ("protocol", "http1"),
            ("class", class),
        ];
        assert_eq!(
            count(&metrics, "snug_requests_total", &labels),
            expected,
            "{class}"
        );
    }
}

#[tokio::test]
async fn unreachable_app_gets_a_502_naming_the_sidecar() {
    let proxy = Proxy::start(closed_port().await, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let response = String::from_utf8(read_http1_message(&mut client, &mut buf).await).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
        "{response}"
    );
    assert!(
        response.contains("x-snug-sidecar-error: upstream-refused\r\n"),
        "{response}"
    );

    let metrics = proxy.metrics().await;
    let port = proxy.port();
    let refused = [("port", port.as_str()), ("kind", "upstream_refused")];
    assert_eq!(count(&metrics, "snug_proxy_errors_total", &refused), 1);
    let class = [
        ("port", port.as_str()),
        ("protocol", "http1"),
        ("class", "5xx"),
    ];
    assert_eq!(count(&metrics, "snug_requests_total", &class), 1);
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_upstream_request() {
    let (app, mut events) = raw_http1_app(None).await;
    let proxy = Proxy::start(app, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    next_request(&mut events).await;
    drop(client);
    loop {
        if let AppEvent::Closed = next_event(&mut events).await {
            break;
        }
    }
    let metrics = proxy.metrics().await;
    let port = proxy.port();
    let abort = [("port", port.as_str()), ("kind", "client_abort")];
    assert_eq!(count(&metrics, "snug_proxy_errors_total", &abort), 1);
    let class = [
        ("port", port.as_str()),
        ("protocol", "http1"),
        ("class", "error"),
    ];
    assert_eq!(count(&metrics, "snug_requests_total", &class), 1);
}

#[tokio::test]
async fn a_slow_request_head_times_out() {
    let (app, mut events) = raw_http1_app(Some(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())).await;
    let proxy = Proxy::start(app, |c| c.header_timeout = Duration::from_millis(300)).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    // hyper closes the connection without an answer (it has no 408).
    let answer = read_to_close(&mut client).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let metrics = proxy.metrics().await;
    let port = proxy.port();
    let timeout = [("port", port.as_str()), ("kind", "header_timeout")];
    assert_eq!(count(&metrics, "snug_proxy_errors_total", &timeout), 1);
    // The app saw a connection but never a request.
    while let Ok(event) = events.try_recv() {
        assert!(!matches!(event, AppEvent::Request(_)), "{event:?}");
    }
}

#[tokio::test]
async fn x_forwarded_for_is_added_only_when_asked() {
    for (enabled, expected) in [
        (false, None),
        (true, Some("x-forwarded-for: 127.0.0.1\r\n")),
    ] {
        let (app, mut events) =
            raw_http1_app(Some(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())).await;
        let proxy = Proxy::start(app, |c| c.x_forwarded_for = enabled).await;
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        client.write_all(request).await.unwrap();
        let seen = String::from_utf8(next_request(&mut events).await).unwrap();
        match expected {
            None => assert_eq!(seen.as_bytes(), request),
            Some(header) => assert_eq!(seen, format!("GET / HTTP/1.1\r\nHost: a\r\n{header}\r\n")),
        }
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_head_has_no_body() {
    let app = http_app(|req: Request<hyper::body::Incoming>| async move {
        let mut response = Response::new(full(req.uri().path().to_owned()));
        response
            .headers_mut()
            .insert("content-length", req.uri().path().len().into());
        response
    })
    .await;
    let proxy = Proxy::start(app, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let first = read_http1_message(&mut client, &mut buf).await;
    let second = read_http1_message(&mut client, &mut buf).await;
    assert!(first.ends_with(b"\r\n\r\n/first"));
    assert!(second.ends_with(b"\r\n\r\n/second"));

    // A HEAD response announces a length but has no body: the next response follows at once.
    client
        .write_all(b"HEAD /head HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while find(&head, b"\r\n\r\n").is_none() {
        let mut byte = [0u8; 1];
        patiently(client.read_exact(&mut byte)).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("content-length: 5\r\n"));
    let after = read_http1_message(&mut client, &mut buf).await;
    assert!(
        after.ends_with(b"\r\n\r\n/after"),
        "{}",
        String::from_utf8_lossy(&after)
    );
}

#[tokio::test]
async fn garbage_after_a_request_line_is_refused_and_the_sidecar_keeps_serving() {
    let (app, mut events) = raw_http1_app(Some(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())).await;
    let proxy = Proxy::start(app, |_| {}).await;
    let mut bad = TcpStream::connect(proxy.addr).await.unwrap();
    let mut garbage = b"GET / HTTP/1.1\r\n".to_vec();
    garbage.extend(
        random_bytes(4096)
            .iter()
            .map(|b| if *b == b'\n' { 0 } else { *b }),
    );
    garbage.extend_from_slice(b"\r\n\r\n");
    bad.write_all(&garbage).await.unwrap();
    let answer = read_to_close(&mut bad).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let mut good = TcpStream::connect(proxy.addr).await.unwrap();
    good.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let response = read_http1_message(&mut good, &mut buf).await;
    assert_eq!(response, b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(
        next_request(&mut events).await,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    );
}

#[tokio::test]
async fn an_app_that_closes_without_answering_gets_the_client_a_502() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = Vec::new();
            read_http1_message(&mut stream, &mut buf).await;
            // Dropped: closed after reading the request, without a response.
        }
    });
    let proxy = Proxy::start(app, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let response = String::from_utf8(read_http1_message(&mut client, &mut buf).await).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
        "{response}"
    );
    assert!(
        response.contains("x-snug-sidecar-error: upstream-failed\r\n"),
        "{response}"
    );
    let metrics = proxy.metrics().await;
    let port = proxy.port();
    let failed = [("port", port.as_str()), ("kind", "upstream_failed")];
    assert_eq!(count(&metrics, "snug_proxy_errors_total", &failed), 1);
}

#[tokio::test]
async fn a_response_cut_short_by_the_app_is_cut_short_for_the_client() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = Vec::new();
            read_http1_message(&mut stream, &mut buf).await;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly this")
                .await
                .unwrap();
        }
    });
    let proxy = Proxy::start(app, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let _ = patiently(client.read_to_end(&mut received)).await;
    let head_end = find(&received, b"\r\n\r\n").expect("the head arrived") + 4;
    assert!(
        received.len() - head_end < 1000,
        "never passed off as complete"
    );
    assert!(received.starts_with(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"));

    let metrics = proxy.metrics().await;
    let port = proxy.port();
    let reset = [("port", port.as_str()), ("kind", "upstream_reset")];
    assert_eq!(count(&metrics, "snug_proxy_errors_total", &reset), 1);
    let class = [
        ("port", port.as_str()),
        ("protocol", "http1"),
        ("class", "error"),
    ];
    assert_eq!(count(&metrics, "snug_requests_total", &class), 1);
}

#[tokio::test]
async fn idle_keep_alive_clients_do_not_each_hold_an_app_connection() {
    // Each worker keeps up to MAX_IDLE idle app connections (as each nginx worker keeps its
    // `keepalive` cache); clients are handed to the workers in turn.
    let workers = 2;
    let kept = workers * snug_sidecar::upstream::MAX_IDLE;
    let clients = kept + 36;
    let (app, mut events) = raw_http1_app(Some(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
    ))
    .await;
    let proxy = Proxy::start(app, |config| config.workers = workers).await;
    let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..clients {
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        client.write_all(request).await.unwrap();
        let response = read_http1_message(&mut client, &mut Vec::new()).await;
        assert!(response.ends_with(b"\r\n\r\nok"));
        held.push(client);
    }
    // Every client connection is open and idle; the app connections they used beyond what the
    // idle pools keep are closed.
    let (mut connected, mut closed) = (0, 0);
    while connected < clients || connected - closed > kept {
        match patiently(events.recv()).await.unwrap() {
            AppEvent::Connected => connected += 1,
            AppEvent::Closed => closed += 1,
            AppEvent::Request(_) => {}
        }
    }
    assert_eq!(connected - closed, kept);
    // Each idle client connection still works, on one of the app connections left open.
    for client in held.iter_mut().rev().take(3) {
        client.write_all(request).await.unwrap();
        let response = read_http1_message(client, &mut Vec::new()).await;
        assert!(response.ends_with(b"\r\n\r\nok"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, AppEvent::Connected),
            "a request on an idle client connection opened a new app connection"
        );
    }
}

#[tokio::test]
async fn a_chunked_response_with_trailers_passes_unchanged_and_the_connection_goes_on() {
    let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;note=x\r\nWiki\r\n5\r\npedia\r\n0\r\nChecksum: abc\r\n\r\n";
    let (app, mut events) = raw_http1_app(Some(response.to_vec())).await;
    let proxy = Proxy::start(app, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    for path in ["/one", "/two"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let mut received = vec![0u8; response.len()];
        patiently(client.read_exact(&mut received)).await.unwrap();
        assert_eq!(
            received, response,
            "chunk extensions and trailers pass as sent"
        );
        assert_eq!(next_request(&mut events).await, request.as_bytes());
    }
    let metrics = proxy.metrics().await;
    let port = proxy.port();
    let labels = [("port", port.as_str()), ("protocol", "http1")];
    assert_eq!(
        count(&metrics, "snug_request_duration_seconds_count", &labels),
        2,
        "each response counted once its last chunk passed"
    );
}

#[tokio::test]
async fn ambiguous_request_framing_is_refused_before_the_app_sees_it() {
    let (app, mut events) = raw_http1_app(Some(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())).await;
    let proxy = Proxy::start(app, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    // A request smuggling attempt: which header frames the body depends on who reads it.
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX")
        .await
        .unwrap();
    let answer = read_to_close(&mut client).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let metrics = proxy.metrics().await;
    let refused = [("port", proxy.port()), ("kind", "bad_request".to_owned())];
    let refused: Vec<(&str, &str)> = refused.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(count(&metrics, "snug_proxy_errors_total", &refused), 1);
    while let Ok(event) = events.try_recv() {
        assert!(!matches!(event, AppEvent::Request(_)), "{event:?}");
    }
}

#[tokio::test]
async fn a_response_ended_by_closing_reaches_the_client_whole() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap().port();
    let body = random_bytes(100 * 1024);
    let mut response =
        b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    response.extend_from_slice(&body);
    let sent = response.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                read_http1_message(&mut stream, &mut buf).await;
                stream.write_all(&sent).await.unwrap();
                // No length: closing the connection ends the body.
            });
        }
    });
    let proxy = Proxy::start(app, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /file HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let received = read_to_close(&mut client).await;
    assert!(received == response, "the whole body, then the close");
    let metrics = proxy.metrics().await;
    let port = proxy.port();
    let ok = [
        ("port", port.as_str()),
        ("protocol", "http1"),
        ("class", "2xx"),
    ];
    assert_eq!(count(&metrics, "snug_requests_total", &ok), 1);
}

#[tokio::test]
async fn an_app_that_closes_idle_connections_costs_the_client_no_502() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                read_http1_message(&mut stream, &mut buf).await;
                // Keep-alive as far as the head says, but closed at once (an app's idle timeout
                // running out just as the next request comes).
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
            });
        }
    });
    let proxy = Proxy::start(app, |_| {}).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    for round in 0..20 {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let response = read_http1_message(&mut client, &mut buf).await;
        assert!(
            response.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "round {round}: {}",
            String::from_utf8_lossy(&response)
        );
        if round % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let metrics = proxy.metrics().await;
    assert!(
        !metrics.contains("snug_proxy_errors_total{"),
        "no request failed: {metrics}"
    );
}
