//! The benchmark table, in Markdown.
use std::fmt::Write as _;

use super::DatasetScores;
use crate::score::Score;

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{:.1}%", v * 100.0))
}

fn relative(v: Option<f64>, manual: Option<f64>) -> String {
    match (v, manual) {
        (Some(v), Some(m)) if m > 0.0 => format!("{:.2}", v / m),
        _ => "n/a".into(),
    }
}

fn row(out: &mut String, dataset: &str, sizing: &str, s: &Score, manual: &Score) {
    // writing to a String cannot fail
    let _ = if s.series == 0 {
        writeln!(
            out,
            "| {dataset} | {sizing} | – | no manual sizing in these traces | | | | | | |"
        )
    } else {
        writeln!(
            out,
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
        )
    };
}

/// The table: per dataset and overall, manual sizing, VPA and Snug.
pub fn markdown(datasets: &[(String, DatasetScores)]) -> String {
    let mut out = String::from(
        "| dataset | sizing | series | CPU slack | memory slack | throttled | starved | OOM kills | series with OOM | slack ÷ manual (CPU / memory) |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut overall = DatasetScores::default();
    for (name, d) in datasets {
        overall.add(d);
        block(&mut out, name, d);
    }
    if datasets.len() > 1 {
        block(&mut out, "overall", &overall);
    }
    out
}

fn block(out: &mut String, name: &str, d: &DatasetScores) {
    row(out, name, "manual", &d.manual, &d.manual);
    row(out, name, "vpa", &d.vpa, &d.manual);
    row(out, name, "snug", &d.snug, &d.manual);
}
