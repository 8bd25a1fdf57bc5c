//! Local mode's usage: the app's processes read from procfs. CPU is the growth of
//! `utime + stime` (`/proc/PID/stat`) between two reads; memory is the resident set
//! (`VmRSS` in `/proc/PID/status`), the closest procfs figure to a container's working set.
//! Several PIDs are one container: their usage is summed.
//!
//! Throttling comes from the processes' cgroups ([`super::cgroup`]): the container was
//! throttled when `nr_throttled` grew between two reads, and the cgroup's quota is the CPU
//! limit in force.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Mutex,
    time::Instant,
};

use super::{
    ContainerUsage, UsageOutcome, UsageProblem, UsageReport, UsageSource, cgroup::CpuCgroup,
};

/// Clock ticks per second of `/proc/PID/stat` times. The kernel reports them in USER_HZ, which
/// is 100 on every architecture Snug builds for (it is part of the userspace ABI).
const USER_HZ: f64 = 100.0;

/// Reads given processes from a procfs mount.
#[derive(Debug)]
pub struct ProcfsUsage {
    root: PathBuf,
    pids: Vec<u32>,
    namespace: String,
    pod: String,
    container: String,
    cgroup_root: PathBuf,
    last: Mutex<Option<LastRead>>,
}

/// What the previous read saw, to turn counters into rates.
#[derive(Debug, Clone, Copy)]
struct LastRead {
    at: Instant,
    cpu_seconds: f64,
    nr_throttled: Option<u64>,
}

impl ProcfsUsage {
    /// Usage of `pids` (under procfs at `root`, normally `/proc`), reported as `container` of
    /// `pod` in `namespace`.
    pub fn new(root: &Path, pids: Vec<u32>, namespace: &str, pod: &str, container: &str) -> Self {
        ProcfsUsage {
            root: root.to_owned(),
            pids,
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            container: container.to_owned(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            last: Mutex::new(None),
        }
    }

    /// Reads throttling from the cgroup filesystem at `root` (default `/sys/fs/cgroup`).
    pub fn with_cgroup_root(mut self, root: &Path) -> Self {
        root.clone_into(&mut self.cgroup_root);
        self
    }

    /// Throttled periods and quota (cores) summed over the processes' distinct CPU cgroups;
    /// each `None` unless every cgroup tells.
    fn cgroups(&self) -> (Option<u64>, Option<f64>) {
        let groups: BTreeSet<CpuCgroup> = self
            .pids
            .iter()
            .filter_map(|pid| CpuCgroup::of(&self.root, &self.cgroup_root, *pid))
            .collect();
        if groups.is_empty() {
            return (None, None);
        }
        let throttled = groups.iter().map(CpuCgroup::nr_throttled).sum();
        let quota = groups.iter().map(CpuCgroup::quota_cores).sum();
        (throttled, quota)
    }

    fn read_now(&self, now: Instant) -> UsageReport {
        let mut report = UsageReport::default();
        let mut cpu_seconds = 0.0;
        let mut memory = 0.0;
        for pid in &self.pids {
            match read_process(&self.root, *pid) {
                Ok((cpu, rss)) => {
                    report.ok += 1;
                    cpu_seconds += cpu;
                    memory += rss;
                }
                Err(problem) => report.problems.push(problem),
            }
        }
        if report.ok == 0 {
            return report;
        }
        let (nr_throttled, cpu_limit) = self.cgroups();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        // Cores = CPU seconds gained per wall second. A sum that went down (a process exited)
        // gives no reading this time rather than a negative one.
        let cpu_cores = last.and_then(|then| {
            let wall = now.duration_since(then.at).as_secs_f64();
            (wall > 0.0 && cpu_seconds >= then.cpu_seconds)
                .then(|| (cpu_seconds - then.cpu_seconds) / wall)
        });
        let throttled = matches!(
            (last.and_then(|then| then.nr_throttled), nr_throttled),
            (Some(before), Some(now)) if now > before
        );
        *last = Some(LastRead {
            at: now,
            cpu_seconds,
            nr_throttled,
        });
        report.usage.push(ContainerUsage {
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            container: self.container.clone(),
            cpu_cores,
            memory_bytes: Some(memory),
            throttled,
            cpu_limit,
        });
        report
    }
}

impl UsageSource for ProcfsUsage {
    async fn read(&self, _namespaces: &[String]) -> UsageReport {
        self.read_now(Instant::now())
    }
}

/// CPU seconds (user + system) and resident bytes of one process.
fn read_process(root: &Path, pid: u32) -> Result<(f64, f64), UsageProblem> {
    let problem = |outcome, message: String| UsageProblem {
        scope: format!("pid {pid}"),
        outcome,
        message,
    };
    let dir = root.join(pid.to_string());
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file)).map_err(|e| {
            let outcome = if e.kind() == std::io::ErrorKind::NotFound {
                UsageOutcome::Unavailable
            } else {
                UsageOutcome::Error
            };
            problem(outcome, format!("{}/{file}: {e}", dir.display()))
        })
    };
    let stat = read("stat")?;
    let cpu = cpu_seconds(&stat)
        .ok_or_else(|| problem(UsageOutcome::Error, "unreadable /proc/PID/stat".into()))?;
    let status = read("status")?;
    let rss = resident_bytes(&status)
        .ok_or_else(|| problem(UsageOutcome::Error, "no VmRSS in /proc/PID/status".into()))?;
    Ok((cpu, rss))
}

