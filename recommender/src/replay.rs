//! Replays a trace through a recommender the way a cluster would live it: the recommendation is
//! refreshed every `refresh` seconds (as if pods were recreated), held until the next refresh,
//! and every sample above the memory limit in force is an OOM kill the recommender is told of
//! (every sample above a CPU limit, a throttling). Causal by construction: the resources in force
//! at a sample depend only on the samples before it.
use crate::trace::{Trace, TracePoint};
use crate::{CurrentResources, Recommendation, Recommender};

/// Resources in force for a container, as a pod spec carries them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    /// CPU request, cores.
    pub cpu_request: f64,
    /// CPU limit, cores; `None` is no limit.
    pub cpu_limit: Option<f64>,
    /// Memory request, bytes.
    pub memory_request: f64,
    /// Memory limit, bytes; `None` is no limit.
    pub memory_limit: Option<f64>,
}

impl Sizing {
    /// A recommendation as a pod spec would carry it: CPU rounded up to a millicore, memory up to
    /// a byte (as VPA rounds).
    pub fn from_recommendation(r: &Recommendation) -> Self {
        let millicores = |c: f64| (c * 1000.0).ceil() / 1000.0;
        Self {
            cpu_request: millicores(r.cpu_request),
            cpu_limit: r.cpu_limit.map(millicores),
            memory_request: r.memory_request.ceil(),
            memory_limit: Some(r.memory_limit.ceil()),
        }
    }

    /// A trace's manual sizing; `None` without a CPU and a memory request.
    pub fn from_manual(m: &CurrentResources) -> Option<Self> {
        Some(Self {
            cpu_request: m.cpu_request?,
            cpu_limit: m.cpu_limit,
            memory_request: m.memory_request?,
            memory_limit: m.memory_limit,
        })
    }

    /// The same, as the recommender's view of what is in force.
    pub fn as_current(&self) -> CurrentResources {
        CurrentResources {
            cpu_request: Some(self.cpu_request),
            cpu_limit: self.cpu_limit,
            memory_request: Some(self.memory_request),
            memory_limit: self.memory_limit,
        }
    }
}

/// One replayed sample: what was used, and what was in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayRow {
    /// The trace sample.
    pub point: TracePoint,
    /// The recommendation in force, `None` before the first one.
    pub sizing: Option<Sizing>,
}

/// Replays `trace` through `recommender`, refreshing every `refresh_s` seconds (from the first
/// sample on). Each row is handed to `row` as soon as it is known.
pub fn replay(
    trace: &Trace,
    recommender: &mut dyn Recommender,
    refresh_s: f64,
    mut row: impl FnMut(ReplayRow),
) {
    let refresh_s = if refresh_s > 0.0 { refresh_s } else { 3600.0 };
    let mut next_refresh = trace.points.first().map_or(0.0, |p| p.usage.at);
    let mut sizing: Option<Sizing> = None;
    for point in &trace.points {
        let at = point.usage.at;
        if at >= next_refresh {
            // the pod template: what the workload asked for before any recommendation
            let original = point.manual.unwrap_or_default();
            if let Some(r) = recommender.recommend(at, &original) {
                let s = Sizing::from_recommendation(&r);
                recommender.applied(&s.as_current());
                sizing = Some(s);
            }
            next_refresh += ((at - next_refresh) / refresh_s).floor() * refresh_s + refresh_s;
        }
        row(ReplayRow {
            point: *point,
            sizing,
        });
        if let Some(s) = sizing {
            tell_kills(recommender, point, &s);
        }
        recommender.observe(point.usage);
    }
}

/// Tells the recommender of an OOM kill or throttling the sizing in force caused at `point`.
fn tell_kills(recommender: &mut dyn Recommender, point: &TracePoint, s: &Sizing) {
    let at = point.usage.at;
    if let (Some(used), Some(limit)) = (point.usage.memory_bytes, s.memory_limit)
        && used > limit
    {
        recommender.oom_killed(at, limit);
    }
    if let (Some(used), Some(limit)) = (point.usage.cpu_cores, s.cpu_limit)
        && used > limit
    {
        recommender.throttled(at, limit);
    }
}

