//! The command line: `snug-profiler run` (in a cluster), `snug-profiler local` (one machine).
//! Every flag can also be set through its `SNUG_*` environment variable.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use snug_recommender::RecommenderKind;

use crate::{
    Result,
    config::{Config, LocalConfig, RunConfig, parse_workload},
    telemetry::LogFormat,
};

/// Snug's profiler: turns sidecar metrics, container usage and OOM kills into WorkloadProfiles.
#[derive(Debug, Parser)]
#[command(name = "snug-profiler", version)]
pub struct Cli {
    /// Log line format.
    #[arg(
        long,
        env = "SNUG_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Profile the cluster: watch injected pods, scrape their sidecars, read metrics.k8s.io,
    /// server-side apply WorkloadProfiles. One replica leads (Lease); others stand by.
    Run(RunArgs),
    /// Profile one workload on this machine: sidecars by URL, usage from procfs, profiles
    /// written as YAML files (what the local demo and tests use).
    Local(LocalArgs),
    /// Replay one usage trace through a recommender and print its recommendations as CSV
    /// (`--score` adds the quality summary); no cluster, no network.
    Replay(crate::replay::ReplayArgs),
}

/// The recommender flag's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecommenderFlag {
    /// Snug's own recommender.
    Snug,
    /// The VPA baseline.
    Vpa,
}

impl From<RecommenderFlag> for RecommenderKind {
    fn from(flag: RecommenderFlag) -> Self {
        match flag {
            RecommenderFlag::Snug => RecommenderKind::Snug,
            RecommenderFlag::Vpa => RecommenderKind::Vpa,
        }
    }
}

fn duration(text: &str) -> std::result::Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

/// Flags shared by both modes.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Time between cycles.
    #[arg(long, env = "SNUG_INTERVAL", value_parser = duration, default_value = "30s")]
    pub interval: Duration,
    /// Write a profile at least this often, even when nothing changed meaningfully.
    #[arg(long, env = "SNUG_REFRESH", value_parser = duration, default_value = "5m")]
    pub refresh: Duration,
    /// Observation window at which a profile's confidence reaches 100% (it also needs 10
    /// samples per container). Shorten it for demos.
    #[arg(long, env = "SNUG_MIN_WINDOW", value_parser = duration, default_value = "24h")]
    pub min_window: Duration,
    /// Time a sidecar has to answer a scrape.
    #[arg(long, env = "SNUG_SCRAPE_TIMEOUT", value_parser = duration, default_value = "5s")]
    pub scrape_timeout: Duration,
    /// Which recommender sizes the containers.
    #[arg(long, env = "SNUG_RECOMMENDER", value_enum, default_value = "snug")]
    pub recommender: RecommenderFlag,
}

/// `run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sidecar scrapes in flight at once.
    #[arg(long, env = "SNUG_SCRAPE_CONCURRENCY", default_value_t = 64)]
    pub scrape_concurrency: usize,
    /// Time the metrics API has to list one namespace's PodMetrics.
    #[arg(long, env = "SNUG_USAGE_TIMEOUT", value_parser = duration, default_value = "10s")]
    pub usage_timeout: Duration,
    /// Name of the leader-election Lease.
    #[arg(long, env = "SNUG_LEASE_NAME", default_value = "snug-profiler")]
    pub lease_name: String,
    /// Namespace of the Lease (where Snug runs).
    #[arg(long, env = "SNUG_NAMESPACE", default_value = snug_api::keys::SNUG_NAMESPACE)]
    pub namespace: String,
    /// This replica's identity in the Lease (default: the pod name from POD_NAME, else the
    /// host name).
    #[arg(long, env = "SNUG_IDENTITY")]
    pub identity: Option<String>,
    /// Address of /metrics, /live and /ready.
    #[arg(long, env = "SNUG_HEALTH_LISTEN", default_value = "0.0.0.0:8080")]
    pub health_listen: SocketAddr,
}