/// `utime + stime` in seconds. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted after its last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Field 3 (state) is fields[0], so field n is fields[n - 3]: utime 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// `VmRSS` in bytes (the file says kB, meaning KiB).
fn resident_bytes(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fake_process(root: &Path, pid: u32, ticks: (u64, u64), rss_kib: u64) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let stat = format!(
            "{pid} (my app) S 1 1 1 0 -1 4194560 100 0 0 0 {} {} 0 0 20 0 4 0 100 1000 250",
            ticks.0, ticks.1
        );
        std::fs::write(dir.join("stat"), stat).unwrap();
        std::fs::write(
            dir.join("status"),
            format!("Name:\tapp\nVmPeak:\t 9999 kB\nVmRSS:\t {rss_kib} kB\n"),
        )
        .unwrap();
    }

    #[test]
    fn cpu_is_tick_growth_over_wall_time_and_memory_is_summed_rss() {
        let root = tempfile::tempdir().unwrap();
        fake_process(root.path(), 10, (100, 50), 1024);
        fake_process(root.path(), 11, (0, 0), 2048);
        let source = ProcfsUsage::new(root.path(), vec![10, 11], "demo", "app-0", "app");
        let start = Instant::now();
        let first = source.read_now(start);
        assert_eq!(first.usage[0].cpu_cores, None, "one read is not a rate");
        assert_eq!(first.usage[0].memory_bytes, Some(3.0 * 1024.0 * 1024.0));
        // 2 s later: 150 more ticks on one process, 50 on the other = 2 CPU seconds = 1 core.
        fake_process(root.path(), 10, (200, 100), 1024);
        fake_process(root.path(), 11, (50, 0), 2048);
        let second = source.read_now(start + Duration::from_secs(2));
        let cores = second.usage[0].cpu_cores.unwrap();
        assert!((cores - 1.0).abs() < 1e-9, "{cores}");
    }

    #[test]
    fn throttling_is_the_growth_of_the_cgroup_counter() {
        use crate::usage::cgroup::tests::{fake_cgroup_file, fake_v2_group};
        let (procfs, cgroups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fake_process(procfs.path(), 10, (100, 50), 1024);
        fake_cgroup_file(procfs.path(), 10, "0::/app\n");
        fake_v2_group(cgroups.path(), "app", 4, "150000 100000\n");
        let source = ProcfsUsage::new(procfs.path(), vec![10], "demo", "app-0", "app")
            .with_cgroup_root(cgroups.path());
        let start = Instant::now();
        let first = &source.read_now(start).usage[0];
        assert_eq!((first.throttled, first.cpu_limit), (false, Some(1.5)));
        let second = &source.read_now(start + Duration::from_secs(1)).usage[0];
        assert!(!second.throttled, "the counter did not move");
        fake_v2_group(cgroups.path(), "app", 9, "150000 100000\n");
        let third = &source.read_now(start + Duration::from_secs(2)).usage[0];
        assert!(third.throttled);
    }

    #[test]
    fn an_exited_process_is_reported_not_fatal() {
        let root = tempfile::tempdir().unwrap();
        fake_process(root.path(), 10, (1, 1), 10);
        let source = ProcfsUsage::new(root.path(), vec![10, 99], "demo", "p", "app");
        let report = source.read_now(Instant::now());
        assert_eq!(report.ok, 1);
        assert_eq!(report.problems[0].outcome, UsageOutcome::Unavailable);
        assert_eq!(report.usage.len(), 1);
    }

    #[test]
    fn reads_this_very_process() {
        let source = ProcfsUsage::new(Path::new("/proc"), vec![std::process::id()], "n", "p", "c");
        let report = source.read_now(Instant::now());
        assert!(report.usage[0].memory_bytes.unwrap() > 1024.0 * 1024.0);
    }
}
