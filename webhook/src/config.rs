//! Command line and environment: parsed by clap into [`Cli`], turned into the plain [`Config`]
//! that tests build directly.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use snug_api::Mode;

use crate::certs::CertsArgs;

/// `snug-webhook`: Snug's mutating admission webhook.
#[derive(Debug, Parser)]
#[command(name = "snug-webhook", version, about)]
pub struct Cli {
    /// Serve admissions (the default) or generate certificates.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Serving flags (used when no subcommand is given).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands besides serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make the webhook's CA and serving certificate (files, or a Secret in the cluster).
    Certs(CertsArgs),
}

/// Whether the sidecar is a native sidecar (init container with `restartPolicy: Always`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NativeSidecars {
    /// From the API server's version (≥ 1.29); `always` when no cluster is reachable.
    Auto,
    /// Always a native sidecar.
    Always,
    /// Always a plain container.
    Never,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of the webhook server.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTPS address of `POST /mutate`.
    #[arg(long, env = "SNUG_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address of `/live`, `/ready` and `/metrics`.
    #[arg(long, env = "SNUG_HEALTH_LISTEN", default_value = "0.0.0.0:8080")]
    pub health_listen: SocketAddr,
    /// PEM certificate chain served on `--listen` (reloaded when it changes).
    #[arg(long, env = "SNUG_TLS_CERT", default_value = "/etc/snug/tls/tls.crt")]
    pub tls_cert: PathBuf,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "SNUG_TLS_KEY", default_value = "/etc/snug/tls/tls.key")]
    pub tls_key: PathBuf,
    /// How often the certificate files are checked for a new pair.
    #[arg(long, env = "SNUG_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = humantime_duration)]
    pub tls_reload_interval: Duration,
    /// Read profiles from this directory of WorkloadProfile YAML files instead of the cluster.
    #[arg(long, env = "SNUG_PROFILES_DIR")]
    pub profiles_dir: Option<PathBuf>,
    /// How often `--profiles-dir` is scanned for changed files.
    #[arg(long, env = "SNUG_PROFILES_POLL", default_value = "2s", value_parser = humantime_duration)]
    pub profiles_poll: Duration,
    /// How long to wait for the profile watch to sync before serving sidecar-only.
    #[arg(long, env = "SNUG_SYNC_TIMEOUT", default_value = "30s", value_parser = humantime_duration)]
    pub sync_timeout: Duration,
    /// Image of the injected sidecar.
    #[arg(
        long,
        env = "SNUG_SIDECAR_IMAGE",
        default_value = "ghcr.io/snug-dev/snug-sidecar:0.1.0"
    )]
    pub sidecar_image: String,
    /// The sidecar's CPU request when its profile has none.
    #[arg(long, env = "SNUG_SIDECAR_CPU", default_value = "10m")]
    pub sidecar_cpu: String,
    /// The sidecar's memory request when its profile has none.
    #[arg(long, env = "SNUG_SIDECAR_MEMORY", default_value = "32Mi")]
    pub sidecar_memory: String,
    /// The sidecar's memory limit when its profile has none.
    #[arg(long, env = "SNUG_SIDECAR_MEMORY_LIMIT", default_value = "128Mi")]
    pub sidecar_memory_limit: String,
    /// Mode of pods whose pod and namespace say nothing.
    #[arg(long, env = "SNUG_DEFAULT_MODE", default_value = "observe")]
    pub default_mode: Mode,
    /// Native sidecars: `auto` (from the server version), `always` or `never`.
    #[arg(long, env = "SNUG_NATIVE_SIDECARS", value_enum, default_value = "auto")]
    pub native_sidecars: NativeSidecars,
    /// Namespaces never touched, besides kube-system, kube-public, kube-node-lease and our own.
    #[arg(long, env = "SNUG_EXCLUDE_NAMESPACES", value_delimiter = ',')]
    pub exclude_namespaces: Vec<String>,
    /// The webhook's own namespace (never injected).
    #[arg(long, env = "SNUG_NAMESPACE", default_value = snug_api::keys::SNUG_NAMESPACE)]
    pub namespace: String,
    /// Largest AdmissionReview body accepted; larger ones get 413.
    #[arg(long, env = "SNUG_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// `text` or `json` log lines.
    #[arg(long, env = "SNUG_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// Parses `250ms`, `10s`, `5m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 10s, 500ms, 5m)"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// What the webhook needs to decide and patch, independent of how it was configured.
