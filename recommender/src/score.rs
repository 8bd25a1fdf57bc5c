//! The quality benchmark's scoring rules (`shared/traces/README.md`): from the start of day 2,
//! CPU slack, memory slack, throttled and starved CPU samples, OOM kills.
use crate::replay::ReplayRow;

/// Day 1 is learning for everyone: scoring starts one day after the first sample.
pub const LEARNING_S: f64 = 86_400.0;

/// Sums over scored samples; add scores together to aggregate series (pooled ratios).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    /// Series folded in.
    pub series: u32,
    /// Series with at least one OOM kill.
    pub series_with_oom: u32,
    /// Scored samples with a CPU reading and a CPU request.
    pub cpu_samples: u64,
    /// Σ cpu_request over those, core-samples.
    pub cpu_requested: f64,
    /// Σ max(0, cpu_request − cpu_use).
    pub cpu_unused: f64,
    /// Samples with cpu_use > cpu_limit.
    pub throttled: u64,
    /// Samples with cpu_use > cpu_request.
    pub starved: u64,
    /// Scored samples with a memory reading and a memory limit.
    pub memory_samples: u64,
    /// Σ memory_limit, byte-samples.
    pub memory_limited: f64,
    /// Σ max(0, memory_limit − memory_use).
    pub memory_unused: f64,
    /// Samples with memory_use > memory_limit.
    pub oom_kills: u64,
    /// Scored samples with no sizing at all.
    pub without_sizing: u64,
}

impl Score {
    /// Scores one replayed series.
    pub fn of(rows: &[ReplayRow]) -> Self {
        let mut s = Score {
            series: 1,
            ..Score::default()
        };
        let Some(first) = rows.first() else {
            return s;
        };
        let start = first.point.usage.at + LEARNING_S;
        for row in rows.iter().filter(|r| r.point.usage.at >= start) {
            let Some(sizing) = row.sizing else {
                s.without_sizing += 1;
                continue;
            };
            if let Some(used) = row.point.usage.cpu_cores {
                s.cpu_samples += 1;
                s.cpu_requested += sizing.cpu_request;
                s.cpu_unused += (sizing.cpu_request - used).max(0.0);
                s.starved += u64::from(used > sizing.cpu_request);
                s.throttled += u64::from(sizing.cpu_limit.is_some_and(|l| used > l));
            }
            if let (Some(used), Some(limit)) = (row.point.usage.memory_bytes, sizing.memory_limit) {
                s.memory_samples += 1;
                s.memory_limited += limit;
                s.memory_unused += (limit - used).max(0.0);
                s.oom_kills += u64::from(used > limit);
            }
        }
        s.series_with_oom = u32::from(s.oom_kills > 0);
        s
    }

    /// Folds another score in (pooled sums).
    pub fn add(&mut self, o: &Score) {
        self.series += o.series;
        self.series_with_oom += o.series_with_oom;
        self.cpu_samples += o.cpu_samples;
        self.cpu_requested += o.cpu_requested;
        self.cpu_unused += o.cpu_unused;
        self.throttled += o.throttled;
        self.starved += o.starved;
        self.memory_samples += o.memory_samples;
        self.memory_limited += o.memory_limited;
        self.memory_unused += o.memory_unused;
        self.oom_kills += o.oom_kills;
        self.without_sizing += o.without_sizing;
    }

    /// CPU slack: Σ max(0, request − use) / Σ request.
    pub fn cpu_slack(&self) -> Option<f64> {
        (self.cpu_requested > 0.0).then(|| self.cpu_unused / self.cpu_requested)
    }

    /// Memory slack: Σ max(0, limit − use) / Σ limit.
    pub fn memory_slack(&self) -> Option<f64> {
        (self.memory_limited > 0.0).then(|| self.memory_unused / self.memory_limited)
    }

    /// Share of CPU samples above the CPU limit.
    pub fn throttled_share(&self) -> Option<f64> {
        (self.cpu_samples > 0).then(|| self.throttled as f64 / self.cpu_samples as f64)
    }

    /// Share of CPU samples above the CPU request.
    pub fn starved_share(&self) -> Option<f64> {
        (self.cpu_samples > 0).then(|| self.starved as f64 / self.cpu_samples as f64)
    }

    /// The summary lines `replay --score` prints (CSV comments, so the output stays CSV).
    pub fn summary(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.2}%", v * 100.0));
        format!(
            "# score from day 2: cpu_slack={} memory_slack={} throttled={} ({}) starved={} ({}) oom_kills={} unsized_samples={}\n",
            pct(self.cpu_slack()),
            pct(self.memory_slack()),
            pct(self.throttled_share()),
            self.throttled,
            pct(self.starved_share()),
            self.starved,
            self.oom_kills,
            self.without_sizing,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Usage;
    use crate::replay::Sizing;
    use crate::trace::TracePoint;

    fn row(at: f64, cpu: f64, memory: Option<f64>, sizing: Option<Sizing>) -> ReplayRow {
        ReplayRow {
            point: TracePoint {
                usage: Usage {
                    at,
                    cpu_cores: Some(cpu),
                    memory_bytes: memory,
                },
                manual: None,
            },
            sizing,
        }
    }

    #[test]
    fn scores_from_day_two_by_the_rules() {
        let s = Sizing {
            cpu_request: 1.0,
            cpu_limit: Some(1.5),
            memory_request: 100.0,
            memory_limit: Some(100.0),
        };
        let rows = [
            row(0.0, 9.0, Some(900.0), Some(s)), // day 1: not scored
            row(LEARNING_S, 0.5, Some(50.0), Some(s)),
            row(LEARNING_S + 300.0, 2.0, Some(150.0), Some(s)), // starved, throttled, killed
            row(LEARNING_S + 600.0, 1.2, None, Some(s)),        // starved only; no memory reading
            row(LEARNING_S + 900.0, 1.0, Some(10.0), None),     // no sizing in force
        ];
        let score = Score::of(&rows);
        assert_eq!(score.cpu_samples, 3);
        assert!((score.cpu_slack().unwrap() - 0.5 / 3.0).abs() < 1e-12);
        assert_eq!((score.starved, score.throttled, score.oom_kills), (2, 1, 1));
        assert!((score.memory_slack().unwrap() - 50.0 / 200.0).abs() < 1e-12);
        assert_eq!(score.without_sizing, 1);
        assert_eq!(score.series_with_oom, 1);
        let mut both = score;
        both.add(&score);
        assert_eq!(both.series, 2);
        assert_eq!(both.cpu_slack(), score.cpu_slack());
        assert!(score.summary().contains("oom_kills=1"));
        assert_eq!(Score::of(&[]).cpu_slack(), None);
    }
}
