use std::io::Write as _;
use std::path::Path;

use clap::Parser;

use super::*;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    replay: ReplayArgs,
}

fn args(input: &Path, recommender: RecommenderKind) -> ReplayArgs {
    ReplayArgs {
        input: input.to_path_buf(),
        format: TraceFormat::Csv,
        column: None,
        capacity_cores: 1.0,
        recommender,
        refresh: Duration::from_secs(3600),
        score: false,
    }
}

fn output(args: ReplayArgs) -> String {
    let mut out = Vec::new();
    run(args, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// Three days, one sample every 5 minutes: a daily wave with memory bursts that cause kills.
fn write_trace(path: &Path, samples: usize) {
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "timestamp_s,cpu_cores,memory_bytes").unwrap();
    for i in 0..samples {
        let t = 1_700_000_000 + i * 300;
        let cpu = 0.5 + ((i as f64) / 40.0).sin().abs();
        let burst = if i % 500 > 490 { 3.0 } else { 1.0 };
        writeln!(f, "{t},{cpu:.4},{:.0}", 1e9 * burst).unwrap();
    }
}

#[test]
fn flags_parse_with_defaults() {
    let cli = Cli::try_parse_from(["replay", "--input", "t.csv"])
        .unwrap()
        .replay;
    assert_eq!(
        (cli.format, cli.recommender, cli.refresh, cli.score),
        (
            TraceFormat::Csv,
            RecommenderKind::Snug,
            Duration::from_secs(3600),
            false
        )
    );
    let cli = Cli::try_parse_from([
        "replay",
        "--input",
        "a.csv.gz",
        "--format",
        "azure",
        "--column",
        "vm1",
        "--recommender",
        "vpa",
        "--refresh",
        "30m",
        "--score",
    ])
    .unwrap()
    .replay;
    assert_eq!(cli.format, TraceFormat::Azure);
    assert_eq!(cli.column.as_deref(), Some("vm1"));
    assert_eq!(cli.recommender, RecommenderKind::Vpa);
    assert_eq!(cli.refresh, Duration::from_secs(1800));
    assert!(cli.score);
    assert!(
        Cli::try_parse_from(["replay", "--input", "x", "--recommender", "goldilocks"]).is_err()
    );
    assert!(Cli::try_parse_from(["replay", "--input", "x", "--format", "parquet"]).is_err());
}

#[test]
fn one_row_per_sample_empty_before_the_first_recommendation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    write_trace(&path, 864);
    for kind in [RecommenderKind::Snug, RecommenderKind::Vpa] {
        let text = output(args(&path, kind));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines.len(), 1 + 864);
        assert_eq!(lines[1], "1700000000,,,,");
        let sized: Vec<Vec<&str>> = lines[2..]
            .iter()
            .map(|l| l.split(',').collect())
            .filter(|f: &Vec<&str>| !f[1].is_empty())
            .collect();
        assert!(
            sized.len() > 800,
            "{kind:?}: recommendations from the second refresh on"
        );
        for f in &sized {
            assert_eq!(f.len(), 5);
            assert!(
                f[4].parse::<f64>().unwrap() > 0.0,
                "a memory limit is always given"
            );
        }
        let cpu_limit_set = sized.iter().all(|f| !f[2].is_empty());
        // VPA keeps limit = request (ratio 1); Snug sets no CPU limit
        assert_eq!(cpu_limit_set, kind == RecommenderKind::Vpa);
    }
}

#[test]
fn replaying_the_first_half_prints_the_first_half_of_the_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (full, half) = (dir.path().join("full.csv"), dir.path().join("half.csv"));
    write_trace(&full, 864);
    write_trace(&half, 432);
    for kind in [RecommenderKind::Snug, RecommenderKind::Vpa] {
        let full_out = output(args(&full, kind));
        let half_out = output(args(&half, kind));
        let full_rows: Vec<&str> = full_out.lines().take(1 + 432).collect();
        let half_rows: Vec<&str> = half_out.lines().collect();
        assert_eq!(half_rows, full_rows, "{kind:?}");
    }
}

#[test]
fn score_summary_follows_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    write_trace(&path, 864);
    let text = output(ReplayArgs {
        score: true,
        recommender: RecommenderKind::Vpa,
        ..args(&path, RecommenderKind::Vpa)
    });
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("# score from day 2: cpu_slack="), "{last}");
    assert!(
        !last.contains("oom_kills=0 "),
        "the bursts kill under VPA: {last}"
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(&path, "0,1,2\n300,lots,2\n").unwrap();
    let mut out = Vec::new();
    let err = run(args(&path, RecommenderKind::Snug), &mut out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.csv") && err.contains("line 2"), "{err}");
    let zero = ReplayArgs {
        refresh: Duration::ZERO,
        ..args(&path, RecommenderKind::Snug)
    };
    assert!(matches!(run(zero, &mut out), Err(ReplayError::Argument(_))));
    let azure = ReplayArgs {
        format: TraceFormat::Azure,
        ..args(&path, RecommenderKind::Snug)
    };
    assert!(
        run(azure, &mut out)
            .unwrap_err()
            .to_string()
            .contains("--column")
    );
    let missing = args(&dir.path().join("nope.csv"), RecommenderKind::Vpa);
    assert!(run(missing, &mut out).is_err());
}

#[test]
fn committed_bitbrains_and_azure_samples_replay() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/traces");
    let bitbrains = ReplayArgs {
        format: TraceFormat::Bitbrains,
        score: true,
        ..args(
            &data.join("bitbrains_rnd_2013-08/5.csv.gz"),
            RecommenderKind::Snug,
        )
    };
    let text = output(bitbrains);
    assert!(text.lines().count() > 8000);
    let azure = ReplayArgs {
        format: TraceFormat::Azure,
        column: Some("1023330_p24".into()),
        ..args(
            &data.join("azure_v1_cpu_5min/periodic_avg_6vm.csv.gz"),
            RecommenderKind::Vpa,
        )
    };
    assert!(output(azure).lines().count() > 8000);
}
