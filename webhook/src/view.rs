//! The pod as the webhook reads it: only the fields a decision looks at, borrowed from the
//! request body where JSON allows (strings without escapes), read in the same pass as the
//! review around it. The views are read with `sonic_rs` (its serde deserializer borrows strings
//! without escapes as serde_json's does); `claims` is a `sonic_rs::LazyValue`, so a view with
//! claims reads only through sonic-rs.
//!
//! Everything else in the pod is skipped unread, so a mistyped field the webhook never reads
//! does not make the pod unreadable (the API server validates pods anyway); a mistyped field
//! it does read (a container's name, a port number, a resource quantity...) still does.

use std::{borrow::Cow, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, Visitor},
};
use sonic_rs::LazyValue;

/// A string borrowed from the body when it has no escapes (serde's `Cow<str>` inside an
/// `Option` or a map always copies).
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

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(V(std::marker::PhantomData))
    }
}

/// The parts of a Pod the webhook reads.
#[derive(Debug, Default, Deserialize)]
pub struct PodView<'a> {
    /// `metadata`.
    #[serde(default, borrow)]
    pub metadata: MetaView<'a>,
    /// `spec`.
    #[serde(default, borrow)]
    pub spec: Option<SpecView<'a>>,
}

/// The parts of a Pod's `metadata` the webhook reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaView<'a> {
    /// `name`.
    #[serde(default, borrow)]
    pub name: Option<Str<'a>>,
    /// `generateName`.
    #[serde(default, borrow)]
    pub generate_name: Option<Str<'a>>,
    /// `namespace`.
    #[serde(default, borrow)]
    pub namespace: Option<Str<'a>>,
    /// `labels`.
    #[serde(default, borrow)]
    pub labels: Option<StrMap<'a>>,
    /// `annotations`.
    #[serde(default, borrow)]
    pub annotations: Option<StrMap<'a>>,
    /// `ownerReferences`.
    #[serde(default, borrow)]
    pub owner_references: Option<Vec<OwnerView<'a>>>,
}

/// One ownerReference.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerView<'a> {
    /// `apiVersion`.
    #[serde(borrow)]
    pub api_version: Str<'a>,
    /// `kind`.
    #[serde(borrow)]
    pub kind: Str<'a>,
    /// `name`.
    #[serde(borrow)]
    pub name: Str<'a>,
    /// `controller`.
    #[serde(default)]
    pub controller: Option<bool>,
}

/// The parts of a PodSpec the webhook reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecView<'a> {
    /// `containers`.
    #[serde(default, borrow)]
    pub containers: Vec<ContainerView<'a>>,
    /// `initContainers`.
    #[serde(default, borrow)]
    pub init_containers: Option<Vec<ContainerView<'a>>>,
    /// `hostNetwork`.
    #[serde(default)]
    pub host_network: Option<bool>,
    /// `os`.
    #[serde(default, borrow)]
    pub os: Option<OsView<'a>>,
    /// `nodeSelector`.
    #[serde(default, borrow)]
    pub node_selector: Option<StrMap<'a>>,
}

/// `spec.os`.
#[derive(Debug, Deserialize)]
pub struct OsView<'a> {
    /// `name`.
    #[serde(borrow)]
    pub name: Str<'a>,
}

/// The parts of a container the webhook reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView<'a> {
    /// `name`.
    #[serde(borrow)]
    pub name: Str<'a>,
    /// `ports`.
    #[serde(default, borrow)]
    pub ports: Option<Vec<PortView<'a>>>,
    /// `livenessProbe`.
    #[serde(default, borrow)]
    pub liveness_probe: Option<HandlerView<'a>>,
    /// `readinessProbe`.
    #[serde(default, borrow)]
    pub readiness_probe: Option<HandlerView<'a>>,
    /// `startupProbe`.
    #[serde(default, borrow)]
    pub startup_probe: Option<HandlerView<'a>>,
    /// `lifecycle`.
    #[serde(default, borrow)]
    pub lifecycle: Option<LifecycleView<'a>>,
    /// `resources`.
    #[serde(default, borrow)]
    pub resources: Option<ResourcesView<'a>>,
}

