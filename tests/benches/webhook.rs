//! Webhook benchmark (run by hand): `cargo bench -p snug-e2e --bench webhook`.
//!
//! HTTPS keep-alive load of AdmissionReviews as a real API server sends them against
//! `snug-webhook` holding 10,000 profiles (directory store), and in the same run against an
//! "allow everything" axum+rustls handler. Each server runs in its own child process on a single-threaded runtime, so its RSS
//! is its own. For each: p50/p99/max latency at a fixed 1,000 req/s (open loop, paced by a
//! thread with the OS's sleep: latency counts from when a request was due, so queueing shows),
//! maximum req/s (closed loop), the share of one core the server used during the maximum
//! phase, and RSS. In both phases the two servers take turns in 1-second slices (16 new
//! connections each). Figures are printed; ratios to the baseline are the numbers to compare
//! across machines.
//!
//! Pinning: the targets are per core, so each server child (Snug and the baseline alike) is
//! pinned to one core (`sched_setaffinity` through `core_affinity`, the first core the harness
//! may use) and the load client, a single-threaded runtime, to another (the second); the two
//! never compete for a core with each other. The server's busy share printed beside its maximum
//! says whether it was the bottleneck (~100%) or the client was; on a 2-core machine one client
//! core cannot saturate the allow-everything server, so the harness also prints each server's
//! admissions per CPU-second it used in the maximum phase (max req/s ÷ busy share): what one
//! core of it can do, the measure the "per core" target is about, and steadier than req/s on a
//! shared machine (time the server was preempted is not counted). With fewer than two usable
//! cores nothing is pinned (and the harness says so).
//!
//! Environment: `SNUG_BENCH_SECONDS` (per phase, default 10), `SNUG_BENCH_ROUNDS` (3),
//! `SNUG_BENCH_PROFILES` (10000),
//! `SNUG_BENCH_CONNECTIONS` (closed-loop connections, default 16), `SNUG_BENCH_REVIEW`
//! (`minimal` for the hand-made review of the earlier figures; see [`review_bodies`]).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark harness: failing loudly is right

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_rustls::TlsConnector;

/// The allocator the `snug-webhook` binary uses, so the servers here run as it does (the
/// baseline gets it too: both servers are this binary).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAME: &str = "snug-webhook.snug-system.svc";
const RATE: u64 = 1_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    match std::env::var("SNUG_BENCH_ROLE").as_deref() {
        Ok(role) => serve(role),
        Err(_) if std::env::var_os("SNUG_BENCH_IN_PROCESS").is_some() => in_process(),
        Err(_) => drive(),
    }
}

// ---------------------------------------------------------------- servers (child processes)

/// The router a role serves: Snug over the profiles in `dir`, or the baseline.
fn app(role: &str, dir: &Path) -> axum::Router {
    if role == "snug" {
        let profiles = snug_webhook::store::DirProfiles::open(dir.join("profiles"));
        let admission = snug_webhook::Admission {
            config: Arc::new(snug_webhook::InjectConfig::default()),
            native_sidecars: true,
            profiles,
            namespaces: Arc::new(snug_webhook::store::NoNamespaces),
            metrics: snug_webhook::metrics::Metrics::default(),
        };
        snug_webhook::router(admission, 4 << 20)
    } else {
        snug_webhook::admission::allow_everything_router(4 << 20)
    }
}

/// The cores to pin the servers and the client to: the first two this process may use.
fn bench_cores() -> Option<(core_affinity::CoreId, core_affinity::CoreId)> {
    let cores = core_affinity::get_core_ids()?;
    match cores[..] {
        [server, client, ..] => Some((server, client)),
        _ => None,
    }
}

fn serve(role: &str) {
    // The parent passes the core to pin to; threads started from here on inherit it.
    if let Some(id) = std::env::var("SNUG_BENCH_CORE")
        .ok()
        .and_then(|c| c.parse().ok())
    {
        assert!(
            core_affinity::set_for_current(core_affinity::CoreId { id }),
            "could not pin the server to core {id}"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = std::path::PathBuf::from(std::env::var("SNUG_BENCH_DIR").unwrap());
        let cert = snug_webhook::tls::ReloadingCert::load(dir.join("tls.crt"), dir.join("tls.key"))
            .unwrap();
        let app = app(role, &dir);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        snug_webhook::server::serve_tls(
            listener,
            cert.server_config().unwrap(),
            app,
            std::future::pending(),
        )
        .await;
    });
}

