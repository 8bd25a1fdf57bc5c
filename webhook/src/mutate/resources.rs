//! Requests and limits from a profile: the recommendation, the original limit/request ratio
//! when the profile gives no limit, clamped to the pod's `snug.dev/min-*`/`max-*` bounds and
//! the namespace's LimitRange maximums.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use snug_api::{ContainerRecommendation, keys, quantity};

use crate::{
    patch::{Nesting, push_escaped, push_object, push_str_in},
    store::LimitMax,
    view::{ResourcesView, StrMap},
};

/// A container's `resources` as the webhook writes them: quantities by resource name, the
/// claims kept.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Resources<'v> {
    /// `claims`, as JSON text.
    pub claims: Option<&'v str>,
    /// `limits`.
    pub limits: Option<Amounts<'v>>,
    /// `requests`.
    pub requests: Option<Amounts<'v>>,
}

/// Quantities by resource name, kept in name order (the order a JSON object of them is
/// written in, as serde_json writes a map). A container has two or three: a sorted list.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Amounts<'v>(Vec<(&'v str, Cow<'v, str>)>);

impl<'v> Amounts<'v> {
    /// The quantity of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, q)| &**q)
    }

    /// Sets the quantity of `name`.
    pub fn set(&mut self, name: &'v str, quantity: Cow<'v, str>) {
        set_sorted(&mut self.0, name, quantity);
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn of(map: &'v StrMap<'_>) -> Self {
        let mut amounts = Amounts(Vec::with_capacity(map.0.len()));
        for (name, quantity) in &map.0 {
            amounts.set(name, Cow::Borrowed(quantity));
        }
        amounts
    }

    fn write_json(&self, out: &mut String, nesting: Nesting) {
        push_object(out, &self.0, nesting, |out, quantity| {
            push_str_in(out, quantity, nesting);
        });
    }
}

/// Sets `key`'s entry of a list kept in key order (a later entry of a key replaces the
/// earlier, as in a map): the maps the webhook writes have a handful of entries.
pub(crate) fn set_sorted<K: Ord, V>(list: &mut Vec<(K, V)>, key: K, value: V) {
    match list.binary_search_by(|(k, _)| k.cmp(&key)) {
        Ok(at) => list[at].1 = value,
        Err(at) => list.insert(at, (key, value)),
    }
}

impl<'v> Resources<'v> {
    /// The resources as sent.
    pub fn of(view: &'v ResourcesView<'_>) -> Self {
        Resources {
            // Already JSON text (written by the reader), so it is written back as it is.
            claims: view.claims.as_deref(),
            limits: view.limits.as_ref().map(Amounts::of),
            requests: view.requests.as_ref().map(Amounts::of),
        }
    }

    /// Writes the resources as a JSON object (members in name order, none for what is unset),
    /// as itself or inside a JSON string.
    pub fn write_json(&self, out: &mut String, nesting: Nesting) {
        out.push('{');
        let mut first = true;
        let mut member = |out: &mut String, name: &str| {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            push_str_in(out, name, nesting);
            out.push(':');
        };
        if let Some(claims) = self.claims {
            member(out, "claims");
            match nesting {
                Nesting::Top => out.push_str(claims),
                Nesting::InString => push_escaped(out, claims),
            }
        }
        if let Some(limits) = &self.limits {
            member(out, "limits");
            limits.write_json(out, nesting);
        }
        if let Some(requests) = &self.requests {
            member(out, "requests");
            requests.write_json(out, nesting);
        }
        out.push('}');
    }
}

/// Bounds of one resource: a floor and a ceiling, each with the text to write when hit.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Range {
    /// Lowest request.
    pub min: Option<(f64, Quantity)>,
    /// Highest request or limit.
    pub max: Option<(f64, Quantity)>,
}

/// The bounds that hold for a pod.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Bounds {
    /// CPU, cores.
    pub cpu: Range,
    /// Memory, bytes.
    pub memory: Range,
    /// Annotations that did not parse (reported, then ignored).
    pub invalid: Vec<String>,
}

