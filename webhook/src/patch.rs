//! The JSON patch, written down while the webhook changes the pod.
//!
//! Each change the webhook makes goes through [`PodPatch`], which applies it to the typed pod
//! and records the RFC 6902 operation that makes the same change to the pod as sent: no copy of
//! the pod is kept and nothing is diffed or serialized twice. (Cloning the pod and diffing the
//! two versions was the largest cost on the request path.) Labels and annotations are gathered
//! until [`PodPatch::finish`], so a pod without annotations gets one `add` of the whole map
//! rather than one per key.

use std::collections::BTreeMap;

use json_patch::{
    AddOperation, Patch, PatchOperation, ReplaceOperation,
    jsonptr::{PointerBuf, Token},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::Value;

/// The operations that turn the pod as sent into the pod as changed.
#[derive(Debug)]
pub struct PodPatch {
    ops: Vec<PatchOperation>,
    labels: MapEdits,
    annotations: MapEdits,
    error: Option<serde_json::Error>,
}

/// Keys set in one string map of the metadata.
#[derive(Debug)]
struct MapEdits {
    /// Whether the map was in the pod as sent (else the whole map is added at the end).
    existed: bool,
    keys: Vec<String>,
}

impl MapEdits {
    fn of(map: Option<&BTreeMap<String, String>>) -> MapEdits {
        MapEdits {
            existed: map.is_some(),
            keys: Vec::new(),
        }
    }

    /// Sets `key` in `map`, remembering it if that changed anything.
    fn set(&mut self, map: &mut Option<BTreeMap<String, String>>, key: &str, value: String) {
        let map = map.get_or_insert_default();
        if map.get(key) == Some(&value) {
            return;
        }
        map.insert(key.to_owned(), value);
        if !self.keys.iter().any(|k| k == key) {
            self.keys.push(key.to_owned());
        }
    }

    /// `add` operations for what was set: one for the whole map if the pod had none.
    fn ops(
        self,
        field: &str,
        map: Option<&BTreeMap<String, String>>,
        ops: &mut Vec<PatchOperation>,
    ) -> Result<(), serde_json::Error> {
        let Some(map) = map.filter(|_| !self.keys.is_empty()) else {
            return Ok(());
        };
        if !self.existed {
            let path = PointerBuf::from_tokens(["metadata", field]);
            ops.push(add(path, serde_json::to_value(map)?));
            return Ok(());
        }
        for key in self.keys {
            let Some(value) = map.get(&key) else { continue };
            let path = PointerBuf::from_tokens(["metadata", field, key.as_str()]);
            ops.push(add(path, Value::String(value.clone())));
        }
        Ok(())
    }
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// `/spec/<list>/<index>`: where a container sits in the pod.
pub fn container_path(list: &str, index: usize) -> PointerBuf {
    PointerBuf::from_tokens([Token::new("spec"), Token::new(list), Token::from(index)])
}

/// `base` followed by `tokens`.
pub fn under<'t>(
    base: &PointerBuf,
    tokens: impl IntoIterator<Item: Into<Token<'t>>>,
) -> PointerBuf {
    let mut path = base.clone();
    for token in tokens {
        path.push_back(token);
    }
    path
}

impl PodPatch {
    /// An empty patch for a pod with this metadata.
    pub fn new(metadata: &ObjectMeta) -> PodPatch {
        PodPatch {
            ops: Vec::new(),
            labels: MapEdits::of(metadata.labels.as_ref()),
            annotations: MapEdits::of(metadata.annotations.as_ref()),
            error: None,
        }
    }

    /// Sets a label on the pod.
    pub fn set_label(&mut self, metadata: &mut ObjectMeta, key: &str, value: String) {
        self.labels.set(&mut metadata.labels, key, value);
    }

    /// Sets an annotation on the pod.
    pub fn set_annotation(&mut self, metadata: &mut ObjectMeta, key: &str, value: String) {
        self.annotations.set(&mut metadata.annotations, key, value);
    }

    /// Records `add` of `value` at `path` (which creates or replaces an object member and
    /// inserts into an array, `-` appending).
    pub fn add(&mut self, path: PointerBuf, value: &impl Serialize) {
        match serde_json::to_value(value) {
            Ok(value) => self.ops.push(add(path, value)),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    /// Records `replace` of the existing member at `path` with `value`.
    pub fn replace(&mut self, path: PointerBuf, value: Value) {
        self.ops
            .push(PatchOperation::Replace(ReplaceOperation { path, value }));
    }

    /// The patch: label and annotation operations first, then the rest in the order they
    /// were made. Fails only if a value did not serialize to JSON.
    pub fn finish(self, metadata: &ObjectMeta) -> Result<Patch, serde_json::Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut ops = Vec::with_capacity(self.ops.len() + 2);
        self.labels
            .ops("labels", metadata.labels.as_ref(), &mut ops)?;
        self.annotations
            .ops("annotations", metadata.annotations.as_ref(), &mut ops)?;
        ops.extend(self.ops);
        Ok(Patch(ops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, Pod};
    use serde_json::json;

    #[test]
    fn recorded_changes_reproduce_the_change_and_escape_keys() {
        let before: Pod = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "a", "ports": [{"name": "http", "containerPort": 80}]},
                                    {"name": "b"}]}
        }))
        .unwrap();
        let mut after = before.clone();
        let mut patch = PodPatch::new(&after.metadata);
        patch.set_label(&mut after.metadata, "snug.dev/injected", "true".into());
        patch.set_label(&mut after.metadata, "app", "web".into()); // unchanged: no operation
        patch.set_annotation(&mut after.metadata, "x/y~z", "1".into());
        patch.set_annotation(&mut after.metadata, "second", "2".into());
        let spec = after.spec.as_mut().unwrap();
        spec.containers[0].ports.as_mut().unwrap()[0].name = Some("snug-app-http".into());
        patch.replace(
            under(&container_path("containers", 0), ["ports", "0", "name"]),
            json!("snug-app-http"),
        );
        let sidecar = Container {
            name: "s".into(),
            ..Default::default()
        };
        patch.add(
            PointerBuf::from_tokens(["spec", "initContainers"]),
            &[&sidecar],
        );
        spec.init_containers = Some(vec![sidecar]);
        let plain = Container {
            name: "c".into(),
            ..Default::default()
        };
        patch.add(PointerBuf::from_tokens(["spec", "containers", "-"]), &plain);
        spec.containers.push(plain);

        let patch = patch.finish(&after.metadata).unwrap();
        let mut doc = serde_json::to_value(&before).unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(doc, serde_json::to_value(&after).unwrap());
        let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
        assert_eq!(
            paths,
            [
                "/metadata/labels/snug.dev~1injected",
                "/metadata/annotations",
                "/spec/containers/0/ports/0/name",
                "/spec/initContainers",
                "/spec/containers/-",
            ]
        );
    }

    #[test]
    fn keys_added_to_an_existing_map_are_escaped_one_by_one() {
        let mut meta = ObjectMeta {
            annotations: Some(BTreeMap::new()),
            ..Default::default()
        };
        let mut patch = PodPatch::new(&meta);
        patch.set_annotation(&mut meta, "a~b/c", "1".into());
        let patch = patch.finish(&meta).unwrap();
        assert_eq!(
            patch.0[0].path().to_string(),
            "/metadata/annotations/a~0b~1c"
        );
        let mut doc = json!({"metadata": {"annotations": {}}});
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(doc["metadata"]["annotations"]["a~b/c"], "1");
    }
}
