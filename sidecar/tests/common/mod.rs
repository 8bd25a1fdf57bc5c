//! Test fixtures: a sidecar on ephemeral ports, apps that answer in known ways, raw clients,
//! and a reader for the metrics exposition.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use snug_api::{PortMap, PortMapping};
use snug_sidecar::{Config, Sidecar};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};

/// Upper bound on any single wait, so a broken proxy fails a test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Awaits `f`, failing the test if it never completes.
pub async fn patiently<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .expect("gave up waiting")
}

/// A sidecar serving one port on 127.0.0.1.
pub struct Proxy {
    pub addr: SocketAddr,
    /// Every inbound address, in port-map order (`addr` is the first).
    pub addrs: Vec<SocketAddr>,
    pub admin: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<snug_sidecar::Result<()>>>,
}

impl Proxy {
    /// A sidecar in front of the app on `app_port`, with `tweak` applied to its configuration.
    pub async fn start(app_port: u16, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::new(PortMap(vec![PortMapping {
            listen: 0,
            app: app_port,
        }]));
        config.listen_addr = IpAddr::from([127, 0, 0, 1]);
        config.admin_port = 0;
        config.drain = Duration::from_secs(5);
        tweak(&mut config);
        let sidecar = Sidecar::bind(config).await.expect("bind");
        let addrs = sidecar.listen_addrs();
        let addr = addrs[0];
        let admin = sidecar.admin_addr().expect("admin address");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sidecar.run(async move {
            let _ = rx.await;
        }));
        Proxy {
            addr,
            addrs,
            admin,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The inbound port, as the `port` label shows it.
    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// The metrics exposition.
    ///
    /// Connections are served on worker threads, so a count the sidecar makes just after the
    /// client saw the response may land a moment after the test looks: this returns once two
    /// scrapes 25 ms apart agree (or after a second of change).
    pub async fn metrics(&self) -> String {
        let scrape = || async {
            let (status, body) = admin_get(self.admin, "/metrics").await;
            assert_eq!(status, 200);
            body
        };
        let mut body = scrape().await;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let again = scrape().await;
            if again == body {
                break;
            }
            body = again;
        }
        body
    }

    /// Asks the sidecar to shut down; returns a handle on its end.
    pub fn shutdown(&mut self) -> JoinHandle<snug_sidecar::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("running")
    }
}

/// GETs `path` from an admin port: (status, body).
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(admin).await.expect("admin connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("admin handshake");
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "admin")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(req).await.expect("admin request");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of the sample `name` whose labels include all of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, rest) = series.split_once('{').unwrap_or((series, ""));
            let matches = series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse().ok()).flatten()
        })
}

/// Like [`sample`], 0 when absent.
pub fn count(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    sample(text, name, labels).unwrap_or(0.0) as u64
}

/// A port nothing listens on.
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Random bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A TCP app that echoes every byte until the client closes its side.
pub async fn echo_app() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

/// An HTTP app (HTTP/1 and h2c) served by hyper with `handler`.
pub async fn http_app<F, Fut>(handler: F) -> u16
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<http_body_util::combinators::BoxBody<Bytes, hyper::Error>>>
        + Send
        + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, hyper::Error>(handler(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// A response that streams the request body back (trailers included).
pub async fn echo(
    req: Request<Incoming>,
) -> Response<http_body_util::combinators::BoxBody<Bytes, hyper::Error>> {
    Response::new(req.into_body().boxed())
}

/// A fixed body.
pub fn full(body: impl Into<Bytes>) -> http_body_util::combinators::BoxBody<Bytes, hyper::Error> {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Connects to `addr` from the source address `from` (any 127.0.0.0/8 address works locally).
pub async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the peer closes.
pub async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = patiently(stream.read_to_end(&mut out)).await;
    out
}

/// Reads one HTTP/1 message head and a `content-length` body from `stream` (raw bytes).
pub async fn read_http1_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            let total = end + 4 + length;
            if buf.len() >= total {
                return buf.drain(..total).collect();
            }
        }
        let mut chunk = [0u8; 8192];
        let n = patiently(stream.read(&mut chunk)).await.unwrap();
        assert!(
            n > 0,
            "connection closed mid-message: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What a raw HTTP/1 app saw.
#[derive(Debug)]
pub enum AppEvent {
    /// A connection was accepted.
    Connected,
    /// A whole request arrived (raw bytes).
    Request(Vec<u8>),
    /// The proxy closed the connection.
    Closed,
}

/// A raw HTTP/1 app: answers every request with exactly `response` (or never, when `None`)
/// and reports what it sees.
pub async fn raw_http1_app(
    response: Option<Vec<u8>>,
) -> (u16, tokio::sync::mpsc::UnboundedReceiver<AppEvent>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let _ = tx.send(AppEvent::Connected);
            let tx = tx.clone();
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let message = loop {
                        if let Some(end) = find(&buf, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                            if buf.len() >= end + 4 + length {
                                break Some(buf.drain(..end + 4 + length).collect::<Vec<u8>>());
                            }
                        }
                        let mut chunk = [0u8; 8192];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break None,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let Some(message) = message else {
                        let _ = tx.send(AppEvent::Closed);
                        return;
                    };
                    let _ = tx.send(AppEvent::Request(message));
                    if let Some(response) = &response
                        && stream.write_all(response).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

/// The next event of a raw app.
pub async fn next_event(rx: &mut tokio::sync::mpsc::UnboundedReceiver<AppEvent>) -> AppEvent {
    patiently(rx.recv()).await.expect("app gone")
}

/// The next request a raw app received (skipping connection events).
pub async fn next_request(rx: &mut tokio::sync::mpsc::UnboundedReceiver<AppEvent>) -> Vec<u8> {
    loop {
        if let AppEvent::Request(bytes) = next_event(rx).await {
            return bytes;
        }
    }
}
