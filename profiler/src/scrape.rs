//! Scraping the sidecars' `/metrics`: many at once but never more than the concurrency limit,
//! each within its timeout, so a slow or dead pod costs one timeout and nothing else.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

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
/// connection per pod per cycle costs more CPU than reading and parsing its body. That is one
/// socket per injected pod, held while the pod is scraped at least once per
/// [`Scraper::with_idle_timeout`].
#[derive(Debug, Clone)]
pub struct Scraper {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
    concurrency: usize,
}

/// How long an unused connection is kept unless [`Scraper::with_idle_timeout`] says otherwise:
/// long enough to outlast the default 30 s interval twice.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

impl Scraper {
    /// A scraper with at most `concurrency` scrapes in flight, each given `timeout`.
    pub fn new(concurrency: usize, timeout: Duration) -> Self {
        Self::build(concurrency, timeout, DEFAULT_IDLE_TIMEOUT)
    }

    /// The same scraper, closing a connection not used for `idle` (give it more than the
    /// interval between scrapes, or every scrape opens a new one).
    pub fn with_idle_timeout(self, idle: Duration) -> Self {
        Self::build(self.concurrency, self.timeout, idle)
    }

    fn build(concurrency: usize, timeout: Duration, idle: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        // A pod that vanished without closing its connections is noticed by the kernel.
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            // An idle connection keeps its read buffer: a fixed 8 KiB one (a body takes two or
            // three reads) rather than one grown to the largest body, times thousands of pods.
            .http1_read_buf_exact_size(8 * 1024)
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(idle)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Scraper {
            client,
            timeout,
            concurrency: concurrency.max(1),
        }
    }

    /// Scrapes every target; results come back in no particular order.
    pub async fn scrape_all(
        &self,
        targets: Vec<ScrapeTarget>,
    ) -> Vec<(ScrapeTarget, Result<SidecarReading, ScrapeFailure>)> {
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
        let response = self
            .client
            .get(uri)
            .await
            .map_err(|e| error(format!("{e}")))?;
        if !response.status().is_success() {
            return Err(error(format!("HTTP {}", response.status())));
        }
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| error(format!("reading body: {e}")))?;
        Ok(body.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{SidecarTraffic, sidecar_exposition};
    use axum::{Router, routing::get};

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
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
