//! What to do with one pod: the decision (leave it, or change it) and the JSON patch that
//! makes the change, written as it is decided. Pure: everything it needs is passed in, so it
//! is tested without a server or a cluster.

mod ports;
mod resources;
mod sidecar;

use std::sync::Arc;

use snug_api::{
    Mode, OwnerParts, WorkloadParts, WorkloadProfile, keys, ports::SIDECAR_CONTAINER_NAME,
};

use crate::{
    config::InjectConfig,
    patch::{Nesting, PodPatch, push_object},
    store::{NamespaceStore, ProfileStore},
    view::PodView,
};

pub use ports::unique_name;
use resources::set_sorted;
pub use resources::{Amounts, Bounds, Range, Resources, plan};

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

/// The patch that changes a pod, and what to report about it.
#[derive(Debug)]
pub struct Change {
    /// The RFC 6902 operations that turn the pod as sent into the pod as it should be
    /// created, as JSON (`None` when there was nothing to change after all).
    pub patch: Option<String>,
    /// How many ports the sidecar could not intercept.
    pub not_intercepted: usize,
    /// Things the pod's owner should know.
    pub warnings: Vec<String>,
}

/// Decides what to do with `pod`, created in `namespace`, and writes the patch if it is to
/// change.
pub fn decide(inputs: Inputs<'_>, namespace: &str, pod: &PodView<'_>) -> Decision {
    let mut warnings = Vec::new();
    let leave = |skipped, reason, warnings| Decision::Leave {
        skipped,
        reason,
        warnings,
    };
    if inputs.config.is_excluded(namespace) {
        return leave(true, "namespace excluded", warnings);
    }
    if opted_out(pod) {
        return leave(true, "pod opted out", warnings);
    }
    let pod_mode = pod
        .annotation(keys::MODE)
        .and_then(|m| match m.parse::<Mode>() {
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
    if already_handled(pod) {
        return leave(false, "already injected", warnings);
    }
    let profile = find_profile(inputs.profiles, namespace, pod);
    let bounds = Bounds::new(
        pod.metadata.annotations.as_ref(),
        inputs.namespaces.limit_max(namespace),
    );
    let mut patch = PodPatch::new(
        pod.metadata.labels.as_ref(),
        pod.metadata.annotations.as_ref(),
    );
    let apps = app_containers(pod);
    let not_intercepted = inject(inputs, pod, &apps, &mut patch, profile.as_deref());
    warnings.extend(
        bounds
            .invalid
            .iter()
            .map(|b| format!("snug: ignoring bound {b}")),
    );
    if let Some(profile) = &profile {
        size(pod, &apps, &mut patch, profile, mode, &bounds);
    }
    Decision::Change(Box::new(Change {
        patch: patch.finish(),
        not_intercepted,
        warnings,
    }))
}

fn opted_out(pod: &PodView<'_>) -> bool {
    pod.label(keys::INJECT) == Some(keys::INJECT_DISABLED)
        || pod.annotation(keys::INJECT) == Some(keys::INJECT_DISABLED)
}

/// Injected before (reinvocation, or a pod created from an injected pod's spec).
fn already_handled(pod: &PodView<'_>) -> bool {
    pod.all_containers()
        .any(|c| c.name == SIDECAR_CONTAINER_NAME)
        || pod.label(keys::INJECTED) == Some("true")
        || pod.annotation(keys::SIDECAR_SKIPPED).is_some()
}

/// The pod's profile: for a Job named like a CronJob's (`<cronjob>-<digits>`), the CronJob's
/// profile first, as the profiler keeps one profile for all runs of a CronJob.
fn find_profile(
    profiles: &dyn ProfileStore,
    namespace: &str,
    pod: &PodView<'_>,
) -> Option<Arc<WorkloadProfile>> {
    let meta = &pod.metadata;
    let owners = meta.owner_references.iter().flatten().map(|o| OwnerParts {
        api_version: &o.api_version,
        kind: &o.kind,
        name: &o.name,
        controller: o.controller == Some(true),
    });
    let workload = WorkloadParts::from_pod_parts(
        owners,
        pod.label("pod-template-hash"),
        meta.generate_name.as_deref(),
        meta.name.as_deref(),
    )?;
    let cronjob = (workload.kind == "Job")
        .then(|| workload.name.rsplit_once('-'))
        .flatten()
        .filter(|(stem, digits)| {
            !stem.is_empty() && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        })
        .map(|(stem, _)| WorkloadParts {
            api_version: "batch/v1",
            kind: "CronJob",
            name: stem,
        });
    cronjob
        .into_iter()
        .chain([workload])
        .find_map(|w| profiles.get(namespace, &w.profile_name()))
}

/// Why the sidecar cannot work in this pod, if it cannot.
fn sidecar_blocker(pod: &PodView<'_>, native: bool) -> Option<&'static str> {
    let spec = pod.spec.as_ref()?;
    let windows = spec.os.as_ref().is_some_and(|os| os.name == "windows")
        || spec
            .node_selector
            .as_ref()
            .and_then(|s| s.get("kubernetes.io/os"))
            == Some("windows");
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
fn app_containers(pod: &PodView<'_>) -> Vec<usize> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter().enumerate())
        .filter(|(_, c)| c.name != SIDECAR_CONTAINER_NAME && !MESH_SIDECARS.contains(&&*c.name))
        .map(|(i, _)| i)
        .collect()
}

/// Adds the sidecar (or says why not); returns how many ports were not intercepted.
fn inject(
    inputs: Inputs<'_>,
    pod: &PodView<'_>,
    apps: &[usize],
    patch: &mut PodPatch<'_>,
    profile: Option<&WorkloadProfile>,
) -> usize {
    let mut blocker = sidecar_blocker(pod, inputs.native_sidecars);
    let mut not_intercepted = Vec::new();
    if blocker.is_none() {
        let takeover = ports::take_over(pod, apps, patch);
        not_intercepted = takeover.not_intercepted;
        if takeover.taken.is_empty() {
            blocker = Some("no named TCP port to intercept");
        } else if let Some(spec) = pod.spec.as_ref() {
            let native = inputs.native_sidecars;
            let list = native && spec.init_containers.is_none();
            let path = match (native, list) {
                (true, true) => "/spec/initContainers",
                (true, false) => "/spec/initContainers/-",
                (false, _) => "/spec/containers/-",
            };
            patch.add_json_with(crate::path![path], |out| {
                if list {
                    out.push('[');
                }
                sidecar::write_sidecar(out, inputs.config, &takeover.taken, profile, native);
                if list {
                    out.push(']');
                }
            });
            patch.set_label(keys::INJECTED, "true");
        }
    }
    if let Some(reason) = blocker {
        patch.set_annotation(keys::SIDECAR_SKIPPED, reason);
    }
    if !not_intercepted.is_empty() {
        let value = not_intercepted.join(",");
        patch.set_annotation(keys::NOT_INTERCEPTED, value);
    }
    not_intercepted.len()
}

/// Applies (mode `apply`, confident profile) or records (otherwise) the recommendation.
fn size(
    pod: &PodView<'_>,
    apps: &[usize],
    patch: &mut PodPatch<'_>,
    profile: &WorkloadProfile,
    mode: Mode,
    bounds: &Bounds,
) {
    let Some(spec) = pod.spec.as_ref() else {
        return;
    };
    // By container name, in name order (as a JSON map is written): a pod has a few.
    let mut planned: Vec<(&str, Resources<'_>)> = Vec::new();
    let mut originals: Vec<(&str, Resources<'_>)> = Vec::new();
    let apply = mode == Mode::Apply && profile.is_confident();
    for &index in apps {
        let Some(container) = spec.containers.get(index) else {
            continue;
        };
        let Some(learned) = profile.container(&container.name) else {
            continue;
        };
        let original = container
            .resources
            .as_ref()
            .map(Resources::of)
            .unwrap_or_default();
        // `apply` records the originals as well: a copy, since planning edits them.
        let kept = apply.then(|| original.clone());
        let Some(resources) = plan(original, &learned.recommendation, bounds) else {
            continue;
        };
        if let Some(original) = kept {
            patch.add_json_with(
                crate::path!["/spec/containers/", index, "/resources"],
                |out| {
                    resources.write_json(out, Nesting::Top);
                },
            );
            set_sorted(&mut originals, &container.name, original);
        }
        set_sorted(&mut planned, &container.name, resources);
    }
    let meta = &profile.metadata;
    let parts = [
        meta.namespace.as_deref().unwrap_or_default(),
        "/",
        meta.name.as_deref().unwrap_or_default(),
        "@",
        meta.resource_version.as_deref().unwrap_or_default(),
    ];
    patch.set_annotation(keys::PROFILE, parts.concat());
    let (key, value) = if apply {
        (keys::ORIGINAL_RESOURCES, &originals)
    } else {
        (keys::RECOMMENDATION, &planned)
    };
    if !value.is_empty() {
        // JSON in an annotation's value: written escaped for the patch's string in one pass,
        // rather than written and then escaped.
        let mut json = String::with_capacity(256);
        push_object(&mut json, value, Nesting::InString, |out, resources| {
            resources.write_json(out, Nesting::InString);
        });
        patch.set_annotation_escaped(key, json);
    }
}

#[cfg(test)]
mod tests;
