//! `snug-webhook`: parse flags, start logging, run.

use anyhow::Context;
use clap::Parser;
use snug_webhook::{
    Cli,
    config::{Command, LogFormat},
};

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
