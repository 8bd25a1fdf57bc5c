//! Scraping the sidecars' `/metrics`: many at once but never more than the concurrency limit,
//! each within its timeout, so a slow or dead pod costs one timeout and nothing else.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::reading::SidecarReading;

/// Largest body accepted from a sidecar; its exposition is tens of KiB.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// One sidecar to scrape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScrapeTarget {
    /// What keys its counters between cycles (the pod UID).
    pub key: String,
    /// `http://<podIP>:4790/metrics`.
    pub url: String,
}

/// How a scrape went, as counted in `snug_profiler_scrapes_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScrapeOutcome {
    /// Read and parsed.
    Ok,
    /// Connection refused or reset, non-2xx status, a body that broke off.
    Error,
    /// No full answer within the timeout.
    Timeout,
    /// An answer that is not a sidecar exposition.
    Invalid,
}

impl ScrapeOutcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ScrapeOutcome::Ok => "ok",
            ScrapeOutcome::Error => "error",
            ScrapeOutcome::Timeout => "timeout",
            ScrapeOutcome::Invalid => "invalid",
        }
    }
}

/// Why a scrape failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeFailure {
    /// The outcome counted.
    pub outcome: ScrapeOutcome,
    /// Why, for the log.
    pub message: String,
}

/// Scrapes sidecars over plain HTTP (the admin port is pod-internal traffic, like kubelet's
/// probes and Prometheus' scrapes of the same port).
///
/// Like Prometheus, it keeps one idle connection per sidecar between scrapes: a new TCP
/// connection per pod per cycle costs more CPU than reading and parsing its body. What it keeps
/// is the socket alone: each scrape runs a fresh HTTP/1.1 exchange (hyper's low-level client
/// connection, driven inside the scraping task) over the kept socket and hands the socket back
/// afterwards, so an idle sidecar costs a file descriptor and a few hundred bytes, not the
/// buffers and task of a pooled client connection. A kept socket the sidecar closed meanwhile
/// is noticed by the request failing before any answer; the scrape is then retried once over a
/// new connection. A socket is kept while its sidecar is scraped at least once per
/// [`Scraper::with_idle_timeout`], and never after a `Connection: close` answer.
#[derive(Debug, Clone)]
pub struct Scraper {
    idle: Arc<Mutex<HashMap<String, IdleSocket>>>,
    idle_timeout: Duration,
    timeout: Duration,
    concurrency: usize,
}

/// A connection kept between scrapes of one sidecar.
#[derive(Debug)]
struct IdleSocket {
    stream: TcpStream,
    since: Instant,
}

/// How long an unused connection is kept unless [`Scraper::with_idle_timeout`] says otherwise:
/// long enough to outlast the default 30 s interval twice.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Read buffer of one exchange: a body takes two or three reads.
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// TCP keepalive: a pod that vanished without closing its connections is noticed by the kernel.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// How one exchange over one socket failed.
enum ExchangeError {
    /// Nothing was answered (the request could not be written, or the socket closed before a
    /// response): over a kept socket, a new connection may succeed.
    NoAnswer(String),
    /// The sidecar answered, badly.
    Failed(String),
}

impl Scraper {
    /// A scraper with at most `concurrency` scrapes in flight, each given `timeout`.
    pub fn new(concurrency: usize, timeout: Duration) -> Self {
        Scraper {
            idle: Arc::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            timeout,
            concurrency: concurrency.max(1),
        }
    }

    /// The same scraper, closing a connection not used for `idle` (give it more than the
    /// interval between scrapes, or every scrape opens a new one).
    pub fn with_idle_timeout(self, idle: Duration) -> Self {
        Scraper {
            idle_timeout: idle,
            ..self
        }
    }

    /// Connections kept open now, one per sidecar scraped lately.
    pub fn idle_connections(&self) -> usize {
        self.idle_sockets().len()
    }

