//! Quality benchmark of the recommenders: every series of the trace directory replayed through
//! manual sizing, the VPA baseline and Snug (hourly refresh, scored from day 2, rules in
//! `docs/recommender.md`). Prints a Markdown table. Run by hand:
//!
//! ```text
//! cargo bench --bench recommender                       # ../shared/traces when present
//! SNUG_TRACES_DIR=tests/data/traces cargo bench --bench recommender
//! ```
use std::path::Path;
use std::time::Instant;

use snug_recommender::quality;

fn main() {
    let dir = quality::traces_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    match quality::run(&dir, threads) {
        Ok(results) => {
            println!("traces: {} ({threads} threads)\n", dir.display());
            print!("{}", quality::markdown(&results));
            println!("\nreplayed in {:.1} s", started.elapsed().as_secs_f64());
        }
        Err(e) => {
            eprintln!("cannot load traces from {}: {e}", dir.display());
            std::process::exit(1);
        }
    }
}
