//! RBAC: exactly the verbs docs/install.md lists, no wildcards, secrets and the webhook
//! configuration only by name.

use std::collections::BTreeSet;

use crate::{
    NAMESPACE,
    render::{name, rendered, repo_root, strings},
};

/// Every RBAC rule of the install, as docs/install.md lists it: (role, apiGroup, resource,
/// verbs). A rule the manifests grant beyond this, or a verb more, fails the test.
pub const RBAC: &[(&str, &str, &str, &[&str])] = &[
    (
        "snug-webhook",
        "snug.dev",
        "workloadprofiles",
        &["get", "list", "watch"],
    ),
    ("snug-webhook", "", "namespaces", &["get", "list", "watch"]),
    ("snug-webhook", "", "limitranges", &["get", "list", "watch"]),
    ("snug-profiler", "", "pods", &["get", "list", "watch"]),
    ("snug-profiler", "", "namespaces", &["get", "list", "watch"]),
    ("snug-profiler", "metrics.k8s.io", "pods", &["get", "list"]),
    (
        "snug-profiler",
        "snug.dev",
        "workloadprofiles",
        &["get", "create", "patch"],
    ),
    (
        "snug-profiler",
        "snug.dev",
        "workloadprofiles/status",
        &["patch"],
    ),
    ("snug-profiler", "apps", "deployments", &["get"]),
    ("snug-profiler", "apps", "replicasets", &["get"]),
    ("snug-profiler", "apps", "statefulsets", &["get"]),
    ("snug-profiler", "apps", "daemonsets", &["get"]),
    ("snug-profiler", "batch", "jobs", &["get", "list", "watch"]),
    ("snug-profiler", "batch", "cronjobs", &["get"]),
    ("snug-profiler", "argoproj.io", "rollouts", &["get"]),
    (
        "snug-profiler-leader-election",
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update"],
    ),
    (
        "snug-webhook-certs",
        "",
        "secrets",
        &["get", "update", "create"],
    ),
    (
        "snug-webhook-certs",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        &["get", "patch"],
    ),
];

#[test]
fn rbac_grants_exactly_the_documented_verbs() {
    let allowed: BTreeSet<(String, String, String, String)> = RBAC
        .iter()
        .flat_map(|(role, group, resource, verbs)| {
            verbs.iter().map(move |v| {
                (
                    role.to_string(),
                    group.to_string(),
                    resource.to_string(),
                    v.to_string(),
                )
            })
        })
        .collect();
    let base = rendered("manifests/base");
    let mut granted = BTreeSet::new();
    for role in base.of_kind("Role").chain(base.of_kind("ClusterRole")) {
        for rule in role["rules"].as_array().unwrap() {
            let (groups, resources, verbs) = (
                strings(&rule["apiGroups"]),
                strings(&rule["resources"]),
                strings(&rule["verbs"]),
            );
            for field in [&groups, &resources, &verbs] {
                assert!(!field.contains(&"*"), "{}: wildcard in {rule}", name(role));
            }
            assert!(
                rule["nonResourceURLs"].is_null(),
                "{}: nonResourceURLs",
                name(role)
            );
            for g in &groups {
                for res in &resources {
                    for v in &verbs {
                        let grant = (
                            name(role).to_owned(),
                            g.to_string(),
                            res.to_string(),
                            v.to_string(),
                        );
                        assert!(
                            allowed.contains(&grant),
                            "{grant:?} is granted but not documented"
                        );
                        granted.insert(grant);
                    }
                }
            }
            // Secrets: only the webhook's TLS Secret by name; `create` cannot be named.
            if resources.contains(&"secrets") && verbs != ["create"] {
                assert_eq!(
                    strings(&rule["resourceNames"]),
                    ["snug-webhook-tls"],
                    "{rule}"
                );
            }
            if resources.contains(&"mutatingwebhookconfigurations") {
                assert_eq!(strings(&rule["resourceNames"]), ["snug-webhook"], "{rule}");
            }
        }
    }
    let missing: Vec<_> = allowed.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "documented but not granted: {missing:?}"
    );
    // Grants in Roles stay in snug-system, and every binding names a Snug ServiceAccount.
    for binding in base
        .of_kind("RoleBinding")
        .chain(base.of_kind("ClusterRoleBinding"))
    {
        for subject in binding["subjects"].as_array().unwrap() {
            assert_eq!(subject["kind"], "ServiceAccount");
            assert_eq!(subject["namespace"], NAMESPACE);
            assert!(base.has("ServiceAccount", subject["name"].as_str().unwrap()));
        }
    }
    let install_doc = std::fs::read_to_string(repo_root().join("docs/install.md")).unwrap();
    for (role, _, resource, _) in RBAC {
        assert!(
            install_doc.contains(role) && install_doc.contains(resource),
            "docs/install.md: {role} {resource}"
        );
    }
}
