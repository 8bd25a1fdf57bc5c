//! The VPA baseline (to be written).
use crate::{CurrentResources, Recommendation, Recommender, Result, Usage};

/// Reference implementation of the published VPA recommender.
#[derive(Debug, Default)]
pub struct VpaRecommender {
    observed: u64,
}

impl VpaRecommender {
    /// Resumes from a checkpoint.
    pub fn restore(_checkpoint: &str) -> Result<Self> {
        Ok(Self::default())
    }
}

impl Recommender for VpaRecommender {
    fn name(&self) -> &'static str {
        "vpa"
    }
    fn observe(&mut self, _usage: Usage) {
        self.observed += 1;
    }
    fn oom_killed(&mut self, _at: f64, _memory_limit: f64) {}
    fn recommend(&self, _at: f64, _current: &CurrentResources) -> Option<Recommendation> {
        None
    }
    fn checkpoint(&self) -> Result<String> {
        Ok(String::new())
    }
}
