//! HTTP/2 (prior knowledge) and gRPC through the sidecar, on real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, atomic::Ordering};

use bytes::Bytes;
use common::*;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::{
    body::{Frame, Incoming},
    client::conn::http2,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use snug_sidecar::{peers::PeerTraffic, sensor::Sensor};
use tokio::net::TcpStream;

type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// An h2c client connection whose bytes are counted on the client side too.
async fn h2_client(addr: std::net::SocketAddr) -> (http2::SendRequest<Body>, Arc<PeerTraffic>) {
    let counted = Arc::new(PeerTraffic::default());
    let stream = Sensor::new(TcpStream::connect(addr).await.unwrap(), counted.clone());
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    (sender, counted)
}

fn body_with_trailers(data: Vec<u8>, trailers: HeaderMap) -> Body {
    let frames: Vec<Result<Frame<Bytes>, hyper::Error>> = vec![
        Ok(Frame::data(Bytes::from(data))),
        Ok(Frame::trailers(trailers)),
    ];
    StreamBody::new(futures::stream::iter(frames)).boxed()
}

#[tokio::test]
async fn multiplexed_streams_keep_their_bytes_and_trailers() {
    let app = http_app(echo).await;
    let proxy = Proxy::start(app, |_| {}).await;
    let (sender, client_side) = h2_client(proxy.addr).await;

    let calls = (0..8).map(|i| {
        let mut sender = sender.clone();
        async move {
            let payload = random_bytes(200 * 1024 + i);
            let mut trailers = HeaderMap::new();
            trailers.insert("x-stream", HeaderValue::from(i));
            let req = Request::post(format!("http://app/echo/{i}"))
                .body(body_with_trailers(payload.clone(), trailers.clone()))
                .unwrap();
            let response = sender.send_request(req).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let collected = response.into_body().collect().await.unwrap();
            assert_eq!(
                collected.trailers(),
                Some(&trailers),
                "trailers pass through"
            );
            assert!(
                collected.to_bytes() == payload,
                "stream {i} came back unchanged"
            );
        }
    });
    patiently(futures::future::join_all(calls)).await;

    let metrics = proxy.metrics().await;
    let port = proxy.port();
    let h2 = [("port", port.as_str()), ("protocol", "h2")];
    assert_eq!(count(&metrics, "snug_connections_opened_total", &h2), 1);
    assert_eq!(
        count(
            &metrics,
            "snug_requests_total",
            &[h2[0], h2[1], ("class", "2xx")]
        ),
        8
    );
    assert_eq!(
        count(&metrics, "snug_request_duration_seconds_count", &h2),
        8
    );
    let peer = [("peer", "127.0.0.1")];
    assert_eq!(count(&metrics, "snug_peer_requests_total", &peer), 8);
    // What the client wrote has all been read by the proxy; what the proxy wrote, the client
    // read (control frames sent after the last response may still be in flight, hence >=).
    let received = count(&metrics, "snug_peer_received_bytes_total", &peer);
    let sent = count(&metrics, "snug_peer_sent_bytes_total", &peer);
    assert!(received >= 8 * 200 * 1024 && sent >= 8 * 200 * 1024);
    assert_eq!(received, client_side.sent.load(Ordering::Relaxed));
    assert!(sent >= client_side.received.load(Ordering::Relaxed));
}

async fn grpc_app(req: Request<Incoming>) -> Response<Body> {
    let grpc = |code: &str| {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_str(code).unwrap());
        trailers.insert("grpc-message", HeaderValue::from_static("done"));
        trailers
    };
    let message = Bytes::from_static(b"\0\0\0\0\x03abc");
    let mut response = match req.uri().path() {
        "/pkg.Svc/Ok" => Response::new(body_with_trailers(message.to_vec(), grpc("0"))),
        "/pkg.Svc/NotFound" => Response::new(body_with_trailers(message.to_vec(), grpc("5"))),
        "/pkg.Svc/Unavailable" => {
            // Trailers-only: the status is in the head, the stream ends with it.
            let mut response = Response::new(full(Bytes::new()));
            response
                .headers_mut()
                .insert("grpc-status", HeaderValue::from_static("14"));
            response
        }
        _ => {
            let mut response = Response::new(full(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        }
    };
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

#[tokio::test]
async fn grpc_outcome_comes_from_grpc_status_in_trailers_or_head() {
    let app = http_app(grpc_app).await;
    let proxy = Proxy::start(app, |_| {}).await;
    let (mut sender, _) = h2_client(proxy.addr).await;
    for (method, expected) in [
        ("Ok", Some("0")),
        ("NotFound", Some("5")),
        ("Unavailable", None),
    ] {
        let req = Request::post(format!("http://app/pkg.Svc/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(body_with_trailers(
                b"\0\0\0\0\x01x".to_vec(),
                HeaderMap::new(),
            ))
            .unwrap();
        let response = patiently(sender.send_request(req)).await.unwrap();
        let head_status = response.headers().get("grpc-status").cloned();
        let collected = patiently(response.into_body().collect()).await.unwrap();
        match expected {
            Some(code) => {
                let trailers = collected.trailers().expect("trailers");
                assert_eq!(trailers["grpc-status"], code);
                assert_eq!(trailers["grpc-message"], "done");
            }
            None => assert_eq!(head_status.unwrap(), "14"),
        }
    }
    let metrics = proxy.metrics().await;
    let port = proxy.port();
    for class in ["grpc_ok", "grpc_client_error", "grpc_server_error"] {
        let labels = [
            ("port", port.as_str()),
            ("protocol", "grpc"),
            ("class", class),
        ];
        assert_eq!(
            count(&metrics, "snug_requests_total", &labels),
            1,
            "{class}"
        );
    }
    let labels = [("port", port.as_str()), ("protocol", "grpc")];
    assert_eq!(
        count(&metrics, "snug_response_headers_seconds_count", &labels),
        3
    );
}

#[tokio::test]
async fn h2_request_to_an_unreachable_app_gets_a_502() {
    let proxy = Proxy::start(closed_port().await, |_| {}).await;
    let (mut sender, _) = h2_client(proxy.addr).await;
    let req = Request::get("http://app/")
        .body(full(Bytes::new()))
        .unwrap();
    let response = patiently(sender.send_request(req)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        response.headers()["x-snug-sidecar-error"],
        "upstream-refused"
    );
    assert!(response.headers().get("date").is_none());
}
