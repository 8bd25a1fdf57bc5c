//! The JSON patch, written down as JSON while the webhook decides.
//!
//! Each change the webhook makes is one RFC 6902 operation written straight into a text
//! buffer: no copy of the pod is kept or changed, nothing is diffed, and no value is built
//! only to be serialized again. (Cloning the pod and diffing, then building the patch as
//! `serde_json::Value`s, were the largest costs on the request path.) Labels and annotations
//! are gathered until [`PodPatch::finish`], so a pod without annotations gets one `add` of the
//! whole map rather than one per key.

use std::borrow::Cow;

use crate::view::StrMap;

/// The operations that turn the pod as sent into the pod as changed.
#[derive(Debug)]
pub struct PodPatch<'p> {
    /// Operations other than labels and annotations, comma-separated.
    ops: String,
    labels: MapEdits<'p>,
    annotations: MapEdits<'p>,
}

/// Keys set in one string map of the metadata.
#[derive(Debug)]
struct MapEdits<'p> {
    /// The map in the pod as sent (without it, the whole map is added at the end).
    original: Option<&'p StrMap<'p>>,
    /// Keys set, in the order first set, with their last value.
    set: Vec<(&'static str, Text)>,
}

/// A value to write as a JSON string.
#[derive(Debug)]
enum Text {
    /// The value itself, escaped when written.
    Plain(Cow<'static, str>),
    /// The value already escaped for the inside of a JSON string.
    Escaped(String),
}

impl Text {
    /// Whether this is `value`, as the pod has it.
    fn is(&self, value: &str) -> bool {
        match self {
            Text::Plain(text) => text == value,
            Text::Escaped(escaped) => {
                let mut original = String::with_capacity(escaped.len());
                push_escaped(&mut original, value);
                original == *escaped
            }
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Text::Plain(text) => push_str(out, text),
            Text::Escaped(escaped) => {
                out.push('"');
                out.push_str(escaped);
                out.push('"');
            }
        }
    }
}

impl<'p> MapEdits<'p> {
    /// Sets `key`, remembering it if that changes anything.
    fn set(&mut self, key: &'static str, value: Text) {
        if let Some(entry) = self.set.iter_mut().find(|(k, _)| *k == key) {
            entry.1 = value;
            return;
        }
        if self
            .original
            .and_then(|m| m.get(key))
            .is_some_and(|original| value.is(original))
        {
            return;
        }
        self.set.push((key, value));
    }

