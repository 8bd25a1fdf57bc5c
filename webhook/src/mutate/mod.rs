//! What to do with one pod: the decision (leave it, or change it), the changed pod and the
//! JSON patch that makes the change, recorded as it is made. Pure: everything it needs is
//! passed in, so it is tested without a server or a cluster.

mod ports;
mod resources;
mod sidecar;

use std::{collections::BTreeMap, sync::Arc};

use json_patch::{Patch, jsonptr::PointerBuf};
use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use snug_api::{Mode, WorkloadProfile, WorkloadRef, keys, ports::SIDECAR_CONTAINER_NAME};

use crate::{
    config::InjectConfig,
    patch::{PodPatch, container_path, under},
    store::{NamespaceStore, ProfileStore},
};

pub use ports::unique_name;
pub use resources::{Bounds, Range, plan};

/// Sidecars of service meshes and similar proxies: never renamed, resized or intercepted.
pub const MESH_SIDECARS: [&str; 8] = [
    "istio-proxy",
    "linkerd-proxy",
    "envoy",
    "envoy-sidecar",
    "consul-dataplane",
    "consul-connect-envoy-sidecar",
    "kuma-sidecar",
    "cilium-envoy",
];

/// Everything a decision reads besides the pod.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Settings.
    pub config: &'a InjectConfig,
    /// Whether the cluster runs native sidecars (init containers with `restartPolicy: Always`).
    pub native_sidecars: bool,
    /// Profiles.
    pub profiles: &'a dyn ProfileStore,
    /// Namespace modes and limits.
    pub namespaces: &'a dyn NamespaceStore,
}

/// The outcome for one pod.
#[derive(Debug)]
pub enum Decision {
    /// Leave the pod alone.
    Leave {
        /// True when policy excluded the pod (namespace, opt-out, mode `off`), false when
        /// there was simply nothing to do (already injected).
        skipped: bool,
        /// Why, for logs.
        reason: &'static str,
        /// Things the pod's owner should know.
        warnings: Vec<String>,
    },
    /// Change the pod.
    Change(Box<Change>),
}

/// A changed pod, the patch that makes the change and what to report about it.
#[derive(Debug)]
pub struct Change {
    /// The pod as it should be created.
    pub pod: Pod,
    /// The operations that turn the pod as sent into [`Change::pod`] (empty when there was
    /// nothing to change after all).
    pub patch: Patch,
    /// How many ports the sidecar could not intercept.
    pub not_intercepted: usize,
    /// Things the pod's owner should know.
    pub warnings: Vec<String>,
}

/// Decides what to do with `pod`, created in `namespace`, changing it in place if it is to
/// change. Fails only if a value of the patch does not serialize to JSON.
pub fn decide(
    inputs: Inputs<'_>,
    namespace: &str,
    mut pod: Pod,
) -> Result<Decision, serde_json::Error> {
    let mut warnings = Vec::new();
    let leave = |skipped, reason, warnings| {
        Ok(Decision::Leave {
            skipped,
            reason,
            warnings,
        })
    };
    if inputs.config.is_excluded(namespace) {
        return leave(true, "namespace excluded", warnings);
    }
    if opted_out(&pod) {
        return leave(true, "pod opted out", warnings);
    }
    let pod_mode = annotation(&pod, keys::MODE).and_then(|m| match m.parse::<Mode>() {
        Ok(mode) => Some(mode),
        Err(e) => {
            warnings.push(format!("snug: {e}; using the namespace's mode"));
            None
        }
    });
    let mode = pod_mode
        .or_else(|| inputs.namespaces.mode(namespace))
        .unwrap_or(inputs.config.default_mode);
    if mode == Mode::Off {
        return leave(true, "mode off", warnings);
    }
    if already_handled(&pod) {
        return leave(false, "already injected", warnings);
    }
    let profile = find_profile(inputs.profiles, namespace, &pod);
    let bounds = Bounds::new(
        pod.metadata.annotations.as_ref(),
        inputs.namespaces.limit_max(namespace),
    );
    let mut patch = PodPatch::new(&pod.metadata);
    let not_intercepted = inject(inputs, &mut pod, &mut patch, profile.as_deref());
    warnings.extend(
        bounds
            .invalid
            .iter()
            .map(|b| format!("snug: ignoring bound {b}")),
    );
    if let Some(profile) = &profile {
        size(&mut pod, &mut patch, profile, mode, &bounds);
    }
    let patch = patch.finish(&pod.metadata)?;
    Ok(Decision::Change(Box::new(Change {
        pod,
        patch,
        not_intercepted,
        warnings,
    })))
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn opted_out(pod: &Pod) -> bool {
    label(pod, keys::INJECT) == Some(keys::INJECT_DISABLED)
        || annotation(pod, keys::INJECT) == Some(keys::INJECT_DISABLED)
}

/// Injected before (reinvocation, or a pod created from an injected pod's spec).
fn already_handled(pod: &Pod) -> bool {
    let has_sidecar = pod.spec.as_ref().is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| c.name == SIDECAR_CONTAINER_NAME)
    });
    has_sidecar
        || label(pod, keys::INJECTED) == Some("true")
        || annotation(pod, keys::SIDECAR_SKIPPED).is_some()
}

