//! Whatever the input, readers return an error instead of panicking, and both recommenders give
//! finite recommendations within their minimums, whatever usage, kills and traffic they saw.
use proptest::prelude::*;

use snug_recommender::trace::{parse_azure, parse_bitbrains, parse_csv};
use snug_recommender::vpa::{MIN_CPU_CORES, MIN_MEMORY_BYTES};
use snug_recommender::{CurrentResources, RecommenderKind, Usage};

#[derive(Debug, Clone)]
enum Event {
    Sample(Option<f64>, Option<f64>),
    Oom(f64),
    Throttled(f64),
    Traffic(f64),
}

fn amount() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..1e-3,
        0.0..64.0,
        0.0..1e12,
        Just(0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0)
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (proptest::option::of(amount()), proptest::option::of(amount())).prop_map(|(c, m)| Event::Sample(c, m)),
        1 => amount().prop_map(Event::Oom),
        1 => amount().prop_map(Event::Throttled),
        1 => amount().prop_map(Event::Traffic),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = parse_csv(bytes.as_slice(), "p");
        let _ = parse_bitbrains(bytes.as_slice(), "p");
        let _ = parse_azure(bytes.as_slice(), "p", 1.0, None);
    }

    #[test]
    fn recommendations_are_finite_and_above_minimums(
        events in proptest::collection::vec((1.0..7200.0f64, event()), 1..300),
    ) {
        for kind in [RecommenderKind::Snug, RecommenderKind::Vpa] {
            let mut r = kind.build();
            let mut at = 1_700_000_000.0;
            for (step, e) in &events {
                at += step;
                match e {
                    Event::Sample(c, m) => r.observe(Usage { at, cpu_cores: *c, memory_bytes: *m }),
                    Event::Oom(limit) => r.oom_killed(at, *limit),
                    Event::Throttled(limit) => r.throttled(at, *limit),
                    Event::Traffic(rps) => r.observe_traffic(at, *rps),
                }
            }
            if let Some(rec) = r.recommend(at, &CurrentResources::default()) {
                let values = [rec.cpu_request, rec.memory_request, rec.memory_limit, rec.cpu_lower_bound,
                    rec.cpu_upper_bound, rec.memory_lower_bound, rec.memory_upper_bound, rec.confidence];
                prop_assert!(values.iter().all(|v| v.is_finite() && *v >= 0.0), "{kind:?}: {rec:?}");
                prop_assert!(rec.cpu_request >= MIN_CPU_CORES && rec.memory_limit >= MIN_MEMORY_BYTES);
                prop_assert!(rec.memory_limit >= rec.memory_request);
                prop_assert!(rec.cpu_limit.is_none_or(|l| l.is_finite() && l >= rec.cpu_request));
                let restored = kind.restore(&r.checkpoint().unwrap()).unwrap();
                prop_assert_eq!(restored.recommend(at, &CurrentResources::default()), Some(rec));
            }
        }
    }
}
