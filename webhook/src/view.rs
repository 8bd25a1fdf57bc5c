//! The pod as the webhook reads it: only the fields a decision looks at, borrowed from the
//! request body. The body is parsed once with simd-json into a tape (its SIMD stages picked
//! for the CPU at run time; strings unescaped where they lie, so every string is borrowed),
//! and the views are read off the tape by key ([`FromJson`]).
//!
//! Everything else in the pod is skipped unread, so a mistyped field the webhook never reads
//! does not make the pod unreadable (the API server validates pods anyway); a mistyped field
//! it does read (a container's name, a port number, a resource quantity...) still does, and
//! the error says where ([`Unreadable`]). A member written twice counts once, with its last
//! value, as the API server reads it.

use std::{borrow::Cow, cell::RefCell, fmt, panic::AssertUnwindSafe};

use simd_json::{
    Buffers,
    prelude::{ValueAsScalar, ValueIntoString},
    tape::{Array, Object, Tape},
};

use crate::patch::{Nesting, push_object, push_str};

/// A string borrowed from the body (or, for a view built in code, owned).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Str<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Str<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Str<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Str<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'a> From<&'a str> for Str<'a> {
    fn from(s: &'a str) -> Self {
        Str(Cow::Borrowed(s))
    }
}

impl From<String> for Str<'_> {
    fn from(s: String) -> Self {
        Str(Cow::Owned(s))
    }
}

/// The parts of a Pod the webhook reads.
#[derive(Debug, Default)]
pub struct PodView<'a> {
    /// `metadata`.
    pub metadata: MetaView<'a>,
    /// `spec`.
    pub spec: Option<SpecView<'a>>,
}

/// The parts of a Pod's `metadata` the webhook reads.
#[derive(Debug, Default)]
pub struct MetaView<'a> {
    /// `name`.
    pub name: Option<Str<'a>>,
    /// `generateName`.
    pub generate_name: Option<Str<'a>>,
    /// `namespace`.
    pub namespace: Option<Str<'a>>,
    /// `labels`.
    pub labels: Option<StrMap<'a>>,
    /// `annotations`.
    pub annotations: Option<StrMap<'a>>,
    /// `ownerReferences`.
    pub owner_references: Option<Vec<OwnerView<'a>>>,
}

/// One ownerReference.
#[derive(Debug)]
pub struct OwnerView<'a> {
    /// `apiVersion`.
    pub api_version: Str<'a>,
    /// `kind`.
    pub kind: Str<'a>,
    /// `name`.
    pub name: Str<'a>,
    /// `controller`.
    pub controller: Option<bool>,
}

/// The parts of a PodSpec the webhook reads.
#[derive(Debug, Default)]
pub struct SpecView<'a> {
    /// `containers`.
    pub containers: Vec<ContainerView<'a>>,
    /// `initContainers`.
    pub init_containers: Option<Vec<ContainerView<'a>>>,
    /// `hostNetwork`.
    pub host_network: Option<bool>,
    /// `os`.
    pub os: Option<OsView<'a>>,
    /// `nodeSelector`.
    pub node_selector: Option<StrMap<'a>>,
}

/// `spec.os`.
#[derive(Debug)]
pub struct OsView<'a> {
    /// `name`.
    pub name: Str<'a>,
}

/// The parts of a container the webhook reads.
#[derive(Debug, Default)]
pub struct ContainerView<'a> {
    /// `name`.
    pub name: Str<'a>,
    /// `ports`.
    pub ports: Option<Vec<PortView<'a>>>,
    /// `livenessProbe`.
    pub liveness_probe: Option<HandlerView<'a>>,
    /// `readinessProbe`.
    pub readiness_probe: Option<HandlerView<'a>>,
    /// `startupProbe`.
    pub startup_probe: Option<HandlerView<'a>>,
    /// `lifecycle`.
    pub lifecycle: Option<LifecycleView<'a>>,
    /// `resources`.
    pub resources: Option<ResourcesView<'a>>,
}

