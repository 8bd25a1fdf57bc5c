use std::{sync::Mutex, time::Duration};

use axum::{Router, extract::Path, routing::get};
use prometheus_client::registry::Registry;
use snug_api::WorkloadRef;
use snug_recommender::RecommenderKind;

use super::*;
use crate::{
    fixture::{PeakRecommender, SidecarTraffic, sidecar_exposition},
    model::RecommenderFactory,
    pods::ContainerInfo,
    store::dir::DirStore,
    usage::{ContainerUsage, UsageOutcome, UsageProblem, UsageReport},
};

const MIB: f64 = 1024.0 * 1024.0;

/// Pods the test sets.
#[derive(Debug, Default)]
struct TestPods(Mutex<Vec<Arc<PodInfo>>>);

impl PodSource for TestPods {
    fn snapshot(&self) -> PodSnapshot {
        PodSnapshot {
            pods: self.0.lock().unwrap().clone(),
        }
    }
}

/// Usage reports the test queues, one per cycle.
#[derive(Debug, Default)]
struct TestUsage(Mutex<Vec<UsageReport>>);

impl UsageSource for TestUsage {
    async fn read(&self, _namespaces: &[String]) -> UsageReport {
        let mut queue = self.0.lock().unwrap();
        if queue.is_empty() {
            UsageReport::default()
        } else {
            queue.remove(0)
        }
    }
}

/// Sidecars on 127.0.0.1 whose bodies the test sets, by name.
#[derive(Debug, Clone, Default)]
struct Sidecars(Arc<Mutex<HashMap<String, String>>>);