/// The pod's profile: for a Job named like a CronJob's (`<cronjob>-<digits>`), the CronJob's
/// profile first, as the profiler keeps one profile for all runs of a CronJob.
fn find_profile(
    profiles: &dyn ProfileStore,
    namespace: &str,
    pod: &Pod,
) -> Option<Arc<WorkloadProfile>> {
    let workload = WorkloadRef::from_pod(&pod.metadata)?;
    let cronjob = (workload.kind == "Job")
        .then(|| workload.name.rsplit_once('-'))
        .flatten()
        .filter(|(stem, digits)| {
            !stem.is_empty() && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        })
        .map(|(stem, _)| WorkloadRef::new("batch/v1", "CronJob", stem));
    cronjob
        .into_iter()
        .chain([workload])
        .find_map(|w| profiles.get(namespace, &w.profile_name()))
}

/// Why the sidecar cannot work in this pod, if it cannot.
fn sidecar_blocker(pod: &Pod, native: bool) -> Option<&'static str> {
    let spec = pod.spec.as_ref()?;
    let windows = spec.os.as_ref().is_some_and(|os| os.name == "windows")
        || spec
            .node_selector
            .as_ref()
            .and_then(|s| s.get("kubernetes.io/os"))
            .is_some_and(|os| os == "windows");
    if windows {
        return Some("windows pod: the sidecar image is Linux-only");
    }
    if spec.host_network == Some(true) {
        return Some("hostNetwork pod: the sidecar's ports would bind on the node");
    }
    let job = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Job");
    if job && !native {
        return Some(
            "job pod without native sidecars: a sidecar container would keep the job from completing",
        );
    }
    if !ports::admin_port_free(pod) {
        return Some("the app uses the sidecar's admin port 4790");
    }
    None
}

/// Indexes of the containers Snug intercepts and sizes (in `spec.containers`, which the webhook
/// only ever appends to, so they stay valid).
fn app_containers(pod: &Pod) -> Vec<usize> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter().enumerate())
        .filter(|(_, c)| {
            c.name != SIDECAR_CONTAINER_NAME && !MESH_SIDECARS.contains(&c.name.as_str())
        })
        .map(|(i, _)| i)
        .collect()
}

/// Adds the sidecar (or says why not); returns how many ports were not intercepted.
fn inject(
    inputs: Inputs<'_>,
    pod: &mut Pod,
    patch: &mut PodPatch,
    profile: Option<&WorkloadProfile>,
) -> usize {
    let mut blocker = sidecar_blocker(pod, inputs.native_sidecars);
    let mut not_intercepted = Vec::new();
    if blocker.is_none() {
        let apps = app_containers(pod);
        let takeover = ports::take_over(pod, &apps, patch);
        not_intercepted = takeover.not_intercepted;
        if takeover.taken.is_empty() {
            blocker = Some("no named TCP port to intercept");
        } else if let Some(spec) = pod.spec.as_mut() {
            let native = inputs.native_sidecars;
            let container =
                sidecar::sidecar_container(inputs.config, &takeover.taken, profile, native);
            if native {
                match &mut spec.init_containers {
                    Some(list) => {
                        let path = PointerBuf::from_tokens(["spec", "initContainers", "-"]);
                        patch.add(path, &container);
                        list.push(container);
                    }
                    None => {
                        let path = PointerBuf::from_tokens(["spec", "initContainers"]);
                        patch.add(path, &[&container]);
                        spec.init_containers = Some(vec![container]);
                    }
                }
            } else {
                patch.add(
                    PointerBuf::from_tokens(["spec", "containers", "-"]),
                    &container,
                );
                spec.containers.push(container);
            }
            patch.set_label(&mut pod.metadata, keys::INJECTED, "true".into());
        }
    }
    if let Some(reason) = blocker {
        patch.set_annotation(&mut pod.metadata, keys::SIDECAR_SKIPPED, reason.into());
    }
    if !not_intercepted.is_empty() {
        let value = not_intercepted.join(",");
        patch.set_annotation(&mut pod.metadata, keys::NOT_INTERCEPTED, value);
    }
    not_intercepted.len()
}

/// Applies (mode `apply`, confident profile) or records (otherwise) the recommendation.
fn size(
    pod: &mut Pod,
    patch: &mut PodPatch,
    profile: &WorkloadProfile,
    mode: Mode,
    bounds: &Bounds,
) {
    let apps = app_containers(pod);
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let mut planned: BTreeMap<String, ResourceRequirements> = BTreeMap::new();
    let mut originals: BTreeMap<String, ResourceRequirements> = BTreeMap::new();
    let apply = mode == Mode::Apply && profile.is_confident();
    for index in apps {
        let Some(container) = spec.containers.get_mut(index) else {
            continue;
        };
        let Some(learned) = profile.container(&container.name) else {
            continue;
        };
        let Some(resources) = plan(container, &learned.recommendation, bounds) else {
            continue;
        };
        if apply {
            patch.add(
                under(&container_path("containers", index), ["resources"]),
                &resources,
            );
            let original = container.resources.replace(resources.clone());
            originals.insert(container.name.clone(), original.unwrap_or_default());
        }
        planned.insert(container.name.clone(), resources);
    }
    let profile_ref = format!(
        "{}/{}@{}",
        profile.metadata.namespace.as_deref().unwrap_or_default(),
        profile.metadata.name.as_deref().unwrap_or_default(),
        profile
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default()
    );
    patch.set_annotation(&mut pod.metadata, keys::PROFILE, profile_ref);
    let (key, value) = if apply {
        (keys::ORIGINAL_RESOURCES, &originals)
    } else {
        (keys::RECOMMENDATION, &planned)
    };
    // Serializing a map of k8s-openapi structs to JSON cannot fail (string keys, no floats).
    if !value.is_empty()
        && let Ok(json) = serde_json::to_string(value)
    {
        patch.set_annotation(&mut pod.metadata, key, json);
    }
}

#[cfg(test)]
mod tests;
