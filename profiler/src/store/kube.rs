//! The in-cluster store: each WorkloadProfile is created by server-side apply with an
//! ownerReference to its workload (so it goes when the workload goes), then its status is
//! server-side applied on every write, both with field manager `snug-profiler`.

use std::{collections::HashSet, sync::Mutex};

use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
};
use serde_json::json;
use snug_api::{WorkloadProfile, WorkloadProfileStatus, WorkloadRef, keys::PROFILER_FIELD_MANAGER};

use super::ProfileStore;
use crate::{Error, Result, pods::WorkloadKey};

/// Server-side apply through the API server.
pub struct KubeStore {
    client: Client,
    /// Profiles created (with their ownerReference) by this process; the rest get created on
    /// their first write.
    created: Mutex<HashSet<WorkloadKey>>,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore").finish_non_exhaustive()
    }
}

impl KubeStore {
    /// A store writing through `client`.
    pub fn new(client: Client) -> Self {
        KubeStore {
            client,
            created: Mutex::new(HashSet::new()),
        }
    }

    fn profiles(&self, namespace: &str) -> Api<WorkloadProfile> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn created(&self) -> std::sync::MutexGuard<'_, HashSet<WorkloadKey>> {
        self.created.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The workload's UID, for the ownerReference; `WorkloadGone` when it was deleted.
    async fn workload_uid(&self, key: &WorkloadKey) -> Result<String> {
        let resource = api_resource(&key.workload);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &key.namespace, &resource);
        let workload = api
            .get_opt(&key.workload.name)
            .await?
            .ok_or_else(|| Error::WorkloadGone(key.to_string()))?;
        workload
            .metadata
            .uid
            .ok_or_else(|| Error::WorkloadGone(format!("{key} (no uid)")))
    }

    async fn create(&self, key: &WorkloadKey) -> Result<()> {
        let uid = self.workload_uid(key).await?;
        let name = key.workload.profile_name();
        let body = json!({
            "apiVersion": WorkloadProfile::api_version(&()),
            "kind": WorkloadProfile::kind(&()),
            "metadata": {
                "name": name,
                "namespace": key.namespace,
                "ownerReferences": [{
                    "apiVersion": key.workload.api_version,
                    "kind": key.workload.kind,
                    "name": key.workload.name,
                    "uid": uid,
                }],
            },
            "spec": {"targetRef": key.workload},
        });
        let params = PatchParams::apply(PROFILER_FIELD_MANAGER).force();
        self.profiles(&key.namespace)
            .patch(&name, &params, &Patch::Apply(body))
            .await?;
        self.created().insert(key.clone());
        Ok(())
    }

    async fn apply_status(&self, key: &WorkloadKey, status: &WorkloadProfileStatus) -> Result<()> {
        let name = key.workload.profile_name();
        let body = json!({
            "apiVersion": WorkloadProfile::api_version(&()),
            "kind": WorkloadProfile::kind(&()),
            "metadata": {"name": name, "namespace": key.namespace},
            "status": status,
        });
        let params = PatchParams::apply(PROFILER_FIELD_MANAGER).force();
        self.profiles(&key.namespace)
            .patch_status(&name, &params, &Patch::Apply(body))
            .await?;
        Ok(())
    }
}

/// The API resource of a workload kind. Snug profiles the built-in controllers and Argo
/// Rollouts; any other kind is assumed to follow the lower-case plural convention.
pub fn api_resource(workload: &WorkloadRef) -> ApiResource {
    let (group, version) = match workload.api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", workload.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &workload.kind);
    let plural = match workload.kind.as_str() {
        "Deployment" => "deployments".to_owned(),
        "StatefulSet" => "statefulsets".to_owned(),
        "DaemonSet" => "daemonsets".to_owned(),
        "ReplicaSet" => "replicasets".to_owned(),
        "Job" => "jobs".to_owned(),
        "CronJob" => "cronjobs".to_owned(),
        "Rollout" => "rollouts".to_owned(),
        "Pod" => "pods".to_owned(),
        other => format!("{}s", other.to_ascii_lowercase()),
    };
    ApiResource::from_gvk_with_plural(&gvk, &plural)
}

fn is_not_found(error: &Error) -> bool {
    matches!(error, Error::Kube(kube::Error::Api(status)) if status.code == 404)
}

impl ProfileStore for KubeStore {
    async fn load(&self, key: &WorkloadKey) -> Result<Option<WorkloadProfile>> {
        let profile = self
            .profiles(&key.namespace)
            .get_opt(&key.workload.profile_name())
            .await?;
        if profile.is_some() {
            // Created before (by us, earlier): only its status needs writing.
            self.created().insert(key.clone());
        }
        Ok(profile)
    }

    async fn save(&self, key: &WorkloadKey, status: &WorkloadProfileStatus) -> Result<()> {
        let known = self.created().contains(key);
        if !known {
            self.create(key).await?;
        }
        match self.apply_status(key, status).await {
            // The profile was deleted since (garbage-collected with its workload, or by hand):
            // create it again, which also finds out whether the workload is gone.
            Err(error) if known && is_not_found(&error) => {
                self.created().remove(key);
                self.create(key).await?;
                self.apply_status(key, status).await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
