//! Snug's three programs as processes, the way a user runs them outside a cluster: the sample
//! app, `snug-sidecar` in front of it, `snug-profiler local` scraping the sidecar and reading
//! the app from procfs, `snug-webhook` on TLS reading the profiles the profiler wrote. Real
//! traffic at a constant rate from two client addresses; the test asserts figures:
//!
//! - the bytes the sidecar reports per peer are the bytes the clients sent and received;
//! - the profile's request rate is within 10% of the generated rate;
//! - the profile's p99 latency is within the latency buckets' error of the app's real p99;
//! - killing and restarting the profiler keeps the learned profile;
//! - the webhook's patch carries the profile's recommendation, clamped by the pod's bounds, and
//!   a second review of the patched pod adds nothing.

// The helpers below serve one test; a failure in them is that test's failure.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use snug_api::{WorkloadProfile, WorkloadRef, keys, latency, metrics, quantity::parse_quantity};
use snug_e2e::{
    demo::admit,
    process::{LocalProcess, workspace_binary},
    snug::free_port,
    wait,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const NAMESPACE: &str = "shop";
const WORKLOAD: &str = "web";
/// Two client peers and their constant request rates (requests per second).
const PEERS: [(Ipv4Addr, u32); 2] = [
    (Ipv4Addr::new(127, 0, 0, 2), 60),
    (Ipv4Addr::new(127, 0, 0, 3), 40),
];
/// How long the load runs.
const LOAD: Duration = Duration::from_secs(14);
/// Memory the app holds once the first request has been served.
const APP_MEMORY_MIB: u64 = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sidecar_profiler_and_webhook_as_processes() {
    let dir = tempfile::tempdir().unwrap();
    let run = Run::new(dir.path());

    let app_port = free_port().unwrap();
    let app = run.start(
        "app",
        Path::new(env!("CARGO_BIN_EXE_snug-demo")),
        &[
            "app".into(),
            "--address=127.0.0.1".into(),
            format!("--port={app_port}"),
        ],
        &[],
    );
    ready(&format!("http://127.0.0.1:{app_port}/healthz")).await;

    let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
    let _sidecar = run.start(
        "sidecar",
        &workspace_binary("snug-sidecar").unwrap(),
        &[],
        &[
            ("SNUG_PORTS", format!("{listen}:{app_port}")),
            ("SNUG_LISTEN_ADDR", "127.0.0.1".into()),
            ("SNUG_ADMIN_PORT", admin.to_string()),
        ],
    );
    ready(&format!("http://127.0.0.1:{admin}/ready")).await;

    let profiler_args = vec![
        "local".to_owned(),
        format!("--scrape=http://127.0.0.1:{admin}/metrics"),
        format!("--pid={}", app.pid().unwrap()),
        format!("--workload=Deployment/{WORKLOAD}"),
        format!("--namespace={NAMESPACE}"),
        "--container=app".into(),
        format!("--profiles-dir={}", run.profiles.display()),
        "--interval=1s".into(),
        "--refresh=1s".into(),
        "--min-window=6s".into(),
    ];
    let profiler_exe = workspace_binary("snug-profiler").unwrap();
    let mut profiler = run.start("profiler", &profiler_exe, &profiler_args, &[]);

    // Constant-rate traffic from both peers; halfway through, the profile's rate is read.
    let target = SocketAddr::new(LOCALHOST, listen);
    let started = Instant::now();
    let load: Vec<_> = PEERS
        .iter()
        .map(|&(peer, rate)| tokio::spawn(constant_rate(peer.into(), rate, target)))
        .collect();
    let generated: f64 = PEERS.iter().map(|(_, rate)| f64::from(*rate)).sum();
    tokio::time::sleep(LOAD / 2).await;
    let seen = run.next_profile_with_traffic().await;
    let rate = seen.status.as_ref().unwrap().traffic.as_ref().unwrap();
    assert!(
        started.elapsed() < LOAD,
        "the load ended before the profile was read"
    );
    eprintln!(
        "rate: generated {generated} req/s, profile {:.1} req/s",
        rate.requests_per_second
    );
    assert!(
        (rate.requests_per_second - generated).abs() <= 0.10 * generated,
        "profile says {:.1} req/s, {generated} req/s were generated",
        rate.requests_per_second
    );

    let mut tallies = Vec::new();
    for driver in load {
        tallies.push(driver.await.unwrap());
    }
    for (tally, (peer, _)) in tallies.iter().zip(PEERS) {
        assert_eq!(tally.failed, 0, "{peer}: requests failed");
    }

    // Bytes and requests per peer: the sidecar's counters against the clients' own counts.
    let counters = sidecar_peer_counters(admin).await;
    for (tally, (peer, _)) in tallies.iter().zip(PEERS) {
        let peer = peer.to_string();
        eprintln!(
            "{peer}: {} requests, {} bytes sent, {} bytes received",
            tally.latencies.len(),
            tally.bytes.written.load(Ordering::Relaxed),
            tally.bytes.read.load(Ordering::Relaxed)
        );
        let of = |name: &str| counters.get(&(name.to_owned(), peer.clone())).copied();
        assert_eq!(
            of(metrics::PEER_RECEIVED_BYTES_TOTAL),
            Some(tally.bytes.written.load(Ordering::Relaxed) as f64),
            "bytes from {peer}"
        );
        assert_eq!(
            of(metrics::PEER_SENT_BYTES_TOTAL),
            Some(tally.bytes.read.load(Ordering::Relaxed) as f64),
            "bytes to {peer}"
        );
        assert_eq!(
            of(metrics::PEER_REQUESTS_TOTAL),
            Some(tally.latencies.len() as f64),
            "requests from {peer}"
        );
    }

    // p99: no lower than the latency the app was asked for (bar the bucket's error), no higher
    // than what the clients saw through the proxy (bar the bucket's error).
    let learned = run.confident_profile().await;
    let p99 = learned
        .status
        .as_ref()
        .unwrap()
        .traffic
        .as_ref()
        .unwrap()
        .latency_p99_seconds;
    let planned: Vec<f64> = tallies.iter().flat_map(|t| t.planned.clone()).collect();
    let observed: Vec<f64> = tallies.iter().flat_map(|t| t.latencies.clone()).collect();
    let (planned_p99, observed_p99) = (percentile(planned, 0.99), percentile(observed, 0.99));
    let error = latency::max_relative_error();
    eprintln!(
        "p99: planned {planned_p99:.4} s, clients saw {observed_p99:.4} s, profile {p99:.4} s"
    );
    assert!(
        p99 >= planned_p99 * (1.0 - error) && p99 <= observed_p99 * (1.0 + error),
        "profile p99 {p99:.4}s; the app was asked for {planned_p99:.4}s, clients saw {observed_p99:.4}s \
         (bucket error {:.1}%)",
        error * 100.0
    );

    // Kill the profiler (no chance to save anything) and start it again: it resumes from the
    // checkpoint in the profile, so the observation window and samples go on growing.
    profiler.kill().await;
    let before = run.profile().unwrap();
    let mut profiler = run.start("profiler-restarted", &profiler_exe, &profiler_args, &[]);
    let before_status = before.status.as_ref().unwrap();
    let after = wait::until(
        "the restarted profiler to write the profile",
        Duration::from_secs(30),
        || async {
            run.profile()
                .filter(|p| p.status.as_ref().unwrap().samples > before_status.samples)
        },
    )
    .await
    .unwrap();
    profiler.kill().await;
    let after_status = after.status.as_ref().unwrap();
    assert_eq!(after_status.observed_since, before_status.observed_since);
    assert!(after_status.window_seconds >= before_status.window_seconds);
    assert!(after_status.confidence >= before_status.confidence);
    let memory = |p: &WorkloadProfile| {
        let requests = &p.container("app").unwrap().recommendation.requests;
        parse_quantity(requests.memory.as_ref().unwrap()).unwrap()
    };
    assert!(
        memory(&after) >= 0.95 * memory(&before),
        "memory recommendation fell from {} to {} bytes after the restart",
        memory(&before),
        memory(&after)
    );

    // The webhook, on TLS with certificates from `snug-webhook certs`, reading that directory.
    let webhook_exe = workspace_binary("snug-webhook").unwrap();
    let certs = dir.path().join("certs");
    let status = tokio::process::Command::new(&webhook_exe)
        .args(["certs", "--out"])
        .arg(&certs)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "snug-webhook certs: {status}");
    let (https, health) = (free_port().unwrap(), free_port().unwrap());
    let _webhook = run.start(
        "webhook",
        &webhook_exe,
        &[
            format!("--listen=127.0.0.1:{https}"),
            format!("--health-listen=127.0.0.1:{health}"),
            format!("--tls-cert={}", certs.join("tls.crt").display()),
            format!("--tls-key={}", certs.join("tls.key").display()),
            format!("--profiles-dir={}", run.profiles.display()),
        ],
        &[],
    );
    ready(&format!("http://127.0.0.1:{health}/ready")).await;
    let ca = std::fs::read_to_string(certs.join("ca.crt")).unwrap();
    let webhook = SocketAddr::new(LOCALHOST, https);
    let server_name = "snug-webhook.snug-system.svc";

    // A new pod of the workload in apply mode, with bounds on both sides of the recommendation.
    let recommended = &after.container("app").unwrap().recommendation.requests;
    let recommended_cpu = parse_quantity(recommended.cpu.as_ref().unwrap()).unwrap();
    let recommended_memory = memory(&after);
    let (min_cpu, max_memory) = (2.0, 200.0 * 1024.0 * 1024.0);
    assert!(
        recommended_cpu < min_cpu && recommended_memory > max_memory,
        "the bounds must bind: recommended {recommended_cpu} cores, {recommended_memory} bytes"
    );
    let mut pod = admit::demo_pod(NAMESPACE, WORKLOAD);
    let annotations = &mut pod["metadata"]["annotations"];
    annotations[keys::MIN_CPU] = "2".into();
    annotations[keys::MAX_MEMORY] = "200Mi".into();
    let answer = admit::post_review(webhook, server_name, &ca, &admit::review(&pod, NAMESPACE))
        .await
        .unwrap();
    let patch = admit::patch_of(&answer).unwrap();
    let patched = admit::apply(&pod, &patch).unwrap();

    let spec = patched.spec.as_ref().unwrap();
    assert!(
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == "snug-sidecar"),
        "no sidecar in the patched pod"
    );
    let app_container = spec.containers.iter().find(|c| c.name == "app").unwrap();
    assert_eq!(admit::requested(app_container, "cpu"), Some(min_cpu));
    assert_eq!(admit::requested(app_container, "memory"), Some(max_memory));
    let annotations = patched.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations[keys::PROFILE],
        format!(
            "{NAMESPACE}/{}@{}",
            profile_name(),
            after.metadata.resource_version.as_deref().unwrap()
        )
    );

    // The API server may call the webhook again with the patched pod: nothing more to add.
    let patched_json = serde_json::to_value(&patched).unwrap();
    let again = admit::post_review(
        webhook,
        server_name,
        &ca,
        &admit::review(&patched_json, NAMESPACE),
    )
    .await
    .unwrap();
    assert_eq!(again["response"]["allowed"], Value::Bool(true));
    assert!(
        admit::patch_of(&again).unwrap().0.is_empty(),
        "second review patched again: {again}"
    );
}

