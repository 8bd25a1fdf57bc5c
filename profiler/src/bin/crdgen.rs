//! Writes Snug's CustomResourceDefinitions as YAML into `manifests/crds/` (or the directory
//! given as the first argument). `cargo run --bin crdgen` after changing a type in `snug-api`;
//! a test fails while the committed YAML differs from what this prints.

use std::path::PathBuf;

use anyhow::Context;
use snug_profiler::crd::{CRD_FILE, crd_yaml};

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/crds"))
        });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(CRD_FILE);
    std::fs::write(&path, crd_yaml()?).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