impl Sidecars {
    async fn serve(&self) -> String {
        let bodies = self.0.clone();
        let router = Router::new().route(
            "/{name}/metrics",
            get(move |Path(name): Path<String>| {
                let bodies = bodies.clone();
                async move {
                    bodies
                        .lock()
                        .unwrap()
                        .get(&name)
                        .cloned()
                        .unwrap_or_default()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        base
    }

    fn set(&self, name: &str, body: String) {
        self.0.lock().unwrap().insert(name.to_owned(), body);
    }
}

fn web() -> WorkloadKey {
    WorkloadKey {
        namespace: "shop".into(),
        workload: WorkloadRef::new("apps/v1", "Deployment", "web"),
    }
}

fn pod(name: &str, workload: Option<WorkloadRef>, ip: &str, url: Option<String>) -> Arc<PodInfo> {
    Arc::new(PodInfo {
        namespace: "shop".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        workload,
        ip: ip.parse().ok(),
        injected: url.is_some(),
        scrape_url: url,
        containers: vec![ContainerInfo {
            name: "app".into(),
            resources: snug_recommender::CurrentResources {
                memory_limit: Some(256.0 * MIB),
                ..Default::default()
            },
            ..Default::default()
        }],
    })
}

fn usage(pod: &str, cpu: f64, memory_mib: f64) -> ContainerUsage {
    ContainerUsage {
        namespace: "shop".into(),
        pod: pod.into(),
        container: "app".into(),
        cpu_cores: Some(cpu),
        memory_bytes: Some(memory_mib * MIB),
        ..Default::default()
    }
}

fn traffic(ok: u64, errors: u64, slow: usize, peer: &str) -> String {
    let mut durations = vec![0.010; (ok + errors) as usize - slow];
    durations.extend(vec![0.8; slow]);
    sidecar_exposition(&SidecarTraffic {
        requests: vec![("2xx", ok), ("5xx", errors)],
        durations,
        peers: vec![(peer.to_owned(), 100 * ok, 1000 * ok, ok + errors)],
    })
}

struct Harness<S> {
    profiler: Profiler<TestPods, TestUsage, S>,
    registry: Registry,
}

fn harness<S: ProfileStore>(store: S, pods: Vec<Arc<PodInfo>>) -> Harness<S> {
    harness_with(store, pods, PeakRecommender::factory(RecommenderKind::Snug))
}

fn harness_with<S: ProfileStore>(
    store: S,
    pods: Vec<Arc<PodInfo>>,
    recommender: RecommenderFactory,
) -> Harness<S> {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let ctx = Context {
        pods: TestPods(Mutex::new(pods)),
        usage: TestUsage::default(),
        store,
        scraper: Scraper::new(4, Duration::from_secs(2)),
        metrics,
        settings: ModelSettings {
            recommender,
            min_window: 20.0,
            min_samples: 3,
            refresh: 300.0,
        },
    };
    Harness {
        profiler: Profiler::new(Arc::new(ctx)),
        registry,
    }
}

impl<S: ProfileStore> Harness<S> {
    fn queue_usage(&self, report: UsageReport) {
        self.profiler.context().usage.0.lock().unwrap().push(report);
    }

    fn metrics_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }
}

fn usage_report(items: Vec<ContainerUsage>) -> UsageReport {
    UsageReport {
        usage: items,
        ok: 1,
        problems: vec![],
    }
}

#[tokio::test]
async fn pods_merge_into_one_profile_with_traffic_peers_usage_and_oom_kills() {
    let sidecars = Sidecars::default();
    let base = sidecars.serve().await;
    let frontend = pod(
        "frontend-1",
        Some(WorkloadRef::new("apps/v1", "Deployment", "frontend")),
        "10.0.0.50",
        None,
    );
    let mut web_1 = (*pod(
        "web-1",
        Some(web().workload),
        "10.0.0.1",
        Some(format!("{base}/web-1/metrics")),
    ))
    .clone();
    let web_2 = pod(
        "web-2",
        Some(web().workload),
        "10.0.0.2",
        Some(format!("{base}/web-2/metrics")),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(
        DirStore::new(dir.path()),
        vec![Arc::new(web_1.clone()), web_2.clone(), frontend.clone()],
    );
    sidecars.set("web-1", traffic(0, 0, 0, "10.0.0.50"));
    sidecars.set("web-2", traffic(0, 0, 0, "10.0.0.99"));
    for (i, at) in [1000.0, 1010.0, 1020.0, 1030.0, 1040.0]
        .into_iter()
        .enumerate()
    {
        if i == 3 {
            // web-1's app container restarted after an OOM kill; two cycles see it, one counts.
            web_1.containers[0].last_oom_killed = true;
            web_1.containers[0].restart_count = 1;
            *h.profiler.context().pods.0.lock().unwrap() =
                vec![Arc::new(web_1.clone()), web_2.clone(), frontend.clone()];
        }
        h.queue_usage(usage_report(vec![
            usage("web-1", 0.2, 100.0 + i as f64),
            usage("web-2", 0.4, 120.0),
        ]));
        let report = h.profiler.cycle(at).await;
        assert_eq!(
            (report.workloads, report.scrapes_ok, report.scrapes_failed),
            (1, 2, 0)
        );
        // Over the next 10 s each pod serves 100 requests: web-1 all 2xx and fast, web-2 with
        // 10% errors and 5% slow ones.
        let n = 100 * (i as u64 + 1);
        sidecars.set("web-1", traffic(n, 0, 0, "10.0.0.50"));
        sidecars.set(
            "web-2",
            traffic(n - n / 10, n / 10, (n / 20) as usize, "10.0.0.99"),
        );
    }

    let profile = DirStore::new(dir.path())
        .load(&web())
        .await
        .unwrap()
        .unwrap();
    let status = profile.status.unwrap();
    let traffic = status.traffic.unwrap();
    assert!(
        (traffic.requests_per_second - 20.0).abs() < 1e-9,
        "{traffic:?}"
    );
    assert!((traffic.error_ratio - 0.05).abs() < 1e-9, "{traffic:?}");
    assert!(
        traffic.latency_p50_seconds < 0.012 && traffic.latency_p99_seconds > 0.7,
        "{traffic:?}"
    );
    let peers: Vec<_> = status.peers.iter().map(|p| p.peer.as_str()).collect();
    // Busiest first: web-1's client sent more than web-2's.
    assert_eq!(peers, ["Deployment/frontend", "10.0.0.99"]);
    // The fifth cycle changed nothing meaningful, so the file holds the fourth one's status
    // (written for the OOM kill): 4 cycles × 2 pods.
    assert_eq!(status.samples, 8);
    assert_eq!(status.oom_kills, 1);
    let app = &status.containers[0];
    // Peak usage 0.4 cores, 122 MiB → 440m; memory floor after the OOM at 256Mi: 512Mi.
    assert_eq!(app.recommendation.requests.cpu.as_ref().unwrap().0, "440m");
    assert_eq!(
        app.recommendation.requests.memory.as_ref().unwrap().0,
        "512Mi"
    );
    assert!(status.confidence >= 0.5, "{}", status.confidence);
    assert_eq!(status.conditions[0].status, "True");
    let metrics = h.metrics_text();
    assert!(
        metrics.contains("snug_profiler_scrapes_total{outcome=\"ok\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("snug_profiler_oom_kills_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("container=\"app\",resource=\"memory_request\"} 536870912"),
        "{metrics}"
    );
}

#[tokio::test]
async fn garbage_missing_metrics_and_ownerless_pods_are_skipped_and_counted() {
    let sidecars = Sidecars::default();
    let base = sidecars.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = vec![
        pod(
            "web-1",
            Some(web().workload),
            "10.0.0.1",
            Some(format!("{base}/web-1/metrics")),
        ),
        pod(
            "web-2",
            Some(web().workload),
            "10.0.0.2",
            Some(format!("{base}/web-2/metrics")),
        ),
        pod(
            "debug",
            None,
            "10.0.0.3",
            Some(format!("{base}/debug/metrics")),
        ),
    ];
    let mut h = harness(DirStore::new(dir.path()), pods);
    sidecars.set("web-1", traffic(10, 0, 0, "10.0.0.9"));
    sidecars.set("web-2", "<html><h1>502 Bad Gateway</h1></html>".into());
    for at in [0.0, 10.0, 20.0] {
        h.queue_usage(UsageReport {
            usage: vec![usage("web-1", 0.1, 50.0)],
            ok: 0,
            problems: vec![UsageProblem {
                scope: "shop".into(),
                outcome: UsageOutcome::Unavailable,
                message: "the server could not find the requested resource".into(),
            }],
        });
        let report = h.profiler.cycle(at).await;
        assert_eq!((report.scrapes_ok, report.scrapes_failed), (1, 1));
    }
    assert!(
        h.profiler.model(&web()).is_some(),
        "the good pod is still profiled"
    );
    let ownerless = WorkloadKey {
        namespace: "shop".into(),
        workload: WorkloadRef::new("v1", "Pod", "debug"),
    };
    assert!(h.profiler.model(&ownerless).is_none());
    let metrics = h.metrics_text();
    for line in [
        "snug_profiler_scrapes_total{outcome=\"invalid\"} 3",
        "snug_profiler_skipped_total{reason=\"no_owner\"} 3",
        "snug_profiler_usage_reads_total{outcome=\"unavailable\"} 3",
        "snug_profiler_cycles_total{outcome=\"ok\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(dir.path().join("shop/deployment-web.yaml").exists());
}

#[tokio::test]
async fn unchanged_profiles_are_not_rewritten_until_the_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(
        DirStore::new(dir.path()),
        vec![pod(
            "web-1",
            Some(web().workload),
            "10.0.0.1",
            Some("http://127.0.0.1:1/metrics".into()),
        )],
    );
    let mut written = Vec::new();
    for at in [0.0, 10.0, 20.0, 30.0, 40.0, 400.0] {
        h.queue_usage(usage_report(vec![usage("web-1", 0.3, 64.0)]));
        written.push(h.profiler.cycle(at).await.written);
    }
    // First write; recommendation appears (2nd sample); confidence grows to Ready; then
    // nothing new until the refresh interval (300 s) passes.
    assert_eq!(written, [1, 1, 1, 0, 0, 1]);
}

#[tokio::test]
async fn a_restarted_profiler_resumes_from_the_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut web_1 = (*pod(
        "web-1",
        Some(web().workload),
        "10.0.0.1",
        Some("http://127.0.0.1:1/metrics".into()),
    ))
    .clone();
    web_1.containers[0].last_oom_killed = true;
    let web_1 = Arc::new(web_1);
    {
        let mut first = harness(DirStore::new(dir.path()), vec![web_1.clone()]);
        for (at, memory) in [(0.0, 300.0), (10.0, 310.0), (20.0, 100.0)] {
            first.queue_usage(usage_report(vec![usage("web-1", 0.5, memory)]));
            first.profiler.cycle(at).await;
        }
    }
    let mut second = harness(DirStore::new(dir.path()), vec![web_1]);
    second.queue_usage(usage_report(vec![usage("web-1", 0.1, 50.0)]));
    let report = second.profiler.cycle(30.0).await;
    assert_eq!(
        report.oom_kills, 0,
        "the OOM kill was counted before the restart"
    );
    let status = DirStore::new(dir.path())
        .load(&web())
        .await
        .unwrap()
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.samples, 4);
    assert_eq!(status.oom_kills, 1);
    assert_eq!(status.window_seconds, 30.0);
    // The peaks learned before the restart still drive the recommendation: 0.5 × 1.1 cores,
    // and the OOM floor (2 × 256 MiB) above 310 MiB × 1.2.
    let app = &status.containers[0];
    assert_eq!(app.recommendation.requests.cpu.as_ref().unwrap().0, "550m");
    assert_eq!(
        app.recommendation.requests.memory.as_ref().unwrap().0,
        "512Mi"
    );
    assert_eq!(app.memory.max, 310.0 * MIB);
}

#[tokio::test]
async fn throttled_containers_get_more_cpu_from_the_snug_recommender() {
    // Three Deployments using the same CPU: `capped` sits at its 0.5-core limit (from the pod
    // spec), `counted` is below its limit but the kernel counted throttled periods (a cgroup
    // source), `free` has no limit.
    let deployment = |name: &str| WorkloadKey {
        namespace: "shop".into(),
        workload: WorkloadRef::new("apps/v1", "Deployment", name),
    };
    let with_cpu_limit = |name: &str, limit: Option<f64>| {
        let mut pod = (*pod(name, Some(deployment(name).workload), "10.0.0.1", None)).clone();
        pod.injected = true;
        pod.containers[0].resources.cpu_limit = limit;
        Arc::new(pod)
    };
    let pods = vec![
        with_cpu_limit("capped", Some(0.5)),
        with_cpu_limit("counted", Some(1.0)),
        with_cpu_limit("free", None),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness_with(
        DirStore::new(dir.path()),
        pods,
        RecommenderFactory::of(RecommenderKind::Snug),
    );
    let mut throttled = 0;
    for i in 0..20 {
        let cpu = 0.49;
        h.queue_usage(usage_report(vec![
            usage("capped", cpu, 100.0),
            ContainerUsage {
                throttled: true,
                ..usage("counted", cpu, 100.0)
            },
            usage("free", cpu, 100.0),
        ]));
        throttled += h
            .profiler
            .cycle(1000.0 + 30.0 * f64::from(i))
            .await
            .throttled;
    }
    assert_eq!(throttled, 40, "two containers, 20 cycles");
    let cpu_request = |name: &str| {
        let model = h.profiler.model(&deployment(name)).unwrap();
        model.recommendations(1600.0)["app"].unwrap().cpu_request
    };
    let (capped, counted, free) = (
        cpu_request("capped"),
        cpu_request("counted"),
        cpu_request("free"),
    );
    assert!(capped > free * 1.2, "capped {capped} vs free {free}");
    assert!(counted > free * 1.2, "counted {counted} vs free {free}");
    let written = DirStore::new(dir.path())
        .load(&deployment("capped"))
        .await
        .unwrap()
        .unwrap();
    let app = &written.status.unwrap().containers[0];
    let request =
        snug_api::quantity::parse_quantity(app.recommendation.requests.cpu.as_ref().unwrap())
            .unwrap();
    assert!(request > free * 1.2, "the profile carries it: {request}");
}

mod kube_path;