/// `local` flags.
#[derive(Debug, Args)]
pub struct LocalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A sidecar admin metrics URL (http://127.0.0.1:4790/metrics); repeat for several.
    #[arg(long = "scrape", env = "SNUG_SCRAPE", value_delimiter = ',')]
    pub scrape: Vec<String>,
    /// A process of the app, for CPU and memory from procfs; repeat for several (summed).
    #[arg(long = "pid", env = "SNUG_PID", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Where procfs is mounted.
    #[arg(long, env = "SNUG_PROCFS", default_value = "/proc")]
    pub procfs: PathBuf,
    /// Where the cgroup filesystem is mounted (CPU throttling and quota of the processes).
    #[arg(long, env = "SNUG_CGROUPFS", default_value = "/sys/fs/cgroup")]
    pub cgroupfs: PathBuf,
    /// The workload profiled, as Kind/name.
    #[arg(long, env = "SNUG_WORKLOAD")]
    pub workload: String,
    /// Its namespace.
    #[arg(long, env = "SNUG_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// The container the usage belongs to.
    #[arg(long, env = "SNUG_CONTAINER", default_value = "app")]
    pub container: String,
    /// Directory the profiles are written to (<dir>/<namespace>/<name>.yaml).
    #[arg(long, env = "SNUG_PROFILES_DIR")]
    pub profiles_dir: PathBuf,
    /// Address of /metrics, /live and /ready, if wanted.
    #[arg(long, env = "SNUG_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Stop after this many cycles (default: run until interrupted).
    #[arg(long, env = "SNUG_CYCLES")]
    pub cycles: Option<u64>,
}

impl Command {
    /// The configuration these flags describe.
    pub fn config(self) -> Result<Config> {
        Ok(match self {
            Command::Replay(_) => {
                return Err(crate::Error::Config(
                    "replay runs on its own and has no profiler configuration".into(),
                ));
            }
            Command::Run(args) => Config::Cluster(RunConfig {
                interval: args.model.interval,
                refresh: args.model.refresh,
                scrape_concurrency: args.scrape_concurrency,
                scrape_timeout: args.model.scrape_timeout,
                usage_timeout: args.usage_timeout,
                recommender: args.model.recommender.into(),
                min_window: args.model.min_window,
                lease_name: args.lease_name,
                namespace: args.namespace,
                identity: args.identity.unwrap_or_else(default_identity),
                health_listen: args.health_listen,
            }),
            Command::Local(args) => Config::Local(LocalConfig {
                workload: parse_workload(&args.workload)?,
                scrape: args.scrape,
                pids: args.pids,
                procfs: args.procfs,
                cgroupfs: args.cgroupfs,
                namespace: args.namespace,
                container: args.container,
                profiles_dir: args.profiles_dir,
                interval: args.model.interval,
                refresh: args.model.refresh,
                min_window: args.model.min_window,
                scrape_timeout: args.model.scrape_timeout,
                recommender: args.model.recommender.into(),
                health_listen: args.health_listen,
                cycles: args.cycles,
            }),
        })
    }
}

fn default_identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("snug-profiler-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn replay_is_a_subcommand_without_a_profiler_config() {
        let cli = Cli::try_parse_from([
            "snug-profiler",
            "replay",
            "--input",
            "trace.csv.gz",
            "--format",
            "bitbrains",
            "--recommender",
            "vpa",
            "--score",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Replay(_)));
        assert!(cli.command.config().is_err());
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn local_flags_become_a_local_config() {
        let cli = Cli::try_parse_from([
            "snug-profiler",
            "local",
            "--scrape",
            "http://127.0.0.1:4790/metrics",
            "--pid",
            "42",
            "--pid",
            "43",
            "--workload",
            "Deployment/demo",
            "--profiles-dir",
            "/tmp/p",
            "--interval",
            "1s",
            "--min-window",
            "20s",
            "--recommender",
            "vpa",
            "--cycles",
            "3",
        ])
        .unwrap();
        let Config::Local(config) = cli.command.config().unwrap() else {
            panic!("not local")
        };
        assert_eq!(config.pids, [42, 43]);
        assert_eq!(config.workload.kind, "Deployment");
        assert_eq!(config.interval, Duration::from_secs(1));
        assert_eq!(config.min_window, Duration::from_secs(20));
        assert_eq!(config.recommender, RecommenderKind::Vpa);
        assert_eq!(config.cycles, Some(3));
        assert_eq!(config.container, "app");
    }

    #[test]
    fn run_defaults_are_the_documented_ones() {
        let cli = Cli::try_parse_from(["snug-profiler", "run", "--identity", "p-1"]).unwrap();
        let Config::Cluster(config) = cli.command.config().unwrap() else {
            panic!("not run")
        };
        assert_eq!(config.health_listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.lease_name, "snug-profiler");
        assert_eq!(config.namespace, "snug-system");
        assert_eq!(config.interval, Duration::from_secs(30));
        assert_eq!(config.scrape_concurrency, 64);
        assert_eq!(config.identity, "p-1");
    }

    #[test]
    fn a_bad_workload_is_a_clear_error() {
        let cli = Cli::try_parse_from([
            "snug-profiler",
            "local",
            "--workload",
            "web",
            "--profiles-dir",
            "/tmp/p",
        ])
        .unwrap();
        let error = cli.command.config().unwrap_err().to_string();
        assert!(error.contains("not Kind/name"), "{error}");
    }
}
