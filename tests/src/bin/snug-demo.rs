//! `snug-demo`: Snug's whole loop on this machine, no cluster needed.
//! `cargo run --release --bin snug-demo`

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use snug_e2e::demo::{DemoConfig, run};
use tracing_subscriber::EnvFilter;

/// Runs a sample app behind snug-sidecar, loads it from two peers, lets snug-profiler learn its
/// profile, then asks snug-webhook (TLS) to admit a new pod of the same workload in apply mode,
/// and prints what each step saw.
#[derive(Debug, Parser)]
#[command(name = "snug-demo", version)]
struct Cli {
    /// How long the load runs, in seconds (the profile needs at least a few).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=600))]
    duration: u64,
    /// Where the profiles, certificates and logs go.
    #[arg(long, default_value = ".snug-demo")]
    out: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sample app (the demo starts it as its own process).
    #[command(hide = true)]
    App(snug_e2e::sample_app::Config),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("snug-demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::App(config)) = cli.command {
        return match runtime.block_on(snug_e2e::sample_app::run(config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sample app: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("snug-demo: cannot find its own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::create_dir_all(cli.out.join("logs")) {
        eprintln!("snug-demo: cannot create {}: {e}", cli.out.display());
        return ExitCode::FAILURE;
    }
    let log_path = cli.out.join("logs").join("snug.log");
    match std::fs::File::create(&log_path) {
        Ok(file) => tracing_subscriber::fmt()
            .with_env_filter(
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
            )
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init(),
        Err(e) => eprintln!("snug-demo: no log file {}: {e}", log_path.display()),
    }
    let config = DemoConfig {
        duration: Duration::from_secs(cli.duration),
        out: cli.out,
        app_exe: exe,
    };
    let outcome = runtime.block_on(run(&config));
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(_) => ExitCode::SUCCESS,
        Err(failed) => {
            eprintln!(
                "snug-demo: {failed} (component logs in {})",
                log_path.display()
            );
            ExitCode::FAILURE
        }
    }
}
