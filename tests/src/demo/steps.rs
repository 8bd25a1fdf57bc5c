//! The demo's steps, in order. Each step says what it did in one progress line; the first that
//! fails ends the demo with its name.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use snug_api::{PortMap, WorkloadProfile};
use tokio::{process::Child, task::JoinHandle};

use super::{
    DemoConfig, Failure, NAMESPACE, Outcome, Progress, Result, StepFailed, WORKLOAD, admit,
    load::{self, PeerTally},
    show,
};
use crate::snug::free_port;

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Runs the demo, printing progress; returns what it produced or the step that failed.
pub async fn run(config: &DemoConfig) -> Result<Outcome, StepFailed> {
    let progress = Progress::start();
    let dirs = step("prepare", prepare(&config.out))?;
    let app_port = step("app", free_port().map_err(|e| Failure(e.to_string())))?;
    let mut app = step(
        "app",
        start_app(&config.app_exe, app_port, &dirs.logs).await,
    )?;
    let app_pid = app.id().unwrap_or_default();
    progress.say(
        "app",
        format!("sample app, pid {app_pid}, on 127.0.0.1:{app_port}"),
    );

    let (stop, stopped) = Stopper::new();
    let sidecar = step("sidecar", start_sidecar(app_port, stopped.clone()).await)?;
    progress.say(
        "sidecar",
        format!(
            "snug-sidecar :{} → app :{app_port}, metrics on http://127.0.0.1:{}/metrics",
            sidecar.listen, sidecar.admin
        ),
    );

    let learning = config.duration.mul_f64(0.6).max(Duration::from_secs(2));
    let (stop_profiler, profiler_stopped) = Stopper::new();
    let profiler = step(
        "profiler",
        start_profiler(
            sidecar.admin,
            app_pid,
            &dirs.profiles,
            learning,
            profiler_stopped,
        ),
    )?;
    progress.say(
        "profiler",
        format!(
            "snug-profiler local mode, 1 s cycles; learning window shortened to {} s for the demo \
             (24 h in a cluster)",
            learning.as_secs()
        ),
    );

    let load = Load::start(&progress, config.duration, sidecar.listen);
    load.watch(&progress, config.duration, &dirs.profiles).await;
    step("profile", wait_for_confident_profile(&dirs.profiles).await)?;
    // Freeze the profile: the one shown is then the one the webhook reads.
    stop_profiler.stop();
    let _ = tokio::time::timeout(Duration::from_secs(5), profiler).await;
    let requests = load.stop().await;
    let profile = step(
        "profile",
        read_profile(&dirs.profiles)
            .ok_or_else(|| Failure("the profile vanished after the profiler stopped".into())),
    )?;
    progress.say(
        "profile",
        "the profile is confident; profiler and load stopped, so the webhook reads this one:",
    );
    println!();
    println!("{}", show::profile_table(&profile));
    println!("{}", show::peers(&profile));

    let (ca_pem, webhook) = step(
        "webhook",
        start_webhook(&dirs, stopped.clone(), &progress).await,
    )?;
    let (pod_before, pod_after) = step("admission", admission(webhook, &ca_pem, &progress).await)?;
    let outcome = Outcome {
        profile,
        pod_before,
        pod_after,
        requests,
    };
    println!(
        "{}",
        show::patch_summary(&outcome.pod_before, &outcome.pod_after)
    );
    progress.say(
        "done",
        format!(
            "profiles, certificates and logs are in {}",
            config.out.display()
        ),
    );
    stop.stop();
    let _ = app.kill().await;
    Ok(outcome)
}

fn step<T>(name: &'static str, result: Result<T>) -> Result<T, StepFailed> {
    result.map_err(|failure| StepFailed {
        step: name,
        failure,
    })
}

struct Dirs {
    profiles: PathBuf,
    certs: PathBuf,
    logs: PathBuf,
}

