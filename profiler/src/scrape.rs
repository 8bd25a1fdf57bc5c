//! Scraping the sidecars' `/metrics`: many at once but never more than the concurrency limit,
//! each within its timeout, so a slow or dead pod costs one timeout and nothing else.

use std::{
    ops::Range,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use foldhash::HashMap;
use futures::StreamExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::reading::SidecarReading;

/// Largest body accepted from a sidecar; its exposition is tens of KiB.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest response head accepted (status line and headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Headers read from a response head; a sidecar sends three or four.
const MAX_HEADERS: usize = 32;

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

/// Scrapes sidecars over plain HTTP/1.1 (the admin port is pod-internal traffic, like
/// kubelet's probes and Prometheus' scrapes of the same port).
///
/// Like Prometheus, it keeps one idle connection per sidecar between scrapes: a new TCP
/// connection per pod per cycle costs more CPU than reading and parsing its body. What it keeps
/// is the socket alone. A scrape is one `GET` written over the kept socket and its answer read
/// into a buffer that the next scrape reuses (at most one per scrape in flight is kept), the
/// head parsed by `httparse` (hyper's own parser) and the body framed by its `content-length`,
/// as chunks, or up to the close; no HTTP client machinery (tasks, channels, header maps,
/// buffers allocated anew) is set up per scrape. A kept socket the sidecar closed meanwhile is
/// noticed by the request failing before any answer; the scrape is then retried once over a
/// new connection. A socket is kept while its sidecar is scraped at least once per
/// [`Scraper::with_idle_timeout`], and never after a `Connection: close` answer, an HTTP/1.0
/// one, one whose body ran to the close, or one followed by unasked-for bytes.
#[derive(Debug, Clone)]
pub struct Scraper {
    idle: Arc<Mutex<HashMap<String, IdleSocket>>>,
    buffers: Arc<Mutex<Vec<Vec<u8>>>>,
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
/// Room made in the buffer before each read: a sidecar's answer (8–16 KiB) mostly takes one.
const READ_BYTES: usize = 16 * 1024;
/// A buffer that grew past this (a huge answer) is not kept for the next scrape.
const MAX_KEPT_BUFFER_BYTES: usize = 256 * 1024;
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
            buffers: Arc::default(),
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

    fn spare_buffers(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.buffers
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
        let mut buffer = self.spare_buffers().pop().unwrap_or_default();
        let fetched = tokio::time::timeout(self.timeout, self.fetch(url, &mut buffer))
            .await
            .map_err(|_| {
                fail(
                    ScrapeOutcome::Timeout,
                    format!("no answer in {:?}", self.timeout),
                )
            });
        let result = match fetched {
            Ok(Ok(body)) => std::str::from_utf8(&buffer[body])
                .map_err(|_| fail(ScrapeOutcome::Invalid, "body is not UTF-8".into()))
                .and_then(|text| {
                    SidecarReading::parse(text)
                        .map_err(|e| fail(ScrapeOutcome::Invalid, e.to_string()))
                }),
            Ok(Err(failure)) | Err(failure) => Err(failure),
        };
        if buffer.capacity() <= MAX_KEPT_BUFFER_BYTES {
            let mut spare = self.spare_buffers();
            // One per scrape in flight is all that is ever reused.
            if spare.len() < self.concurrency {
                buffer.clear();
                spare.push(buffer);
            }
        }
        result
    }

    /// Fetches `url` into `buffer`; returns where the body is in it.
    async fn fetch(&self, url: &str, buffer: &mut Vec<u8>) -> Result<Range<usize>, ScrapeFailure> {
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
            match exchange(kept.stream, authority.as_str(), path, buffer).await {
                Ok((body, socket)) => return Ok(self.done(address, body, socket)),
                // The sidecar closed the kept socket (it restarted, or timed it out): once more
                // over a new connection.
                Err(ExchangeError::NoAnswer(_)) => {}
                Err(ExchangeError::Failed(message)) => return Err(error(message)),
            }
        }
        let stream = connect(&address).await.map_err(error)?;
        match exchange(stream, authority.as_str(), path, buffer).await {
            Ok((body, socket)) => Ok(self.done(address, body, socket)),
            Err(ExchangeError::NoAnswer(message) | ExchangeError::Failed(message)) => {
                Err(error(message))
            }
        }
    }

    /// Keeps the socket of a successful exchange, when it may be reused.
    fn done(&self, address: String, body: Range<usize>, socket: Option<TcpStream>) -> Range<usize> {
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

/// Reads more of the answer into `buffer`; `Ok(false)` at the end of the stream.
async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<bool> {
    if buffer.capacity() - buffer.len() < READ_BYTES / 2 {
        buffer.reserve(READ_BYTES);
    }
    Ok(stream.read_buf(buffer).await? > 0)
}

/// Reads more of a body that has not ended yet: the stream ending (or failing) now breaks it off.
async fn read_more_body(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<(), ExchangeError> {
    match read_more(stream, buffer).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(broke_off(None)),
        Err(e) => Err(broke_off(Some(e))),
    }
}

/// A body the stream broke off (`None`: it closed) before its end.
fn broke_off(e: Option<std::io::Error>) -> ExchangeError {
    ExchangeError::Failed(match e {
        Some(e) => format!("reading body: {e}"),
        None => "reading body: connection closed before the message was complete".into(),
    })
}

/// How the body of an answer is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// What a response head says.
struct Head {
    /// Its length in bytes, `\r\n\r\n` included.
    len: usize,
    status: u16,
    /// HTTP/1.1 and no `Connection: close`.
    keep_alive: bool,
    framing: Framing,
}

/// Parses the response head at the start of `bytes`; `Ok(None)` while it is incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("invalid response head: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let mut keep_alive = response.version == Some(1);
    let (mut length, mut chunked, mut encoded) = (None, false, false);
    for header in response.headers.iter() {
        let value = || std::str::from_utf8(header.value).unwrap_or("");
        if header.name.eq_ignore_ascii_case("connection") {
            if value()
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
            {
                keep_alive = false;
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            // The last coding says whether the message is chunked.
            chunked = value()
                .rsplit(',')
                .next()
                .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let n: usize = value()
                .trim()
                .parse()
                .map_err(|_| "invalid content-length".to_owned())?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting content-length headers".into());
            }
            length = Some(n);
        }
    }
    // A transfer coding overrides any length (RFC 9112, 6.3).
    let framing = match (encoded, chunked, length) {
        (true, true, _) => Framing::Chunked,
        (true, false, _) | (false, _, None) => Framing::UntilClose,
        (false, _, Some(n)) => Framing::Length(n),
    };
    if matches!(framing, Framing::UntilClose) {
        keep_alive = false;
    }
    Ok(Some(Head {
        len,
        status,
        keep_alive,
        framing,
    }))
}

/// One `GET` over `stream`, its answer read into `buffer` (cleared first). Returns where the
/// body is in `buffer`, and the socket when it may carry the next scrape.
async fn exchange(
    mut stream: TcpStream,
    host: &str,
    path: &str,
    buffer: &mut Vec<u8>,
) -> Result<(Range<usize>, Option<TcpStream>), ExchangeError> {
    buffer.clear();
    for part in ["GET ", path, " HTTP/1.1\r\nhost: ", host, "\r\n\r\n"] {
        buffer.extend_from_slice(part.as_bytes());
    }
    stream
        .write_all(buffer)
        .await
        .map_err(|e| ExchangeError::NoAnswer(format!("sending the request: {e}")))?;
    buffer.clear();
    let failed = |message: &str| ExchangeError::Failed(message.to_owned());
    // The head; informational answers (`100 Continue`) before the real one are skipped.
    let mut start = 0;
    let head = loop {
        match parse_head(&buffer[start..]).map_err(ExchangeError::Failed)? {
            Some(head) if (100..200).contains(&head.status) && head.status != 101 => {
                start += head.len;
                continue;
            }
            Some(head) => break head,
            None if buffer.len() - start > MAX_HEAD_BYTES => {
                return Err(failed("response head too large"));
            }
            None => {}
        }
        match read_more(&mut stream, buffer).await {
            Ok(true) => {}
            // Not a byte of an answer: the socket was dead (or died) before the response.
            Ok(false) if buffer.is_empty() => {
                return Err(ExchangeError::NoAnswer(
                    "connection closed before an answer".into(),
                ));
            }
            Err(e) if buffer.is_empty() => {
                return Err(ExchangeError::NoAnswer(format!("reading the answer: {e}")));
            }
            Ok(false) => return Err(failed("connection closed within the response head")),
            Err(e) => return Err(ExchangeError::Failed(format!("reading the answer: {e}"))),
        }
    };
    if !(200..300).contains(&head.status) {
        let status = http::StatusCode::from_u16(head.status)
            .map_or_else(|_| head.status.to_string(), |s| s.to_string());
        return Err(ExchangeError::Failed(format!("HTTP {status}")));
    }
    let body_start = start + head.len;
    let too_long = || failed("reading body: length limit exceeded");
    let (body, end) = match head.framing {
        Framing::Length(length) => {
            if length > MAX_BODY_BYTES {
                return Err(too_long());
            }
            let end = body_start + length;
            while buffer.len() < end {
                read_more_body(&mut stream, buffer).await?;
            }
            (body_start..end, end)
        }
        Framing::UntilClose => loop {
            if buffer.len() - body_start > MAX_BODY_BYTES {
                return Err(too_long());
            }
            match read_more(&mut stream, buffer).await {
                Ok(true) => {}
                Ok(false) => break (body_start..buffer.len(), buffer.len()),
                Err(e) => return Err(broke_off(Some(e))),
            }
        },
        Framing::Chunked => {
            // Chunks are moved down over the chunk-size lines as they come, so the body ends
            // up in one piece right after the head.
            let (mut body_end, mut at) = (body_start, body_start);
            loop {
                let chunk = match httparse::parse_chunk_size(&buffer[at..]) {
                    Ok(httparse::Status::Complete((used, size))) => Some((used, size)),
                    Ok(httparse::Status::Partial) => None,
                    Err(_) => return Err(failed("reading body: invalid chunk size")),
                };
                match chunk {
                    Some((used, 0)) => {
                        at += used;
                        break;
                    }
                    Some((used, size)) => {
                        let size = usize::try_from(size).map_err(|_| too_long())?;
                        if body_end - body_start + size > MAX_BODY_BYTES {
                            return Err(too_long());
                        }
                        let data = at + used;
                        if buffer.len() >= data + size + 2 {
                            if &buffer[data + size..data + size + 2] != b"\r\n" {
                                return Err(failed("reading body: chunk without its CRLF"));
                            }
                            buffer.copy_within(data..data + size, body_end);
                            body_end += size;
                            at = data + size + 2;
                            continue;
                        }
                    }
                    None if buffer.len() - at > 1024 => {
                        return Err(failed("reading body: invalid chunk size"));
                    }
                    None => {}
                }
                read_more_body(&mut stream, buffer).await?;
            }
            // Trailer fields, if any, then the empty line.
            loop {
                match buffer[at..].windows(2).position(|w| w == b"\r\n") {
                    Some(0) => break (body_start..body_end, at + 2),
                    Some(line) => at += line + 2,
                    None if buffer.len() - at > MAX_HEAD_BYTES => {
                        return Err(failed("reading body: trailers too large"));
                    }
                    None => read_more_body(&mut stream, buffer).await?,
                }
            }
        }
    };
    // Bytes beyond the response would be read as the start of the next one.
    let socket = (head.keep_alive && buffer.len() == end).then_some(stream);
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

    /// `body` as chunks of at most `size` bytes.
    fn chunked(body: &str, size: usize) -> String {
        let mut out = String::new();
        for chunk in body.as_bytes().chunks(size) {
            out.push_str(&format!("{:x}\r\n", chunk.len()));
            out.push_str(std::str::from_utf8(chunk).unwrap());
            out.push_str("\r\n");
        }
        out + "0\r\n\r\n"
    }

    fn exposition() -> String {
        sidecar_exposition(&SidecarTraffic {
            requests: vec![("2xx", 7)],
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn chunked_answers_are_read_whole_and_keep_the_connection() {
        let response = format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{}",
            chunked(&exposition(), 1000)
        );
        let (url, accepted) = raw_sidecar(response, false).await;
        let scraper = Scraper::new(4, Duration::from_secs(5));
        scrape_three_times(&scraper, &url).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_without_a_length_is_read_to_the_close_and_not_kept() {
        let response = format!("HTTP/1.1 200 OK\r\n\r\n{}", exposition());
        let (url, accepted) = raw_sidecar(response, true).await;
        let scraper = Scraper::new(4, Duration::from_secs(5));
        scrape_three_times(&scraper, &url).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        assert_eq!(scraper.idle_connections(), 0);
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_is_an_error() {
        let body = exposition();
        let half = &body[..body.len() / 2];
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{half}",
            body.len()
        );
        let (url, _) = raw_sidecar(response, true).await;
        let scraper = Scraper::new(4, Duration::from_secs(5));
        let failure = scraper.scrape(&url).await.unwrap_err();
        assert_eq!(failure.outcome, ScrapeOutcome::Error, "{failure:?}");
        let (url, _) = raw_sidecar(
            format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{}",
                &chunked(&body, 1000)[..1500]
            ),
            true,
        )
        .await;
        let failure = scraper.scrape(&url).await.unwrap_err();
        assert_eq!(failure.outcome, ScrapeOutcome::Error, "{failure:?}");
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
