//! Scale benchmark of the profiler (run by hand, prints figures):
//!
//! ```text
//! cargo bench -p snug-e2e --bench profiler_scale               # 10,000 pods / 2,000 workloads
//! cargo bench -p snug-e2e --bench profiler_scale -- 2000 400   # other sizes: pods workloads
//! ```
//!
//! One profiler cycle over synthetic pods: every pod's sidecar is scraped for real over HTTP
//! (served by a child process of this binary, so the sidecars' CPU is not counted), usage
//! comes from a synthetic source (two containers per pod), profiles go to a directory store,
//! and the real recommenders run: the Snug recommender, then (with a fresh profiler) VPA's.
//!
//! Each pod's sidecar has an address of its own in 127.0.0.0/8 (the child listens on all
//! addresses), so connections are per pod as in a cluster: the scraper's one kept-alive
//! connection per sidecar is opened in cycle 1 and reused after, never shared between pods.
//! (Loopback still flatters the network: the kernel's TCP work for both ends is charged to the
//! two processes, and there is no NIC.)
//!
//! Cycle 1 opens the connections, takes the counters' baselines and writes every new profile;
//! the cycles after it (30 s apart, through one whole 5-minute refresh interval: 12 cycles by
//! default, `SNUG_BENCH_CYCLES`) fold increments and are the steady state, refresh writes
//! included. It prints CPU time (user + system)
//! per cycle and RSS of the profiler process, and as baselines measured in the same run, the
//! CPU time of merely fetching the same bodies with a plain HTTP client (no parsing, no
//! profiling), over new connections and over kept-alive ones. The baseline runs in a process of
//! its own, so the memory its client held is not counted in the profiler's RSS.
//!
//! The profiler asks each sidecar for the metric families it reads alone
//! (`/metrics?name%5B%5D=snug_requests_total&...`, see `snug_profiler::reading::metrics_query`);
//! the fake sidecars answer that query as the real one does (the full exposition, filtered by
//! the sidecar's own `select_families`), and the baseline fetches the very same URLs, so both
//! sides of the ratio move the same bytes.

// A benchmark harness run by hand: failing loudly on a broken setup is what it should do.
#![allow(clippy::expect_used)]

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use procfs::{Cpu, status_mib};
use snug_api::WorkloadRef;
use snug_profiler::{
    cycle::{Context, Profiler},
    fixture::{SidecarTraffic, sidecar_exposition},
    metrics::Metrics,
    model::{ModelSettings, RecommenderFactory},
    pods::{ContainerInfo, PodInfo, PodSnapshot, PodSource},
    reading::metrics_query,
    scrape::Scraper,
    store::dir::DirStore,
    usage::{ContainerUsage, UsageReport, UsageSource},
};
use snug_recommender::RecommenderKind;
use snug_sidecar::admin::select_families;

/// CPU time and memory of this process, from procfs.
mod procfs {
    /// User and system CPU seconds of this process (USER_HZ = 100).
    #[derive(Debug, Clone, Copy)]
    pub struct Cpu {
        pub user: f64,
        pub system: f64,
    }

    impl Cpu {
        pub fn now() -> Self {
            let (user, system) =
                snug_e2e::procfs::cpu_ticks(std::process::id()).unwrap_or_default();
            let seconds = |ticks: u64| ticks as f64 / snug_e2e::procfs::TICKS_PER_SECOND;
            Cpu {
                user: seconds(user),
                system: seconds(system),
            }
        }

        /// CPU used since `self`.
        pub fn since(self) -> Self {
            let now = Cpu::now();
            Cpu {
                user: now.user - self.user,
                system: now.system - self.system,
            }
        }

        pub fn total(self) -> f64 {
            self.user + self.system
        }
    }

    impl std::fmt::Display for Cpu {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "{:.2} s CPU ({:.2} user + {:.2} system)",
                self.total(),
                self.user,
                self.system
            )
        }
    }

    /// A `/proc/self/status` field in MiB (`VmRSS`, `VmHWM`).
    pub fn status_mib(field: &str) -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }
}

