//! Checkpoint encoding shared by the recommenders. A state is JSON ([`encode`]: exact, JSON
//! floats round-trip); on its own it is stored compressed ([`compress`]: gzip, base64 — compact
//! enough for a status field). A caller that keeps many states in one record (the profiler's
//! per-workload checkpoint) takes the plain JSON and compresses the record once. [`decode`]
//! reads either form, so checkpoints written compressed by earlier versions still load.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{Read, Write};

use crate::{Error, Result};

/// Largest decoded checkpoint accepted: a guard against a hostile or corrupt one.
const MAX_DECODED_BYTES: u64 = 1 << 20;

/// Encodes a state as JSON.
pub fn encode<T: Serialize>(state: &T) -> Result<String> {
    serde_json::to_string(state).map_err(|e| Error::Checkpoint(e.to_string()))
}

/// The compact standalone form of a JSON state: base64 of its gzip.
pub fn compress(json: &str) -> Result<String> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(json.as_bytes())
        .map_err(|e| Error::Checkpoint(e.to_string()))?;
    let bytes = gz.finish().map_err(|e| Error::Checkpoint(e.to_string()))?;
    Ok(STANDARD.encode(bytes))
}

/// Decodes what [`encode`] wrote, as is or through [`compress`]. (A JSON state is an object and
/// starts with `{`, a character base64 never uses.)
pub fn decode<T: DeserializeOwned>(checkpoint: &str) -> Result<T> {
    let checkpoint = checkpoint.trim();
    if checkpoint.starts_with('{') {
        return serde_json::from_str(checkpoint)
            .map_err(|e| Error::Checkpoint(format!("bad JSON: {e}")));
    }
    let bytes = STANDARD
        .decode(checkpoint)
        .map_err(|e| Error::Checkpoint(format!("not base64: {e}")))?;
    let mut json = Vec::new();
    GzDecoder::new(bytes.as_slice())
        .take(MAX_DECODED_BYTES)
        .read_to_end(&mut json)
        .map_err(|e| Error::Checkpoint(format!("not gzip: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| Error::Checkpoint(format!("bad JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct State {
        v: u32,
        x: Vec<f64>,
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(decode::<State>("not a checkpoint!").is_err());
        assert!(decode::<State>(&STANDARD.encode(b"plain")).is_err());
        assert!(decode::<State>("{\"v\":1,").is_err());
        let state = State {
            v: 1,
            x: vec![1.5, 0.1],
        };
        let json = encode(&state).unwrap();
        assert_eq!(decode::<State>(&json).unwrap(), state);
        let compact = compress(&json).unwrap();
        assert_eq!(decode::<State>(&compact).unwrap(), state);
        assert!(decode::<String>(&compact).is_err());
    }
}
