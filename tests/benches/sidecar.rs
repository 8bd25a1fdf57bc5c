//! Benchmark of snug-sidecar (run by hand: `cargo bench --workspace --bench sidecar`).
//!
//! Builds the release sidecar, then runs `tests/bench/sidecar.sh`, which measures, in one run and
//! against the same nginx upstream: direct, through snug-sidecar, through nginx as a reverse
//! proxy, and through haproxy `mode tcp` (the floor for a user-space hop). It prints the latency
//! added at a fixed rate, maximum throughput, HTTP/2 figures and RSS. Needs `nginx`, `haproxy`,
//! `wrk` and `nghttp2-client` (`apt-get install -y nginx haproxy wrk nghttp2-client`) and `oha`
//! (`cargo install oha`), which holds the fixed rate.

use std::{path::Path, process::Command};

fn main() {
    // cargo passes `--bench`; there is nothing to filter.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    let built = Command::new(env!("CARGO"))
        // `--workspace` keeps the features (and so the build) the bench profile already made.
        .args(["build", "--release", "--workspace", "--bin", "snug-sidecar"])
        .current_dir(root)
        .status();
    if !matches!(built, Ok(status) if status.success()) {
        eprintln!("building the release sidecar failed: {built:?}");
        std::process::exit(1);
    }
    let status = Command::new("bash")
        .arg(root.join("tests/bench/sidecar.sh"))
        .arg(root.join("target/release/snug-sidecar"))
        .current_dir(root)
        .status();
    match status {
        Ok(status) if status.success() => {}
        other => {
            eprintln!("benchmark failed: {other:?}");
            std::process::exit(1);
        }
    }
}
