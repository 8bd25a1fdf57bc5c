//! Configuration: the command line and environment (what the webhook sets), parsed into a plain
//! [`Config`] that tests build directly.

use std::{net::IpAddr, time::Duration};

use clap::{Parser, ValueEnum};
use snug_api::{
    PortMap,
    ports::{
        ADMIN_PORT, DEFAULT_MAX_PEERS, ENV_ADMIN_PORT, ENV_APP_ADDR, ENV_DRAIN_SECONDS,
        ENV_LISTEN_ADDR, ENV_MAX_PEERS, ENV_PORTS,
    },
};

/// Default grace period for in-flight requests after SIGTERM.
pub const DEFAULT_DRAIN_SECONDS: u64 = 20;
/// Default time a client has to send a complete request head.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Default cap on concurrent client connections, over all listeners.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Everything the sidecar needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Inbound port → app port. A listen port of 0 binds an ephemeral port (tests).
    pub ports: PortMap,
    /// Address the inbound listeners and the admin server bind.
    pub listen_addr: IpAddr,
    /// Address of the app.
    pub app_addr: IpAddr,
    /// Admin port: `/metrics`, `/live`, `/ready`. 0 binds an ephemeral port (tests).
    pub admin_port: u16,
    /// Peers kept by name in per-peer metrics; the rest are counted as `other`.
    pub max_peers: usize,
    /// Grace period for in-flight requests and connections after shutdown is asked.
    pub drain: Duration,
    /// Time a client has to send a request head (and to make its protocol known).
    pub header_timeout: Duration,
    /// Cap on concurrent client connections; at the cap the sidecar stops accepting.
    pub max_connections: usize,
    /// Add `X-Forwarded-For: <client ip>` to HTTP requests.
    pub x_forwarded_for: bool,
    /// Worker threads serving client connections.
    pub workers: usize,
}

impl Config {
    /// A configuration with the documented defaults for the given port map.
    pub fn new(ports: PortMap) -> Self {
        Self {
            ports,
            listen_addr: IpAddr::from([0, 0, 0, 0]),
            app_addr: IpAddr::from([127, 0, 0, 1]),
            admin_port: ADMIN_PORT,
            max_peers: DEFAULT_MAX_PEERS,
            drain: Duration::from_secs(DEFAULT_DRAIN_SECONDS),
            header_timeout: Duration::from_millis(DEFAULT_HEADER_TIMEOUT_MS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            x_forwarded_for: false,
            workers: default_workers(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// snug-sidecar: a measuring proxy in front of an app's ports.
///
/// Each `listen:app` pair gets a listener that forwards every connection to the app. HTTP/1.x,
/// HTTP/2 (prior knowledge, gRPC included) and opaque TCP are told apart by their first bytes and
/// measured; Prometheus metrics are served on the admin port.
#[derive(Debug, Parser)]
#[command(name = "snug-sidecar", version)]
pub struct Args {
    /// Comma-separated `listen:app` port pairs, e.g. `4700:8080,4701:9090`.
    #[arg(long, env = ENV_PORTS)]
    pub ports: PortMap,
    /// Address the inbound listeners and the admin server bind.
    #[arg(long, env = ENV_LISTEN_ADDR, default_value = "0.0.0.0")]
    pub listen_addr: IpAddr,
    /// Address of the app.
    #[arg(long, env = ENV_APP_ADDR, default_value = "127.0.0.1")]
    pub app_addr: IpAddr,
    /// Admin port serving /metrics, /live and /ready.
    #[arg(long, env = ENV_ADMIN_PORT, default_value_t = ADMIN_PORT)]
    pub admin_port: u16,
    /// Most client IPs kept by name in per-peer metrics (by bytes); the rest count as `other`.
    #[arg(long, env = ENV_MAX_PEERS, default_value_t = DEFAULT_MAX_PEERS)]
    pub max_peers: usize,
    /// Seconds in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = ENV_DRAIN_SECONDS, default_value_t = DEFAULT_DRAIN_SECONDS)]
    pub drain_seconds: u64,
    /// Milliseconds a client has to send a complete HTTP request head (then the connection is
    /// closed); a client that has not made its protocol known by then is forwarded as opaque TCP.
    #[arg(long, env = "SNUG_HEADER_TIMEOUT_MS", default_value_t = DEFAULT_HEADER_TIMEOUT_MS)]
    pub header_timeout_ms: u64,
    /// Most concurrent client connections; at the cap the sidecar stops accepting until one closes.
    #[arg(long, env = "SNUG_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Add `X-Forwarded-For: <client ip>` to HTTP requests (the app otherwise sees 127.0.0.1).
    #[arg(long, env = "SNUG_X_FORWARDED_FOR")]
    pub x_forwarded_for: bool,
    /// Worker threads serving client connections, each with its own event loop. The default is
    /// the CPUs this process may use (a CPU limit counts), at most 2.
    #[arg(long, env = "SNUG_WORKERS", default_value_t = default_workers())]
    pub workers: usize,
    /// Log format.
    #[arg(long, env = "SNUG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Args {
    /// The runtime configuration these arguments describe.
    pub fn config(&self) -> Config {
        Config {
            ports: self.ports.clone(),
            listen_addr: self.listen_addr,
            app_addr: self.app_addr,
            admin_port: self.admin_port,
            max_peers: self.max_peers,
            drain: Duration::from_secs(self.drain_seconds),
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            max_connections: self.max_connections,
            x_forwarded_for: self.x_forwarded_for,
            workers: self.workers.max(1),
        }
    }
}

/// Most worker threads started by default (Istio's sidecar default concurrency too): a sidecar
/// serves one pod's traffic, and each worker keeps its own idle app connections.
pub const DEFAULT_MAX_WORKERS: usize = 2;

/// One worker per CPU this process may use (its cgroup's CPU limit counts), at most
/// [`DEFAULT_MAX_WORKERS`].
fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(DEFAULT_MAX_WORKERS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_defaults_and_bad_ports_are_refused() {
        let args = Args::try_parse_from([
            "snug-sidecar",
            "--ports",
            "4700:8080,4701:9090",
            "--max-peers",
            "3",
            "--drain-seconds",
            "5",
            "--x-forwarded-for",
        ])
        .unwrap();
        let config = args.config();
        assert_eq!(config.ports.to_string(), "4700:8080,4701:9090");
        assert_eq!(config.max_peers, 3);
        assert_eq!(config.drain, Duration::from_secs(5));
        assert!(config.x_forwarded_for);
        assert_eq!(config.admin_port, ADMIN_PORT);
        assert_eq!(config.app_addr, IpAddr::from([127, 0, 0, 1]));

        let err = Args::try_parse_from(["snug-sidecar", "--ports", "4700"]).unwrap_err();
        assert!(err.to_string().contains("listen:app"), "{err}");
    }
}
