//! Wiring the loop to its sources: in a cluster ([`run_cluster`]) or locally ([`run_local`]).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use kube::Client;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::{
    LocalConfig, Result, RunConfig,
    cycle::{Context, Profiler},
    http::{self, Health},
    leader::{LeaderElector, LeaseConfig},
    metrics::Metrics,
    model::{ModelSettings, RecommenderFactory},
    pods::{LocalPods, PodSnapshot, PodSource, kube::PodIndex},
    scrape::Scraper,
    store::{dir::DirStore, kube::KubeStore},
    unix_now,
    usage::{metrics_api::MetricsApiUsage, procfs::ProcfsUsage},
};

/// Usage samples per container at which confidence saturates.
pub const MIN_SAMPLES: u64 = 10;

impl<T: PodSource + ?Sized> PodSource for Arc<T> {
    fn snapshot(&self) -> PodSnapshot {
        (**self).snapshot()
    }
}

async fn serve_health(listen: std::net::SocketAddr, health: Health) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(crate::Error::Serve)?;
    tracing::info!(%listen, "serving /metrics, /live, /ready");
    tokio::spawn(http::serve(listener, http::router(health)));
    Ok(())
}

/// How long a sidecar connection is kept unused: across a missed cycle, not much longer.
fn keep_connections(interval: Duration) -> Duration {
    interval * 2 + Duration::from_secs(10)
}

fn ticker(interval: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

/// Runs in a cluster until `shutdown` resolves: watches pods, and while this replica holds
/// the Lease, profiles every injected workload each interval.
pub async fn run_cluster(config: RunConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let client = Client::try_default().await?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
    serve_health(
        config.health_listen,
        Health {
            registry: Arc::new(registry),
            ready: ready.clone(),
        },
    )
    .await?;

    let index = Arc::new(PodIndex::default());
    tokio::spawn(index.clone().watch(client.clone()));
    let (leading_tx, mut leading) = watch::channel(false);
    let lease = LeaseConfig::new(&config.lease_name, &config.namespace, &config.identity);
    let elector = LeaderElector::new(client.clone(), lease);
    let election = tokio::spawn(elector.clone().run(leading_tx, metrics.clone()));

    let ctx = Arc::new(Context {
        pods: index.clone(),
        usage: MetricsApiUsage::new(client.clone(), config.usage_timeout),
        store: KubeStore::new(client),
        scraper: Scraper::new(config.scrape_concurrency, config.scrape_timeout)
            .with_idle_timeout(keep_connections(config.interval)),
        metrics,
        settings: ModelSettings {
            recommender: RecommenderFactory::of(config.recommender),
            min_window: config.min_window.as_secs_f64(),
            min_samples: MIN_SAMPLES,
            refresh: config.refresh.as_secs_f64(),
        },
    });
    let mut profiler = None;
    let mut ticker = ticker(config.interval);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        ready.store(index.is_synced(), Ordering::Relaxed);
        if !*leading.borrow_and_update() || !index.is_synced() {
            // A standby keeps no learned state: when it becomes leader it resumes every
            // workload from the checkpoint the previous leader wrote.
            profiler = None;
            continue;
        }
        let profiler = profiler.get_or_insert_with(|| Profiler::new(ctx.clone()));
        let report = profiler.cycle(unix_now()).await;
        tracing::info!(
            workloads = report.workloads,
            written = report.written,
            scrapes_ok = report.scrapes_ok,
            scrapes_failed = report.scrapes_failed,
            "cycle"
        );
    }
    election.abort();
    if let Err(error) = elector.release().await {
        tracing::warn!(%error, "could not release the lease; a standby takes over when it expires");
    }
    Ok(())
}

/// Runs on one machine until `shutdown` resolves or the configured cycles are done: scrapes
/// the given sidecars, reads the given processes from procfs, writes profiles into a directory.
pub async fn run_local(config: LocalConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    if let Some(listen) = config.health_listen {
        let ready = Arc::new(AtomicBool::new(true));
        serve_health(
            listen,
            Health {
                registry: Arc::new(registry),
                ready,
            },
        )
        .await?;
    }
    let pods = LocalPods::new(
        &config.namespace,
        &config.workload,
        &config.container,
        &config.scrape,
    );
    let pod_name = pods.usage_pod().map(|p| p.name.clone()).unwrap_or_default();
    let ctx = Arc::new(Context {
        usage: ProcfsUsage::new(
            &config.procfs,
            config.pids.clone(),
            &config.namespace,
            &pod_name,
            &config.container,
        )
        .with_cgroup_root(&config.cgroupfs),
        pods,
        store: DirStore::new(&config.profiles_dir),
        scraper: Scraper::new(4, config.scrape_timeout)
            .with_idle_timeout(keep_connections(config.interval)),
        metrics,
        settings: ModelSettings {
            recommender: RecommenderFactory::of(config.recommender),
            min_window: config.min_window.as_secs_f64(),
            min_samples: MIN_SAMPLES,
            refresh: config.refresh.as_secs_f64(),
        },
    });
    tracing::info!(workload = %config.workload, namespace = %config.namespace,
        sidecars = config.scrape.len(), pids = ?config.pids, dir = %config.profiles_dir.display(),
        min_window = ?config.min_window, "profiling locally");
    let mut profiler = Profiler::new(ctx);
    let mut ticker = ticker(config.interval);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut cycles = 0u64;
    while config.cycles.is_none_or(|limit| cycles < limit) {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        let report = profiler.cycle(unix_now()).await;
        cycles += 1;
        tracing::info!(
            cycle = cycles,
            written = report.written,
            scrapes_ok = report.scrapes_ok,
            scrapes_failed = report.scrapes_failed,
            usage_samples = report.usage_samples,
            "cycle"
        );
    }
    Ok(())
}
