//! What a local process uses, from `/proc`: the numbers the fake metrics API reports as the
//! container's usage, as a kubelet's cAdvisor would from the container's cgroup.

use std::time::Instant;

/// Clock ticks per second of `/proc/PID/stat` times. `USER_HZ` is fixed at 100 on every Linux
/// architecture the tests run on (the kernel converts to it for user space).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// User + system CPU time, in ticks.
    pub cpu_ticks: u64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

/// User and system CPU time of `pid`, in ticks; `None` once the process is gone.
pub fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // Fields 14 (utime) and 15 (stime) of the full line are 12 and 13 after the name.
    let utime = fields.nth(11)?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Reads the counters of `pid`; `None` once the process is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let (utime, stime) = cpu_ticks(pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(Sample {
        at: Instant::now(),
        cpu_ticks: utime + stime,
        rss_bytes: rss_kib * 1024,
    })
}

/// The start time of `pid` (field 22 of `/proc/PID/stat`, in ticks since boot): with the PID,
/// it names one process even after the PID is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// CPU cores used between two samples of the same process.
pub fn cores_between(earlier: &Sample, later: &Sample) -> f64 {
    let seconds = later.at.duration_since(earlier.at).as_secs_f64();
    if seconds <= 0.0 {
        return 0.0;
    }
    later.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64 / TICKS_PER_SECOND / seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 1024 * 1024, "a test binary uses over 1 MiB");
        // Spin until the kernel has charged us 50 ms: no clock involved, only our own CPU time.
        let mut x = 0u64;
        let later = loop {
            for _ in 0..100_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            let now = sample(std::process::id()).unwrap();
            if now.cpu_ticks >= s.cpu_ticks + 5 {
                break now;
            }
        };
        assert!(x > 0);
        assert!(cores_between(&s, &later) > 0.0, "CPU spent shows as use");
    }

    #[test]
    fn gone_process_has_no_sample() {
        assert!(sample(u32::MAX).is_none());
    }
}
