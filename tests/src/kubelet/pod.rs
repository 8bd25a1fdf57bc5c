//! One admitted pod run as local processes: each container a process on the pod's loopback
//! address, restarted per the pod's restartPolicy, its state reported through pods/status.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::{Container, Pod},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::{env, probe};
use crate::procfs::{self, Sample};

/// Why the kubelet stops a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// Simulated out-of-memory kill: SIGKILL, reported as `OOMKilled` with exit code 137,
    /// then a restart (restartCount + 1).
    OutOfMemory,
    /// The pod is going away.
    PodStopped,
}

/// What the status reports about a container's previous run.
#[derive(Debug, Clone)]
struct Terminated {
    reason: String,
    exit_code: i32,
    started: Timestamp,
    finished: Timestamp,
}

/// The observable state of one container.
#[derive(Debug, Default)]
struct ContainerState {
    pid: Option<u32>,
    started: Option<Timestamp>,
    ready: bool,
    restart_count: i32,
    last: Option<Terminated>,
    waiting: Option<(String, String)>,
    samples: (Option<Sample>, Option<Sample>),
}

/// A container of a running pod.
#[derive(Debug)]
pub struct RunningContainer {
    /// Container name.
    pub name: String,
    spec: Container,
    binary: Option<PathBuf>,
    state: Mutex<ContainerState>,
    kill: mpsc::UnboundedSender<Kill>,
}

/// Usage of one container, from procfs.
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    /// Container name.
    pub name: String,
    /// CPU cores over the last sampling interval.
    pub cores: f64,
    /// Resident memory, bytes.
    pub memory_bytes: u64,
}

/// A pod the fake kubelet runs.
#[derive(Debug)]
pub struct RunningPod {
    /// The pod as admitted (with whatever the webhooks changed).
    pub pod: Pod,
    /// The pod's own loopback address (its podIP).
    pub ip: Ipv4Addr,
    /// Its containers.
    pub containers: Vec<Arc<RunningContainer>>,
    api: Api<Pod>,
    status_lock: tokio::sync::Mutex<()>,
    stopped: watch::Sender<bool>,
}

/// Where a pod's processes keep their logs and PIDs.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// One log file per container.
    pub logs: PathBuf,
    /// One PID file per running process (so `down.sh` stops them too).
    pub pids: PathBuf,
}

