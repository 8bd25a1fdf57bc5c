//! The learned state of one workload, as stored in `status.checkpoint`: each container
//! recommender's own checkpoint, the usage distributions, and the OOM kills already counted.
//! JSON, gzipped once at the fastest level, base64 — a few KiB per workload, opaque to everyone
//! but the profiler. The recommenders' states are plain JSON inside it (their standalone,
//! separately gzipped form is not used here: deflating twice cost CPU and saved nothing).
//! Checkpoints written before, with a gzipped recommender state inside, still load: the
//! recommenders read both forms.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read, Write},
};

use base64::Engine;
use flate2::{Compression, read::GzDecoder, write::GzEncoder};
use serde::{Deserialize, Serialize};
use snug_recommender::RecommenderKind;

use crate::{Error, Result, distribution::Distribution};

/// Format version; a checkpoint of another version is ignored (the profile starts afresh).
pub const VERSION: u32 = 1;

/// Everything a restarted profiler needs to resume a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`VERSION`].
    pub version: u32,
    /// The recommender the container states belong to.
    pub recommender: RecommenderKind,
    /// Per container.
    pub containers: BTreeMap<String, ContainerCheckpoint>,
    /// Usage samples folded in so far.
    pub samples: u64,
    /// Unix seconds of the first sample.
    pub observed_since: Option<f64>,
    /// Unix seconds of the last sample.
    pub last_sample: Option<f64>,
    /// OOM kills already counted, as `pod-uid/container/restartCount`.
    pub oom_seen: BTreeSet<String>,
}

/// One container's learned state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerCheckpoint {
    /// The recommender's [`state_json`](snug_recommender::Recommender::state_json) (or, in a
    /// checkpoint written by an earlier version, its compressed
    /// [`checkpoint`](snug_recommender::Recommender::checkpoint): restoring reads both).
    pub recommender: String,
    /// CPU usage distribution, cores.
    pub cpu: Distribution,
    /// Memory usage distribution, bytes.
    pub memory: Distribution,
    /// OOM kills counted.
    pub oom_kills: u32,
}

impl Checkpoint {
    /// Encodes for `status.checkpoint`.
    pub fn encode(&self) -> Result<String> {
        let json = serde_json::to_vec(self).map_err(|e| Error::Checkpoint(e.to_string()))?;
        // The fastest level: a checkpoint goes with every profile write, where CPU matters
        // more than the last few hundred bytes of a few-KiB status field.
        let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
        gzip.write_all(&json)
            .and_then(|_| gzip.finish())
            .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
            .map_err(|e| Error::Checkpoint(e.to_string()))
    }

    /// Decodes what [`Checkpoint::encode`] wrote.
    pub fn decode(text: &str) -> Result<Self> {
        let err = |e: &dyn std::fmt::Display| Error::Checkpoint(e.to_string());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| err(&e))?;
        let mut json = Vec::new();
        // Bounded read: a checkpoint is KiBs; a hostile one must not inflate without limit.
        GzDecoder::new(bytes.as_slice())
            .take(16 * 1024 * 1024)
            .read_to_end(&mut json)
            .map_err(|e| err(&e))?;
        let checkpoint: Checkpoint = serde_json::from_slice(&json).map_err(|e| err(&e))?;
        if checkpoint.version != VERSION {
            return Err(Error::Checkpoint(format!(
                "version {} (this profiler reads {VERSION})",
                checkpoint.version
            )));
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let mut cpu = Distribution::default();
        cpu.add(0.25);
        let checkpoint = Checkpoint {
            version: VERSION,
            recommender: RecommenderKind::Snug,
            containers: [(
                "app".to_owned(),
                ContainerCheckpoint {
                    recommender: "{\"state\":1}".into(),
                    cpu,
                    memory: Distribution::default(),
                    oom_kills: 2,
                },
            )]
            .into(),
            samples: 42,
            observed_since: Some(1.0),
            last_sample: Some(2.0),
            oom_seen: ["uid/app/3".to_owned()].into(),
        };
        let text = checkpoint.encode().unwrap();
        assert_eq!(Checkpoint::decode(&text).unwrap(), checkpoint);
        assert!(Checkpoint::decode("not base64 !").is_err());
        assert!(
            Checkpoint::decode("aGVsbG8=").is_err(),
            "base64 of plain text"
        );
    }
}
