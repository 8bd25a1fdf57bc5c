//! Checkpoint encoding shared by the recommenders: JSON, gzip, base64 — compact enough for a
//! status field, and exact (JSON floats round-trip).
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

/// Encodes a state as base64 of gzipped JSON.
pub fn encode<T: Serialize>(state: &T) -> Result<String> {
    let json = serde_json::to_vec(state).map_err(|e| Error::Checkpoint(e.to_string()))?;
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&json)
        .map_err(|e| Error::Checkpoint(e.to_string()))?;
    let bytes = gz.finish().map_err(|e| Error::Checkpoint(e.to_string()))?;
    Ok(STANDARD.encode(bytes))
}

/// Decodes what [`encode`] wrote.
pub fn decode<T: DeserializeOwned>(checkpoint: &str) -> Result<T> {
    let bytes = STANDARD
        .decode(checkpoint.trim())
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

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(decode::<Vec<f64>>("not a checkpoint!").is_err());
        assert!(decode::<Vec<f64>>(&STANDARD.encode(b"plain")).is_err());
        let ok = encode(&vec![1.5_f64, 0.1]).unwrap();
        assert_eq!(decode::<Vec<f64>>(&ok).unwrap(), vec![1.5, 0.1]);
        assert!(decode::<String>(&ok).is_err());
    }
}