/// `SNUG_BENCH_IN_PROCESS=1`: both handlers called in this process, without TLS, HTTP or a
/// client, one request at a time; prints the CPU time each takes per admission. Steadier
/// than the load test on a busy machine, and the mode to run under a profiler.
fn in_process() {
    let profiles = env_or("SNUG_BENCH_PROFILES", 10_000) as usize;
    let iterations = env_or("SNUG_BENCH_ITERATIONS", 200_000);
    let dir = tempfile::tempdir().unwrap();
    write_profiles(&dir.path().join("profiles"), profiles);
    let bodies = review_bodies(profiles);
    check_snug_patches_every_review(dir.path(), &bodies);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut per_admission = Vec::new();
    for role in ["baseline", "snug"] {
        let app = app(role, dir.path());
        let started = cpu_time();
        runtime.block_on(async {
            for i in 0..iterations {
                let body = post_in_process(&app, &bodies[i as usize % bodies.len()]).await;
                assert!(body.starts_with(b"{"), "not a review");
            }
        });
        let micros = (cpu_time() - started).as_secs_f64() * 1e6 / iterations as f64;
        per_admission.push(micros);
        println!(
            "{role:<18} {micros:>8.2} µs CPU per admission (in process, {iterations} reviews)"
        );
    }
    println!(
        "snug/baseline handler cost: {:.2}x",
        per_admission[1] / per_admission[0]
    );
}

/// `POST /mutate` of `body` through `app` in this process; the answer's body (a 200 is
/// required).
async fn post_in_process(app: &axum::Router, body: &Bytes) -> Bytes {
    use tower::ServiceExt as _;
    let request = http::Request::post("/mutate")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.clone()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

/// CPU time this thread has run (the first field of its schedstat, in nanoseconds).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let nanos = stat.split_whitespace().next().unwrap().parse().unwrap();
    Duration::from_nanos(nanos)
}

/// Snug must patch every review the harness sends (sidecar, annotations, resources in
/// `apply` mode), without a warning: a run that measured a refusal or an error path would
/// flatter it. Checked in process before any measurement.
fn check_snug_patches_every_review(dir: &Path, bodies: &[Bytes]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let app = app("snug", dir);
    runtime.block_on(async {
        for body in bodies {
            let answer: Value = serde_json::from_slice(&post_in_process(&app, body).await).unwrap();
            let response = &answer["response"];
            assert!(
                response["patch"].is_string() && response["warnings"].is_null(),
                "snug did not patch a benchmark review cleanly: {answer}"
            );
        }
    });
}

// ---------------------------------------------------------------- setup

fn write_profiles(dir: &Path, count: usize) {
    let ns = dir.join("bench");
    std::fs::create_dir_all(&ns).unwrap();
    let checkpoint = "x".repeat(2048);
    for i in 0..count {
        let peers: Vec<Value> = (0..5)
            .map(|p| {
                json!({"peer": format!("Deployment/client-{p}"), "receivedBytesPerSecond": 1200.5,
                            "sentBytesPerSecond": 8300.25, "requestsPerMinute": 95.0})
            })
            .collect();
        let profile = json!({
            "apiVersion": "snug.dev/v1alpha1", "kind": "WorkloadProfile",
            "metadata": {"name": format!("deployment-app-{i}"), "namespace": "bench", "resourceVersion": format!("{}", 1000 + i)},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("app-{i}")}},
            "status": {
                "confidence": 0.8, "samples": 2880, "windowSeconds": 172800.0, "oomKills": 0,
                "containers": [
                    {"name": "web", "cpu": {"p50": 0.1, "p90": 0.2, "p95": 0.25, "p99": 0.3, "max": 0.5},
                     "memory": {"p50": 2.0e8, "p90": 2.4e8, "p95": 2.5e8, "p99": 2.6e8, "max": 2.8e8},
                     "recommendation": {"requests": {"cpu": "250m", "memory": "300Mi"},
                                        "lowerBound": {"cpu": "150m", "memory": "250Mi"},
                                        "upperBound": {"cpu": "600m", "memory": "400Mi"}}},
                    {"name": "snug-sidecar", "recommendation": {"requests": {"cpu": "6m", "memory": "24Mi"},
                                                                "limits": {"memory": "64Mi"}}}
                ],
                "traffic": {"requestsPerSecond": 35.2, "latencyP50Seconds": 0.004, "latencyP95Seconds": 0.011,
                            "latencyP99Seconds": 0.02, "errorRatio": 0.001},
                "peers": peers,
                "summary": {"workload": format!("Deployment/app-{i}"), "cpu": "256m", "memory": "324Mi",
                            "latencyP99": "20ms", "requestsPerSecond": "35.2", "confidence": "80%"},
                "checkpoint": checkpoint,
            }
        });
        let text = serde_norway::to_string(&profile).unwrap();
        std::fs::write(ns.join(format!("deployment-app-{i}.yaml")), text).unwrap();
    }
}

