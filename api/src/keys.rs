//! Label and annotation keys: what users write on namespaces and pods, and what Snug writes back.

/// Namespace label that opts a namespace in (`enabled`); on a pod (label or annotation),
/// `disabled` opts that pod out.
pub const INJECT: &str = "snug.dev/inject";
/// Value of [`INJECT`] on a namespace that opts in.
pub const INJECT_ENABLED: &str = "enabled";
/// Value of [`INJECT`] on a pod that opts out.
pub const INJECT_DISABLED: &str = "disabled";

/// Pod or namespace annotation choosing the [`Mode`](crate::Mode): `observe`, `apply` or `off`.
pub const MODE: &str = "snug.dev/mode";

/// Pod annotation: lowest CPU request the webhook may set (a Kubernetes quantity).
pub const MIN_CPU: &str = "snug.dev/min-cpu";
/// Pod annotation: highest CPU request or limit the webhook may set.
pub const MAX_CPU: &str = "snug.dev/max-cpu";
/// Pod annotation: lowest memory request the webhook may set.
pub const MIN_MEMORY: &str = "snug.dev/min-memory";
/// Pod annotation: highest memory request or limit the webhook may set.
pub const MAX_MEMORY: &str = "snug.dev/max-memory";

/// Pod label the webhook sets on every pod it injected (`true`); the profiler scrapes these.
pub const INJECTED: &str = "snug.dev/injected";
/// Pod annotation: the profile the webhook used, as `namespace/name@resourceVersion`.
pub const PROFILE: &str = "snug.dev/profile";
/// Pod annotation: JSON of each container's resources before the webhook changed them,
/// keyed by container name.
pub const ORIGINAL_RESOURCES: &str = "snug.dev/original-resources";
/// Pod annotation (observe mode): JSON of the recommended resources per container.
pub const RECOMMENDATION: &str = "snug.dev/recommendation";
/// Pod annotation: container ports the sidecar could not intercept (numeric-only ports),
/// as `container:port` comma-separated.
pub const NOT_INTERCEPTED: &str = "snug.dev/not-intercepted";
/// Pod annotation: why no sidecar was injected (Windows, hostNetwork, Job without native
/// sidecars), when resources were still handled.
pub const SIDECAR_SKIPPED: &str = "snug.dev/sidecar-skipped";

/// The namespace Snug itself runs in by default; never injected.
pub const SNUG_NAMESPACE: &str = "snug-system";
/// Namespaces the webhook never touches, whatever their labels say.
pub const PROTECTED_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Field manager name of the profiler's server-side applies.
pub const PROFILER_FIELD_MANAGER: &str = "snug-profiler";

/// Whether a namespace is one Snug must never inject into, given Snug's own namespace.
pub fn is_protected_namespace(namespace: &str, snug_namespace: &str) -> bool {
    namespace == snug_namespace || PROTECTED_NAMESPACES.contains(&namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_namespaces_include_system_and_own() {
        assert!(is_protected_namespace("kube-system", SNUG_NAMESPACE));
        assert!(is_protected_namespace("kube-node-lease", SNUG_NAMESPACE));
        assert!(is_protected_namespace("snug", "snug"));
        assert!(!is_protected_namespace("default", SNUG_NAMESPACE));
    }
}
