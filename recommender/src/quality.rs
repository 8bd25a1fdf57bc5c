//! The quality benchmark: every series of a trace directory through manual sizing, VPA and Snug,
//! scored with the same rules. The benchmark harness (`tests/benches/recommender.rs`) prints it;
//! a test asserts Snug beats VPA on the committed series.
mod table;

use std::path::{Path, PathBuf};

use crate::replay::{manual_rows, replay_rows};
use crate::score::Score;
use crate::trace::{self, Trace, TraceFormat};
use crate::{RecommenderKind, Result};

pub use table::markdown;

/// Refresh interval of the benchmark: pods recreated hourly.
pub const REFRESH_S: f64 = 3600.0;

/// A dataset: the series of one sub-directory of the traces directory.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Directory name (e.g. `bitbrains_rnd_2013-08`).
    pub name: String,
    /// Its series.
    pub traces: Vec<Trace>,
}

/// How one dataset scored under each sizing.
#[derive(Debug, Clone, Copy, Default)]
pub struct DatasetScores {
    /// What a person provisioned (when the traces say).
    pub manual: Score,
    /// The VPA baseline.
    pub vpa: Score,
    /// Snug.
    pub snug: Score,
}

/// The format of a dataset directory, from its name (`bitbrains*`, `azure*`, else generic CSV).
pub fn format_of(dir_name: &str) -> TraceFormat {
    if dir_name.contains("bitbrains") {
        TraceFormat::Bitbrains
    } else if dir_name.contains("azure") {
        TraceFormat::Azure
    } else {
        TraceFormat::Csv
    }
}

/// Loads every dataset (sub-directory) under `root`, files in name order.
pub fn load_datasets(root: &Path) -> Result<Vec<Dataset>> {
    let mut datasets = Vec::new();
    for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let format = format_of(&name);
        let mut traces = Vec::new();
        for file in sorted_entries(&dir)? {
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !(file_name.ends_with(".csv") || file_name.ends_with(".csv.gz")) {
                continue;
            }
            match format {
                TraceFormat::Azure => traces.extend(trace::read_azure_all(&file, 1.0)?),
                f => traces.push(trace::read(&file, f, None, 1.0)?),
            }
        }
        datasets.push(Dataset { name, traces });
    }
    Ok(datasets)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let err = |e: std::io::Error| crate::Error::Trace {
        path: dir.display().to_string(),
        reason: e.to_string(),
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    // natural order: "2.csv.gz" before "10.csv.gz"
    paths.sort_by_key(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
        (digits.parse::<u64>().unwrap_or(u64::MAX), name)
    });
    Ok(paths)
}

/// Scores one series under manual sizing, VPA and Snug.
pub fn score_trace(trace: &Trace) -> DatasetScores {
    let run = |kind: RecommenderKind| {
        let mut recommender = kind.build();
        Score::of(&replay_rows(trace, recommender.as_mut(), REFRESH_S))
    };
    let mut manual = Score::of(&manual_rows(trace));
    if manual.cpu_samples == 0 && manual.memory_samples == 0 {
        manual = Score {
            series: 0,
            ..Score::default()
        };
    }
    DatasetScores {
        manual,
        vpa: run(RecommenderKind::Vpa),
        snug: run(RecommenderKind::Snug),
    }
}

/// Scores a dataset on `threads` threads (std threads over interleaved series).
pub fn score_dataset(traces: &[Trace], threads: usize) -> DatasetScores {
    let threads = threads.max(1);
    let partials: Vec<DatasetScores> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut acc = DatasetScores::default();
                    for trace in traces.iter().skip(t).step_by(threads) {
                        acc.add(&score_trace(trace));
                    }
                    acc
                })
            })
            .collect();
        // a panicking worker is a bug in a recommender: surface it rather than hide it
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut total = DatasetScores::default();
    for p in &partials {
        total.add(p);
    }
    total
}

impl DatasetScores {
    /// Folds another dataset's scores in.
    pub fn add(&mut self, o: &DatasetScores) {
        self.manual.add(&o.manual);
        self.vpa.add(&o.vpa);
        self.snug.add(&o.snug);
    }
}

/// Loads every dataset under `root` and scores it on `threads` threads: (name, scores) each.
pub fn run(root: &Path, threads: usize) -> Result<Vec<(String, DatasetScores)>> {
    Ok(load_datasets(root)?
        .into_iter()
        .map(|d| {
            let scores = score_dataset(&d.traces, threads);
            (d.name, scores)
        })
        .collect())
}

/// The traces directory: `SNUG_TRACES_DIR`, else the shared traces next to the workspace
/// (`<workspace>/../shared/traces`, or two levels up from a worktree), else the committed sample.
pub fn traces_dir(workspace: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("SNUG_TRACES_DIR") {
        return PathBuf::from(dir);
    }
    ["../shared/traces", "../../shared/traces"]
        .iter()
        .map(|c| workspace.join(c))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| workspace.join("tests/data/traces"))
}
