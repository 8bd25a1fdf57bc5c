//! The JSON patch from the pod as read to the pod as changed.
//!
//! The webhook changes only labels, annotations, containers and init containers, so only
//! those are compared: maps key by key, containers by typed equality first, and only a
//! container that differs is serialized and diffed. (A whole-pod diff serialized the pod twice
//! per admission and was the largest cost on the request path.) Both sides go through the same
//! typed model, so fields the model does not know are never touched.

use std::collections::BTreeMap;

use json_patch::{
    AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation,
    jsonptr::{Pointer, PointerBuf},
};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;

/// The patch that turns `before` into `after`, for changes the webhook makes.
pub fn pod_patch(before: &Pod, after: &Pod) -> Result<Patch, serde_json::Error> {
    let mut ops = Vec::new();
    let (b, a) = (&before.metadata, &after.metadata);
    map_ops(
        &mut ops,
        &["metadata", "labels"],
        b.labels.as_ref(),
        a.labels.as_ref(),
    )?;
    map_ops(
        &mut ops,
        &["metadata", "annotations"],
        b.annotations.as_ref(),
        a.annotations.as_ref(),
    )?;
    if let (Some(b), Some(a)) = (before.spec.as_ref(), after.spec.as_ref()) {
        list_ops(
            &mut ops,
            "containers",
            Some(&b.containers),
            Some(&a.containers),
        )?;
        list_ops(
            &mut ops,
            "initContainers",
            b.init_containers.as_ref(),
            a.init_containers.as_ref(),
        )?;
    }
    Ok(Patch(ops))
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// Keys added or changed (`add` replaces an existing member); the webhook never removes one.
fn map_ops(
    ops: &mut Vec<PatchOperation>,
    path: &[&str],
    before: Option<&BTreeMap<String, String>>,
    after: Option<&BTreeMap<String, String>>,
) -> Result<(), serde_json::Error> {
    match (before, after) {
        (_, None) => {}
        (None, Some(after)) => ops.push(add(
            PointerBuf::from_tokens(path.iter().copied()),
            serde_json::to_value(after)?,
        )),
        (Some(before), Some(after)) => {
            for (key, value) in after.iter().filter(|(k, v)| before.get(*k) != Some(*v)) {
                let pointer = PointerBuf::from_tokens(path.iter().copied().chain([key.as_str()]));
                ops.push(add(pointer, Value::String(value.clone())));
            }
        }
    }
    Ok(())
}

/// Changed containers diffed in place; new ones appended.
fn list_ops(
    ops: &mut Vec<PatchOperation>,
    field: &str,
    before: Option<&Vec<Container>>,
    after: Option<&Vec<Container>>,
) -> Result<(), serde_json::Error> {
    let Some(after) = after else {
        return Ok(());
    };
    let Some(before) = before else {
        ops.push(add(
            PointerBuf::from_tokens(["spec", field]),
            serde_json::to_value(after)?,
        ));
        return Ok(());
    };
    for (index, (b, a)) in before.iter().zip(after).enumerate() {
        if b != a {
            let prefix = PointerBuf::from_tokens(["spec", field, &index.to_string()]);
            let diff = json_patch::diff(&serde_json::to_value(b)?, &serde_json::to_value(a)?);
            ops.extend(diff.0.into_iter().map(|op| rebase(&prefix, op)));
        }
    }
    for container in after.iter().skip(before.len()) {
        ops.push(add(
            PointerBuf::from_tokens(["spec", field, "-"]),
            serde_json::to_value(container)?,
        ));
    }
    Ok(())
}

/// An operation of a sub-document diff, moved under `prefix`.
fn rebase(prefix: &Pointer, op: PatchOperation) -> PatchOperation {
    match op {
        PatchOperation::Add(o) => add(prefix.concat(&o.path), o.value),
        PatchOperation::Remove(o) => PatchOperation::Remove(RemoveOperation {
            path: prefix.concat(&o.path),
        }),
        PatchOperation::Replace(o) => PatchOperation::Replace(ReplaceOperation {
            path: prefix.concat(&o.path),
            value: o.value,
        }),
        // json_patch::diff emits only add, remove and replace.
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_reproduces_the_change_and_escapes_keys() {
        let before: Pod = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "a", "ports": [{"name": "http", "containerPort": 80}]},
                                    {"name": "b"}]}
        }))
        .unwrap();
        let mut after = before.clone();
        after
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("snug.dev/injected".into(), "true".into());
        after.metadata.annotations = Some([("x/y~z".to_owned(), "1".to_owned())].into());
        after.spec.as_mut().unwrap().containers[0]
            .ports
            .as_mut()
            .unwrap()[0]
            .name = Some("snug-app-http".into());
        after.spec.as_mut().unwrap().init_containers = Some(vec![Container {
            name: "s".into(),
            ..Default::default()
        }]);
        after.spec.as_mut().unwrap().containers.push(Container {
            name: "c".into(),
            ..Default::default()
        });

        let patch = pod_patch(&before, &after).unwrap();
        let mut doc = serde_json::to_value(&before).unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(doc, serde_json::to_value(&after).unwrap());
        let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
        assert!(
            paths.contains(&"/metadata/labels/snug.dev~1injected".to_owned()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"/spec/containers/0/ports/0/name".to_owned()),
            "{paths:?}"
        );
        assert!(
            !paths.iter().any(|p| p.starts_with("/spec/containers/1")),
            "unchanged container untouched"
        );
        assert!(pod_patch(&after, &after).unwrap().0.is_empty());
    }
}
