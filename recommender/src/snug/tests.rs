use super::*;
use crate::vpa::VpaRecommender;

const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;
const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

fn none() -> CurrentResources {
    CurrentResources::default()
}

/// One sample every 5 minutes from `from` for `seconds`, into every recommender given.
fn feed(rs: &mut [&mut dyn Recommender], from: f64, seconds: f64, f: impl Fn(f64) -> (f64, f64)) {
    let mut t = from;
    while t < from + seconds {
        let (c, m) = f(t);
        for r in rs.iter_mut() {
            r.observe(Usage {
                at: t,
                cpu_cores: Some(c),
                memory_bytes: Some(m),
            });
        }
        t += 300.0;
    }
}

fn office_hours(t: f64) -> (f64, f64) {
    let hour = (t % DAY) / HOUR;
    if (9.0..17.0).contains(&hour) {
        (2.0, 2.0 * GIB)
    } else {
        (0.2, 2.0 * GIB)
    }
}

#[test]
fn nothing_before_the_first_sample() {
    assert!(SnugRecommender::default().recommend(0.0, &none()).is_none());
}

#[test]
fn the_night_gets_less_cpu_than_the_day() {
    let (mut snug, mut vpa) = (SnugRecommender::default(), VpaRecommender::default());
    let at = |h: f64| 5.0 * DAY + h * HOUR;
    // the recent level (p90, 3 h half-life) holds the day's level into the evening; by 5:00
    // the night is on its own
    feed(&mut [&mut snug, &mut vpa], 0.0, at(5.0), office_hours);
    let night = snug.recommend(at(5.0), &none()).unwrap().cpu_request;
    let vpa_night = vpa.recommend(at(5.0), &none()).unwrap().cpu_request;
    feed(
        &mut [&mut snug, &mut vpa],
        at(5.0),
        3.5 * HOUR,
        office_hours,
    );
    let morning = snug.recommend(at(8.5), &none()).unwrap().cpu_request;
    assert!(night < 0.3, "night: {night}");
    assert!(
        morning >= 2.0,
        "the hour ahead reaches into office hours: {morning}"
    );
    assert!(
        vpa_night > 2.0,
        "VPA sizes every hour for the busiest: {vpa_night}"
    );
}

#[test]
fn a_level_shift_is_followed_within_hours() {
    let (mut snug, mut vpa) = (SnugRecommender::default(), VpaRecommender::default());
    feed(&mut [&mut snug, &mut vpa], 0.0, 3.0 * DAY, |_| (1.0, GIB));
    feed(&mut [&mut snug, &mut vpa], 3.0 * DAY, 3.0 * HOUR, |_| {
        (3.0, GIB)
    });
    let at = 3.0 * DAY + 3.0 * HOUR;
    assert!(snug.recommend(at, &none()).unwrap().cpu_request >= 3.0);
    assert!(vpa.recommend(at, &none()).unwrap().cpu_request < 2.0);
}

#[test]
fn an_oom_kill_raises_the_memory_limit_at_once() {
    let mut snug = SnugRecommender::default();
    feed(&mut [&mut snug], 0.0, 2.0 * DAY, |_| (1.0, GIB));
    let before = snug.recommend(2.0 * DAY, &none()).unwrap().memory_limit;
    snug.oom_killed(2.0 * DAY, before);
    let after = snug.recommend(2.0 * DAY + 1.0, &none()).unwrap();
    assert!(
        after.memory_limit >= (before + 100.0 * MIB).max(before * 1.2),
        "{before} -> {}",
        after.memory_limit
    );
    assert_eq!(after.memory_request, after.memory_limit);
    // the kill counts as that day's peak (as in VPA) and fades like one: days later the limit
    // follows usage again
    feed(&mut [&mut snug], 2.0 * DAY, 5.0 * DAY, |_| (1.0, GIB));
    let later = snug.recommend(7.0 * DAY, &none()).unwrap().memory_limit;
    assert!(later < after.memory_limit, "{later}");
}

