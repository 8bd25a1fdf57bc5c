//! Snug's recommender (to be written).
use crate::{CurrentResources, Recommendation, Recommender, Result, Usage};

/// Snug's own recommender.
#[derive(Debug, Default)]
pub struct SnugRecommender {
    observed: u64,
}

impl SnugRecommender {
    /// Resumes from a checkpoint.
    pub fn restore(_checkpoint: &str) -> Result<Self> {
        Ok(Self::default())
    }
}

impl Recommender for SnugRecommender {
    fn name(&self) -> &'static str {
        "snug"
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
