//! The sidecar's ports and environment: what the webhook writes into the pod spec and the
//! sidecar reads back.

use std::{fmt, str::FromStr};

use crate::Error;

/// Name of the injected sidecar container (and of its entry in a profile's containers).
pub const SIDECAR_CONTAINER_NAME: &str = "snug-sidecar";
/// First inbound listener port; the n-th intercepted app port gets `FIRST_INBOUND_PORT + n`.
pub const FIRST_INBOUND_PORT: u16 = 4700;
/// Highest inbound listener port (so inbound ports never reach the admin port).
pub const LAST_INBOUND_PORT: u16 = 4789;
/// The sidecar's admin port: `/metrics`, `/live`, `/ready`.
pub const ADMIN_PORT: u16 = 4790;
/// Name of the sidecar's admin container port.
pub const ADMIN_PORT_NAME: &str = "snug-admin";
/// Prefix the webhook gives an app's renamed port (`http` → `snug-app-http`, truncated to 15).
pub const RENAMED_PORT_PREFIX: &str = "snug-app-";
/// Path of the sidecar's Prometheus endpoint on the admin port.
pub const METRICS_PATH: &str = "/metrics";
/// Query parameter of [`METRICS_PATH`] naming one metric family to serve, repeated for several
/// (`/metrics?name[]=snug_requests_total&name[]=snug_request_duration_seconds`, brackets
/// percent-encoded or not); without it every family is served.
pub const METRICS_NAME_PARAM: &str = "name[]";
/// [`METRICS_NAME_PARAM`] as it is written in a URL, brackets percent-encoded.
pub const METRICS_NAME_PARAM_ENCODED: &str = "name%5B%5D";
/// Path of the sidecar's liveness endpoint on the admin port.
pub const LIVE_PATH: &str = "/live";
/// Path of the sidecar's readiness endpoint on the admin port (ready once all listeners bound).
pub const READY_PATH: &str = "/ready";
/// Response header on an HTTP response the sidecar made itself (a 502 when the app cannot be
/// reached), naming the cause, e.g. `upstream-refused`. Absent on every response from the app.
pub const SIDECAR_ERROR_HEADER: &str = "x-snug-sidecar-error";
/// The non-root user the sidecar runs as.
pub const SIDECAR_UID: i64 = 65532;

// Inbound listeners must never collide with the admin port.
const _: () = assert!(FIRST_INBOUND_PORT < LAST_INBOUND_PORT && LAST_INBOUND_PORT < ADMIN_PORT);

/// Environment: comma-separated `listen:app` port pairs, e.g. `4700:8080,4701:9090`.
pub const ENV_PORTS: &str = "SNUG_PORTS";
/// Environment: address the inbound listeners bind (default `0.0.0.0`).
pub const ENV_LISTEN_ADDR: &str = "SNUG_LISTEN_ADDR";
/// Environment: address of the app (default `127.0.0.1`).
pub const ENV_APP_ADDR: &str = "SNUG_APP_ADDR";
/// Environment: admin port (default [`ADMIN_PORT`]).
pub const ENV_ADMIN_PORT: &str = "SNUG_ADMIN_PORT";
/// Environment: most peers kept by name in per-peer metrics; the rest count as `other`.
pub const ENV_MAX_PEERS: &str = "SNUG_MAX_PEERS";
/// Environment: grace period for in-flight requests after SIGTERM, in seconds.
pub const ENV_DRAIN_SECONDS: &str = "SNUG_DRAIN_SECONDS";
/// Default of [`ENV_MAX_PEERS`].
pub const DEFAULT_MAX_PEERS: usize = 64;

/// One intercepted port: the sidecar listens on `listen` and forwards to the app's `app`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// The sidecar's inbound port.
    pub listen: u16,
    /// The app's port on the app address.
    pub app: u16,
}

/// The sidecar's port map, as carried in [`ENV_PORTS`]: `listen:app[,listen:app...]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMap(pub Vec<PortMapping>);

impl PortMap {
    /// The mappings, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &PortMapping> {
        self.0.iter()
    }

    /// Whether no port is mapped.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends `mappings` to `out` as a port map's text (`listen:app,...`, what `Display`
    /// prints and `FromStr` reads), without the formatting machinery: the webhook writes one
    /// into every sidecar it injects.
    pub fn write<'m>(out: &mut String, mappings: impl IntoIterator<Item = &'m PortMapping>) {
        for (i, m) in mappings.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(itoa::Buffer::new().format(m.listen));
            out.push(':');
            out.push_str(itoa::Buffer::new().format(m.app));
        }
    }
}

impl fmt::Display for PortMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        PortMap::write(&mut text, &self.0);
        f.write_str(&text)
    }
}

impl FromStr for PortMap {
    type Err = Error;

    /// Parses `listen:app` pairs; rejects zero ports and a listen port given twice.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: String| Error::PortMap(s.to_owned(), why);
        let mut mappings: Vec<PortMapping> = Vec::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (listen, app) = pair
                .split_once(':')
                .ok_or_else(|| err(format!("{pair:?} is not listen:app")))?;
            let port = |p: &str| match p.trim().parse::<u16>() {
                Ok(0) | Err(_) => Err(err(format!("{p:?} is not a port (1-65535)"))),
                Ok(n) => Ok(n),
            };
            let mapping = PortMapping {
                listen: port(listen)?,
                app: port(app)?,
            };
            if mappings.iter().any(|m| m.listen == mapping.listen) {
                return Err(err(format!("listen port {} given twice", mapping.listen)));
            }
            mappings.push(mapping);
        }
        if mappings.is_empty() {
            return Err(err("no port pairs".to_owned()));
        }
        Ok(PortMap(mappings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_pairs() {
        let map: PortMap = "4700:8080, 4701:9090".parse().unwrap();
        assert_eq!(
            map.0,
            vec![
                PortMapping {
                    listen: 4700,
                    app: 8080
                },
                PortMapping {
                    listen: 4701,
                    app: 9090
                }
            ]
        );
        assert_eq!(map.to_string(), "4700:8080,4701:9090");
    }

    #[test]
    fn rejects_bad_maps_with_a_reason() {
        for bad in [
            "",
            "4700",
            "4700:0",
            "a:80",
            "4700:80,4700:81",
            "4700:70000",
        ] {
            let err = bad.parse::<PortMap>().unwrap_err();
            assert!(matches!(err, Error::PortMap(..)), "{bad}: {err}");
        }
    }
}