#[derive(Debug, Clone)]
pub struct InjectConfig {
    /// Image of the sidecar.
    pub sidecar_image: String,
    /// The sidecar's default CPU request.
    pub sidecar_cpu: Quantity,
    /// The sidecar's default memory request.
    pub sidecar_memory: Quantity,
    /// The sidecar's default memory limit.
    pub sidecar_memory_limit: Quantity,
    /// Mode when neither pod nor namespace says.
    pub default_mode: Mode,
    /// Namespaces never touched (protected ones and our own are always added).
    pub exclude_namespaces: Vec<String>,
    /// Our own namespace.
    pub namespace: String,
}

impl Default for InjectConfig {
    fn default() -> Self {
        InjectConfig {
            sidecar_image: "ghcr.io/snug-dev/snug-sidecar:0.1.0".into(),
            sidecar_cpu: Quantity("10m".into()),
            sidecar_memory: Quantity("32Mi".into()),
            sidecar_memory_limit: Quantity("128Mi".into()),
            default_mode: Mode::Observe,
            exclude_namespaces: Vec::new(),
            namespace: snug_api::keys::SNUG_NAMESPACE.into(),
        }
    }
}

impl InjectConfig {
    /// Whether the webhook must leave pods of this namespace alone.
    pub fn is_excluded(&self, namespace: &str) -> bool {
        snug_api::keys::is_protected_namespace(namespace, &self.namespace)
            || self.exclude_namespaces.iter().any(|n| n == namespace)
    }
}

/// The whole server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTPS address.
    pub listen: SocketAddr,
    /// Plain-HTTP health and metrics address.
    pub health_listen: SocketAddr,
    /// Certificate chain file.
    pub tls_cert: PathBuf,
    /// Private key file.
    pub tls_key: PathBuf,
    /// Certificate poll interval.
    pub tls_reload_interval: Duration,
    /// Directory store, or `None` for the cluster.
    pub profiles_dir: Option<PathBuf>,
    /// Directory poll interval.
    pub profiles_poll: Duration,
    /// How long to wait for the watches to sync.
    pub sync_timeout: Duration,
    /// Native sidecar policy.
    pub native_sidecars: NativeSidecars,
    /// Body size limit.
    pub max_body_bytes: usize,
    /// Decision and patch settings.
    pub inject: InjectConfig,
}

impl ServeArgs {
    /// Checks the flags and builds the [`Config`].
    pub fn into_config(self) -> crate::Result<Config> {
        let quantity = |flag: &str, text: String| {
            snug_api::quantity::parse(&text)
                .map(|_| Quantity(text.clone()))
                .map_err(|e| crate::Error::Config(format!("{flag}: {e}")))
        };
        Ok(Config {
            listen: self.listen,
            health_listen: self.health_listen,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            tls_reload_interval: self.tls_reload_interval,
            profiles_dir: self.profiles_dir,
            profiles_poll: self.profiles_poll,
            sync_timeout: self.sync_timeout,
            native_sidecars: self.native_sidecars,
            max_body_bytes: self.max_body_bytes,
            inject: InjectConfig {
                sidecar_image: self.sidecar_image,
                sidecar_cpu: quantity("--sidecar-cpu", self.sidecar_cpu)?,
                sidecar_memory: quantity("--sidecar-memory", self.sidecar_memory)?,
                sidecar_memory_limit: quantity(
                    "--sidecar-memory-limit",
                    self.sidecar_memory_limit,
                )?,
                default_mode: self.default_mode,
                exclude_namespaces: self.exclude_namespaces,
                namespace: self.namespace,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_into_config_with_defaults() {
        let cli = Cli::try_parse_from(["snug-webhook", "--exclude-namespaces", "a,b"]).unwrap();
        assert!(cli.command.is_none());
        let config = cli.serve.into_config().unwrap();
        assert_eq!(config.listen.port(), 8443);
        assert_eq!(config.health_listen.port(), 8080);
        assert_eq!(config.native_sidecars, NativeSidecars::Auto);
        assert!(config.inject.is_excluded("b"));
        assert!(config.inject.is_excluded("snug-system"));
        assert!(config.inject.is_excluded("kube-system"));
        assert!(!config.inject.is_excluded("shop"));
    }

    #[test]
    fn bad_quantities_and_durations_are_refused() {
        let cli = Cli::try_parse_from(["snug-webhook", "--sidecar-cpu", "lots"]).unwrap();
        assert!(cli.serve.into_config().is_err());
        assert!(Cli::try_parse_from(["snug-webhook", "--sync-timeout", "5 parsecs"]).is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn certs_subcommand_parses() {
        let cli = Cli::try_parse_from(["snug-webhook", "certs", "--out", "/tmp/x"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Certs(_))));
    }
}