#[test]
fn no_cpu_limit_and_small_containers_get_absolute_headroom() {
    let mut snug = SnugRecommender::default();
    feed(&mut [&mut snug], 0.0, 2.0 * DAY, |_| (0.001, 50.0 * MIB));
    let r = snug.recommend(2.0 * DAY, &none()).unwrap();
    assert_eq!(r.cpu_limit, None);
    assert_eq!(r.cpu_request, snug.config().min_cpu_cores);
    assert!(r.memory_limit >= 50.0 * MIB + snug.config().memory_headroom_bytes);
    assert!(r.memory_limit >= snug.config().min_memory_bytes);
    assert!(r.cpu_lower_bound <= r.cpu_request && r.cpu_request <= r.cpu_upper_bound);
    assert!(r.memory_lower_bound <= r.memory_limit && r.memory_limit <= r.memory_upper_bound);
    assert!((r.confidence - 2.0 / 7.0).abs() < 0.01);
}

#[test]
fn throttling_widens_the_cpu_margin_for_a_while() {
    let mut snug = SnugRecommender::default();
    feed(&mut [&mut snug], 0.0, 2.0 * DAY, |_| (1.0, GIB));
    let calm = snug.recommend(2.0 * DAY, &none()).unwrap().cpu_request;
    for i in 0..4 {
        snug.throttled(2.0 * DAY + f64::from(i), 1.0);
    }
    let throttled = snug
        .recommend(2.0 * DAY + 10.0, &none())
        .unwrap()
        .cpu_request;
    assert!(throttled >= calm * 1.15, "{calm} -> {throttled}");
    let relaxed = snug.recommend(4.0 * DAY, &none()).unwrap().cpu_request;
    assert!(relaxed < throttled);
}

#[test]
fn traffic_sizes_cpu_ahead_of_usage() {
    let mut snug = SnugRecommender::default();
    let mut t = 0.0;
    while t < DAY {
        snug.observe_traffic(t, 100.0);
        snug.observe(Usage {
            at: t,
            cpu_cores: Some(0.1),
            memory_bytes: Some(GIB),
        });
        t += 300.0;
    }
    let steady = snug.recommend(t, &none()).unwrap().cpu_request;
    assert!(steady < 0.2, "{steady}");
    // a surge: ten times the requests, before the CPU samples show it
    snug.observe_traffic(t, 1000.0);
    let surge = snug.recommend(t + 1.0, &none()).unwrap().cpu_request;
    assert!(surge >= 1.0, "{surge}");
}

#[test]
fn a_restored_recommender_continues_exactly() {
    let mut a = SnugRecommender::default();
    let wave = |t: f64| {
        (
            0.5 + (t / 5000.0).sin().abs() * 2.0,
            GIB * (1.0 + (t / 9000.0).cos().abs()),
        )
    };
    feed(&mut [&mut a], 0.0, 30.0 * DAY, wave);
    a.oom_killed(30.0 * DAY, 1.5 * GIB);
    a.observe_traffic(30.0 * DAY, 42.0);
    a.applied(&CurrentResources {
        cpu_request: Some(1.0),
        ..none()
    });
    let checkpoint = a.checkpoint().unwrap();
    assert!(
        checkpoint.len() < 4 * 1024,
        "checkpoint is {} bytes",
        checkpoint.len()
    );
    let mut b = SnugRecommender::restore(&checkpoint).unwrap();
    assert_eq!(a, b);
    let plain = a.state_json().unwrap();
    assert_eq!(
        SnugRecommender::restore(&plain).unwrap(),
        a,
        "the plain JSON state restores too"
    );
    feed(&mut [&mut a, &mut b], 30.0 * DAY, 2.0 * DAY, |t| {
        wave(t * 1.7)
    });
    assert_eq!(
        a.recommend(32.0 * DAY, &none()),
        b.recommend(32.0 * DAY, &none())
    );
    assert!(a.recommend(32.0 * DAY, &none()).is_some());
}

#[test]
fn a_bad_checkpoint_is_refused() {
    assert!(SnugRecommender::restore("").is_err());
    assert!(SnugRecommender::restore("!!!").is_err());
    let vpa = VpaRecommender::default().checkpoint().unwrap();
    assert!(SnugRecommender::restore(&vpa).is_err());
    let bad = SnugConfig {
        slot_s: 7.0,
        ..SnugConfig::default()
    };
    assert!(bad.validate().is_err());
    let bad = SnugConfig {
        jump_percentile: 1.5,
        ..SnugConfig::default()
    };
    assert!(bad.validate().is_err());
    assert!(SnugConfig::default().validate().is_ok());
}
