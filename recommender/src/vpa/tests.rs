use super::*;

const DAY: f64 = 86_400.0;
const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

fn usage(at: f64, cpu: f64, memory: f64) -> Usage {
    Usage {
        at,
        cpu_cores: Some(cpu),
        memory_bytes: Some(memory),
    }
}

/// Feeds one sample a minute from `from` for `seconds`.
fn feed(r: &mut VpaRecommender, from: f64, seconds: f64, f: impl Fn(f64) -> (f64, f64)) {
    let mut t = from;
    while t < from + seconds {
        let (c, m) = f(t);
        r.observe(usage(t, c, m));
        t += 60.0;
    }
}

/// What VPA reports for a peak or percentile at `v`: the end of its bucket, plus 15%.
fn reported(scheme: BucketScheme, v: f64) -> f64 {
    scheme.bucket_start(scheme.bucket_of(v) + 1) * 1.15
}

fn none() -> CurrentResources {
    CurrentResources::default()
}

#[test]
fn nothing_before_the_first_sample() {
    assert!(VpaRecommender::default().recommend(0.0, &none()).is_none());
}

#[test]
fn steady_usage_gets_the_bucket_end_plus_fifteen_percent() {
    let mut r = VpaRecommender::default();
    feed(&mut r, 0.0, 2.0 * DAY, |_| (1.0, GIB));
    let rec = r.recommend(2.0 * DAY, &none()).unwrap();
    // p90 is the end of the bucket holding the value (a few % above), then +15%
    assert_eq!(rec.cpu_request, reported(cpu_scheme(), 1.0));
    assert_eq!(rec.memory_request, reported(memory_scheme(), GIB));
    assert!(
        rec.cpu_request > 1.15 && rec.cpu_request <= 1.0 * 1.06 * 1.15,
        "{rec:?}"
    );
    assert_eq!(
        rec.memory_limit, rec.memory_request,
        "no original limit: ratio 1"
    );
    assert_eq!(rec.cpu_limit, Some(rec.cpu_request));
    assert!(rec.cpu_lower_bound <= rec.cpu_request && rec.cpu_request <= rec.cpu_upper_bound);
    assert!(
        rec.memory_lower_bound <= rec.memory_request
            && rec.memory_request <= rec.memory_upper_bound
    );
}

#[test]
fn cpu_target_is_the_ninetieth_percentile_of_samples() {
    let mut r = VpaRecommender::default();
    // 80% of minutes at 1 core, 20% at 3 cores: p90 is in the 3-core bucket
    feed(&mut r, 0.0, DAY, |t| {
        (
            if ((t / 60.0) as u64).is_multiple_of(5) {
                3.0
            } else {
                1.0
            },
            GIB,
        )
    });
    let high = r.recommend(DAY, &none()).unwrap().cpu_request;
    assert!(high > 3.0 * 1.15, "{high}");
    // 95% at 1 core: p90 falls back to the 1-core bucket
    let mut r = VpaRecommender::default();
    feed(&mut r, 0.0, DAY, |t| {
        (
            if ((t / 60.0) as u64).is_multiple_of(20) {
                3.0
            } else {
                1.0
            },
            GIB,
        )
    });
    let low = r.recommend(DAY, &none()).unwrap().cpu_request;
    assert_eq!(low, reported(cpu_scheme(), 1.0));
}

#[test]
fn pod_minimums_apply() {
    let mut r = VpaRecommender::default();
    feed(&mut r, 0.0, DAY, |_| (0.001, 10.0 * MIB));
    let rec = r.recommend(DAY, &none()).unwrap();
    assert_eq!(rec.cpu_request, MIN_CPU_CORES);
    assert_eq!(rec.memory_request, MIN_MEMORY_BYTES);
    assert_eq!(rec.cpu_lower_bound, MIN_CPU_CORES);
}

#[test]
fn limits_keep_the_original_ratio() {
    let mut r = VpaRecommender::default();
    feed(&mut r, 0.0, DAY, |_| (1.0, GIB));
    let original = CurrentResources {
        cpu_request: Some(0.5),
        cpu_limit: Some(2.0),
        memory_request: Some(GIB),
        memory_limit: Some(1.5 * GIB),
    };
    let rec = r.recommend(DAY, &original).unwrap();
    assert!((rec.cpu_limit.unwrap() / rec.cpu_request - 4.0).abs() < 1e-9);
    assert!((rec.memory_limit / rec.memory_request - 1.5).abs() < 1e-9);
    assert_eq!(limit_ratio(Some(1.0), None), 1.0);
    assert_eq!(limit_ratio(None, Some(2.0)), 1.0);
}

