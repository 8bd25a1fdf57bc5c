use super::*;
use crate::fixture::PeakRecommender;
use snug_api::WorkloadRef;

const MIB: f64 = 1024.0 * 1024.0;

fn settings() -> ModelSettings {
    ModelSettings {
        recommender: PeakRecommender::factory(RecommenderKind::Snug),
        min_window: 100.0,
        min_samples: 10,
        refresh: 300.0,
    }
}

fn model() -> WorkloadModel {
    let key = WorkloadKey {
        namespace: "shop".into(),
        workload: WorkloadRef::new("apps/v1", "Deployment", "web"),
    };
    let mut model = WorkloadModel::new(key, settings().recommender);
    // Refresh times at multiples of the interval, whatever the key hashes to.
    model.refresh_phase = 0.0;
    model
}

fn usage(at: f64, cpu: f64, memory_mib: f64) -> Usage {
    Usage {
        at,
        cpu_cores: Some(cpu),
        memory_bytes: Some(memory_mib * MIB),
    }
}

#[test]
fn confidence_needs_both_window_and_samples() {
    let s = settings();
    assert_eq!(confidence(50.0, 100.0, &s), 0.5);
    assert_eq!(confidence(1000.0, 5.0, &s), 0.5);
    assert_eq!(confidence(1000.0, 1000.0, &s), 1.0);
    assert_eq!(confidence(0.0, 1000.0, &s), 0.0);
}

#[test]
fn status_carries_recommendation_distributions_and_ready() {
    let mut m = model();
    for i in 0..20 {
        let at = 1000.0 + i as f64 * 10.0;
        m.observe_usage(
            usage(at, 0.1 + i as f64 * 0.01, 100.0),
            "app",
            Default::default(),
        );
    }
    let (status, written) = m.status(1200.0, &settings());
    assert_eq!(status.samples, 20);
    assert_eq!(status.window_seconds, 190.0);
    assert_eq!(status.confidence, 1.0);
    assert!(written.ready);
    let app = &status.containers[0];
    // Peak 0.29 cores × 1.1 = 0.319 → 319m; 100 MiB × 1.2 = 120Mi, limit 240Mi.
    assert_eq!(app.recommendation.requests.cpu.as_ref().unwrap().0, "319m");
    assert_eq!(
        app.recommendation.requests.memory.as_ref().unwrap().0,
        "120Mi"
    );
    assert_eq!(
        app.recommendation.limits.memory.as_ref().unwrap().0,
        "240Mi"
    );
    assert_eq!(
        app.recommendation.limits.cpu, None,
        "no CPU limit in, none out"
    );
    assert!(
        app.cpu.p50 >= 0.19 && app.cpu.p50 <= 0.2 * 1.05,
        "{:?}",
        app.cpu
    );
    assert!((app.cpu.max - 0.29).abs() < 1e-12);
    let summary = status.summary.as_ref().unwrap();
    assert_eq!(
        (summary.cpu.as_str(), summary.memory.as_str()),
        ("319m", "120Mi")
    );
    assert_eq!(summary.confidence, "100%");
    assert_eq!(summary.workload, "Deployment/web");
    let ready = &status.conditions[0];
    assert_eq!(
        (ready.type_.as_str(), ready.status.as_str()),
        ("Ready", "True")
    );
}

#[test]
fn no_recommendation_means_zero_confidence() {
    let mut m = model();
    m.observe_usage(usage(0.0, 0.1, 10.0), "app", Default::default());
    let (status, written) = m.status(1000.0, &settings());
    assert_eq!(status.confidence, 0.0);
    assert!(!written.ready);
    assert_eq!(status.conditions[0].reason, "NoRecommendation");
}

#[test]
fn each_oom_kill_counts_once_and_raises_memory() {
    let mut m = model();
    m.observe_usage(usage(0.0, 0.1, 100.0), "app", Default::default());
    m.observe_usage(usage(10.0, 0.1, 100.0), "app", Default::default());
    assert!(m.observe_oom(20.0, "uid1/app/1".into(), "app", Some(128.0 * MIB)));
    assert!(!m.observe_oom(30.0, "uid1/app/1".into(), "app", Some(128.0 * MIB)));
    assert!(m.observe_oom(40.0, "uid1/app/2".into(), "app", Some(128.0 * MIB)));
    let (status, _) = m.status(50.0, &settings());
    assert_eq!(status.oom_kills, 2);
    assert_eq!(
        status.containers[0]
            .recommendation
            .requests
            .memory
            .as_ref()
            .unwrap()
            .0,
        "256Mi"
    );
    m.prune_oom_seen(&["uid2"].into());
    assert!(m.observe_oom(60.0, "uid2/app/1".into(), "app", None));
}

#[test]
fn writes_on_meaningful_change_or_refresh_only() {
    let mut m = model();
    let s = settings();
    for i in 0..20 {
        m.observe_usage(
            usage(i as f64 * 10.0, 0.5, 100.0),
            "app",
            Default::default(),
        );
    }
    let (_, first) = m.status(200.0, &s);
    assert!(m.worth_writing(&first, &s), "never written");
    m.written = Some(first);
    m.observe_usage(usage(210.0, 0.51, 100.0), "app", Default::default());
    let (_, small) = m.status(210.0, &s);
    assert!(!m.worth_writing(&small, &s), "2% is not worth a write");
    m.observe_usage(usage(220.0, 0.8, 100.0), "app", Default::default());
    let (_, big) = m.status(220.0, &s);
    assert!(m.worth_writing(&big, &s), "60% more CPU is");
    let (_, later) = m.status(200.0 + s.refresh, &s);
    assert!(m.worth_writing(&later, &s), "refresh interval passed");
}