    /// `add` operations for what was set: one for the whole map if the pod had none.
    fn write(mut self, field: &str, out: &mut String) {
        if self.set.is_empty() {
            return;
        }
        if self.original.is_none() {
            self.set.sort_by(|a, b| a.0.cmp(b.0));
            separate(out);
            out.push_str(r#"{"op":"add","path":"/metadata/"#);
            out.push_str(field);
            out.push_str(r#"","value":"#);
            push_object(out, &self.set, Nesting::Top, |out, value| value.write(out));
            out.push('}');
            return;
        }
        for (key, value) in &self.set {
            separate(out);
            out.push_str(r#"{"op":"add","path":"/metadata/"#);
            out.push_str(field);
            out.push('/');
            push_token(out, key);
            out.push_str(r#"","value":"#);
            value.write(out);
            out.push('}');
        }
    }
}

/// A comma before every operation but the first of the list.
fn separate(out: &mut String) {
    if !out.ends_with('[') && !out.is_empty() {
        out.push(',');
    }
}

/// `s` as a JSON string, escaped as serde_json escapes.
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    if needs_no_escape(s) {
        // The common case (names, quantities, images): one copy.
        out.push_str(s);
    } else {
        push_escaped(out, s);
    }
    out.push('"');
}

/// Where a JSON text is written: as itself, or inside a JSON string (an annotation whose value
/// is JSON, inside the patch), where its quotes and backslashes are escaped once more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// As itself.
    Top,
    /// As the contents of a JSON string.
    InString,
}

/// `s` as a JSON string, written for `nesting`: in a string, `"a"` is `\"a\"`.
pub fn push_str_in(out: &mut String, s: &str, nesting: Nesting) {
    match nesting {
        Nesting::Top => push_str(out, s),
        Nesting::InString if needs_no_escape(s) => {
            out.push_str("\\\"");
            out.push_str(s);
            out.push_str("\\\"");
        }
        Nesting::InString => {
            let mut json = String::with_capacity(s.len() + 8);
            push_str(&mut json, s);
            push_escaped(out, &json);
        }
    }
}

/// A JSON object of `members` (written in the order given): each key as a string for
/// `nesting`, then its value as `value` writes it.
pub fn push_object<'m, K: AsRef<str> + 'm, V: 'm>(
    out: &mut String,
    members: impl IntoIterator<Item = &'m (K, V)>,
    nesting: Nesting,
    mut value: impl FnMut(&mut String, &'m V),
) {
    out.push('{');
    for (i, (key, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str_in(out, key.as_ref(), nesting);
        out.push(':');
        value(out, v);
    }
    out.push('}');
}

/// Whether `s` goes into a JSON string as it is.
fn needs_no_escape(s: &str) -> bool {
    s.bytes().all(|b| ESCAPE[usize::from(b)] == 0)
}

/// `s` escaped for the inside of a JSON string (without the quotes).
pub fn push_escaped(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (at, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(b)];
        if escape == 0 {
            continue;
        }
        out.push_str(&s[start..at]);
        match escape {
            b'u' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            short => {
                out.push('\\');
                out.push(char::from(short));
            }
        }
        start = at + 1;
    }
    out.push_str(&s[start..]);
}

/// For each byte, the letter of its short escape (`"` → `"`, newline → `n`...), `u` for
/// `\u00XX`, or 0 if it needs none: the table serde_json uses.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// `token` as one reference token of a JSON pointer (`~` → `~0`, `/` → `~1`), inside a JSON
/// string whose quotes the caller writes.
fn push_token(out: &mut String, token: &str) {
    let mut start = 0;
    for (at, b) in token.bytes().enumerate() {
        let replacement = match b {
            b'~' => "~0",
            b'/' => "~1",
            _ => continue,
        };
        push_escaped(out, &token[start..at]);
        out.push_str(replacement);
        start = at + 1;
    }
    push_escaped(out, &token[start..]);
}

/// One piece of a JSON pointer written by the webhook: literal text (whose tokens need no
/// escaping) or an array index. [`path!`](crate::path) makes a list of them.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    /// Literal text.
    Text(&'a str),
    /// An array index.
    Index(usize),
}

impl<'a> From<&'a str> for Seg<'a> {
    fn from(text: &'a str) -> Self {
        Seg::Text(text)
    }
}

impl From<usize> for Seg<'_> {
    fn from(index: usize) -> Self {
        Seg::Index(index)
    }
}

/// A JSON pointer from literal pieces and indexes: `path!["/spec/containers/", 0, "/name"]`.
#[macro_export]
macro_rules! path {
    ($($seg:expr),+ $(,)?) => {
        &[$($crate::patch::Seg::from($seg)),+]
    };
}

/// Writes a number without the formatting machinery.
pub fn push_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

impl<'p> PodPatch<'p> {
    /// An empty patch for a pod with these labels and annotations.
    pub fn new(labels: Option<&'p StrMap<'p>>, annotations: Option<&'p StrMap<'p>>) -> Self {
        PodPatch {
            // The patch is written into this buffer whole: `[`, the operations as they are
            // made, then those of the labels and annotations.
            ops: {
                let mut ops = String::with_capacity(2048);
                ops.push('[');
                ops
            },
            labels: MapEdits {
                original: labels,
                set: Vec::new(),
            },
            annotations: MapEdits {
                original: annotations,
                set: Vec::new(),
            },
        }
    }