/// One container port.
#[derive(Debug)]
pub struct PortView<'a> {
    /// `name`.
    pub name: Option<Str<'a>>,
    /// `containerPort`.
    pub container_port: i32,
    /// `protocol`.
    pub protocol: Option<Str<'a>>,
    /// `hostPort`.
    pub host_port: Option<i32>,
}

/// What a probe or a lifecycle hook calls, as far as ports go.
#[derive(Debug, Default)]
pub struct HandlerView<'a> {
    /// `httpGet`.
    pub http_get: Option<PortRef<'a>>,
    /// `tcpSocket`.
    pub tcp_socket: Option<PortRef<'a>>,
}

/// `lifecycle`.
#[derive(Debug, Default)]
pub struct LifecycleView<'a> {
    /// `postStart`.
    pub post_start: Option<HandlerView<'a>>,
    /// `preStop`.
    pub pre_stop: Option<HandlerView<'a>>,
}

/// An `httpGet` or `tcpSocket` action: its port.
#[derive(Debug)]
pub struct PortRef<'a> {
    /// `port`.
    pub port: IntOrStr<'a>,
}

/// A port given by number or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntOrStr<'a> {
    /// A number.
    Int(i32),
    /// A name.
    Str(Str<'a>),
}

/// A container's `resources`: the quantities as written, and the claims to write back.
#[derive(Debug, Default)]
pub struct ResourcesView<'a> {
    /// `claims`, as compact JSON (a list of objects of strings, as the API defines them).
    pub claims: Option<String>,
    /// `limits`.
    pub limits: Option<StrMap<'a>>,
    /// `requests`.
    pub requests: Option<StrMap<'a>>,
}

/// A JSON object of strings (labels, annotations, a node selector, quantities by resource),
/// in the order written; a key written twice counts once, with its last value, as in a map.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StrMap<'a>(pub Vec<(Str<'a>, Str<'a>)>);

impl<'a> StrMap<'a> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| &**v)
    }
}

impl<'a> PodView<'a> {
    /// The containers and then the init containers.
    pub fn all_containers(&self) -> impl Iterator<Item = &ContainerView<'a>> {
        self.spec.iter().flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
    }

    /// Every port of every container and init container.
    pub fn all_ports(&self) -> impl Iterator<Item = &PortView<'a>> {
        self.all_containers().flat_map(|c| c.ports.iter().flatten())
    }

    /// A label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(key)
    }

    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata.annotations.as_ref()?.get(key)
    }
}

// ---------------------------------------------------------------- reading

/// A JSON value on a simd-json tape: `'a` is the parsed text, which its strings borrow.
pub type JsonValue<'t, 'a> = simd_json::tape::Value<'t, 'a>;

/// A view read off parsed JSON.
pub trait FromJson<'a>: Sized {
    /// Reads the view from `value`, skipping what it has no place for.
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable>;
}