#[test]
fn refreshes_of_profiles_written_together_are_spread_over_the_interval() {
    let s = settings();
    let cycle = s.refresh / 10.0;
    let workloads = 2000;
    let mut due_per_cycle = [0usize; 10];
    for i in 0..workloads {
        let key = WorkloadKey {
            namespace: format!("team-{}", i % 7),
            workload: WorkloadRef::new("apps/v1", "Deployment", &format!("app-{i}")),
        };
        let m = WorkloadModel::new(key, s.recommender);
        // Written first at 1,000 s (with every other profile), then checked each cycle.
        let mut last = 1000.0;
        let mut writes = 0;
        for (c, due) in due_per_cycle.iter_mut().enumerate() {
            let now = 1000.0 + (c + 1) as f64 * cycle;
            if m.refresh_due(last, now, s.refresh) {
                *due += 1;
                writes += 1;
                last = now;
            }
        }
        assert_eq!(writes, 1, "one refresh per interval");
        assert!(
            m.refresh_due(last, last + s.refresh, s.refresh),
            "never over an interval apart"
        );
    }
    let even = workloads / due_per_cycle.len();
    for (c, due) in due_per_cycle.iter().enumerate() {
        assert!(
            *due < even * 3 / 2,
            "cycle {c} rewrites {due} of {workloads} profiles: {due_per_cycle:?}"
        );
    }
}

#[test]
fn a_learning_profile_is_written_when_a_recommendation_appears_then_on_refresh() {
    let mut m = model();
    let s = settings();
    m.observe_usage(usage(0.0, 0.5, 100.0), "app", Default::default());
    let (_, first) = m.status(0.0, &s);
    assert!(first.recommendations["app"].is_none());
    m.written = Some(first);
    m.observe_usage(usage(1.0, 0.5, 100.0), "app", Default::default());
    let (_, recommended) = m.status(1.0, &s);
    assert!(!recommended.ready, "learning: 1 s of a 100 s window");
    assert!(
        m.worth_writing(&recommended, &s),
        "the first recommendation is written at once"
    );
    m.written = Some(recommended);
    m.observe_usage(usage(2.0, 0.8, 150.0), "app", Default::default());
    let (_, moved) = m.status(2.0, &s);
    assert!(
        !m.worth_writing(&moved, &s),
        "60% more CPU while learning waits for the refresh"
    );
    let (_, later) = m.status(1.0 + s.refresh, &s);
    assert!(!later.ready);
    assert!(m.worth_writing(&later, &s), "refresh interval passed");
}

#[test]
fn checkpoint_restores_recommenders_and_counts() {
    let mut m = model();
    for i in 0..5 {
        m.observe_usage(usage(i as f64, 0.3, 200.0), "app", Default::default());
    }
    m.observe_oom(5.0, "uid/app/1".into(), "app", Some(300.0 * MIB));
    let (before, _) = m.status(10.0, &settings());
    let encoded = m.checkpoint().unwrap().encode().unwrap();
    let saved = crate::checkpoint::Checkpoint::decode(&encoded).unwrap();
    let mut restored = WorkloadModel::restore(m.key.clone(), settings().recommender, saved);
    let (after, _) = restored.status(10.0, &settings());
    assert_eq!(after.containers, before.containers);
    assert_eq!(after.samples, 5);
    assert!(
        !restored.observe_oom(11.0, "uid/app/1".into(), "app", None),
        "already counted"
    );
}

#[test]
fn real_recommenders_resume_from_this_and_the_earlier_checkpoint_format() {
    let factory = RecommenderFactory::of(RecommenderKind::Vpa);
    let mut m = WorkloadModel::new(model().key, factory);
    for i in 0..50 {
        let cpu = 0.3 + f64::from(i % 5) * 0.1;
        m.observe_usage(
            usage(f64::from(i) * 60.0, cpu, 200.0),
            "app",
            Default::default(),
        );
    }
    let expected = m.recommendations(3000.0);
    assert!(expected["app"].is_some());
    let now = m.checkpoint().unwrap();
    assert!(
        now.containers["app"].recommender.starts_with('{'),
        "the recommender state is plain JSON, compressed once with the whole checkpoint"
    );
    // Earlier versions stored each recommender state gzipped and base64 inside the checkpoint.
    let mut earlier = now.clone();
    for c in earlier.containers.values_mut() {
        c.recommender = snug_recommender::checkpoint::compress(&c.recommender).unwrap();
    }
    for saved in [now, earlier] {
        let saved = Checkpoint::decode(&saved.encode().unwrap()).unwrap();
        let restored = WorkloadModel::restore(m.key.clone(), factory, saved);
        // A state that failed to load would start afresh, with no recommendation yet.
        assert_eq!(restored.recommendations(3000.0), expected);
    }
}