/// The reviews to send, spread over the profiled workloads, half in `apply` mode. By default
/// the corpus's Deployment pod as kube-apiserver 1.20.2 sent it
/// (`webhook/tests/data/reviews/kube-1.20-deployment.json`, 3.9 KB: managedFields, defaulted
/// fields, the token volume, `requestKind`, `options`); `SNUG_BENCH_REVIEW=minimal` sends the
/// corpus pod as written in a hand-made review instead (1.3 KB, the body of the figures before
/// 2026-12-03's last section in docs/webhook.md).
fn review_bodies(profiles: usize) -> Vec<Bytes> {
    let minimal = std::env::var("SNUG_BENCH_REVIEW").is_ok_and(|v| v == "minimal");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../webhook/tests/data");
    let captured: Value = serde_json::from_slice(
        &std::fs::read(data.join("reviews/kube-1.20-deployment.json")).unwrap(),
    )
    .unwrap();
    let pod: Value = serde_norway::from_str(
        &std::fs::read_to_string(data.join("pods/deployment.yaml")).unwrap(),
    )
    .unwrap();
    (0..1000)
        .map(|i| {
            let workload = (i * 7919) % profiles;
            let mut review = if minimal {
                json!({
                    "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "request": {
                        "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "operation": "CREATE",
                        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                        "object": pod.clone(), "oldObject": null, "dryRun": false
                    }
                })
            } else {
                captured.clone()
            };
            let request = &mut review["request"];
            request["uid"] = json!(format!("00000000-0000-0000-0000-{i:012}"));
            request["namespace"] = json!("bench");
            let meta = &mut request["object"]["metadata"];
            if minimal {
                meta["namespace"] = json!("bench");
            }
            meta["generateName"] = json!(format!("app-{workload}-7c9d6b5f4-"));
            meta["ownerReferences"][0]["name"] = json!(format!("app-{workload}-7c9d6b5f4"));
            if i % 2 == 0 {
                meta["annotations"] = json!({"snug.dev/mode": "apply"});
            }
            Bytes::from(serde_json::to_vec(&review).unwrap())
        })
        .collect()
}

struct Server {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Server {
    fn start(role: &str, dir: &Path, core: Option<core_affinity::CoreId>) -> Server {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .env("SNUG_BENCH_ROLE", role)
            .env("SNUG_BENCH_DIR", dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped());
        if let Some(core) = core {
            command.env("SNUG_BENCH_CORE", core.id.to_string());
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Server {
            child,
            addr: line.trim().parse().unwrap(),
        }
    }

    /// CPU time (user + system) the server has used so far.
    fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime and stime are the
        // 12th and 13th of them, in clock ticks (100 per second on Linux).
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ticks: u64 = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse::<u64>().ok())
            .sum();
        Duration::from_millis(ticks * 10)
    }

    /// (current RSS, peak RSS) in MiB.
    fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- client

async fn connect(addr: std::net::SocketAddr, tls: &TlsConnector) -> SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let stream = tls
        .connect(ServerName::try_from(NAME).unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn admit(sender: &mut SendRequest<Full<Bytes>>, body: Bytes) {
    sender.ready().await.unwrap();
    let request = http::Request::post("/mutate")
        .header("host", NAME)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"{"), "not a review");
}