/// The whole replay as rows.
pub fn replay_rows(
    trace: &Trace,
    recommender: &mut dyn Recommender,
    refresh_s: f64,
) -> Vec<ReplayRow> {
    let mut rows = Vec::with_capacity(trace.points.len());
    replay(trace, recommender, refresh_s, |r| rows.push(r));
    rows
}

/// The manual sizing of a trace as replay rows (what a person provisioned, sample by sample).
pub fn manual_rows(trace: &Trace) -> Vec<ReplayRow> {
    trace
        .points
        .iter()
        .map(|p| ReplayRow {
            point: *p,
            sizing: p.manual.as_ref().and_then(Sizing::from_manual),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Recommendation, Result, Usage};

    /// Recommends a fixed memory limit and a CPU limit, records what it was told.
    #[derive(Debug, Default)]
    struct Recorder {
        observed: Vec<f64>,
        ooms: Vec<(f64, f64)>,
        throttles: Vec<(f64, f64)>,
    }

    impl Recommender for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn observe(&mut self, usage: Usage) {
            self.observed.push(usage.at);
        }
        fn oom_killed(&mut self, at: f64, memory_limit: f64) {
            self.ooms.push((at, memory_limit));
        }
        fn throttled(&mut self, at: f64, cpu_limit: f64) {
            self.throttles.push((at, cpu_limit));
        }
        fn recommend(&self, _at: f64, _current: &CurrentResources) -> Option<Recommendation> {
            // nothing before it has seen a sample: the first refresh yields no sizing
            self.observed.first()?;
            Some(Recommendation {
                cpu_request: 1.0,
                cpu_limit: Some(2.0),
                memory_request: 100.0,
                memory_limit: 100.0,
                cpu_lower_bound: 1.0,
                cpu_upper_bound: 1.0,
                memory_lower_bound: 100.0,
                memory_upper_bound: 100.0,
                confidence: 1.0,
            })
        }
        fn state_json(&self) -> Result<String> {
            Ok("{}".into())
        }
    }

    fn trace(points: &[(f64, f64, f64)]) -> Trace {
        Trace {
            name: "t".into(),
            points: points
                .iter()
                .map(|(at, c, m)| TracePoint {
                    usage: Usage {
                        at: *at,
                        cpu_cores: Some(*c),
                        memory_bytes: Some(*m),
                    },
                    manual: None,
                })
                .collect(),
        }
    }

    #[test]
    fn kills_and_throttling_are_told_and_refreshes_are_hourly() {
        let t = trace(&[
            (0.0, 3.0, 500.0),
            (1800.0, 3.0, 500.0),
            (3600.0, 3.0, 500.0),
            (4000.0, 1.0, 50.0),
            (7300.0, 1.0, 150.0),
        ]);
        let mut r = Recorder::default();
        let rows = replay_rows(&t, &mut r, 3600.0);
        assert_eq!(rows.len(), 5);
        // first refresh at t=0 saw nothing; the next at 3600 applies from that sample on
        assert_eq!(rows[0].sizing, None);
        assert_eq!(rows[1].sizing, None);
        assert!(rows[2..].iter().all(|row| row.sizing.is_some()));
        // 500 > 100 at 3600, 150 > 100 at 7300: kills; 3 > 2 cores at 3600: throttled
        assert_eq!(r.ooms, vec![(3600.0, 100.0), (7300.0, 100.0)]);
        assert_eq!(r.throttles, vec![(3600.0, 2.0)]);
        assert_eq!(r.observed, vec![0.0, 1800.0, 3600.0, 4000.0, 7300.0]);
    }

    #[test]
    fn sizing_rounds_up_to_millicores_and_bytes() {
        let r = Recommendation {
            cpu_request: 0.12301,
            cpu_limit: None,
            memory_request: 10.2,
            memory_limit: 10.2,
            cpu_lower_bound: 0.0,
            cpu_upper_bound: 0.0,
            memory_lower_bound: 0.0,
            memory_upper_bound: 0.0,
            confidence: 0.0,
        };
        let s = Sizing::from_recommendation(&r);
        assert_eq!(
            (s.cpu_request, s.cpu_limit, s.memory_limit),
            (0.124, None, Some(11.0))
        );
    }
}
