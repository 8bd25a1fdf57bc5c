//! The committed CRD YAML must be what `crdgen` generates from the current types.

use snug_profiler::crd::{CRD_FILE, crd_yaml};

#[test]
fn committed_crd_matches_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/crds/");
    let committed = std::fs::read_to_string(format!("{path}{CRD_FILE}"))
        .unwrap_or_else(|e| panic!("reading {path}{CRD_FILE}: {e}; run `cargo run --bin crdgen`"));
    let generated = crd_yaml().unwrap();
    assert!(
        committed == generated,
        "manifests/crds/{CRD_FILE} is stale: run `cargo run --bin crdgen` and commit the result"
    );
}