/// Open loop at `rate` req/s over `connections`; latencies from each request's due time, in
/// the order they completed (the caller sorts all of a server's slices together).
async fn fixed_rate(
    addr: std::net::SocketAddr,
    tls: &TlsConnector,
    bodies: &[Bytes],
    rate: u64,
    seconds: u64,
) -> Vec<Duration> {
    let connections = 16;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut queues = Vec::new();
    for _ in 0..connections {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Bytes)>();
        let mut sender = connect(addr, tls).await;
        let done = done_tx.clone();
        tokio::spawn(async move {
            while let Some((due, body)) = rx.recv().await {
                admit(&mut sender, body).await;
                let _ = done.send(due.elapsed());
            }
        });
        queues.push(tx);
    }
    drop(done_tx);
    let total = rate * seconds;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    // Paced by a thread of its own with the OS's fine-grained sleep: tokio's timer ticks in
    // whole milliseconds, which would make every request up to 1 ms late and bury the
    // servers' own latency (tens of microseconds) under the pacer's.
    let bodies = bodies.to_vec();
    let pacer = std::thread::spawn(move || {
        let start = Instant::now();
        for i in 0..total {
            let due = start + period * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let body = bodies[i as usize % bodies.len()].clone();
            let _ = queues[i as usize % connections].send((due, body));
        }
    });
    let mut latencies = Vec::with_capacity(total as usize);
    while let Some(l) = done_rx.recv().await {
        latencies.push(l);
    }
    pacer.join().unwrap();
    latencies
}

