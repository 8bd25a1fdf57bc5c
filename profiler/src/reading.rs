//! What one scrape of one sidecar says, reduced to the counters the profiler uses, and the
//! difference between two scrapes of the same sidecar (counters become increments, with resets).

use std::collections::HashMap;

use snug_api::{latency, metrics, ports};

use crate::exposition::{self, ParseError, Sample};

/// The sidecar counters of one scrape, summed over ports and protocols.
#[derive(Debug, Clone, PartialEq)]
pub struct SidecarReading {
    /// Requests completed.
    pub requests: f64,
    /// Requests answered 5xx, a gRPC server error, or not at all.
    pub errors: f64,
    /// Cumulative request-duration bucket counts, one per [`latency::bucket_bounds`] entry and
    /// a last one for `+Inf`.
    pub duration_buckets: Vec<f64>,
    /// Per peer: bytes received from it, bytes sent to it, requests from it.
    pub peers: HashMap<String, PeerCounters>,
}

/// A peer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerCounters {
    /// Bytes from the peer.
    pub received_bytes: f64,
    /// Bytes to the peer.
    pub sent_bytes: f64,
    /// Requests from the peer.
    pub requests: f64,
}

/// Increments between two readings of the same sidecar.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingDelta {
    /// Seconds between the readings.
    pub elapsed: f64,
    /// Requests completed in between.
    pub requests: f64,
    /// Errors in between.
    pub errors: f64,
    /// Non-cumulative request-duration counts in between, bucket-wise.
    pub duration_buckets: Vec<f64>,
    /// Peer increments.
    pub peers: HashMap<String, PeerCounters>,
    /// Whether a counter went down (the sidecar restarted): increments count from zero.
    pub reset: bool,
}

/// Why a body is not a sidecar exposition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadingError {
    /// Not the text format at all.
    #[error(transparent)]
    Syntax(#[from] ParseError),
    /// Well-formed, but a histogram bucket bound is not one of the contract's.
    #[error("bucket bound le={0} is not in the snug latency layout")]
    UnknownBucket(String),
    /// Well-formed, but a value no counter can have (negative, NaN).
    #[error("{0} has an impossible value")]
    BadValue(String),
}

/// The metric families [`SidecarReading::parse`] reads. The scraper asks the sidecar for these
/// alone ([`metrics_query`]); a sidecar that serves more (an older one) costs parsing, not
/// correctness.
pub const FAMILIES: [&str; 5] = [
    metrics::REQUESTS_TOTAL,
    metrics::REQUEST_DURATION_SECONDS,
    metrics::PEER_RECEIVED_BYTES_TOTAL,
    metrics::PEER_SENT_BYTES_TOTAL,
    metrics::PEER_REQUESTS_TOTAL,
];

/// The query string of the sidecar's `/metrics` selecting [`FAMILIES`]:
/// `name%5B%5D=snug_requests_total&name%5B%5D=...` (see [`ports::METRICS_NAME_PARAM`]).
pub fn metrics_query() -> &'static str {
    static QUERY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    QUERY.get_or_init(|| {
        FAMILIES
            .iter()
            .map(|family| format!("{}={family}", ports::METRICS_NAME_PARAM_ENCODED))
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// Bucket bounds of the contract ([`latency::bucket_bounds`]), computed once per process.
pub(crate) fn bucket_bounds() -> &'static [f64] {
    static BOUNDS: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    BOUNDS.get_or_init(latency::bucket_bounds)
}

/// The `le` text each bucket bound was first seen written as (every sidecar writes a bound the
/// same way), so a bound's float is parsed once per process, not once per line.
fn bound_texts() -> &'static [std::sync::OnceLock<Box<str>>] {
    static TEXTS: std::sync::OnceLock<Vec<std::sync::OnceLock<Box<str>>>> =
        std::sync::OnceLock::new();
    TEXTS.get_or_init(|| {
        (0..bucket_bounds().len())
            .map(|_| Default::default())
            .collect()
    })
}

/// The bucket of an `le` label; `expected` is the likely one (buckets come in order).
fn bucket_index(le: &str, expected: usize) -> Option<usize> {
    let texts = bound_texts();
    if texts
        .get(expected)
        .and_then(|t| t.get())
        .is_some_and(|text| **text == *le)
    {
        return Some(expected);
    }
    let bounds = bucket_bounds();
    let value: f64 = match le {
        "+Inf" | "Inf" => return Some(bounds.len()),
        _ => le.parse().ok()?,
    };
    let i = bounds.partition_point(|b| *b < value * (1.0 - 1e-9));
    let bound = *bounds.get(i)?;
    let found = (bound - value).abs() <= bound * 1e-9;
    if found {
        let _ = texts[i].set(le.into());
    }
    found.then_some(i)
}

fn is_error_class(class: &str) -> bool {
    matches!(class, "5xx" | "grpc_server_error" | "error")
}

/// What a sample's name is to [`SidecarReading`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    DurationBucket,
    Requests,
    Peer(PeerField),
    OtherPeer,
    Other,
}

/// Which of a peer's counters a series feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerField {
    Received,
    Sent,
    Requests,
}

impl PeerField {
    fn get(self) -> fn(&mut PeerCounters) -> &mut f64 {
        match self {
            PeerField::Received => |c| &mut c.received_bytes,
            PeerField::Sent => |c| &mut c.sent_bytes,
            PeerField::Requests => |c| &mut c.requests,
        }
    }
}