thread_local! {
    /// simd-json's working buffers and a tape, kept by each thread from one parse to the next:
    /// sized by the last body, so a parse allocates nothing.
    static PARSER: RefCell<(Buffers, Tape<'static>)> =
        RefCell::new((Buffers::default(), Tape(Vec::new())));
}

/// Parses `json` in place (simd-json unescapes strings where they are, so `json` is changed)
/// and reads a `T` off it.
pub fn read<'a, T: FromJson<'a>>(json: &'a mut [u8]) -> Result<T, Unreadable> {
    // The parser is SIMD code with `unsafe` inside: were it ever to panic on some body, that
    // body is unreadable (a 400, or a pod allowed with a warning) and the server goes on.
    std::panic::catch_unwind(AssertUnwindSafe(move || {
        let json = json; // moved in whole, so what is read keeps its lifetime
        parse_and_read(json)
    }))
    .unwrap_or_else(|_| {
        Err(Unreadable::new(
            "the JSON parser failed on this body".to_owned(),
        ))
    })
}

fn parse_and_read<'a, T: FromJson<'a>>(json: &'a mut [u8]) -> Result<T, Unreadable> {
    /// Bodies up to this size use the kept buffers (pods are a few KiB); a larger one gets
    /// buffers of its own, so one huge pod does not leave every thread holding its size.
    const KEPT_UP_TO: usize = 64 << 10;
    if json.len() > KEPT_UP_TO {
        return T::from_json(simd_json::to_tape(json).map_err(malformed)?.as_value());
    }
    PARSER.with(|parser| match parser.try_borrow_mut() {
        Ok(mut parser) => {
            let (buffers, kept) = &mut *parser;
            // The kept tape's storage, emptied, for nodes that borrow `json`.
            let mut tape: Tape<'a> = Tape(std::mem::take(&mut kept.0)).reset();
            let read = simd_json::fill_tape(json, buffers, &mut tape)
                .map_err(malformed)
                .and_then(|()| T::from_json(tape.as_value()));
            *kept = tape.reset();
            read
        }
        // Only a read from inside a read (there is none) finds the parser in use.
        Err(_) => T::from_json(simd_json::to_tape(json).map_err(malformed)?.as_value()),
    })
}

fn malformed(error: simd_json::Error) -> Unreadable {
    Unreadable::new(format!("malformed JSON: {error}"))
}

/// Why a pod (or a review) could not be read: where, and what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Where, innermost first (it grows as the error travels out).
    path: Vec<Seg>,
    /// What was wrong.
    what: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl Unreadable {
    fn new(what: String) -> Self {
        Unreadable {
            path: Vec::new(),
            what,
        }
    }

    pub(crate) fn expected(what: &str) -> Self {
        Unreadable::new(format!("expected {what}"))
    }

    fn missing(field: &str) -> Self {
        Unreadable::new(format!("missing field `{field}`"))
    }

    fn at(mut self, seg: Seg) -> Self {
        self.path.push(seg);
        self
    }
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.path.iter().rev().enumerate() {
            match seg {
                Seg::Key(key) if i == 0 => f.write_str(key)?,
                Seg::Key(key) => write!(f, ".{key}")?,
                Seg::Index(index) => write!(f, "[{index}]")?,
            }
        }
        if !self.path.is_empty() {
            f.write_str(": ")?;
        }
        f.write_str(&self.what)
    }
}

impl std::error::Error for Unreadable {}

/// Calls `member` with each member of an object, naming the key in its error.
pub(crate) fn members<'t, 'a>(
    value: JsonValue<'t, 'a>,
    mut member: impl FnMut(&'a str, JsonValue<'t, 'a>) -> Result<(), Unreadable>,
) -> Result<(), Unreadable> {
    let object: Object<'t, 'a> = value
        .as_object()
        .ok_or_else(|| Unreadable::expected("an object"))?;
    for (key, value) in object.iter() {
        member(key, value).map_err(|e| e.at(Seg::Key(key.to_owned())))?;
    }
    Ok(())
}

/// `None` for `null`, else what `read` makes of the value.
pub(crate) fn nullable<'t, 'a, T>(
    value: JsonValue<'t, 'a>,
    read: impl FnOnce(JsonValue<'t, 'a>) -> Result<T, Unreadable>,
) -> Result<Option<T>, Unreadable> {
    if value.as_null().is_some() {
        Ok(None)
    } else {
        read(value).map(Some)
    }
}

/// A string.
pub(crate) fn string<'a>(value: JsonValue<'_, 'a>) -> Result<Str<'a>, Unreadable> {
    value
        .into_string()
        .map(|s| Str(Cow::Borrowed(s)))
        .ok_or_else(|| Unreadable::expected("a string"))
}

/// A string or `null`.
pub(crate) fn opt_string<'a>(value: JsonValue<'_, 'a>) -> Result<Option<Str<'a>>, Unreadable> {
    nullable(value, string)
}

fn boolean(value: JsonValue<'_, '_>) -> Result<Option<bool>, Unreadable> {
    nullable(value, |v| {
        v.as_bool()
            .ok_or_else(|| Unreadable::expected("true or false"))
    })
}

fn int32(value: JsonValue<'_, '_>) -> Result<i32, Unreadable> {
    value
        .as_i64()
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| Unreadable::expected("a 32-bit integer"))
}

