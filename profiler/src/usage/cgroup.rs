//! CPU throttling of a process, from its cgroup: the `nr_throttled` counter of `cpu.stat` and
//! the CFS quota — `cpu.max` on cgroup v2, `cpu.cfs_quota_us` / `cpu.cfs_period_us` under the
//! `cpu` controller on cgroup v1. The process's cgroup is read from `/proc/PID/cgroup`.
//!
//! Any file that is missing or unreadable (no cgroup filesystem, the `cpu` controller not
//! enabled for the group, a process that exited) means "cannot tell", never an error: usage is
//! still measured without it.

use std::path::{Path, PathBuf};

/// The CPU cgroup directory of one process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpuCgroup {
    dir: PathBuf,
    v2: bool,
}

impl CpuCgroup {
    /// The cgroup of `pid` (per `<procfs>/<pid>/cgroup`) that accounts its CPU throttling,
    /// under the cgroup filesystem at `root` (normally `/sys/fs/cgroup`): the v1 `cpu`
    /// hierarchy when there is one, else the v2 hierarchy (at `root`, or `root/unified` on a
    /// hybrid host).
    pub fn of(procfs: &Path, root: &Path, pid: u32) -> Option<Self> {
        let file = std::fs::read_to_string(procfs.join(pid.to_string()).join("cgroup")).ok()?;
        let mut candidates = Vec::new();
        // Lines are `hierarchy-id:controllers:path`; v2's is `0::path`.
        for line in file.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let path = path.trim_start_matches('/');
            if id == "0" && controllers.is_empty() {
                candidates.push((root.join(path), true));
                candidates.push((root.join("unified").join(path), true));
            } else if controllers.split(',').any(|c| c == "cpu") {
                // v1 mounts a hierarchy under its controller list (`cpu,cpuacct`).
                candidates.insert(0, (root.join(controllers).join(path), false));
            }
        }
        candidates
            .into_iter()
            .map(|(dir, v2)| CpuCgroup { dir, v2 })
            .find(|cgroup| cgroup.nr_throttled().is_some())
    }

    /// CFS periods in which the group was throttled, since it was created.
    pub fn nr_throttled(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).ok()?;
        stat.lines()
            .find_map(|line| line.strip_prefix("nr_throttled "))
            .and_then(|n| n.trim().parse().ok())
    }

    /// The group's CPU quota in cores; `None` without one.
    pub fn quota_cores(&self) -> Option<f64> {
        let read = |file: &str| std::fs::read_to_string(self.dir.join(file)).ok();
        let (quota, period) = if self.v2 {
            // `cpu.max`: `<quota> <period>`, or `max <period>` without a quota.
            let max = read("cpu.max")?;
            let mut fields = max.split_whitespace();
            (
                fields.next()?.parse::<f64>().ok()?,
                fields.next()?.parse().ok()?,
            )
        } else {
            // `cpu.cfs_quota_us` is -1 without a quota.
            (
                read("cpu.cfs_quota_us")?.trim().parse::<f64>().ok()?,
                read("cpu.cfs_period_us")?.trim().parse::<f64>().ok()?,
            )
        };
        (quota > 0.0 && period > 0.0).then(|| quota / period)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fake procfs entry for `pid` whose `cgroup` file holds `cgroup`.
    pub(crate) fn fake_cgroup_file(procfs: &Path, pid: u32, cgroup: &str) {
        let dir = procfs.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup"), cgroup).unwrap();
    }

    /// A fake cgroup v2 directory `root/path` with `nr_throttled` and `cpu.max`.
    pub(crate) fn fake_v2_group(root: &Path, path: &str, nr_throttled: u64, max: &str) {
        let dir = root.join(path);
        std::fs::create_dir_all(&dir).unwrap();
        let stat = format!(
            "usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\nnr_periods 90\nnr_throttled {nr_throttled}\nthrottled_usec 700\n"
        );
        std::fs::write(dir.join("cpu.stat"), stat).unwrap();
        std::fs::write(dir.join("cpu.max"), max).unwrap();
    }

    #[test]
    fn cgroup_v2_counter_and_quota() {
        let (procfs, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fake_cgroup_file(procfs.path(), 7, "0::/kubepods/pod1/app\n");
        fake_v2_group(root.path(), "kubepods/pod1/app", 12, "50000 100000\n");
        let cgroup = CpuCgroup::of(procfs.path(), root.path(), 7).unwrap();
        assert_eq!(cgroup.nr_throttled(), Some(12));
        assert_eq!(cgroup.quota_cores(), Some(0.5));
        std::fs::write(
            root.path().join("kubepods/pod1/app/cpu.max"),
            "max 100000\n",
        )
        .unwrap();
        assert_eq!(cgroup.quota_cores(), None, "no quota");
    }

    #[test]
    fn cgroup_v1_cpu_hierarchy_wins_on_a_hybrid_host() {
        let (procfs, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fake_cgroup_file(
            procfs.path(),
            7,
            "5:memory:/app\n2:cpu,cpuacct:/app\n0::/app\n",
        );
        let v1 = root.path().join("cpu,cpuacct/app");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(
            v1.join("cpu.stat"),
            "nr_periods 10\nnr_throttled 3\nthrottled_time 9\n",
        )
        .unwrap();
        std::fs::write(v1.join("cpu.cfs_quota_us"), "200000\n").unwrap();
        std::fs::write(v1.join("cpu.cfs_period_us"), "100000\n").unwrap();
        // The v2 hierarchy of a hybrid host has no `cpu` controller, so no counter there.
        let v2 = root.path().join("unified/app");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("cpu.stat"), "usage_usec 5000\n").unwrap();
        let cgroup = CpuCgroup::of(procfs.path(), root.path(), 7).unwrap();
        assert_eq!(cgroup.nr_throttled(), Some(3));
        assert_eq!(cgroup.quota_cores(), Some(2.0));
    }

    #[test]
    fn no_cgroup_filesystem_means_cannot_tell() {
        let (procfs, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fake_cgroup_file(procfs.path(), 7, "0::/app\n");
        assert_eq!(CpuCgroup::of(procfs.path(), root.path(), 7), None);
        assert_eq!(CpuCgroup::of(procfs.path(), root.path(), 8), None);
    }
}
