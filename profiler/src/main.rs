//! `snug-profiler`: parse the command line, start logging, run.

use clap::Parser;
use snug_profiler::{
    Config,
    cli::{Cli, Command},
    run_cluster, run_local, telemetry,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Replay(args) => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            snug_profiler::replay::run(args, &mut out)?;
            std::io::Write::flush(&mut out)?;
        }
        command @ (Command::Run(_) | Command::Local(_)) => match command.config()? {
            Config::Cluster(config) => run_cluster(config, shutdown()).await?,
            Config::Local(config) => run_local(config, shutdown()).await?,
        },
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends before killing the pod).
async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