/// A field a view cannot do without.
pub(crate) fn required<T>(field: Option<T>, name: &str) -> Result<T, Unreadable> {
    field.ok_or_else(|| Unreadable::missing(name))
}

/// An array, each item read as a `T`; an error names the item's index.
impl<'a, T: FromJson<'a>> FromJson<'a> for Vec<T> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let array: Array<'_, 'a> = value
            .as_array()
            .ok_or_else(|| Unreadable::expected("an array"))?;
        let mut items = Vec::with_capacity(array.len());
        for (i, value) in array.iter().enumerate() {
            items.push(T::from_json(value).map_err(|e| e.at(Seg::Index(i)))?);
        }
        Ok(items)
    }
}

impl<'a, T: FromJson<'a>> FromJson<'a> for Option<T> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        nullable(value, T::from_json)
    }
}

impl<'a> FromJson<'a> for PodView<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let mut pod = PodView::default();
        members(value, |key, v| {
            match key {
                "metadata" => pod.metadata = nullable(v, MetaView::from_json)?.unwrap_or_default(),
                "spec" => pod.spec = nullable(v, SpecView::from_json)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(pod)
    }
}

impl<'a> FromJson<'a> for MetaView<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let mut meta = MetaView::default();
        members(value, |key, v| {
            match key {
                "name" => meta.name = opt_string(v)?,
                "generateName" => meta.generate_name = opt_string(v)?,
                "namespace" => meta.namespace = opt_string(v)?,
                "labels" => meta.labels = nullable(v, StrMap::from_json)?,
                "annotations" => meta.annotations = nullable(v, StrMap::from_json)?,
                "ownerReferences" => {
                    meta.owner_references = Option::<Vec<OwnerView>>::from_json(v)?;
                }
                _ => {}
            }
            Ok(())
        })?;
        Ok(meta)
    }
}

impl<'a> FromJson<'a> for OwnerView<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let (mut api_version, mut kind, mut name, mut controller) = (None, None, None, None);
        members(value, |key, v| {
            match key {
                "apiVersion" => api_version = Some(string(v)?),
                "kind" => kind = Some(string(v)?),
                "name" => name = Some(string(v)?),
                "controller" => controller = boolean(v)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(OwnerView {
            api_version: required(api_version, "apiVersion")?,
            kind: required(kind, "kind")?,
            name: required(name, "name")?,
            controller,
        })
    }
}

impl<'a> FromJson<'a> for SpecView<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let mut spec = SpecView::default();
        members(value, |key, v| {
            match key {
                "containers" => {
                    spec.containers =
                        Option::<Vec<ContainerView>>::from_json(v)?.unwrap_or_default();
                }
                "initContainers" => {
                    spec.init_containers = Option::<Vec<ContainerView>>::from_json(v)?;
                }
                "hostNetwork" => spec.host_network = boolean(v)?,
                "os" => spec.os = nullable(v, OsView::from_json)?,
                "nodeSelector" => spec.node_selector = nullable(v, StrMap::from_json)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(spec)
    }
}

impl<'a> FromJson<'a> for OsView<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let mut name = None;
        members(value, |key, v| {
            if key == "name" {
                name = Some(string(v)?);
            }
            Ok(())
        })?;
        Ok(OsView {
            name: required(name, "name")?,
        })
    }
}

