//! The write phase of a cycle: statuses worth writing go to the store, concurrently; a
//! workload deleted meanwhile is dropped; idle workloads are forgotten.

use futures::StreamExt;
use snug_api::profile::WorkloadProfileStatus;

use super::{FORGET_AFTER_SECONDS, Profiled, Profiler, STORE_CONCURRENCY};
use crate::{
    Error,
    model::Written,
    once::warn_once,
    pods::{PodSource, WorkloadKey},
    store::ProfileStore,
    usage::UsageSource,
};

impl<P: PodSource, U: UsageSource, S: ProfileStore> Profiler<P, U, S> {
    /// Writes the profiles that changed meaningfully (or are due a refresh); updates gauges.
    pub(super) async fn write(&mut self, profiled: &Profiled, at: f64) -> usize {
        let mut due: Vec<(WorkloadKey, WorkloadProfileStatus, Written)> = Vec::new();
        for key in profiled.keys() {
            let Some(model) = self.models.get_mut(key) else {
                continue;
            };
            let written = model.assess(at, &self.ctx.settings);
            // Gauges are set when a recommendation changed, not every cycle.
            for (container, recommendation) in &written.recommendations {
                if model.gauged.get(container) != Some(recommendation) {
                    self.ctx
                        .metrics
                        .set_recommendation(key, container, recommendation.as_ref());
                    model.gauged.insert(container.clone(), *recommendation);
                }
            }
            if !model.worth_writing(&written, &self.ctx.settings) {
                continue;
            }
            let mut status = model.status_of(&written, &self.ctx.settings);
            // Only statuses that get written carry the checkpoint: encoding (JSON + gzip) is
            // the dearest part of a status, and most cycles write few.
            match model.checkpoint().and_then(|c| c.encode()) {
                Ok(checkpoint) => {
                    status.checkpoint = Some(checkpoint);
                    due.push((key.clone(), status, written));
                }
                Err(error) => tracing::warn!(workload = %key, %error, "cannot checkpoint"),
            }
        }
        let ctx = self.ctx.clone();
        let results: Vec<_> = futures::stream::iter(due)
            .map(|(key, status, written)| {
                let ctx = ctx.clone();
                async move {
                    let result = ctx.store.save(&key, &status).await;
                    (key, written, result)
                }
            })
            .buffer_unordered(STORE_CONCURRENCY)
            .collect()
            .await;
        let mut count = 0;
        for (key, written, result) in results {
            count += self.saved(key, written, result) as usize;
        }
        count
    }

    fn saved(&mut self, key: WorkloadKey, written: Written, result: crate::Result<()>) -> bool {
        match result {
            Ok(()) => {
                self.ctx.metrics.write("written");
                self.warned.forget(&format!("write/{key}"));
                if let Some(model) = self.models.get_mut(&key) {
                    model.written = Some(written);
                }
                true
            }
            Err(Error::WorkloadGone(_)) => {
                self.ctx.metrics.write("workload_gone");
                self.ctx.metrics.skip("workload_gone");
                warn_once!(self.warned, format!("gone/{key}"), workload = %key,
                    "workload deleted; its profile is dropped");
                self.drop_model(&key);
                false
            }
            Err(error) => {
                self.ctx.metrics.write("error");
                warn_once!(self.warned, format!("write/{key}"), workload = %key, %error,
                    "profile write failed; will retry");
                false
            }
        }
    }

    pub(super) fn forget_idle(&mut self, profiled: &Profiled, at: f64) {
        for key in profiled.keys() {
            self.last_seen.insert(key.clone(), at);
        }
        let idle: Vec<WorkloadKey> = self
            .last_seen
            .iter()
            .filter(|(_, seen)| at - **seen > FORGET_AFTER_SECONDS)
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            self.drop_model(&key);
        }
    }

    fn drop_model(&mut self, key: &WorkloadKey) {
        self.last_seen.remove(key);
        if let Some(model) = self.models.remove(key) {
            self.ctx
                .metrics
                .forget_workload(key, &model.container_names());
        }
    }
}
