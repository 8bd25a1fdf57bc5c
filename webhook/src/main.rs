//! `snug-webhook`: parse flags, start logging, run.

use anyhow::Context;
use clap::Parser;
use snug_webhook::{
    Cli,
    config::{Command, LogFormat},
};

/// An admission allocates and frees a few dozen small blocks; mimalloc serves them from
/// per-thread free lists, faster than glibc's malloc. Built without transparent huge pages,
/// which made its heap resident in 2 MiB pieces (see `docs/webhook.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Certs(args)) => {
            snug_webhook::telemetry::init(LogFormat::Text);
            snug_webhook::certs::run(args)
                .await
                .context("snug-webhook certs")
        }
        None => {
            snug_webhook::telemetry::init(cli.serve.log_format);
            let config = cli.serve.into_config()?;
            snug_webhook::run(config).await.context("snug-webhook")
        }
    }
}