impl<'a> FromJson<'a> for ContainerView<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let mut name = None;
        let mut container = ContainerView::default();
        members(value, |key, v| {
            match key {
                "name" => name = Some(string(v)?),
                "ports" => container.ports = Option::<Vec<PortView>>::from_json(v)?,
                "livenessProbe" => container.liveness_probe = nullable(v, HandlerView::from_json)?,
                "readinessProbe" => {
                    container.readiness_probe = nullable(v, HandlerView::from_json)?;
                }
                "startupProbe" => container.startup_probe = nullable(v, HandlerView::from_json)?,
                "lifecycle" => container.lifecycle = nullable(v, LifecycleView::from_json)?,
                "resources" => container.resources = nullable(v, ResourcesView::from_json)?,
                _ => {}
            }
            Ok(())
        })?;
        container.name = required(name, "name")?;
        Ok(container)
    }
}

impl<'a> FromJson<'a> for PortView<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let (mut name, mut container_port, mut protocol, mut host_port) = (None, None, None, None);
        members(value, |key, v| {
            match key {
                "name" => name = opt_string(v)?,
                "containerPort" => container_port = Some(int32(v)?),
                "protocol" => protocol = opt_string(v)?,
                "hostPort" => host_port = nullable(v, int32)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(PortView {
            name,
            container_port: required(container_port, "containerPort")?,
            protocol,
            host_port,
        })
    }
}

impl<'a> FromJson<'a> for HandlerView<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let mut handler = HandlerView::default();
        members(value, |key, v| {
            match key {
                "httpGet" => handler.http_get = nullable(v, PortRef::from_json)?,
                "tcpSocket" => handler.tcp_socket = nullable(v, PortRef::from_json)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(handler)
    }
}

impl<'a> FromJson<'a> for LifecycleView<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let mut lifecycle = LifecycleView::default();
        members(value, |key, v| {
            match key {
                "postStart" => lifecycle.post_start = nullable(v, HandlerView::from_json)?,
                "preStop" => lifecycle.pre_stop = nullable(v, HandlerView::from_json)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(lifecycle)
    }
}

impl<'a> FromJson<'a> for PortRef<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let mut port = None;
        members(value, |key, v| {
            if key == "port" {
                port = Some(IntOrStr::from_json(v)?);
            }
            Ok(())
        })?;
        Ok(PortRef {
            port: required(port, "port")?,
        })
    }
}

impl<'a> FromJson<'a> for IntOrStr<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        match value.into_string() {
            Some(name) => Ok(IntOrStr::Str(Str(Cow::Borrowed(name)))),
            None => int32(value)
                .map(IntOrStr::Int)
                .map_err(|_| Unreadable::expected("a port number or name")),
        }
    }
}

impl<'a> FromJson<'a> for ResourcesView<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let mut resources = ResourcesView::default();
        members(value, |key, v| {
            match key {
                "claims" => resources.claims = nullable(v, claims_json)?,
                "limits" => resources.limits = nullable(v, StrMap::from_json)?,
                "requests" => resources.requests = nullable(v, StrMap::from_json)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(resources)
    }
}

/// A container's `claims` as compact JSON, to be written back: a list of objects of strings,
/// as the API defines them (`name`, `request`). Anything deeper is refused rather than copied,
/// so a hostile pod cannot make the copy recurse.
fn claims_json(value: JsonValue<'_, '_>) -> Result<String, Unreadable> {
    let claims = Vec::<StrMap>::from_json(value)?;
    let mut json = String::from("[");
    for (i, claim) in claims.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        push_object(&mut json, &claim.0, Nesting::Top, |out, value| {
            push_str(out, value);
        });
    }
    json.push(']');
    Ok(json)
}