impl RunningPod {
    /// Starts every container of `pod` on `ip`; `binary_of` maps an image to the local binary.
    pub fn start(
        api: Api<Pod>,
        pod: Pod,
        ip: Ipv4Addr,
        dirs: Dirs,
        binary_of: impl Fn(&str) -> Option<PathBuf>,
    ) -> Arc<Self> {
        let specs = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        let mut receivers = Vec::new();
        let containers = specs
            .into_iter()
            .map(|spec| {
                let (kill, rx) = mpsc::unbounded_channel();
                receivers.push(rx);
                Arc::new(RunningContainer {
                    name: spec.name.clone(),
                    binary: binary_of(spec.image.as_deref().unwrap_or_default()),
                    spec,
                    state: Mutex::default(),
                    kill,
                })
            })
            .collect();
        let running = Arc::new(RunningPod {
            pod,
            ip,
            containers,
            api,
            status_lock: tokio::sync::Mutex::new(()),
            stopped: watch::channel(false).0,
        });
        for (container, kills) in running.containers.iter().zip(receivers) {
            let (pod, container, dirs) = (running.clone(), container.clone(), dirs.clone());
            tokio::spawn(async move { pod.supervise(container, kills, dirs).await });
        }
        running
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
            self.pod.metadata.name.as_deref().unwrap_or_default()
        )
    }

    /// Stops every process of the pod (SIGKILL: a deleted unscheduled pod is gone at once).
    pub fn stop(&self) {
        self.stopped.send_replace(true);
        for c in &self.containers {
            let _ = c.kill.send(Kill::PodStopped);
        }
    }

    /// Kills `container` as the kernel's OOM killer would; false if there is no such container.
    pub fn kill(&self, container: &str, why: Kill) -> bool {
        self.containers
            .iter()
            .find(|c| c.name == container)
            .is_some_and(|c| c.kill.send(why).is_ok())
    }

    /// Reads every running container's counters (called once per sampling interval).
    pub fn sample(&self) {
        for c in &self.containers {
            let mut state = lock(&c.state);
            if let Some(pid) = state.pid {
                let latest = procfs::sample(pid);
                state.samples = (state.samples.1.take(), latest);
            }
        }
    }

    /// Usage of the running containers over the last sampling interval.
    pub fn usage(&self) -> Vec<ContainerUsage> {
        self.containers
            .iter()
            .filter_map(|c| {
                let state = lock(&c.state);
                let (Some(earlier), Some(later)) = &state.samples else {
                    return None;
                };
                Some(ContainerUsage {
                    name: c.name.clone(),
                    cores: procfs::cores_between(earlier, later),
                    memory_bytes: later.rss_bytes,
                })
            })
            .collect()
    }

    /// The PID of a running container, if it runs.
    pub fn pid(&self, container: &str) -> Option<u32> {
        let c = self.containers.iter().find(|c| c.name == container)?;
        lock(&c.state).pid
    }

    async fn supervise(
        self: Arc<Self>,
        container: Arc<RunningContainer>,
        mut kills: mpsc::UnboundedReceiver<Kill>,
        dirs: Dirs,
    ) {
        let key = self.key();
        let log = dirs.logs.join(format!(
            "pod-{}-{}.log",
            key.replace('/', "_"),
            container.name
        ));
        let pid_file = dirs.pids.join(format!(
            "pod-{}-{}.pid",
            self.pod.metadata.uid.as_deref().unwrap_or("none"),
            container.name
        ));
        loop {
            if *self.stopped.borrow() {
                return;
            }
            let mut child = match self.spawn(&container, &log) {
                Ok(child) => child,
                Err(reason) => {
                    lock(&container.state).waiting = Some(("RunContainerError".into(), reason));
                    self.write_status().await;
                    return;
                }
            };
            let pid = child.id();
            if let Some(pid) = pid {
                write_pid_file(&pid_file, pid);
            }
            {
                let mut state = lock(&container.state);
                state.pid = pid;
                state.started = Some(Timestamp::now());
                state.ready = false;
                state.waiting = None;
                state.samples = (None, pid.and_then(procfs::sample));
            }
            self.write_status().await;
            let ready = probe::until_ready(&container.spec, self.ip);
            tokio::pin!(ready);
            let mut became_ready = false;
            let ended = loop {
                tokio::select! {
                    exit = child.wait() => {
                        let code = exit.ok().and_then(|s| s.code()).unwrap_or(137);
                        let reason = if code == 0 { "Completed" } else { "Error" };
                        break (reason.to_owned(), code, None);
                    }
                    Some(why) = kills.recv() => {
                        let _ = child.kill().await;
                        let reason = match why {
                            Kill::OutOfMemory => "OOMKilled",
                            Kill::PodStopped => "Killed",
                        };
                        break (reason.to_owned(), 137, Some(why));
                    }
                    () = &mut ready, if !became_ready => {
                        became_ready = true;
                        lock(&container.state).ready = true;
                        self.write_status().await;
                    }
                }
            };
            let _ = std::fs::remove_file(&pid_file);
            let (reason, exit_code, why) = ended;
            if why == Some(Kill::PodStopped) || *self.stopped.borrow() {
                return;
            }
            let restart = match self.restart_policy() {
                "Never" => false,
                "OnFailure" => exit_code != 0,
                _ => true,
            };
            {
                let mut state = lock(&container.state);
                state.last = Some(Terminated {
                    reason,
                    exit_code,
                    started: state.started.unwrap_or_else(Timestamp::now),
                    finished: Timestamp::now(),
                });
                state.pid = None;
                state.ready = false;
                state.samples = (None, None);
                if restart {
                    state.restart_count += 1;
                }
            }
            self.write_status().await;
            if !restart {
                return;
            }
            // The kubelet backs off from 10 s; a short pause keeps tests quick.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    fn spawn(
        &self,
        container: &RunningContainer,
        log: &Path,
    ) -> Result<tokio::process::Child, String> {
        let binary = container.binary.as_ref().ok_or_else(|| {
            format!(
                "no local binary for image {:?}",
                container.spec.image.as_deref().unwrap_or_default()
            )
        })?;
        let env = env::environment(&self.pod, &container.spec, self.ip)?;
        let args = env::arguments(&container.spec, &env, self.ip);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        tokio::process::Command::new(binary)
            .args(&args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))
    }

    fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    /// Writes the whole status from the current state. Serialised, so a slower writer never
    /// overwrites a newer state with an older one.
    async fn write_status(&self) {
        let _guard = self.status_lock.lock().await;
        let status = self.status();
        let name = self.pod.metadata.name.as_deref().unwrap_or_default();
        let patch = json!({ "status": status });
        let written = self
            .api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        // Once the pod is stopping it may already be gone; that is not worth a warning.
        if let Err(e) = written
            && !*self.stopped.borrow()
        {
            tracing::warn!(pod = %self.key(), error = %e, "pod status not written");
        }
    }

    fn status(&self) -> serde_json::Value {
        let time = |t: Timestamp| serde_json::to_value(Time(t)).unwrap_or_default();
        let mut all_ready = true;
        let mut any_running = false;
        let mut statuses = Vec::new();
        for c in &self.containers {
            let s = lock(&c.state);
            all_ready &= s.ready;
            any_running |= s.pid.is_some();
            let state = match (&s.waiting, s.pid, s.started) {
                (Some((reason, message)), _, _) => {
                    json!({"waiting": {"reason": reason, "message": message}})
                }
                (None, Some(_), Some(started)) => json!({"running": {"startedAt": time(started)}}),
                _ => match &s.last {
                    Some(t) => json!({"terminated": terminated(t, &time)}),
                    None => json!({"waiting": {"reason": "ContainerCreating"}}),
                },
            };
            let mut status = json!({
                "name": c.name,
                "image": c.spec.image.clone().unwrap_or_default(),
                "imageID": format!("snug-e2e://{}", c.binary.as_ref().map(|b| b.display().to_string()).unwrap_or_default()),
                "containerID": s.pid.map(|p| format!("snug-e2e://{p}")),
                "ready": s.ready,
                "started": s.pid.is_some(),
                "restartCount": s.restart_count,
                "state": state,
            });
            if let (Some(t), true) = (&s.last, s.pid.is_some() || s.waiting.is_some()) {
                status["lastState"] = json!({"terminated": terminated(t, &time)});
            }
            statuses.push(status);
        }
        let now = time(Timestamp::now());
        let condition = |kind: &str, ok: bool| json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastTransitionTime": now});
        let ip = self.ip.to_string();
        json!({
            "phase": if any_running { "Running" } else { self.final_phase() },
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": ip,
            "startTime": self.pod.metadata.creation_timestamp,
            "conditions": [
                condition("Initialized", true),
                condition("Ready", all_ready),
                condition("ContainersReady", all_ready),
                condition("PodScheduled", true),
            ],
            "containerStatuses": statuses,
        })
    }

    fn final_phase(&self) -> &'static str {
        let states: Vec<_> = self.containers.iter().map(|c| lock(&c.state)).collect();
        if states
            .iter()
            .any(|s| s.started.is_none() || s.waiting.is_some())
        {
            return "Pending";
        }
        match self.restart_policy() {
            "Always" => "Running",
            _ if states
                .iter()
                .all(|s| s.last.as_ref().is_some_and(|t| t.exit_code == 0)) =>
            {
                "Succeeded"
            }
            _ => "Failed",
        }
    }
}

fn terminated(t: &Terminated, time: &dyn Fn(Timestamp) -> serde_json::Value) -> serde_json::Value {
    json!({
        "reason": t.reason,
        "exitCode": t.exit_code,
        "startedAt": time(t.started),
        "finishedAt": time(t.finished),
    })
}

/// `PID STARTTIME`, the format `down.sh` checks before signalling.
fn write_pid_file(path: &Path, pid: u32) {
    let started = procfs::start_time(pid).unwrap_or_default();
    if let Err(e) = std::fs::write(path, format!("{pid} {started}\n")) {
        tracing::warn!(path = %path.display(), error = %e, "PID file not written");
    }
}

/// Locks a state mutex; a panic while holding it (a harness bug) must not hide the test's
/// own failure, so a poisoned lock is used as is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
