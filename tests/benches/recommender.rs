//! Quality benchmark of the recommenders: every series of the trace directory replayed through
//! manual sizing, the VPA baseline and Snug (hourly refresh, scored from day 2, rules in the
//! traces README). Prints a Markdown table. Run by hand:
//!
//! ```text
//! cargo bench --bench recommender                      # ../shared/traces when present
//! SNUG_TRACES_DIR=tests/data/traces cargo bench --bench recommender
//! ```
use std::path::{Path, PathBuf};
use std::time::Instant;

use snug_recommender::quality::{DatasetScores, load_datasets, score_dataset};
use snug_recommender::score::Score;

fn traces_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SNUG_TRACES_DIR") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // /work/main/../shared/traces, or from a worktree /work/wt/<name>/../../shared/traces
    for candidate in ["../shared/traces", "../../shared/traces"] {
        let dir = root.join(candidate);
        if dir.is_dir() {
            return dir;
        }
    }
    root.join("tests/data/traces")
}

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{:.1}%", v * 100.0))
}

fn relative(v: Option<f64>, manual: Option<f64>) -> String {
    match (v, manual) {
        (Some(v), Some(m)) if m > 0.0 => format!("{:.2}", v / m),
        _ => "n/a".into(),
    }
}

fn row(dataset: &str, sizing: &str, s: &Score, manual: &Score) {
    if s.series == 0 {
        println!("| {dataset} | {sizing} | – | n/a (no manual sizing in the trace) | | | | | | |");
        return;
    }
    println!(
        "| {dataset} | {sizing} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
        s.series,
        pct(s.cpu_slack()),
        pct(s.memory_slack()),
        pct(s.throttled_share()),
        pct(s.starved_share()),
        s.oom_kills,
        s.series_with_oom,
        relative(s.cpu_slack(), manual.cpu_slack()),
        relative(s.memory_slack(), manual.memory_slack()),
    );
}

fn print_block(name: &str, d: &DatasetScores) {
    row(name, "manual", &d.manual, &d.manual);
    row(name, "vpa", &d.vpa, &d.manual);
    row(name, "snug", &d.snug, &d.manual);
}

fn main() {
    let dir = traces_dir();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    let datasets = match load_datasets(&dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot load traces from {}: {e}", dir.display());
            std::process::exit(1);
        }
    };
    let loaded = started.elapsed();
    println!("traces: {} ({threads} threads)\n", dir.display());
    println!(
        "| dataset | sizing | series | CPU slack | memory slack | throttled | starved | OOM kills | series with OOM | slack ÷ manual (CPU / memory) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut overall = DatasetScores::default();
    for d in &datasets {
        let scores = score_dataset(&d.traces, threads);
        print_block(&d.name, &scores);
        overall.add(&scores);
    }
    print_block("overall", &overall);
    let samples: usize = datasets
        .iter()
        .flat_map(|d| &d.traces)
        .map(|t| t.points.len())
        .sum();
    println!(
        "\n{samples} samples; loading {:.1} s, replaying 3 sizings {:.1} s",
        loaded.as_secs_f64(),
        (started.elapsed() - loaded).as_secs_f64()
    );
}