const PEERS_PER_POD: usize = 5;
const REQUESTS_PER_SCRAPE: u64 = 100;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("serve-sidecars") {
        let pods = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10_000);
        return serve_sidecars(pods);
    }
    if args.first().map(String::as_str) == Some("fetch-only") {
        let pods = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10_000);
        let port = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let (new_connections, kept_alive, held, bytes) = runtime.block_on(fetch_only(pods, port));
        let cpu = |c: Cpu| format!("{} {}", c.user, c.system);
        println!(
            "{} {} {held} {bytes}",
            cpu(new_connections),
            cpu(kept_alive)
        );
        return;
    }
    let pods: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let workloads: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(2_000);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(bench(pods, workloads));
}

/// The child process: every pod's sidecar on one listener, `/pod/<i>/metrics`; each scrape of
/// a pod finds 100 more requests than the last. It listens on every address, so that each pod
/// can be reached at one of its own in 127.0.0.0/8 (see [`sidecar_addr`]).
fn serve_sidecars(pods: usize) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("address").port());
        std::io::stdout().flush().expect("stdout");
        let scrapes: Arc<Vec<AtomicU64>> = Arc::new((0..pods).map(|_| AtomicU64::new(0)).collect());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let scrapes = scrapes.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let body = sidecar_body(&scrapes, request.uri());
                    async move {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            body,
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn sidecar_body(scrapes: &[AtomicU64], uri: &hyper::Uri) -> String {
    let pod: usize = uri
        .path()
        .split('/')
        .nth(2)
        .and_then(|i| i.parse().ok())
        .unwrap_or(0);
    let n = scrapes
        .get(pod)
        .map_or(0, |s| s.fetch_add(1, Ordering::Relaxed))
        + 1;
    let requests = REQUESTS_PER_SCRAPE * n;
    let durations = (0..requests)
        .map(|i| 0.002 * (1.0 + (i % 50) as f64))
        .collect();
    let peers = (0..PEERS_PER_POD)
        .map(|p| {
            (
                pod_ip((pod + p * 7 + 1) % scrapes.len()),
                300 * requests,
                3000 * requests,
                requests,
            )
        })
        .collect();
    let exposition = sidecar_exposition(&SidecarTraffic {
        requests: vec![
            ("2xx", requests * 97 / 100),
            ("4xx", requests * 2 / 100),
            ("5xx", requests / 100),
        ],
        durations,
        peers,
    });
    // What the real sidecar's admin port answers to the same query.
    match uri.query() {
        Some(query) => select_families(&exposition, query).into_owned(),
        None => exposition,
    }
}

fn pod_ip(pod: usize) -> String {
    format!("10.{}.{}.{}", pod / 65536 % 256, pod / 256 % 256, pod % 256)
}

/// Pod `pod`'s sidecar: an address of its own on loopback, as distinct pods have in a cluster.
fn sidecar_addr(pod: usize, port: u16) -> String {
    format!(
        "127.{}.{}.{}:{port}",
        1 + pod / 65536 % 255,
        pod / 256 % 256,
        pod % 256
    )
}

/// The URL the profiler scrapes, with the query it sends a real sidecar (and the baseline
/// fetches the same).
fn sidecar_url(pod: usize, port: u16) -> String {
    format!(
        "http://{}/pod/{pod}/metrics?{}",
        sidecar_addr(pod, port),
        metrics_query()
    )
}

/// Synthetic pods: `pods` across `workloads` Deployments in 20 namespaces.
#[derive(Debug)]
struct SyntheticPods(PodSnapshot);

impl SyntheticPods {
    fn new(pods: usize, workloads: usize, port: u16) -> Self {
        let pods = (0..pods)
            .map(|i| {
                let w = i % workloads;
                Arc::new(PodInfo {
                    namespace: format!("ns-{}", w % 20),
                    name: format!("web-{w}-{i}"),
                    uid: format!("uid-{i}"),
                    workload: Some(WorkloadRef::new(
                        "apps/v1",
                        "Deployment",
                        &format!("web-{w}"),
                    )),
                    ip: pod_ip(i).parse().ok(),
                    injected: true,
                    scrape_url: Some(sidecar_url(i, port)),
                    containers: ["app", "snug-sidecar"]
                        .map(|name| ContainerInfo {
                            name: name.into(),
                            ..Default::default()
                        })
                        .to_vec(),
                })
            })
            .collect();
        SyntheticPods(PodSnapshot { pods })
    }
}

impl PodSource for SyntheticPods {
    fn snapshot(&self) -> PodSnapshot {
        self.0.clone()
    }
}

/// Usage of every pod's two containers, varying by pod and read.
#[derive(Debug)]
struct SyntheticUsage {
    pods: PodSnapshot,
    reads: AtomicU64,
}

impl UsageSource for SyntheticUsage {
    async fn read(&self, namespaces: &[String]) -> UsageReport {
        let read = self.reads.fetch_add(1, Ordering::Relaxed) as f64;
        let mut usage = Vec::with_capacity(self.pods.pods.len() * 2);
        for (i, pod) in self.pods.pods.iter().enumerate() {
            let wiggle = 1.0 + ((i as f64 + read) % 7.0) / 10.0;
            for (container, cpu, memory) in [("app", 0.2, 200e6), ("snug-sidecar", 0.01, 20e6)] {
                usage.push(ContainerUsage {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    container: container.into(),
                    cpu_cores: Some(cpu * wiggle),
                    memory_bytes: Some(memory * wiggle),
                    ..Default::default()
                });
            }
        }
        UsageReport {
            usage,
            ok: namespaces.len(),
            problems: vec![],
        }
    }
}

async fn bench(pods: usize, workloads: usize) {
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(&exe)
        .args(["serve-sidecars", &pods.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sidecar process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("child stdout"))
        .read_line(&mut line)
        .expect("address");
    let port: u16 = line.trim().parse().expect("sidecar port");

    println!(
        "profiler scale: {pods} pods, {workloads} workloads, {} usage samples per cycle",
        pods * 2
    );
    let (new_connections, kept_alive, held, bytes) = fetch_only_in_child(&exe, pods, port);
    println!(
        "bodies: {:.1} KiB each on average ({:.0} MiB per cycle)",
        bytes / pods.max(1) as f64 / 1024.0,
        bytes / 1024.0 / 1024.0
    );
    println!("baseline: fetch the {pods} bodies, no parsing, new connections: {new_connections}");
    println!(
        "baseline: fetch the {pods} bodies, no parsing, kept-alive connections: {kept_alive}; {:.0} MiB RSS holding {pods} idle connections",
        held
    );
    for kind in [RecommenderKind::Snug, RecommenderKind::Vpa] {
        profile(pods, workloads, port, kind, kept_alive).await;
    }
    println!(
        "peak RSS {:.0} MiB (targets: ≤ 1 s CPU per cycle, ≤ 256 MiB)",
        status_mib("VmHWM:")
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Cycles of a fresh profiler with the `kind` recommender: the first, then 30 s cycles through
/// one whole refresh interval (`SNUG_BENCH_CYCLES`, default 12), so the steady cycles include
/// the refresh writes of profiles first written together. Prints each cycle, then the steady
/// cycles' range.
async fn profile(pods: usize, workloads: usize, port: u16, kind: RecommenderKind, baseline: Cpu) {
    // On tmpfs when there is one: what is measured is the profiler, not the disk's filesystem
    // (a journal-less ext4, as on some CI machines, spends milliseconds of CPU allocating the
    // inode of each replaced file).
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    let synthetic = SyntheticPods::new(pods, workloads, port);
    let usage = SyntheticUsage {
        pods: synthetic.0.clone(),
        reads: AtomicU64::new(0),
    };
    let ctx = Context {
        pods: synthetic,
        usage,
        store: DirStore::new(dir.path()),
        scraper: Scraper::new(64, Duration::from_secs(10)),
        metrics: Metrics::detached(),
        settings: ModelSettings {
            recommender: RecommenderFactory::of(kind),
            min_window: 86400.0,
            min_samples: 10,
            refresh: 300.0,
        },
    };
    let mut profiler = Profiler::new(Arc::new(ctx));
    println!("recommender {kind:?}:");
    let cycles: u32 = std::env::var("SNUG_BENCH_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(12);
    let (mut steady_min, mut steady_max, mut steady_written) = (f64::MAX, 0f64, 0);
    for cycle in 1..=cycles {
        let (cpu, wall) = (Cpu::now(), Instant::now());
        let report = profiler.cycle(1_800_000_000.0 + 30.0 * cycle as f64).await;
        let cpu = cpu.since();
        println!(
            "  cycle {cycle}: {cpu} ({:.1}× kept-alive baseline), {:.2} s wall, written {}, scrapes ok {} failed {}, RSS {:.0} MiB",
            cpu.total() / baseline.total().max(0.01),
            wall.elapsed().as_secs_f64(),
            report.written,
            report.scrapes_ok,
            report.scrapes_failed,
            status_mib("VmRSS:"),
        );
        if cycle > 1 {
            steady_min = steady_min.min(cpu.total());
            steady_max = steady_max.max(cpu.total());
            steady_written = steady_written.max(report.written);
        }
    }
    if cycles > 1 {
        println!(
            "  steady cycles 2-{cycles}: {steady_min:.2}-{steady_max:.2} s CPU ({:.1}-{:.1}× kept-alive baseline), at most {steady_written} profiles written in one",
            steady_min / baseline.total().max(0.01),
            steady_max / baseline.total().max(0.01),
        );
    }
}

/// [`fetch_only`] in a process of its own, so that what its client allocated is not counted
/// in the profiler's RSS.
fn fetch_only_in_child(exe: &std::path::Path, pods: usize, port: u16) -> (Cpu, Cpu, f64, f64) {
    let output = Command::new(exe)
        .args(["fetch-only", &pods.to_string(), &port.to_string()])
        .output()
        .expect("baseline process");
    let numbers: Vec<f64> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(|n| n.parse().expect("baseline figures"))
        .collect();
    let cpu = |user: f64, system: f64| Cpu { user, system };
    (
        cpu(numbers[0], numbers[1]),
        cpu(numbers[2], numbers[3]),
        numbers[4],
        numbers[5],
    )
}

/// CPU to GET every body with a plain client at the same concurrency and buffer size as the
/// scraper: first over new connections (then kept, one per sidecar), then over those kept-alive
/// connections. Also the RSS while holding them, and the bytes of the bodies of the second pass.
async fn fetch_only(pods: usize, port: u16) -> (Cpu, Cpu, f64, f64) {
    use futures::StreamExt;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http1_read_buf_exact_size(8 * 1024)
        .pool_max_idle_per_host(1)
        .build_http::<Empty<Bytes>>();
    let mut passes = Vec::new();
    let mut bytes = 0;
    for _ in 0..2 {
        let cpu = Cpu::now();
        bytes = futures::stream::iter(0..pods)
            .map(|i| {
                let client = client.clone();
                async move {
                    let uri = sidecar_url(i, port).parse().expect("uri");
                    match client.get(uri).await {
                        Ok(response) => response
                            .into_body()
                            .collect()
                            .await
                            .map_or(0, |body| bytes::Buf::remaining(&body.aggregate())),
                        Err(_) => 0,
                    }
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<usize>>()
            .await
            .iter()
            .sum::<usize>();
        passes.push(cpu.since());
    }
    (passes[0], passes[1], status_mib("VmRSS:"), bytes as f64)
}
