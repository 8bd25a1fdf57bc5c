//! The sample app the cluster tests and the demo run in their pods.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = snug_e2e::sample_app::Config::parse();
    snug_e2e::sample_app::run(config).await?;
    Ok(())
}