impl Kind {
    fn of(name: &str, duration_bucket: &str) -> Self {
        match name {
            _ if name == duration_bucket => Kind::DurationBucket,
            metrics::REQUESTS_TOTAL => Kind::Requests,
            metrics::PEER_RECEIVED_BYTES_TOTAL => Kind::Peer(PeerField::Received),
            metrics::PEER_SENT_BYTES_TOTAL => Kind::Peer(PeerField::Sent),
            metrics::PEER_REQUESTS_TOTAL => Kind::Peer(PeerField::Requests),
            _ if name.starts_with("snug_peer_") => Kind::OtherPeer,
            _ => Kind::Other,
        }
    }
}

impl SidecarReading {
    /// Reads the snug series out of an exposition body; other series are ignored.
    pub fn parse(text: &str) -> Result<Self, ReadingError> {
        let duration_bucket = format!("{}_bucket", metrics::REQUEST_DURATION_SECONDS);
        let mut reading = SidecarReading {
            requests: 0.0,
            errors: 0.0,
            duration_buckets: vec![0.0; bucket_bounds().len() + 1],
            peers: HashMap::new(),
        };
        let mut problem = None;
        let mut next_bucket = 0;
        let mut kind = Kind::Other;
        // Families the profiler does not read (when the sidecar served them anyway) are
        // skipped by name, their lines unread.
        let wanted = |family: &str| {
            FAMILIES
                .iter()
                .any(|name| metrics::names_family(name, family))
        };
        exposition::parse_families(text, wanted, |sample| {
            if problem.is_none() {
                // A family's samples share a name: it is told apart once.
                if !sample.same_name {
                    kind = Kind::of(sample.name, &duration_bucket);
                }
                problem = reading.add(sample, kind, &mut next_bucket).err();
            }
        })?;
        problem.map_or(Ok(reading), Err)
    }

    fn add(
        &mut self,
        sample: &Sample<'_>,
        kind: Kind,
        next_bucket: &mut usize,
    ) -> Result<(), ReadingError> {
        let value = sample.value;
        let name = sample.name;
        if kind != Kind::Other && (value.is_nan() || value < 0.0) {
            return Err(ReadingError::BadValue(name.to_owned()));
        }
        match kind {
            Kind::DurationBucket => {
                let le = sample.label("le").unwrap_or("");
                let i = bucket_index(le, *next_bucket)
                    .ok_or_else(|| ReadingError::UnknownBucket(le.into()))?;
                self.duration_buckets[i] += value;
                *next_bucket = i + 1;
            }
            Kind::Requests => {
                self.requests += value;
                if sample
                    .label(metrics::LABEL_CLASS)
                    .is_some_and(is_error_class)
                {
                    self.errors += value;
                }
            }
            Kind::Peer(field) => {
                let Some(peer) = sample.label(metrics::LABEL_PEER) else {
                    return Ok(());
                };
                let field = field.get();
                // Look up before inserting: the common case is a peer already seen in this body.
                if let Some(entry) = self.peers.get_mut(peer) {
                    *field(entry) += value;
                } else {
                    let mut entry = PeerCounters::default();
                    *field(&mut entry) += value;
                    self.peers.insert(peer.to_owned(), entry);
                }
            }
            // Other `snug_peer_*` series are checked (no negative counts) but not read.
            Kind::OtherPeer | Kind::Other => {}
        }
        Ok(())
    }

    /// The increments since `previous`, taken `elapsed` seconds earlier. A counter that went
    /// down means the sidecar restarted: its increments are then counted from zero.
    pub fn since(&self, previous: &SidecarReading, elapsed: f64) -> ReadingDelta {
        let total = |r: &SidecarReading| r.duration_buckets.last().copied().unwrap_or(0.0);
        let reset = self.requests < previous.requests || total(self) < total(previous);
        // After a reset the increments count from zero (built only then).
        let zero;
        let base = if reset {
            zero = SidecarReading {
                requests: 0.0,
                errors: 0.0,
                duration_buckets: vec![0.0; self.duration_buckets.len()],
                peers: HashMap::new(),
            };
            &zero
        } else {
            previous
        };
        let mut duration_buckets = Vec::with_capacity(self.duration_buckets.len());
        let mut below = 0.0;
        for (now, then) in self.duration_buckets.iter().zip(&base.duration_buckets) {
            let cumulative = (now - then).max(0.0).max(below);
            duration_buckets.push(cumulative - below);
            below = cumulative;
        }
        let peers = self
            .peers
            .iter()
            .map(|(peer, now)| {
                let then = base.peers.get(peer).copied().unwrap_or_default();
                let step = |n: f64, t: f64| if n >= t { n - t } else { n };
                let delta = PeerCounters {
                    received_bytes: step(now.received_bytes, then.received_bytes),
                    sent_bytes: step(now.sent_bytes, then.sent_bytes),
                    requests: step(now.requests, then.requests),
                };
                (peer.clone(), delta)
            })
            .collect();
        ReadingDelta {
            elapsed,
            requests: self.requests - base.requests,
            errors: (self.errors - base.errors).max(0.0),
            duration_buckets,
            peers,
            reset,
        }
    }
}

#[cfg(test)]
mod tests;