/// One container port.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortView<'a> {
    /// `name`.
    #[serde(default, borrow)]
    pub name: Option<Str<'a>>,
    /// `containerPort`.
    pub container_port: i32,
    /// `protocol`.
    #[serde(default, borrow)]
    pub protocol: Option<Str<'a>>,
    /// `hostPort`.
    #[serde(default)]
    pub host_port: Option<i32>,
}

/// What a probe or a lifecycle hook calls, as far as ports go.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlerView<'a> {
    /// `httpGet`.
    #[serde(default, borrow)]
    pub http_get: Option<PortRef<'a>>,
    /// `tcpSocket`.
    #[serde(default, borrow)]
    pub tcp_socket: Option<PortRef<'a>>,
}

/// `lifecycle`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleView<'a> {
    /// `postStart`.
    #[serde(default, borrow)]
    pub post_start: Option<HandlerView<'a>>,
    /// `preStop`.
    #[serde(default, borrow)]
    pub pre_stop: Option<HandlerView<'a>>,
}

/// An `httpGet` or `tcpSocket` action: its port.
#[derive(Debug, Deserialize)]
pub struct PortRef<'a> {
    /// `port`.
    #[serde(borrow)]
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

impl<'de: 'a, 'a> Deserialize<'de> for IntOrStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = IntOrStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number or name")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                i32::try_from(v)
                    .map(IntOrStr::Int)
                    .map_err(|_| E::custom("port out of range"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i32::try_from(v)
                    .map(IntOrStr::Int)
                    .map_err(|_| E::custom("port out of range"))
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(IntOrStr::Str(Str(Cow::Borrowed(v))))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IntOrStr::Str(Str(Cow::Owned(v.to_owned()))))
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A container's `resources`: the quantities as written, and the claims kept verbatim.
#[derive(Debug, Default, Deserialize)]
pub struct ResourcesView<'a> {
    /// `claims`, untouched (their JSON text as sent).
    #[serde(default, borrow)]
    pub claims: Option<LazyValue<'a>>,
    /// `limits`.
    #[serde(default, borrow)]
    pub limits: Option<StrMap<'a>>,
    /// `requests`.
    #[serde(default, borrow)]
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

impl<'de: 'a, 'a> Deserialize<'de> for StrMap<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = StrMap<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(entry) = map.next_entry::<Str<'a>, Str<'a>>()? {
                    entries.push(entry);
                }
                Ok(StrMap(entries))
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_borrowed_unless_escaped_and_the_last_duplicate_wins() {
        let text = r#"{"metadata": {"name": "a\"b", "labels": {"x": "1", "y": "2", "x": "3"}},
            "spec": {"containers": [{"name": "web", "ports": [{"name": "http", "containerPort": 80}],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                "livenessProbe": {"tcpSocket": {"port": 80}},
                "resources": {"claims": [{"name": "gpu"}], "requests": {"cpu": "1"}}}],
                "unknown": {"anything": [1, 2]}}}"#;
        let pod: PodView = sonic_rs::from_str(text).unwrap();
        assert!(matches!(pod.metadata.name, Some(Str(Cow::Owned(ref n))) if n == "a\"b"));
        assert_eq!(pod.label("x"), Some("3"));
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert!(matches!(c.name, Str(Cow::Borrowed("web"))));
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
        assert_eq!(
            resources.claims.as_ref().unwrap().as_raw_str(),
            r#"[{"name": "gpu"}]"#
        );
        assert_eq!(resources.requests.as_ref().unwrap().get("cpu"), Some("1"));
    }

    #[test]
    fn fields_it_reads_must_have_their_type() {
        for text in [
            r#"{"spec": {"containers": "nope"}}"#,
            r#"{"spec": {"containers": [{"name": 1}]}}"#,
            r#"{"spec": {"containers": [{"name": "a", "ports": [{"containerPort": "80"}]}]}}"#,
            r#"{"metadata": {"labels": {"a": 1}}}"#,
            r#""a string""#,
        ] {
            assert!(sonic_rs::from_str::<PodView>(text).is_err(), "{text}");
        }
    }
}