/// Closed loop: `connections` each sending back to back for `seconds`; completed requests
/// and the time they took.
async fn max_rate(
    addr: std::net::SocketAddr,
    tls: &TlsConnector,
    bodies: &[Bytes],
    connections: usize,
    seconds: u64,
) -> (u64, Duration) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut sender = connect(addr, tls).await;
        let bodies = bodies.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                admit(
                    &mut sender,
                    bodies[(c * 31 + n as usize) % bodies.len()].clone(),
                )
                .await;
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    (total, start.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

#[derive(Default)]
struct Figures {
    p50_ms: Vec<f64>,
    p99_ms: Vec<f64>,
    max_ms: Vec<f64>,
    max_rps: Vec<f64>,
    /// The server's CPU time over wall time during the maximum phase (1.0 = one core).
    busy: Vec<f64>,
}

impl Figures {
    /// Admissions per CPU-second of the server in a round's maximum phase.
    fn per_cpu_second(&self, round: usize) -> f64 {
        self.max_rps[round] / self.busy[round]
    }

    fn per_cpu_seconds(&self) -> Vec<f64> {
        (0..self.max_rps.len())
            .map(|r| self.per_cpu_second(r))
            .collect()
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Rounds alternate the two servers phase by phase, so both see the same machine load;
/// each figure is the median over rounds.
async fn measure(
    servers: [&Server; 2],
    tls: &TlsConnector,
    bodies: &[Bytes],
    seconds: u64,
    connections: usize,
    rounds: usize,
) -> [Figures; 2] {
    let mut figures = [Figures::default(), Figures::default()];
    for server in servers {
        max_rate(server.addr, tls, bodies, connections, 2).await; // warm-up
    }
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        // Both phases take turns in 1-second slices, so a change in the machine's speed
        // (this VM's swings by up to 1.8x within minutes) or a stall of it falls on both
        // servers alike; each server's figures are over all its slices.
        let mut latencies = [Vec::new(), Vec::new()];
        for _ in 0..seconds {
            for i in order {
                latencies[i].extend(fixed_rate(servers[i].addr, tls, bodies, RATE, 1).await);
            }
        }
        for i in order {
            let latencies = &mut latencies[i];
            latencies.sort();
            figures[i].p50_ms.push(percentile(latencies, 0.50));
            figures[i].p99_ms.push(percentile(latencies, 0.99));
            figures[i]
                .max_ms
                .push(latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0));
        }
        let (mut done, mut took, mut cpu) = ([0u64; 2], [Duration::ZERO; 2], [Duration::ZERO; 2]);
        for _ in 0..seconds {
            for i in order {
                let before = servers[i].cpu_time();
                let (n, t) = max_rate(servers[i].addr, tls, bodies, connections, 1).await;
                cpu[i] += servers[i].cpu_time() - before;
                done[i] += n;
                took[i] += t;
            }
        }
        for i in order {
            figures[i]
                .max_rps
                .push(done[i] as f64 / took[i].as_secs_f64());
            figures[i]
                .busy
                .push(cpu[i].as_secs_f64() / took[i].as_secs_f64());
        }
        eprintln!(
            "round {round}: p99 {:.3}/{:.3} ms ({:.2}x), max {:.0}/{:.0} req/s ({:.2}x; server busy {:.0}%/{:.0}%; per CPU-second {:.0}/{:.0}, {:.2}x) (baseline/snug)",
            figures[0].p99_ms[round],
            figures[1].p99_ms[round],
            figures[1].p99_ms[round] / figures[0].p99_ms[round],
            figures[0].max_rps[round],
            figures[1].max_rps[round],
            figures[1].max_rps[round] / figures[0].max_rps[round],
            figures[0].busy[round] * 100.0,
            figures[1].busy[round] * 100.0,
            figures[0].per_cpu_second(round),
            figures[1].per_cpu_second(round),
            figures[1].per_cpu_second(round) / figures[0].per_cpu_second(round),
        );
    }
    figures
}

fn drive() {
    let seconds = env_or("SNUG_BENCH_SECONDS", 10);
    let profiles = env_or("SNUG_BENCH_PROFILES", 10_000) as usize;
    let connections = env_or("SNUG_BENCH_CONNECTIONS", 16) as usize;
    let dir = tempfile::tempdir().unwrap();
    let bundle = snug_webhook::certs::generate("snug-webhook", "snug-system", 30).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &bundle.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &bundle.key_pem).unwrap();
    let written = Instant::now();
    write_profiles(&dir.path().join("profiles"), profiles);
    eprintln!(
        "wrote {profiles} profiles in {:.1}s",
        written.elapsed().as_secs_f64()
    );
    let bodies = review_bodies(profiles);
    check_snug_patches_every_review(dir.path(), &bodies);
    eprintln!(
        "review body: {} bytes; snug patches every review",
        bodies[0].len()
    );

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(bundle.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = TlsConnector::from(Arc::new(client));

    // The client on one core, each server on the other: see the module's doc.
    let cores = bench_cores();
    match cores {
        Some((server, client)) => {
            assert!(
                core_affinity::set_for_current(client),
                "could not pin the client to core {}",
                client.id
            );
            eprintln!(
                "servers pinned to core {}, load client to core {}",
                server.id, client.id
            );
        }
        None => eprintln!("fewer than two usable cores: nothing pinned"),
    }
    let server_core = cores.map(|(server, _)| server);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rounds = env_or("SNUG_BENCH_ROUNDS", 3) as usize;
    let loaded = Instant::now();
    let snug = Server::start("snug", dir.path(), server_core);
    eprintln!(
        "snug-webhook up with {profiles} profiles in {:.1}s, RSS {:.1} MiB",
        loaded.elapsed().as_secs_f64(),
        snug.rss_mib().0
    );
    let baseline = Server::start("baseline", dir.path(), server_core);
    let [b, s] = runtime.block_on(measure(
        [&baseline, &snug],
        &tls,
        &bodies,
        seconds,
        connections,
        rounds,
    ));
    let rss = [baseline.rss_mib(), snug.rss_mib()];
    drop((snug, baseline));

    println!(
        "\nwebhook benchmark: {profiles} profiles, {rounds} rounds x {seconds}s per phase, {RATE} req/s fixed rate (16 connections), {connections} connections for max; medians over rounds"
    );
    println!(
        "{:<18} {:>9} {:>9} {:>9} {:>10} {:>6} {:>10} {:>9} {:>9}",
        "server",
        "p50 ms",
        "p99 ms",
        "max ms",
        "max req/s",
        "busy",
        "req/CPU-s",
        "RSS MiB",
        "peak MiB"
    );
    for (name, f, (now, peak)) in [
        ("allow-everything", &b, rss[0]),
        ("snug-webhook", &s, rss[1]),
    ] {
        println!(
            "{name:<18} {:>9.3} {:>9.3} {:>9.3} {:>10.0} {:>5.0}% {:>10.0} {:>9.1} {:>9.1}",
            median(&f.p50_ms),
            median(&f.p99_ms),
            median(&f.max_ms),
            median(&f.max_rps),
            median(&f.busy) * 100.0,
            median(&f.per_cpu_seconds()),
            now,
            peak
        );
    }
    println!(
        "ratios snug/baseline: p50 {:.2}x, p99 {:.2}x (target <= 1.5x), max req/s {:.2}x, admissions per server CPU-second {:.2}x (target >= 0.7x); snug peak RSS {:.1} MiB (target <= 64)",
        median(&s.p50_ms) / median(&b.p50_ms),
        median(&s.p99_ms) / median(&b.p99_ms),
        median(&s.max_rps) / median(&b.max_rps),
        median(&s.per_cpu_seconds()) / median(&b.per_cpu_seconds()),
        rss[1].1
    );
}
