//! One active profiler: leader election on a `coordination.k8s.io/v1` Lease, the way
//! client-go's leaderelection does it. The holder renews `renewTime` every few seconds; a standby
//! takes the Lease over once `renewTime + leaseDurationSeconds` has passed. Every write carries
//! the `resourceVersion` it read, so of two replicas racing for the Lease the API server lets
//! exactly one win (the other gets 409 Conflict and stays standby).

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{Api, Client, api::PostParams};
use tokio::sync::watch;

use crate::{Result, metrics::Metrics};

/// Lease settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseConfig {
    /// Name of the Lease.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a holder's claim lasts without renewal.
    pub duration: Duration,
    /// How often the holder renews (and a standby checks).
    pub retry: Duration,
}

impl LeaseConfig {
    /// The usual timings: 15 s lease, renewed every 5 s.
    pub fn new(name: &str, namespace: &str, identity: &str) -> Self {
        LeaseConfig {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(5),
        }
    }
}

/// This replica's role after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Holds the Lease.
    Leader,
    /// Someone else holds it (named when known).
    Standby(Option<String>),
}

/// Acquires and renews the Lease.
#[derive(Debug, Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

impl LeaderElector {
    /// An elector for `config` talking through `client`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// One round at `now`: create the Lease, renew it, take it over if expired, or stand by.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<Role> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.claim(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Role::Leader),
                Err(e) if is_conflict(&e) => Ok(Role::Standby(None)),
                Err(e) => Err(e.into()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.config.identity.as_str());
        if !ours && holder.is_some() && !expired(&spec, now) {
            return Ok(Role::Standby(holder));
        }
        let mut claim = self.claim(Some(&spec), now);
        if ours {
            // A renewal keeps the acquire time and the transition count.
            claim.acquire_time = spec.acquire_time.clone().or(claim.acquire_time);
            claim.lease_transitions = spec.lease_transitions;
        }
        lease.spec = Some(claim);
        // `lease` carries the resourceVersion read above: a concurrent writer makes this 409.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Role::Leader),
            Err(e) if is_conflict(&e) => Ok(Role::Standby(holder)),
            Err(e) => Err(e.into()),
        }
    }

    /// The spec of a Lease held by this replica from `now`.
    fn claim(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.duration.as_secs().max(1) as i32),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(
                previous.and_then(|p| p.lease_transitions).unwrap_or(0)
                    + i32::from(previous.is_some()),
            ),
            ..Default::default()
        }
    }

    /// Gives the Lease up (on shutdown) so a standby takes over without waiting for expiry.
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }

    /// Runs rounds every `retry` until the task is dropped, publishing whether this replica
    /// leads. Any error makes it step down: two leaders are worse than a few seconds of none.
    pub async fn run(self, leading: watch::Sender<bool>, metrics: Metrics) {
        let mut ticker = tokio::time::interval(self.config.retry);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let lead = match self.try_acquire_or_renew(Timestamp::now()).await {
                Ok(Role::Leader) => true,
                Ok(Role::Standby(holder)) => {
                    tracing::debug!(?holder, "standing by");
                    false
                }
                Err(error) => {
                    tracing::warn!(%error, "lease round failed; not leading until it succeeds");
                    false
                }
            };
            metrics.leader.set(i64::from(lead));
            leading.send_if_modified(|was| {
                if *was != lead {
                    tracing::info!(leading = lead, identity = %self.config.identity, "leadership changed");
                }
                std::mem::replace(was, lead) != lead
            });
        }
    }
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(MicroTime(renewed)) = spec.renew_time else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    renewed
        .checked_add(duration)
        .map_or(true, |until| until < now)
}

#[cfg(test)]
mod tests;
