//! The quality benchmark without building the whole workspace in release: the same code as
//! `cargo bench --bench recommender`, prints the same table.
//!
//! ```text
//! cargo run --release -p snug-recommender --example quality
//! ```
use std::path::Path;
use std::time::Instant;

use snug_recommender::quality;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = quality::traces_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    let results = quality::run(&dir, threads)?;
    println!("traces: {} ({threads} threads)\n", dir.display());
    print!("{}", quality::markdown(&results));
    println!("\nreplayed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