impl Bounds {
    /// Bounds from the pod's annotations, tightened by the namespace's LimitRange.
    pub fn new(annotations: Option<&StrMap<'_>>, limit_max: LimitMax) -> Bounds {
        let mut bounds = Bounds::default();
        let mut read = |key: &str| -> Option<(f64, Quantity)> {
            let text = annotations?.get(key)?;
            match quantity::parse(text) {
                Ok(v) => Some((v, Quantity(text.trim().to_owned()))),
                Err(e) => {
                    bounds.invalid.push(format!("{key}: {e}"));
                    None
                }
            }
        };
        let (min_cpu, max_cpu) = (read(keys::MIN_CPU), read(keys::MAX_CPU));
        let (min_memory, max_memory) = (read(keys::MIN_MEMORY), read(keys::MAX_MEMORY));
        bounds.cpu = Range {
            min: min_cpu,
            max: tighter(max_cpu, limit_max.cpu, cpu_floor),
        };
        bounds.memory = Range {
            min: min_memory,
            max: tighter(max_memory, limit_max.memory, memory_floor),
        };
        bounds
    }
}

fn tighter(
    annotated: Option<(f64, Quantity)>,
    limit_range: Option<f64>,
    format: fn(f64) -> Quantity,
) -> Option<(f64, Quantity)> {
    match (annotated, limit_range) {
        (Some(a), Some(l)) if l < a.0 => Some((l, format(l))),
        (Some(a), _) => Some(a),
        (None, Some(l)) => Some((l, format(l))),
        (None, None) => None,
    }
}

/// Whole millicores, rounded down: a ceiling must never be written above itself.
fn cpu_floor(cores: f64) -> Quantity {
    Quantity(format!(
        "{}m",
        (cores * 1000.0 + 1e-6).floor().max(0.0) as u64
    ))
}

/// Whole bytes, rounded down.
fn memory_floor(bytes: f64) -> Quantity {
    Quantity(format!("{}", bytes.floor().max(0.0) as u64))
}

/// The resources a container should get from its recommendation, given what it has
/// (`original`, as [`Resources::of`] reads it), or `None` when the recommendation says
/// nothing usable.
pub fn plan<'v>(
    original: Resources<'v>,
    rec: &ContainerRecommendation,
    bounds: &Bounds,
) -> Option<Resources<'v>> {
    // Edited in place: each resource reads its own original values before it sets them.
    let mut requests = original.requests.unwrap_or_default();
    let mut limits = original.limits.unwrap_or_default();
    let mut changed = false;
    let resources = [
        (
            "cpu",
            &rec.requests.cpu,
            &rec.limits.cpu,
            &bounds.cpu,
            quantity::format_cpu as fn(f64) -> Quantity,
        ),
        (
            "memory",
            &rec.requests.memory,
            &rec.limits.memory,
            &bounds.memory,
            quantity::format_memory,
        ),
    ];
    for (name, want_request, want_limit, range, format) in resources {
        let Some(request) = want_request
            .as_ref()
            .and_then(|q| quantity::parse_quantity(q).ok())
        else {
            continue;
        };
        let old_request = original_value(&requests, name);
        let old_limit = original_value(&limits, name);
        let request = clamp(request, range);
        let limit = match want_limit
            .as_ref()
            .and_then(|q| quantity::parse_quantity(q).ok())
        {
            Some(limit) => Some(limit),
            // Keep the ratio the owner chose; a limit without a request means request == limit.
            None => {
                old_limit.map(|l| request * l / old_request.unwrap_or(l).max(f64::MIN_POSITIVE))
            }
        };
        requests.set(name, Cow::Owned(written(request, range, format).0));
        if let Some(limit) = limit {
            let ceiling = range.max.as_ref().map_or(f64::INFINITY, |(max, _)| *max);
            let limit = limit.min(ceiling).max(request);
            limits.set(name, Cow::Owned(written(limit, range, format).0));
        }
        changed = true;
    }
    changed.then(|| Resources {
        claims: original.claims,
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
    })
}

fn original_value(map: &Amounts<'_>, name: &str) -> Option<f64> {
    map.get(name)
        .and_then(|q| quantity::parse(q).ok())
        .filter(|v| *v > 0.0)
}

fn clamp(value: f64, range: &Range) -> f64 {
    let mut v = value;
    if let Some((min, _)) = &range.min {
        v = v.max(*min);
    }
    if let Some((max, _)) = &range.max {
        v = v.min(*max);
    }
    v
}