fn prepare(out: &Path) -> Result<Dirs> {
    let dirs = Dirs {
        profiles: out.join("profiles"),
        certs: out.join("certs"),
        logs: out.join("logs"),
    };
    // A profile left by an earlier run would be confident from the start: begin afresh.
    if dirs.profiles.exists() {
        std::fs::remove_dir_all(&dirs.profiles).map_err(io(&dirs.profiles))?;
    }
    for dir in [&dirs.profiles, &dirs.certs, &dirs.logs] {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    Ok(dirs)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Failure + '_ {
    move |e| Failure(format!("{}: {e}", path.display()))
}

/// Shutdown signal shared by the in-process components.
#[derive(Clone)]
struct Stopped(Arc<tokio::sync::Notify>);

struct Stopper(Arc<tokio::sync::Notify>);

impl Stopper {
    fn new() -> (Stopper, Stopped) {
        let notify = Arc::new(tokio::sync::Notify::new());
        (Stopper(notify.clone()), Stopped(notify))
    }

    fn stop(&self) {
        self.0.notify_waiters();
    }
}

impl Stopped {
    async fn wait(self) {
        self.0.notified().await;
    }
}

async fn start_app(exe: &Path, port: u16, logs: &Path) -> Result<Child> {
    let log_path = logs.join("app.log");
    let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
    let err_log = log.try_clone().map_err(io(&log_path))?;
    let child = tokio::process::Command::new(exe)
        .args(["app", "--address", "127.0.0.1", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure(format!("starting {} app: {e}", exe.display())))?;
    wait_until(
        Duration::from_secs(10),
        "the sample app to answer",
        || async move {
            tokio::net::TcpStream::connect((LOCALHOST, port))
                .await
                .is_ok()
        },
    )
    .await?;
    Ok(child)
}

struct SidecarAddrs {
    listen: u16,
    admin: u16,
}

async fn start_sidecar(app_port: u16, stopped: Stopped) -> Result<SidecarAddrs> {
    let fail = |e: String| Failure(format!("snug-sidecar: {e}"));
    let listen = free_port().map_err(|e| fail(e.to_string()))?;
    let admin = free_port().map_err(|e| fail(e.to_string()))?;
    let ports: PortMap = format!("{listen}:{app_port}")
        .parse()
        .map_err(|e: snug_api::Error| fail(e.to_string()))?;
    let mut config = snug_sidecar::Config::new(ports);
    config.listen_addr = LOCALHOST;
    config.admin_port = admin;
    let sidecar = snug_sidecar::Sidecar::bind(config)
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(sidecar.run(stopped.wait()));
    Ok(SidecarAddrs { listen, admin })
}

fn start_profiler(
    admin: u16,
    app_pid: u32,
    profiles: &Path,
    learning: Duration,
    stopped: Stopped,
) -> Result<JoinHandle<()>> {
    let args = [
        "snug-profiler".to_owned(),
        "local".to_owned(),
        format!("--scrape=http://127.0.0.1:{admin}/metrics"),
        format!("--pid={app_pid}"),
        format!("--workload=Deployment/{WORKLOAD}"),
        format!("--namespace={NAMESPACE}"),
        "--container=app".to_owned(),
        format!("--profiles-dir={}", profiles.display()),
        "--interval=1s".to_owned(),
        "--refresh=1s".to_owned(),
        format!("--min-window={}s", learning.as_secs()),
    ];
    let cli = snug_profiler::cli::Cli::try_parse_from(args)
        .map_err(|e| Failure(format!("snug-profiler flags: {e}")))?;
    let snug_profiler::Config::Local(config) = cli
        .command
        .config()
        .map_err(|e| Failure(format!("snug-profiler: {e}")))?
    else {
        return Err(Failure(
            "snug-profiler: `local` did not give a local config".into(),
        ));
    };
    Ok(tokio::spawn(async move {
        if let Err(e) = snug_profiler::run_local(config, stopped.wait()).await {
            tracing::error!(error = %e, "snug-profiler stopped");
        }
    }))
}

/// The demo's traffic, running in the background until stopped.
struct Load {
    tallies: Vec<(&'static str, Arc<PeerTally>)>,
    stop: Arc<AtomicBool>,
    drivers: tokio::task::JoinSet<()>,
}

impl Load {
    fn start(progress: &Progress, ramp: Duration, listen: u16) -> Load {
        let target = format!("http://127.0.0.1:{listen}");
        let peers = load::demo_peers();
        let names: Vec<String> = peers
            .iter()
            .map(|p| format!("{} from {}", p.name, p.address))
            .collect();
        progress.say(
            "load",
            format!("traffic from two peers: {}", names.join(", ")),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let mut drivers = tokio::task::JoinSet::new();
        let mut tallies = Vec::new();
        for peer in peers {
            let tally = Arc::new(PeerTally::default());
            tallies.push((peer.name, tally.clone()));
            drivers.spawn(load::drive(peer, target.clone(), ramp, stop.clone(), tally));
        }
        Load {
            tallies,
            stop,
            drivers,
        }
    }

    fn answered(&self) -> u64 {
        self.tallies
            .iter()
            .map(|(_, t)| t.requests.load(Ordering::Relaxed))
            .sum()
    }

    /// Reports progress every 5 s for `duration`.
    async fn watch(&self, progress: &Progress, duration: Duration, profiles: &Path) {
        let started = Instant::now();
        while started.elapsed() < duration {
            let left = duration.saturating_sub(started.elapsed());
            tokio::time::sleep(left.min(Duration::from_secs(5))).await;
            let rate = self.answered() as f64 / started.elapsed().as_secs_f64();
            let confidence = read_profile(profiles)
                .and_then(|p| p.status.map(|s| format!("{:.0}%", s.confidence * 100.0)))
                .unwrap_or_else(|| "no profile yet".to_owned());
            progress.say(
                "load",
                format!(
                    "{} requests answered ({rate:.0}/s); profile confidence {confidence}",
                    self.answered()
                ),
            );
        }
    }

    async fn stop(mut self) -> Vec<(&'static str, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        while self.drivers.join_next().await.is_some() {}
        self.tallies
            .iter()
            .map(|(name, t)| (*name, t.requests.load(Ordering::Relaxed)))
            .collect()
    }
}

fn profile_path(profiles: &Path) -> PathBuf {
    let name = snug_api::WorkloadRef::new("apps/v1", "Deployment", WORKLOAD).profile_name();
    profiles.join(NAMESPACE).join(format!("{name}.yaml"))
}

fn read_profile(profiles: &Path) -> Option<WorkloadProfile> {
    let text = std::fs::read_to_string(profile_path(profiles)).ok()?;
    serde_norway::from_str(&text).ok()
}

async fn wait_for_confident_profile(profiles: &Path) -> Result<WorkloadProfile> {
    let waited = crate::wait::until("a confident profile", Duration::from_secs(20), || async {
        read_profile(profiles).filter(WorkloadProfile::is_confident)
    })
    .await;
    waited.map_err(|e| {
        let state = match read_profile(profiles) {
            None => "no profile was written".to_owned(),
            Some(p) => format!(
                "confidence stayed at {:.2}",
                p.status.map(|s| s.confidence).unwrap_or_default()
            ),
        };
        Failure(format!(
            "{e}: {} — {state}",
            profile_path(profiles).display()
        ))
    })
}

async fn start_webhook(
    dirs: &super::steps::Dirs,
    stopped: Stopped,
    progress: &Progress,
) -> Result<(String, SocketAddr)> {
    let fail = |e: String| Failure(format!("snug-webhook: {e}"));
    let bundle = snug_webhook::certs::generate("snug-webhook", "snug-system", 1)
        .map_err(|e| fail(e.to_string()))?;
    snug_webhook::certs::write_files(&dirs.certs, &bundle, "snug-system")
        .map_err(|e| fail(e.to_string()))?;
    progress.say(
        "certs",
        format!(
            "CA and serving certificate for snug-webhook.snug-system.svc in {}",
            dirs.certs.display()
        ),
    );
    let listen = SocketAddr::new(LOCALHOST, free_port().map_err(|e| fail(e.to_string()))?);
    let health = SocketAddr::new(LOCALHOST, free_port().map_err(|e| fail(e.to_string()))?);
    let cli = snug_webhook::Cli::try_parse_from([
        "snug-webhook".to_owned(),
        format!("--listen={listen}"),
        format!("--health-listen={health}"),
        format!("--tls-cert={}", dirs.certs.join("tls.crt").display()),
        format!("--tls-key={}", dirs.certs.join("tls.key").display()),
        format!("--profiles-dir={}", dirs.profiles.display()),
    ])
    .map_err(|e| fail(format!("flags: {e}")))?;
    let config = cli.serve.into_config().map_err(|e| fail(e.to_string()))?;
    let server = tokio::spawn(snug_webhook::run(config));
    tokio::spawn(async move {
        stopped.wait().await;
        server.abort();
    });
    wait_until(
        Duration::from_secs(10),
        "the webhook to be ready",
        || async move {
            crate::http::get(&format!("http://{health}/ready"), None)
                .await
                .is_ok_and(|r| r.status == 200)
        },
    )
    .await?;
    progress.say(
        "webhook",
        format!(
            "snug-webhook on https://{listen}/mutate, profiles from {}",
            dirs.profiles.display()
        ),
    );
    Ok((bundle.ca_pem, listen))
}

async fn admission(
    webhook: SocketAddr,
    ca_pem: &str,
    progress: &Progress,
) -> Result<(serde_json::Value, k8s_openapi::api::core::v1::Pod)> {
    let pod = admit::demo_pod(NAMESPACE, WORKLOAD);
    let review = admit::review(&pod, NAMESPACE);
    progress.say(
        "admission",
        format!("AdmissionReview: CREATE pod {WORKLOAD}-7d9c6b5f4-… in {NAMESPACE}, mode apply"),
    );
    let answer =
        admit::post_review(webhook, "snug-webhook.snug-system.svc", ca_pem, &review).await?;
    let patch = admit::patch_of(&answer)?;
    if patch.0.is_empty() {
        return Err(Failure(format!(
            "the webhook allowed the pod without a patch: {}",
            answer["response"]
        )));
    }
    let pod_after = admit::apply(&pod, &patch)?;
    // The API server may call the webhook again (reinvocationPolicy: IfNeeded): the patched pod
    // must come back unchanged.
    let again = admit::review(
        &serde_json::to_value(&pod_after).map_err(|e| Failure(e.to_string()))?,
        NAMESPACE,
    );
    let answer =
        admit::post_review(webhook, "snug-webhook.snug-system.svc", ca_pem, &again).await?;
    let second = admit::patch_of(&answer)?;
    if !second.0.is_empty() {
        return Err(Failure(format!(
            "a second admission of the patched pod patched it again: {:?}",
            second.0
        )));
    }
    progress.say(
        "admission",
        format!(
            "allowed, with a {}-operation JSON Patch (a second admission of the patched pod \
             changes nothing):",
            patch.0.len()
        ),
    );
    Ok((pod, pod_after))
}

async fn wait_until<F, Fut>(patience: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    crate::wait::until(what, patience, || {
        let ready = check();
        async move { ready.await.then_some(()) }
    })
    .await
    .map_err(|e| Failure(e.to_string()))
}