    /// Sets a label on the pod.
    pub fn set_label(&mut self, key: &'static str, value: impl Into<Cow<'static, str>>) {
        self.labels.set(key, Text::Plain(value.into()));
    }

    /// Sets an annotation on the pod.
    pub fn set_annotation(&mut self, key: &'static str, value: impl Into<Cow<'static, str>>) {
        self.annotations.set(key, Text::Plain(value.into()));
    }

    /// Sets an annotation on the pod to a value given already escaped for the inside of a
    /// JSON string (JSON text written with [`Nesting::InString`]).
    pub fn set_annotation_escaped(&mut self, key: &'static str, escaped: String) {
        self.annotations.set(key, Text::Escaped(escaped));
    }

    /// Records `add` at `path` (which creates or replaces an object member and inserts into
    /// an array, `-` appending) of the JSON value `write` writes straight into the patch.
    /// `path` is written as given: its tokens must need no escaping.
    pub fn add_json_with(&mut self, path: &[Seg<'_>], write: impl FnOnce(&mut String)) {
        self.start_op("add", path);
        write(&mut self.ops);
        self.ops.push('}');
    }

    /// Records `replace` of the existing member at `path` with the string `value`.
    pub fn replace_str(&mut self, path: &[Seg<'_>], value: &str) {
        self.start_op("replace", path);
        push_str(&mut self.ops, value);
        self.ops.push('}');
    }

    /// Records `replace` of the existing member at `path` with the number `value`.
    pub fn replace_int(&mut self, path: &[Seg<'_>], value: i64) {
        self.start_op("replace", path);
        push_int(&mut self.ops, value);
        self.ops.push('}');
    }

    /// Writes an operation up to its value.
    fn start_op(&mut self, op: &str, path: &[Seg<'_>]) {
        separate(&mut self.ops);
        self.ops.push_str(r#"{"op":""#);
        self.ops.push_str(op);
        self.ops.push_str(r#"","path":""#);
        for seg in path {
            match *seg {
                Seg::Text(text) => self.ops.push_str(text),
                Seg::Index(index) => push_int(&mut self.ops, index),
            }
        }
        self.ops.push_str(r#"","value":"#);
    }

    /// The patch as JSON, or `None` if nothing changed: the operations in the order they were
    /// made, then those of the labels and annotations.
    pub fn finish(self) -> Option<String> {
        let PodPatch {
            mut ops,
            labels,
            annotations,
        } = self;
        if ops == "[" && labels.set.is_empty() && annotations.set.is_empty() {
            return None;
        }
        labels.write("labels", &mut ops);
        annotations.write("annotations", &mut ops);
        ops.push(']');
        Some(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(text: &str) -> StrMap<'static> {
        crate::view::read(text.to_owned().into_bytes().leak()).unwrap()
    }

    #[test]
    fn recorded_changes_apply_and_escape_keys() {
        let labels = map(r#"{"app": "web"}"#);
        let mut patch = PodPatch::new(Some(&labels), None);
        patch.set_label("snug.dev/injected", "true");
        patch.set_label("app", "web"); // unchanged: no operation
        patch.set_annotation("x/y~z", "1");
        patch.set_annotation("second", "quote \" and\nnewline");
        patch.replace_str(
            crate::path!["/spec/containers/", 0, "/ports/", 0, "/name"],
            "snug-app-http",
        );
        patch.add_json_with(crate::path!["/spec/initContainers"], |out| {
            out.push_str(r#"[{"name":"s"}]"#);
        });
        patch.add_json_with(crate::path!["/spec/containers/-"], |out| {
            out.push_str(r#"{"name":"c"}"#);
        });
        let text = patch.finish().unwrap();
        let patch: json_patch::Patch = serde_json::from_str(&text).unwrap();
        let mut doc = json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "a", "ports": [{"name": "http", "containerPort": 80}]}]}
        });
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(
            doc,
            json!({
                "metadata": {"labels": {"app": "web", "snug.dev/injected": "true"},
                             "annotations": {"x/y~z": "1", "second": "quote \" and\nnewline"}},
                "spec": {"containers": [{"name": "a", "ports": [{"name": "snug-app-http", "containerPort": 80}]},
                                        {"name": "c"}],
                         "initContainers": [{"name": "s"}]}
            })
        );
        let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
        assert_eq!(
            paths,
            [
                "/spec/containers/0/ports/0/name",
                "/spec/initContainers",
                "/spec/containers/-",
                "/metadata/labels/snug.dev~1injected",
                "/metadata/annotations",
            ]
        );
    }

    #[test]
    fn keys_added_to_an_existing_map_are_escaped_one_by_one() {
        let annotations = map("{}");
        let mut patch = PodPatch::new(None, Some(&annotations));
        patch.set_annotation("a~b/c", "1");
        let patch: json_patch::Patch = serde_json::from_str(&patch.finish().unwrap()).unwrap();
        assert_eq!(
            patch.0[0].path().to_string(),
            "/metadata/annotations/a~0b~1c"
        );
        let mut doc = json!({"metadata": {"annotations": {}}});
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(doc["metadata"]["annotations"]["a~b/c"], "1");
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in [
            "plain",
            "q\"b\\s/",
            "\n\r\t\u{8}\u{c}\u{1}\u{1f}",
            "ü€😀",
            "",
        ] {
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn long_strings_are_escaped_wherever_the_escapes_fall() {
        let mut long = String::new();
        for i in 0..200u32 {
            long.push(char::from_u32(0x20 + i % 0x60).unwrap_or('x'));
            if i % 37 == 0 {
                long.push_str("\"\\\n\u{1}é");
            }
        }
        for end in [0, 15, 16, 17, 31, 32, 33, 64, 100, long.len()] {
            let end = (0..=end)
                .rev()
                .find(|&e| long.is_char_boundary(e))
                .unwrap_or(0);
            let s = &long[..end];
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
        let json = serde_json::to_string(&json!({"a": [1, "b\"c"], "d": "x".repeat(40)})).unwrap();
        let mut out = String::new();
        push_str(&mut out, &json);
        assert_eq!(out, serde_json::to_string(&json).unwrap());
    }

    #[test]
    fn json_written_inside_a_string_reads_back_as_that_json() {
        for s in ["plain", "q\"b\\s/", "\n\u{1}", "ü€", ""] {
            let mut top = String::new();
            push_str_in(&mut top, s, Nesting::Top);
            let mut nested = String::from("\"");
            push_str_in(&mut nested, s, Nesting::InString);
            nested.push('"');
            let unwrapped: String = serde_json::from_str(&nested).unwrap();
            assert_eq!(unwrapped, top, "{s:?}");
        }
    }

    #[test]
    fn an_escaped_annotation_the_pod_already_has_is_no_operation() {
        let annotations = map(r#"{"a": "{\"x\":\"1\"}"}"#);
        let mut patch = PodPatch::new(None, Some(&annotations));
        patch.set_annotation_escaped("a", r#"{\"x\":\"1\"}"#.to_owned());
        assert_eq!(patch.finish(), None);
        let mut patch = PodPatch::new(None, Some(&annotations));
        patch.set_annotation_escaped("a", r#"{\"x\":\"2\"}"#.to_owned());
        let patch: json_patch::Patch = serde_json::from_str(&patch.finish().unwrap()).unwrap();
        let mut doc = json!({"metadata": {"annotations": {"a": "{\"x\":\"1\"}"}}});
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(doc["metadata"]["annotations"]["a"], r#"{"x":"2"}"#);
    }

    #[test]
    fn nothing_set_is_no_patch() {
        let labels = map(r#"{"snug.dev/injected": "true"}"#);
        let mut patch = PodPatch::new(Some(&labels), None);
        patch.set_label("snug.dev/injected", "true");
        assert_eq!(patch.finish(), None);
    }
}