/// The quantity to write: formatting rounds up, so a value at or near the ceiling is written
/// as the ceiling itself and never above it.
fn written(value: f64, range: &Range, format: fn(f64) -> Quantity) -> Quantity {
    let text = format(value);
    match &range.max {
        Some((max, max_text)) if quantity::parse_quantity(&text).map_or(true, |v| v > *max) => {
            max_text.clone()
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snug_api::ResourceAmounts;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ResourcesView<'static> {
        let map = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| {
                StrMap(
                    pairs
                        .iter()
                        .map(|(k, v)| (k.to_string().into(), v.to_string().into()))
                        .collect(),
                )
            })
        };
        ResourcesView {
            requests: map(requests),
            limits: map(limits),
            claims: None,
        }
    }

    fn get<'a>(map: &'a Option<Amounts<'_>>, key: &str) -> &'a str {
        map.as_ref().unwrap().get(key).unwrap()
    }

    fn rec(cpu: &str, memory: &str) -> ContainerRecommendation {
        ContainerRecommendation {
            requests: ResourceAmounts {
                cpu: Some(q(cpu)),
                memory: Some(q(memory)),
            },
            ..Default::default()
        }
    }

    #[test]
    fn keeps_the_original_limit_to_request_ratio() {
        let c = container(
            &[("cpu", "500m"), ("memory", "512Mi")],
            &[("cpu", "1"), ("memory", "512Mi")],
        );
        let r = plan(Resources::of(&c), &rec("200m", "300Mi"), &Bounds::default()).unwrap();
        assert_eq!(get(&r.requests, "cpu"), "200m");
        assert_eq!(get(&r.limits, "cpu"), "400m");
        assert_eq!(get(&r.requests, "memory"), "300Mi");
        assert_eq!(get(&r.limits, "memory"), "300Mi");
    }

    #[test]
    fn no_original_limit_means_no_limit_unless_the_profile_gives_one() {
        let c = container(&[("cpu", "1")], &[]);
        let r = plan(Resources::of(&c), &rec("100m", "64Mi"), &Bounds::default()).unwrap();
        assert!(r.limits.is_none());
        let mut with_limit = rec("100m", "64Mi");
        with_limit.limits.memory = Some(q("128Mi"));
        let r = plan(Resources::of(&c), &with_limit, &Bounds::default()).unwrap();
        assert_eq!(get(&r.limits, "memory"), "128Mi");
    }

    #[test]
    fn bounds_and_limit_range_clamp_requests_and_limits() {
        let annotations = StrMap(vec![
            (keys::MIN_CPU.into(), "300m".into()),
            (keys::MAX_MEMORY.into(), "100M".into()),
            (keys::MAX_CPU.into(), "nonsense".into()),
        ]);
        let bounds = Bounds::new(
            Some(&annotations),
            LimitMax {
                cpu: Some(0.8),
                memory: None,
            },
        );
        assert_eq!(bounds.invalid.len(), 1);
        let c = container(
            &[("cpu", "1"), ("memory", "1Gi")],
            &[("cpu", "4"), ("memory", "2Gi")],
        );
        let r = plan(Resources::of(&c), &rec("100m", "400Mi"), &bounds).unwrap();
        assert_eq!(get(&r.requests, "cpu"), "300m", "raised to min-cpu");
        assert_eq!(
            get(&r.limits, "cpu"),
            "800m",
            "ratio 4x capped by the LimitRange max"
        );
        // 100M is not a whole number of MiB: the ceiling is written verbatim, never above.
        assert_eq!(get(&r.requests, "memory"), "100M");
        assert_eq!(get(&r.limits, "memory"), "100M");
    }

    #[test]
    fn resources_written_inside_a_string_read_back_as_the_same_json() {
        let mut text = br#"{"claims": [{"name": "gpu \"0\""}], "limits": {"cpu": "1"}}"#.to_vec();
        let claims = crate::view::read::<ResourcesView<'_>>(&mut text).unwrap();
        let mut with_claims = Resources::of(&claims);
        with_claims
            .requests
            .get_or_insert_default()
            .set("memory", "64Mi".into());
        for resources in [with_claims, Resources::default()] {
            let mut top = String::new();
            resources.write_json(&mut top, Nesting::Top);
            let mut nested = String::from("\"");
            resources.write_json(&mut nested, Nesting::InString);
            nested.push('"');
            let unwrapped: String = serde_json::from_str(&nested).unwrap();
            assert_eq!(unwrapped, top);
            let value: serde_json::Value = serde_json::from_str(&top).unwrap();
            if resources.claims.is_some() {
                assert_eq!(
                    value,
                    serde_json::json!({"claims": [{"name": "gpu \"0\""}],
                                       "limits": {"cpu": "1"}, "requests": {"memory": "64Mi"}})
                );
            }
        }
    }

    #[test]
    fn an_empty_recommendation_changes_nothing() {
        let c = container(&[("cpu", "1")], &[]);
        assert!(
            plan(
                Resources::of(&c),
                &ContainerRecommendation::default(),
                &Bounds::default()
            )
            .is_none()
        );
    }
}