/// The processes of one test run: logs and PID files in its directory, profiles beside them.
struct Run {
    logs: PathBuf,
    profiles: PathBuf,
}

impl Run {
    fn new(dir: &Path) -> Run {
        let (logs, profiles) = (dir.join("logs"), dir.join("profiles"));
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&profiles).unwrap();
        Run { logs, profiles }
    }

    fn start(
        &self,
        name: &str,
        binary: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> LocalProcess {
        LocalProcess::start(name, binary, args, env, &self.logs, &self.logs)
            .unwrap_or_else(|e| panic!("starting {name}: {e}"))
    }

    fn path(&self) -> PathBuf {
        self.profiles
            .join(NAMESPACE)
            .join(format!("{}.yaml", profile_name()))
    }

    fn profile(&self) -> Option<WorkloadProfile> {
        let text = std::fs::read_to_string(self.path()).ok()?;
        serde_norway::from_str(&text).ok()
    }

    /// The first profile with traffic written from now on.
    async fn next_profile_with_traffic(&self) -> WorkloadProfile {
        let since = std::time::SystemTime::now();
        wait::until(
            "a profile with traffic",
            Duration::from_secs(10),
            || async {
                let modified = std::fs::metadata(self.path()).ok()?.modified().ok()?;
                (modified > since)
                    .then(|| self.profile())
                    .flatten()
                    .filter(|p| {
                        p.status.as_ref().is_some_and(|s| {
                            s.traffic
                                .as_ref()
                                .is_some_and(|t| t.requests_per_second > 0.0)
                        })
                    })
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e} in {}", self.logs.display()))
    }

    async fn confident_profile(&self) -> WorkloadProfile {
        wait::until("a confident profile", Duration::from_secs(30), || async {
            self.profile().filter(WorkloadProfile::is_confident)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; last: {:?}", self.profile().and_then(|p| p.status)))
    }
}

fn profile_name() -> String {
    WorkloadRef::new("apps/v1", "Deployment", WORKLOAD).profile_name()
}

async fn ready(url: &str) {
    wait::until(url, Duration::from_secs(20), || async {
        snug_e2e::http::get(url, None)
            .await
            .ok()
            .filter(|r| r.status == 200)
    })
    .await
    .unwrap();
}

/// `(metric, peer)` → value, for the sidecar's per-peer counters.
async fn sidecar_peer_counters(admin: u16) -> HashMap<(String, String), f64> {
    let body = snug_e2e::http::get(&format!("http://127.0.0.1:{admin}/metrics"), None)
        .await
        .unwrap()
        .body;
    let mut counters = HashMap::new();
    snug_profiler::exposition::parse(&body, |sample| {
        if let Some(peer) = sample.label(metrics::LABEL_PEER) {
            *counters
                .entry((sample.name.to_owned(), peer.to_owned()))
                .or_default() += sample.value;
        }
    })
    .unwrap();
    counters
}

/// What one client peer sent and saw.
#[derive(Debug, Default)]
struct Tally {
    bytes: Arc<WireBytes>,
    /// Latency each request was asked to have (CPU + sleep), seconds.
    planned: Vec<f64>,
    /// Latency each request had, to the end of the response body, seconds.
    latencies: Vec<f64>,
    failed: u64,
}

/// Bytes written to and read from the sidecar, on the wire.
#[derive(Debug, Default)]
struct WireBytes {
    written: AtomicU64,
    read: AtomicU64,
}

/// Requests from `peer` at `rate` per second for [`LOAD`], each on its own connection, each
/// asking the app for 1 ms of CPU and a sleep of 1–100 ms (evenly spread), so the latency
/// distribution and its p99 are known in advance.
async fn constant_rate(peer: IpAddr, rate: u32, target: SocketAddr) -> Tally {
    let bytes = Arc::new(WireBytes::default());
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut planned = Vec::new();
    let total = rate as u64 * LOAD.as_secs();
    for i in 0..total {
        ticks.tick().await;
        let sleep_ms = 1 + (i * 37) % 100;
        planned.push((sleep_ms + 1) as f64 / 1000.0);
        let path = format!("/work?cpu_ms=1&sleep_ms={sleep_ms}&memory_mib={APP_MEMORY_MIB}");
        in_flight.spawn(one_request(peer, target, path, bytes.clone()));
    }
    let mut tally = Tally {
        bytes,
        planned,
        ..Tally::default()
    };
    while let Some(done) = in_flight.join_next().await {
        match done.unwrap() {
            Ok(seconds) => tally.latencies.push(seconds),
            Err(e) => {
                eprintln!("{peer}: {e}");
                tally.failed += 1;
            }
        }
    }
    tally
}

async fn one_request(
    peer: IpAddr,
    target: SocketAddr,
    path: String,
    bytes: Arc<WireBytes>,
) -> Result<f64, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(peer, 0))
        .map_err(|e| e.to_string())?;
    let tcp = socket.connect(target).await.map_err(|e| e.to_string())?;
    let stream = Counted { inner: tcp, bytes };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let connection = tokio::spawn(connection);
    let started = Instant::now();
    let request = http::Request::get(path)
        .header("host", target.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    drop(sender);
    connection
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(seconds)
    } else {
        Err(format!("status {status}"))
    }
}

/// A TCP stream that counts the bytes that cross it.
struct Counted {
    inner: tokio::net::TcpStream,
    bytes: Arc<WireBytes>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.bytes.read.fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.bytes.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The `q` quantile of `values` (nearest rank).
fn percentile(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[test]
fn percentile_is_nearest_rank() {
    let values: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(values.clone(), 0.99), 99.0);
    assert_eq!(percentile(values, 0.5), 50.0);
}
