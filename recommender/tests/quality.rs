//! Snug must beat the VPA baseline on real traces (the quality targets), checked on the
//! committed sample of the traces (`tests/data/traces`, a systematic sample of the full set).
use std::path::Path;

use snug_recommender::quality::{DatasetScores, load_datasets, score_dataset};
use snug_recommender::score::Score;

fn total_slack(s: &Score) -> f64 {
    s.cpu_slack().unwrap_or(0.0) + s.memory_slack().unwrap_or(0.0)
}

fn assert_snug_beats_vpa(name: &str, d: &DatasetScores) {
    let (snug, vpa) = (&d.snug, &d.vpa);
    assert!(
        snug.cpu_samples > 1000,
        "{name}: scored too little: {snug:?}"
    );
    assert!(
        snug.oom_kills <= vpa.oom_kills,
        "{name}: OOM kills {} > VPA's {}",
        snug.oom_kills,
        vpa.oom_kills
    );
    assert!(
        snug.throttled <= vpa.throttled,
        "{name}: throttled {} > VPA's {}",
        snug.throttled,
        vpa.throttled
    );
    assert!(
        snug.cpu_slack() < vpa.cpu_slack(),
        "{name}: CPU slack {:?} not below VPA's {:?}",
        snug.cpu_slack(),
        vpa.cpu_slack()
    );
    assert!(
        snug.memory_slack() <= vpa.memory_slack(),
        "{name}: memory slack {:?} above VPA's {:?}",
        snug.memory_slack(),
        vpa.memory_slack()
    );
    assert!(
        total_slack(snug) < total_slack(vpa),
        "{name}: total slack not below VPA's"
    );
    if d.manual.series > 0 {
        assert!(
            total_slack(snug) < total_slack(&d.manual),
            "{name}: more slack than manual sizing"
        );
    }
}

#[test]
fn snug_beats_vpa_on_the_committed_traces() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/traces");
    let datasets = load_datasets(&dir).unwrap();
    assert_eq!(
        datasets.len(),
        2,
        "bitbrains and azure samples expected in {}",
        dir.display()
    );
    let mut overall = DatasetScores::default();
    for d in &datasets {
        assert!(!d.traces.is_empty(), "{}: no series", d.name);
        let scores = score_dataset(&d.traces, 2);
        assert_snug_beats_vpa(&d.name, &scores);
        overall.add(&scores);
    }
    assert_snug_beats_vpa("overall", &overall);
    assert!(
        overall.vpa.oom_kills > 0,
        "the sample must exercise OOM kills"
    );
}