    fn idle_sockets(&self) -> std::sync::MutexGuard<'_, HashMap<String, IdleSocket>> {
        // A panic while holding the lock leaves a map of sockets that is still consistent.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Scrapes every target; results come back in no particular order.
    pub async fn scrape_all(
        &self,
        targets: Vec<ScrapeTarget>,
    ) -> Vec<(ScrapeTarget, Result<SidecarReading, ScrapeFailure>)> {
        let idle_timeout = self.idle_timeout;
        self.idle_sockets()
            .retain(|_, socket| socket.since.elapsed() < idle_timeout);
        futures::stream::iter(targets)
            .map(|target| async move {
                let result = self.scrape(&target.url).await;
                (target, result)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    /// Scrapes one sidecar.
    pub async fn scrape(&self, url: &str) -> Result<SidecarReading, ScrapeFailure> {
        let fail = |outcome, message: String| ScrapeFailure { outcome, message };
        let body = tokio::time::timeout(self.timeout, self.fetch(url))
            .await
            .map_err(|_| {
                fail(
                    ScrapeOutcome::Timeout,
                    format!("no answer in {:?}", self.timeout),
                )
            })??;
        let text = std::str::from_utf8(&body)
            .map_err(|_| fail(ScrapeOutcome::Invalid, "body is not UTF-8".into()))?;
        SidecarReading::parse(text).map_err(|e| fail(ScrapeOutcome::Invalid, e.to_string()))
    }

    async fn fetch(&self, url: &str) -> Result<Bytes, ScrapeFailure> {
        let error = |message: String| ScrapeFailure {
            outcome: ScrapeOutcome::Error,
            message,
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e| error(format!("bad URL {url}: {e}")))?;
        if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
            return Err(error(format!("bad URL {url}: not http://")));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| error(format!("bad URL {url}: no host")))?;
        let address = match authority.port_u16() {
            Some(_) => authority.as_str().to_owned(),
            None => format!("{}:80", authority.host()),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let kept = self.idle_sockets().remove(&address);
        if let Some(kept) = kept {
            match exchange(kept.stream, authority.as_str(), path).await {
                Ok((body, socket)) => return Ok(self.done(address, body, socket)),
                // The sidecar closed the kept socket (it restarted, or timed it out): once more
                // over a new connection.
                Err(ExchangeError::NoAnswer(_)) => {}
                Err(ExchangeError::Failed(message)) => return Err(error(message)),
            }
        }
        let stream = connect(&address).await.map_err(error)?;
        match exchange(stream, authority.as_str(), path).await {
            Ok((body, socket)) => Ok(self.done(address, body, socket)),
            Err(ExchangeError::NoAnswer(message) | ExchangeError::Failed(message)) => {
                Err(error(message))
            }
        }
    }

    /// Keeps the socket of a successful exchange, when it may be reused.
    fn done(&self, address: String, body: Bytes, socket: Option<TcpStream>) -> Bytes {
        if let Some(stream) = socket {
            let since = Instant::now();
            self.idle_sockets()
                .insert(address, IdleSocket { stream, since });
        }
        body
    }
}

async fn connect(address: &str) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connecting to {address}: {e}"))?;
    // Options that fail to set leave a working connection.
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    Ok(stream)
}

/// One `GET` over `stream`, with hyper's HTTP/1.1 client connection driven right here (no task
/// of its own). Returns the body, and the socket when it may carry the next scrape.
async fn exchange(
    stream: TcpStream,
    host: &str,
    path: &str,
) -> Result<(Bytes, Option<TcpStream>), ExchangeError> {
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| ExchangeError::Failed(format!("request: {e}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .read_buf_exact_size(Some(READ_BUFFER_BYTES))
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| ExchangeError::NoAnswer(format!("{e}")))?;
    let answer = async move {
        let response = sender.send_request(request).await.map_err(|e| {
            // Not a byte of an answer: the socket was dead (or died) before the response.
            if e.is_canceled() || e.is_closed() || e.is_incomplete_message() {
                ExchangeError::NoAnswer(format!("{e}"))
            } else {
                ExchangeError::Failed(format!("{e}"))
            }
        })?;
        // Dropped, the sender lets the connection end (and hand its socket back) once the body
        // is read.
        drop(sender);
        if !response.status().is_success() {
            return Err(ExchangeError::Failed(format!("HTTP {}", response.status())));
        }
        let reusable = response.version() == http::Version::HTTP_11
            && !response
                .headers()
                .get_all(http::header::CONNECTION)
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| ExchangeError::Failed(format!("reading body: {e}")))?;
        Ok((body.to_bytes(), reusable))
    };
    let (answer, connection) = tokio::join!(answer, connection.without_shutdown());
    let (body, reusable) = answer?;
    let socket = match connection {
        // Bytes beyond the response would be read as the start of the next one.
        Ok(parts) if reusable && parts.read_buf.is_empty() => Some(parts.io.into_inner()),
        _ => None,
    };
    Ok((body, socket))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{SidecarTraffic, sidecar_exposition};
    use axum::{Router, routing::get};
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    /// A sidecar speaking HTTP/1.1 by hand: every request gets `response` (a whole HTTP
    /// message); after it the socket is closed when `close_after`. Counts connections accepted.
    async fn raw_sidecar(response: String, close_after: bool) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let response = response.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    loop {
                        let Ok(n) = socket.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        if request.windows(4).any(|w| w == b"\r\n\r\n") {
                            request.clear();
                            if socket.write_all(response.as_bytes()).await.is_err() || close_after {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/metrics"), accepted)
    }

    fn http_response(extra_headers: &str) -> String {
        let body = sidecar_exposition(&SidecarTraffic {
            requests: vec![("2xx", 7)],
            ..Default::default()
        });
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}",
            body.len()
        )
    }

    async fn scrape_three_times(scraper: &Scraper, url: &str) {
        for _ in 0..3 {
            let reading = scraper.scrape(url).await.unwrap();
            assert_eq!(reading.requests, 7.0);
        }
    }

    #[tokio::test]
    async fn one_kept_connection_carries_every_scrape_of_a_sidecar() {
        let (url, accepted) = raw_sidecar(http_response(""), false).await;
        let scraper = Scraper::new(4, Duration::from_secs(5));
        scrape_three_times(&scraper, &url).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(scraper.idle_connections(), 1);
    }

    #[tokio::test]
    async fn connection_close_is_honoured() {
        let (url, accepted) = raw_sidecar(http_response("connection: close\r\n"), true).await;
        let scraper = Scraper::new(4, Duration::from_secs(5));
        scrape_three_times(&scraper, &url).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        assert_eq!(scraper.idle_connections(), 0);
    }

    #[tokio::test]
    async fn a_kept_connection_the_sidecar_closed_is_replaced_without_a_failed_scrape() {
        // The sidecar closes every connection after one answer without saying so (as a
        // restarted sidecar or one timing out idle connections does).
        let (url, accepted) = raw_sidecar(http_response(""), true).await;
        let scraper = Scraper::new(4, Duration::from_secs(5));
        for _ in 0..3 {
            let reading = scraper.scrape(&url).await.unwrap();
            assert_eq!(reading.requests, 7.0);
            // Let the close reach this side, as it would between two cycles.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn connections_idle_longer_than_the_idle_timeout_are_closed() {
        let (url, accepted) = raw_sidecar(http_response(""), false).await;
        let scraper =
            Scraper::new(4, Duration::from_secs(5)).with_idle_timeout(Duration::from_millis(50));
        let target = || ScrapeTarget {
            key: "pod".into(),
            url: url.clone(),
        };
        let results = scraper.scrape_all(vec![target()]).await;
        assert!(results[0].1.is_ok());
        assert_eq!(scraper.idle_connections(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let results = scraper.scrape_all(vec![target()]).await;
        assert!(results[0].1.is_ok());
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "a new connection after idling"
        );
    }

    #[tokio::test]
    async fn good_garbage_slow_and_dead_sidecars_each_get_their_outcome() {
        let body = sidecar_exposition(&SidecarTraffic {
            requests: vec![("2xx", 5)],
            ..Default::default()
        });
        let router = Router::new()
            .route("/good", get(move || async move { body }))
            .route("/garbage", get(|| async { "<html>Bad Gateway</html>" }))
            .route(
                "/missing",
                get(|| async { (http::StatusCode::NOT_FOUND, "no") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            );
        let base = serve(router).await;
        // A port nothing listens on: bind, note it, close.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let target = |key: &str, url: String| ScrapeTarget {
            key: key.into(),
            url,
        };
        let targets = vec![
            target("good", format!("{base}/good")),
            target("garbage", format!("{base}/garbage")),
            target("missing", format!("{base}/missing")),
            target("slow", format!("{base}/slow")),
            target("dead", format!("http://{dead}/metrics")),
        ];
        let scraper = Scraper::new(2, Duration::from_millis(500));
        let mut results = scraper.scrape_all(targets).await;
        results.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        let outcomes: Vec<_> = results
            .iter()
            .map(|(t, r)| {
                let outcome = r.as_ref().err().map_or(ScrapeOutcome::Ok, |f| f.outcome);
                (t.key.as_str(), outcome)
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                ("dead", ScrapeOutcome::Error),
                ("garbage", ScrapeOutcome::Invalid),
                ("good", ScrapeOutcome::Ok),
                ("missing", ScrapeOutcome::Error),
                ("slow", ScrapeOutcome::Timeout),
            ]
        );
        let good = results[2].1.as_ref().unwrap();
        assert_eq!(good.requests, 5.0);
    }
}