impl<'a> FromJson<'a> for StrMap<'a> {
    fn from_json(value: JsonValue<'_, 'a>) -> Result<Self, Unreadable> {
        let mut entries = Vec::new();
        members(value, |key, v| {
            entries.push((Str(Cow::Borrowed(key)), string(v)?));
            Ok(())
        })?;
        Ok(StrMap(entries))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn pod(text: &str) -> Result<PodView<'static>, Unreadable> {
        read(text.to_owned().into_bytes().leak())
    }

    #[test]
    fn strings_are_unescaped_and_the_last_duplicate_wins() {
        let text = r#"{"metadata": {"name": "a\"b", "labels": {"x": "1", "y": "2", "x": "3"}},
            "spec": {"containers": [{"name": "web", "ports": [{"name": "http", "containerPort": 80}],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                "livenessProbe": {"tcpSocket": {"port": 80}},
                "resources": {"claims": [{"name": "gpu \"0\""}], "requests": {"cpu": "1"}}}],
                "unknown": {"anything": [1, 2]}}}"#;
        let pod = pod(text).unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("a\"b"));
        assert_eq!(pod.label("x"), Some("3"));
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.name, "web");
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .port,
            IntOrStr::Str("http".into())
        );
        assert_eq!(
            c.liveness_probe
                .as_ref()
                .unwrap()
                .tcp_socket
                .as_ref()
                .unwrap()
                .port,
            IntOrStr::Int(80)
        );
        let resources = c.resources.as_ref().unwrap();
        let claims: serde_json::Value =
            serde_json::from_str(resources.claims.as_deref().unwrap()).unwrap();
        assert_eq!(claims, serde_json::json!([{"name": "gpu \"0\""}]));
        assert_eq!(resources.requests.as_ref().unwrap().get("cpu"), Some("1"));
    }

    #[test]
    fn null_reads_as_absent() {
        let pod = pod(r#"{"metadata": {"labels": null, "name": null},
            "spec": {"containers": [{"name": "a", "ports": null, "resources": null}], "os": null}}"#)
        .unwrap();
        assert_eq!(pod.metadata.labels, None);
        assert_eq!(pod.metadata.name, None);
        assert!(pod.spec.unwrap().containers[0].ports.is_none());
    }

    #[test]
    fn fields_it_reads_must_have_their_type_and_the_error_says_where() {
        for (text, error) in [
            (
                r#"{"spec": {"containers": "nope"}}"#,
                "spec.containers: expected an array",
            ),
            (
                r#"{"spec": {"containers": [{"name": 1}]}}"#,
                "spec.containers[0].name: expected a string",
            ),
            (
                r#"{"spec": {"containers": [{"name": "a", "ports": [{"containerPort": "80"}]}]}}"#,
                "spec.containers[0].ports[0].containerPort: expected a 32-bit integer",
            ),
            (
                r#"{"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80.5}]}]}}"#,
                "spec.containers[0].ports[0].containerPort: expected a 32-bit integer",
            ),
            (
                r#"{"spec": {"containers": [{"ports": []}]}}"#,
                "spec.containers[0]: missing field `name`",
            ),
            (
                r#"{"metadata": {"labels": {"a": 1}}}"#,
                "metadata.labels.a: expected a string",
            ),
            (r#""a string""#, "expected an object"),
        ] {
            assert_eq!(pod(text).unwrap_err().to_string(), error, "{text}");
        }
        assert!(
            pod(r#"{"spec": "#)
                .unwrap_err()
                .to_string()
                .starts_with("malformed JSON")
        );
    }

    #[test]
    fn deep_nesting_neither_recurses_nor_is_copied() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let skipped = format!(r#"{{"spec": {{"containers": [{{"name": "a"}}], "x": {deep}}}}}"#);
        assert_eq!(pod(&skipped).unwrap().spec.unwrap().containers[0].name, "a");
        let claims = format!(
            r#"{{"spec": {{"containers": [{{"name": "a", "resources": {{"claims": {deep}}}}}]}}}}"#
        );
        assert_eq!(
            pod(&claims).unwrap_err().to_string(),
            "spec.containers[0].resources.claims[0]: expected an object"
        );
    }

    #[test]
    fn fields_it_does_not_read_may_be_anything() {
        let pod = pod(
            r#"{"spec": {"containers": [{"name": "a", "image": 7, "env": {"x": [null]}}],
            "volumes": "whatever"}, "status": 1}"#,
        )
        .unwrap();
        assert_eq!(pod.spec.unwrap().containers[0].name, "a");
    }
}