#[test]
fn oom_bump_is_the_larger_of_plus_100_mib_and_times_1_2() {
    // big container: ×1.2 wins
    let mut r = VpaRecommender::default();
    feed(&mut r, 0.0, 3600.0, |_| (1.0, GIB));
    r.oom_killed(3600.0, 2.0 * GIB);
    let m = r.recommend(3600.0, &none()).unwrap().memory_request;
    assert_eq!(m, reported(memory_scheme(), 2.4 * GIB));
    // small container: +100 MiB wins
    let mut r = VpaRecommender::default();
    feed(&mut r, 0.0, 3600.0, |_| (1.0, 200.0 * MIB));
    r.oom_killed(3600.0, 300.0 * MIB);
    let m = r.recommend(3600.0, &none()).unwrap().memory_request;
    assert_eq!(m, reported(memory_scheme(), 400.0 * MIB));
}

#[test]
fn an_oom_older_than_an_interval_is_ignored() {
    let mut r = VpaRecommender::default();
    feed(&mut r, 0.0, 3.0 * DAY, |_| (1.0, GIB));
    let before = r.recommend(3.0 * DAY, &none()).unwrap();
    r.oom_killed(0.5 * DAY, 4.0 * GIB);
    assert_eq!(r.recommend(3.0 * DAY, &none()).unwrap(), before);
}

#[test]
fn memory_follows_daily_peaks_and_forgets_old_ones() {
    let mut r = VpaRecommender::default();
    // one 8 GiB spike on day 0, then 1 GiB for ten days
    feed(&mut r, 0.0, 11.0 * DAY, |t| {
        (
            1.0,
            if (3600.0..3700.0).contains(&t) {
                8.0 * GIB
            } else {
                GIB
            },
        )
    });
    let m = r.recommend(11.0 * DAY, &none()).unwrap().memory_request;
    assert!(m < 1.3 * GIB, "the spike has decayed away: {m}");
    // a spike yesterday still sets the target
    let mut r = VpaRecommender::default();
    feed(&mut r, 0.0, 5.0 * DAY, |t| {
        (
            1.0,
            if (4.0 * DAY..4.0 * DAY + 100.0).contains(&t) {
                4.0 * GIB
            } else {
                GIB
            },
        )
    });
    let m = r.recommend(5.0 * DAY, &none()).unwrap().memory_request;
    assert!(m > 4.0 * GIB * 1.15, "{m}");
}

#[test]
fn a_raised_request_makes_new_cpu_samples_weigh_more() {
    let run = |apply: bool| {
        let mut r = VpaRecommender::default();
        feed(&mut r, 0.0, DAY, |_| (1.0, GIB));
        if apply {
            r.applied(&CurrentResources {
                cpu_request: Some(20.0),
                ..CurrentResources::default()
            });
        }
        feed(&mut r, DAY, 3600.0, |_| (4.0, GIB));
        r.recommend(DAY + 3600.0, &none()).unwrap().cpu_request
    };
    assert!(
        run(false) < 1.3,
        "an hour of 4 cores is under 10% of the weight"
    );
    assert!(
        run(true) > 4.0,
        "weighted by a 20-core request they dominate"
    );
}

#[test]
fn confidence_is_days_of_history_at_one_sample_a_minute() {
    let mut r = VpaRecommender::default();
    feed(&mut r, 0.0, 2.0 * DAY, |_| (1.0, GIB));
    assert!(
        (r.confidence_days() - 2.0).abs() < 0.01,
        "{}",
        r.confidence_days()
    );
    // a sample every 5 minutes: a fifth of the confidence
    let mut sparse = VpaRecommender::default();
    let mut t = 0.0;
    while t < 2.0 * DAY {
        sparse.observe(usage(t, 1.0, GIB));
        t += 300.0;
    }
    assert!((sparse.confidence_days() - 0.4).abs() < 0.01);
    let rec = sparse.recommend(t, &none()).unwrap();
    // upper bound × (1 + 1/0.4) over the p95 estimate
    assert!(rec.cpu_upper_bound > rec.cpu_request * 3.0);
    assert!(rec.confidence > 0.0 && rec.confidence < 1.0);
}

#[test]
fn a_restored_recommender_continues_exactly() {
    let mut a = VpaRecommender::default();
    feed(&mut a, 0.0, 3.0 * DAY, |t| {
        (
            1.0 + (t / 3600.0).sin().abs(),
            GIB * (1.0 + (t / 7200.0).cos().abs()),
        )
    });
    a.oom_killed(3.0 * DAY - 60.0, 1.5 * GIB);
    let checkpoint = a.checkpoint().unwrap();
    assert!(
        checkpoint.len() < 4 * 1024,
        "checkpoint is {} bytes",
        checkpoint.len()
    );
    let mut b = VpaRecommender::restore(&checkpoint).unwrap();
    assert_eq!(a, b);
    let plain = a.state_json().unwrap();
    assert_eq!(
        VpaRecommender::restore(&plain).unwrap(),
        a,
        "the plain JSON state restores too"
    );
    let more = |r: &mut VpaRecommender| {
        feed(r, 3.0 * DAY, DAY, |t| {
            (0.5 + (t / 900.0).sin().abs(), 2.0 * GIB)
        })
    };
    more(&mut a);
    more(&mut b);
    assert_eq!(
        a.recommend(4.0 * DAY, &none()),
        b.recommend(4.0 * DAY, &none())
    );
    assert!(VpaRecommender::restore("garbage").is_err());
}
