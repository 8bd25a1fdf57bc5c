//! `snug-profiler replay`: one usage trace through a recommender, as a cluster would live it,
//! printed as CSV (one row per sample: the resources in force at that sample). With `--score`,
//! the benchmark's summary follows as `#` comment lines.
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use snug_recommender::RecommenderKind;
use snug_recommender::replay::{ReplayRow, replay};
use snug_recommender::score::Score;
use snug_recommender::trace::{self, TraceFormat};

/// Errors of the replay subcommand.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The trace could not be read.
    #[error(transparent)]
    Trace(#[from] snug_recommender::Error),
    /// The output could not be written.
    #[error("cannot write the replay: {0}")]
    Output(#[from] std::io::Error),
    /// A flag value that makes no sense.
    #[error("invalid argument: {0}")]
    Argument(String),
}

/// Arguments of `snug-profiler replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Trace file to replay (gzipped or not).
    #[arg(long, env = "SNUG_REPLAY_INPUT")]
    pub input: PathBuf,
    /// Trace format: csv (`timestamp_s,cpu_cores,memory_bytes`), bitbrains, or azure.
    #[arg(long, env = "SNUG_REPLAY_FORMAT", default_value = "csv", value_parser = parse_format)]
    pub format: TraceFormat,
    /// Column (VM) of an azure wide CSV.
    #[arg(long, env = "SNUG_REPLAY_COLUMN")]
    pub column: Option<String>,
    /// Cores that 100% CPU stands for in an azure trace (it gives percent of capacity).
    #[arg(long, env = "SNUG_REPLAY_CAPACITY_CORES", default_value_t = 1.0)]
    pub capacity_cores: f64,
    /// Recommender: snug, or vpa (the baseline).
    #[arg(long, env = "SNUG_REPLAY_RECOMMENDER", default_value = "snug", value_parser = parse_kind)]
    pub recommender: RecommenderKind,
    /// How often the recommendation is refreshed (held in between), e.g. 1h, 30m.
    #[arg(long, env = "SNUG_REPLAY_REFRESH", default_value = "1h", value_parser = humantime::parse_duration)]
    pub refresh: Duration,
    /// Append the benchmark's score summary (from day 2) as `#` lines.
    #[arg(long, env = "SNUG_REPLAY_SCORE")]
    pub score: bool,
}

fn parse_format(s: &str) -> Result<TraceFormat, String> {
    s.parse()
}

fn parse_kind(s: &str) -> Result<RecommenderKind, String> {
    s.parse()
        .map_err(|e: snug_recommender::Error| e.to_string())
}

/// The CSV header of the replay output.
pub const HEADER: &str =
    "timestamp_s,cpu_request_cores,cpu_limit_cores,memory_request_bytes,memory_limit_bytes";

/// Runs the replay, writing CSV to `out`.
pub fn run(args: ReplayArgs, out: &mut impl Write) -> Result<(), ReplayError> {
    if args.refresh.is_zero() {
        return Err(ReplayError::Argument(
            "--refresh must be longer than zero".into(),
        ));
    }
    if !(args.capacity_cores.is_finite() && args.capacity_cores > 0.0) {
        return Err(ReplayError::Argument(
            "--capacity-cores must be a positive number".into(),
        ));
    }
    let trace = trace::read(
        &args.input,
        args.format,
        args.column.as_deref(),
        args.capacity_cores,
    )?;
    let mut recommender = args.recommender.build();
    writeln!(out, "{HEADER}")?;
    let mut rows = Vec::with_capacity(trace.points.len());
    let mut result = Ok(());
    replay(
        &trace,
        recommender.as_mut(),
        args.refresh.as_secs_f64(),
        |row| {
            if result.is_ok() {
                result = write_row(out, &row);
            }
            rows.push(row);
        },
    );
    result?;
    if args.score {
        write!(out, "{}", Score::of(&rows).summary())?;
    }
    out.flush()?;
    Ok(())
}

fn write_row(out: &mut impl Write, row: &ReplayRow) -> std::io::Result<()> {
    let at = row.point.usage.at;
    match row.sizing {
        None => writeln!(out, "{at},,,,"),
        Some(s) => {
            let cpu_limit = s.cpu_limit.map_or(String::new(), |l| format!("{l:.3}"));
            let memory_limit = s.memory_limit.map_or(String::new(), |l| format!("{l:.0}"));
            writeln!(
                out,
                "{at},{:.3},{cpu_limit},{:.0},{memory_limit}",
                s.cpu_request, s.memory_request
            )
        }
    }
}

#[cfg(test)]
mod tests;
