//! daprd's command line, flag for flag, so `daprd` can be swapped for `outrigger` unchanged.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::quantity::parse_quantity;

/// The sidecar's flags. Names, defaults and meanings are daprd's; where Outrigger is deliberately
/// safer (API listen addresses) the help text says so.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "outrigger",
    version,
    about = "A drop-in replacement for the Dapr sidecar (daprd)"
)]
pub struct Options {
    /// Runtime mode: standalone or kubernetes.
    #[arg(long, default_value = "standalone", value_parser = ["standalone", "kubernetes"])]
    pub mode: String,

    /// A unique id for the application, used for service discovery, state and pub/sub.
    #[arg(long, default_value = "", value_parser = parse_app_id)]
    pub app_id: String,

    /// The port the application listens on. Without it there is no app channel.
    #[arg(long, value_parser = parse_port)]
    pub app_port: Option<u16>,

    /// Protocol the app speaks: http, https, grpc, grpcs or h2c.
    #[arg(long, default_value = "http", value_parser = parse_app_protocol)]
    pub app_protocol: AppProtocol,

    /// Deprecated: turns http into https and grpc into grpcs.
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub app_ssl: bool,

    /// Host used to reach the app.
    #[arg(long, default_value = "127.0.0.1")]
    pub app_channel_address: String,

    /// Concurrent calls into the app; -1 means unlimited.
    #[arg(long, default_value = "-1", allow_negative_numbers = true)]
    pub app_max_concurrency: i64,

    /// Port of the Dapr HTTP API.
    #[arg(long, default_value = "3500")]
    pub dapr_http_port: u16,

    /// Port of the Dapr gRPC API.
    #[arg(long, default_value = "50001")]
    pub dapr_grpc_port: u16,

    /// Port of the sidecar-to-sidecar server. Empty or 0: a stable port derived from the app id.
    #[arg(long, value_parser = parse_port)]
    pub dapr_internal_grpc_port: Option<u16>,

    /// Address the sidecar-to-sidecar server binds to. Default: 127.0.0.1 in standalone mode
    /// without mTLS (plaintext invocation must not be reachable from the network), all interfaces
    /// otherwise.
    #[arg(long, default_value = "")]
    pub dapr_internal_grpc_listen_address: String,

    /// Comma-separated addresses the HTTP and gRPC APIs bind to. Default 127.0.0.1 (daprd binds all
    /// interfaces; Outrigger keeps the app-facing API on localhost unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub dapr_listen_addresses: String,

    /// Extra HTTP port serving only health and metadata (the Kubernetes injector passes 3501).
    #[arg(long, value_parser = parse_port)]
    pub dapr_public_port: Option<u16>,

    /// Address the public port binds to.
    #[arg(long, default_value = "")]
    pub dapr_public_listen_address: String,

    /// Port of the Prometheus exporter.
    #[arg(long, default_value = "9090")]
    pub metrics_port: u16,

    /// Address the Prometheus exporter binds to.
    #[arg(long, default_value = "0.0.0.0")]
    pub metrics_listen_address: String,

    /// Serve Prometheus metrics.
    #[arg(long, default_value = "true", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub enable_metrics: bool,

    /// pprof port (accepted for compatibility; Outrigger has no pprof).
    #[arg(long, default_value = "7777")]
    pub profile_port: u16,

    /// Enable pprof (accepted for compatibility; Outrigger has no pprof).
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub enable_profiling: bool,

    /// Directories of resource YAML files (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub resources_path: Vec<PathBuf>,

    /// Deprecated alias of --resources-path, used only when that is empty.
    #[arg(long, default_value = "")]
    pub components_path: String,

    /// Configuration YAML file(s), merged in order.
    #[arg(long, value_delimiter = ',')]
    pub config: Vec<PathBuf>,

    /// debug, info, warn, error or fatal.
    #[arg(long, default_value = "info", value_parser = ["debug", "info", "warn", "error", "fatal"])]
    pub log_level: String,

    /// Log one JSON object per line, with daprd's keys.
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub log_as_json: bool,

    /// Write logs to this file (accepted for compatibility; logs go to stdout).
    #[arg(long, default_value = "")]
    pub log_file: String,

    /// Log every API call (accepted; API logging comes in a later version).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub enable_api_logging: Option<bool>,

    /// Mutual TLS between sidecars.
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub enable_mtls: bool,

    /// Address of the certificate authority (Dapr Sentry API).
    #[arg(long, default_value = "")]
    pub sentry_address: String,

    /// Address of the control plane (operator).
    #[arg(long, default_value = "")]
    pub control_plane_address: String,

    /// Trust domain of the control plane.
    #[arg(
        long,
        env = "DAPR_CONTROLPLANE_TRUST_DOMAIN",
        default_value = "localhost"
    )]
    pub control_plane_trust_domain: String,

    /// Namespace of the control plane.
    #[arg(long, env = "DAPR_CONTROLPLANE_NAMESPACE", default_value = "default")]
    pub control_plane_namespace: String,

    /// File of PEM trust anchors, re-read when it changes so a root rotation needs no restart.
    /// daprd's control-plane services have this flag; daprd itself only reads
    /// `DAPR_TRUST_ANCHORS` (which wins when both are set).
    #[arg(long, default_value = "")]
    pub trust_anchors_file: String,

    /// `DAPR_TRUST_ANCHORS`: PEM trust anchors.
    #[arg(skip = std::env::var("DAPR_TRUST_ANCHORS").ok().filter(|v| !v.trim().is_empty()))]
    pub trust_anchors: Option<String>,

    /// `DAPR_SENTRY_TOKEN_FILE`: the token sent to the CA.
    #[arg(skip = std::env::var_os("DAPR_SENTRY_TOKEN_FILE").filter(|v| !v.is_empty()).map(PathBuf::from))]
    pub sentry_token_file: Option<PathBuf>,

    /// `SENTRY_LOCAL_IDENTITY`: the id asked for instead of the app id.
    #[arg(skip = std::env::var("SENTRY_LOCAL_IDENTITY").ok().filter(|v| !v.is_empty()))]
    pub sentry_local_identity: Option<String>,

    /// Certificate retry and anchors polling timings (not flags: production uses the defaults).
    #[arg(skip)]
    pub identity_tuning: crate::identity::IdentityTuning,

    /// Extra JWT audiences requested from the CA.
    #[arg(long, value_delimiter = ',')]
    pub sentry_request_jwt_audiences: Vec<String>,

    /// Placement service address (actors).
    #[arg(long, default_value = "")]
    pub placement_host_address: String,

    /// Scheduler service address(es) (jobs, reminders).
    #[arg(long, value_delimiter = ',')]
    pub scheduler_host_address: Vec<String>,

    /// Streams per scheduler connection.
    #[arg(long, default_value = "3")]
    pub scheduler_job_streams: u32,

    /// Allowed CORS origins, comma-separated; empty disables CORS, `*` allows all.
    #[arg(long, default_value = "")]
    pub allowed_origins: String,

    /// Largest request body accepted, as a Kubernetes quantity (4Mi).
    #[arg(long, value_parser = parse_quantity)]
    pub max_body_size: Option<u64>,

    /// Deprecated: request size limit in MB, used only without --max-body-size.
    #[arg(long, default_value = "4")]
    pub dapr_http_max_request_size: u64,

    /// Largest request header block, as a Kubernetes quantity (4Ki).
    #[arg(long, value_parser = parse_quantity)]
    pub read_buffer_size: Option<u64>,

    /// Deprecated: header buffer in KB, used only without --read-buffer-size.
    #[arg(long, default_value = "4")]
    pub dapr_http_read_buffer_size: u64,

    /// Serve the APIs on Unix sockets in this directory (accepted; not supported yet).
    #[arg(long, default_value = "")]
    pub unix_domain_socket: String,

    /// Seconds to finish in-flight requests on shutdown.
    #[arg(long, default_value = "5")]
    pub dapr_graceful_shutdown_seconds: u64,

    /// Block shutdown until this duration passes or the app turns unhealthy (accepted; not
    /// supported yet).
    #[arg(long, default_value = "")]
    pub dapr_block_shutdown_duration: String,

    /// Probe the app's health.
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub enable_app_health_check: bool,

    /// HTTP path of the app health probe.
    #[arg(long, default_value = "/healthz")]
    pub app_health_check_path: String,

    /// Seconds between app health probes.
    #[arg(long, default_value = "5")]
    pub app_health_probe_interval: u64,

    /// Milliseconds before an app health probe times out.
    #[arg(long, default_value = "500")]
    pub app_health_probe_timeout: u64,

    /// Consecutive failed probes before the app counts as unhealthy.
    #[arg(long, default_value = "3")]
    pub app_health_threshold: u32,

    /// Kubernetes secret store switch (accepted for compatibility).
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub disable_builtin_k8s_secret_store: bool,

    /// Init endpoints not to call on the app: config, subscribe.
    #[arg(long, value_delimiter = ',')]
    pub disable_init_endpoints: Vec<String>,

    /// Timeout of the bindings OPTIONS discovery call (accepted for compatibility).
    #[arg(long, default_value = "3s")]
    pub app_binding_options_timeout: String,

    /// Hot reload reconcile interval (accepted for compatibility).
    #[arg(long, default_value = "0s")]
    pub hot_reload_reconcile_interval: String,

    /// Actor dissemination timeout (accepted for compatibility).
    #[arg(long, default_value = "30s")]
    pub actors_disseminate_timeout: String,

    /// Wait for the sidecar's outbound health endpoint and exit (CLI helper).
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub wait: bool,

    /// Print build information and exit.
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub build_info: bool,

    /// `NAMESPACE`: this app's namespace.
    #[arg(skip = namespace_from_env())]
    pub namespace: String,

    /// `DAPR_HOST_IP`: the address other sidecars reach this one at.
    #[arg(skip = std::env::var("DAPR_HOST_IP").ok().filter(|v| !v.is_empty()))]
    pub host_ip: Option<String>,

    /// `DAPR_API_TOKEN`: required on every API call when set.
    #[arg(skip = std::env::var("DAPR_API_TOKEN").ok().filter(|v| !v.is_empty()))]
    pub api_token: Option<String>,

    /// `APP_API_TOKEN`: sent to the app on every call when set.
    #[arg(skip = std::env::var("APP_API_TOKEN").ok().filter(|v| !v.is_empty()))]
    pub app_api_token: Option<String>,

    /// `POD_NAME`, for `{podName}` templating.
    #[arg(skip = std::env::var("POD_NAME").unwrap_or_default())]
    pub pod_name: String,
}

/// The protocol the sidecar speaks to its app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppProtocol {
    Http,
    Https,
    Grpc,
    Grpcs,
    H2c,
}

impl AppProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Grpc => "grpc",
            Self::Grpcs => "grpcs",
            Self::H2c => "h2c",
        }
    }
}

/// Why the flags cannot start a sidecar (beyond what clap itself rejects).
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("--app-id is required in standalone mode")]
    MissingAppId,
    #[error("--app-port {0} must differ from --dapr-http-port and --dapr-grpc-port")]
    AppPortClash(u16),
    #[error("--app-health-probe-timeout ({timeout_ms}ms) must not exceed --app-health-probe-interval ({interval_s}s)")]
    ProbeTimeout { timeout_ms: u64, interval_s: u64 },
    #[error("--app-protocol {0} is not supported yet: use http, h2c or grpc")]
    UnsupportedAppProtocol(&'static str),
    #[error("invalid listen address {0:?} in --dapr-listen-addresses")]
    ListenAddress(String),
}

impl Options {
    /// Parses daprd-style arguments: single-dash long flags (`-app-id x`) are accepted as daprd
    /// rewrites them to double-dash before parsing.
    pub fn parse_daprd<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        Self::try_parse_from(args.into_iter().map(Into::into).enumerate().map(|(i, a)| {
            if i == 0 {
                a
            } else {
                normalize_dash(a)
            }
        }))
    }

    /// Checks what clap cannot: combinations daprd refuses at startup.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.app_id.is_empty() && self.mode == "standalone" {
            return Err(OptionsError::MissingAppId);
        }
        if let Some(port) = self.app_port {
            if port == self.dapr_http_port || port == self.dapr_grpc_port {
                return Err(OptionsError::AppPortClash(port));
            }
        }
        if self.enable_app_health_check
            && self.app_health_probe_timeout > self.app_health_probe_interval * 1000
        {
            return Err(OptionsError::ProbeTimeout {
                timeout_ms: self.app_health_probe_timeout,
                interval_s: self.app_health_probe_interval,
            });
        }
        match self.effective_app_protocol() {
            AppProtocol::Http | AppProtocol::H2c | AppProtocol::Grpc => {}
            other => return Err(OptionsError::UnsupportedAppProtocol(other.as_str())),
        }
        self.listen_addresses()?;
        Ok(())
    }

    /// `--app-protocol` after the deprecated `--app-ssl` switch.
    pub fn effective_app_protocol(&self) -> AppProtocol {
        match (self.app_protocol, self.app_ssl) {
            (AppProtocol::Http, true) => AppProtocol::Https,
            (AppProtocol::Grpc, true) => AppProtocol::Grpcs,
            (p, _) => p,
        }
    }

    /// The API bind addresses from `--dapr-listen-addresses`.
    pub fn listen_addresses(&self) -> Result<Vec<IpAddr>, OptionsError> {
        self.dapr_listen_addresses
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let s = if s == "localhost" { "127.0.0.1" } else { s };
                s.parse()
                    .map_err(|_| OptionsError::ListenAddress(s.to_owned()))
            })
            .collect()
    }

    /// Largest accepted request body in bytes.
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_size
            .unwrap_or(self.dapr_http_max_request_size.saturating_mul(1 << 20))
    }

    /// Largest accepted header block in bytes.
    pub fn read_buffer_bytes(&self) -> u64 {
        self.read_buffer_size
            .unwrap_or(self.dapr_http_read_buffer_size.saturating_mul(1 << 10))
    }

    /// `--resources-path`, or the deprecated `--components-path` when that is empty.
    pub fn resources_paths(&self) -> Vec<PathBuf> {
        if self.resources_path.is_empty() && !self.components_path.is_empty() {
            return vec![PathBuf::from(&self.components_path)];
        }
        self.resources_path.clone()
    }

    pub fn graceful_shutdown(&self) -> Duration {
        Duration::from_secs(self.dapr_graceful_shutdown_seconds)
    }

    /// `--app-max-concurrency` as a limit; `None` is unlimited (daprd stores -1 as 0).
    pub fn app_concurrency_limit(&self) -> Option<usize> {
        usize::try_from(self.app_max_concurrency)
            .ok()
            .filter(|n| *n > 0)
    }

    /// Flags that were set to something Outrigger does not act on yet. Each is logged once at
    /// startup so nobody believes a setting took effect when it did not.
    pub fn unsupported_flags(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |set: bool, name: &'static str| {
            if set {
                out.push(name);
            }
        };
        check(
            !self.control_plane_address.is_empty(),
            "--control-plane-address",
        );
        check(
            !self.sentry_request_jwt_audiences.is_empty(),
            "--sentry-request-jwt-audiences",
        );
        check(
            !self.placement_host_address.is_empty(),
            "--placement-host-address",
        );
        check(
            !self.scheduler_host_address.is_empty(),
            "--scheduler-host-address",
        );
        check(self.enable_profiling, "--enable-profiling");
        check(!self.log_file.is_empty(), "--log-file");
        check(
            self.enable_api_logging == Some(true),
            "--enable-api-logging",
        );
        check(!self.unix_domain_socket.is_empty(), "--unix-domain-socket");
        check(
            !self.dapr_block_shutdown_duration.is_empty(),
            "--dapr-block-shutdown-duration",
        );
        out
    }
}

/// daprd accepts `-flag` for `--flag`; a lone `-` or a negative number is left alone.
fn normalize_dash(arg: OsString) -> OsString {
    match arg.to_str() {
        Some(s) if s.len() > 2 && s.starts_with('-') && s.as_bytes()[1].is_ascii_alphabetic() => {
            OsString::from(format!("-{s}"))
        }
        _ => arg,
    }
}

fn namespace_from_env() -> String {
    std::env::var("NAMESPACE")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// daprd's app id rule: no dots (a dot separates the namespace in invocation targets).
fn parse_app_id(s: &str) -> Result<String, String> {
    if s.contains('.') {
        return Err(format!("app id {s:?} must not contain dots"));
    }
    Ok(s.to_owned())
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("{s:?} is not a port number"))
}

fn parse_app_protocol(s: &str) -> Result<AppProtocol, String> {
    match s.to_ascii_lowercase().as_str() {
        "http" => Ok(AppProtocol::Http),
        "https" => Ok(AppProtocol::Https),
        "grpc" => Ok(AppProtocol::Grpc),
        "grpcs" => Ok(AppProtocol::Grpcs),
        "h2c" => Ok(AppProtocol::H2c),
        _ => Err(format!("{s:?} is not one of http, https, grpc, grpcs, h2c")),
    }
}

/// Go's `strconv.ParseBool`, which is what pflag uses for `--flag=value`.
fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        let mut all = vec!["outrigger"];
        all.extend_from_slice(args);
        Options::parse_daprd(all).expect("flags parse")
    }

    #[test]
    fn defaults_match_daprd() {
        let o = parse(&["--app-id", "a"]);
        assert_eq!(o.dapr_http_port, 3500);
        assert_eq!(o.dapr_grpc_port, 50001);
        assert_eq!(o.metrics_port, 9090);
        assert_eq!(o.app_port, None);
        assert_eq!(o.max_body_bytes(), 4 << 20);
        assert_eq!(o.read_buffer_bytes(), 4 << 10);
        assert_eq!(o.app_concurrency_limit(), None);
        assert!(o.enable_metrics);
        assert_eq!(
            o.listen_addresses().unwrap(),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn single_dash_long_flags_and_go_bools() {
        let o = parse(&[
            "-app-id",
            "a",
            "-app-port=8081",
            "--enable-metrics=false",
            "--log-as-json",
        ]);
        assert_eq!(o.app_id, "a");
        assert_eq!(o.app_port, Some(8081));
        assert!(!o.enable_metrics);
        assert!(o.log_as_json);
    }

    #[test]
    fn negative_concurrency_and_quantities() {
        let o = parse(&[
            "--app-id",
            "a",
            "--app-max-concurrency",
            "-1",
            "--max-body-size",
            "16Mi",
        ]);
        assert_eq!(o.app_concurrency_limit(), None);
        assert_eq!(o.max_body_bytes(), 16 << 20);
        let o = parse(&["--app-id", "a", "--app-max-concurrency", "3"]);
        assert_eq!(o.app_concurrency_limit(), Some(3));
    }

    #[test]
    fn unknown_flags_and_bad_values_are_errors() {
        assert!(Options::parse_daprd(["outrigger", "--no-such-flag"]).is_err());
        assert!(Options::parse_daprd(["outrigger", "--app-id", "a.b"]).is_err());
        assert!(Options::parse_daprd(["outrigger", "--app-protocol", "ftp"]).is_err());
        assert!(Options::parse_daprd(["outrigger", "--log-level", "loud"]).is_err());
    }

    #[test]
    fn validation_mirrors_daprd_startup_checks() {
        assert!(matches!(
            parse(&[]).validate(),
            Err(OptionsError::MissingAppId)
        ));
        assert!(matches!(
            parse(&["--app-id", "a", "--app-port", "3500"]).validate(),
            Err(OptionsError::AppPortClash(3500))
        ));
        assert!(parse(&["--app-id", "a", "--app-protocol", "GRPC"])
            .validate()
            .is_ok());
        assert!(matches!(
            parse(&["--app-id", "a", "--app-protocol", "grpcs"]).validate(),
            Err(OptionsError::UnsupportedAppProtocol("grpcs"))
        ));
        assert!(parse(&["--app-id", "a", "--app-protocol", "h2c"])
            .validate()
            .is_ok());
        assert!(parse(&[
            "--app-id",
            "a",
            "--enable-app-health-check",
            "--app-health-probe-interval",
            "1",
            "--app-health-probe-timeout",
            "1500"
        ])
        .validate()
        .is_err());
    }

    #[test]
    fn components_path_is_a_fallback() {
        let o = parse(&["--app-id", "a", "--components-path", "/c"]);
        assert_eq!(o.resources_paths(), vec![PathBuf::from("/c")]);
        let o = parse(&[
            "--app-id",
            "a",
            "--components-path",
            "/c",
            "--resources-path",
            "/r,/s",
        ]);
        assert_eq!(
            o.resources_paths(),
            vec![PathBuf::from("/r"), PathBuf::from("/s")]
        );
    }

    #[test]
    fn unsupported_flags_are_named() {
        let o = parse(&[
            "--app-id",
            "a",
            "--enable-mtls",
            "--placement-host-address",
            "x:1",
        ]);
        assert_eq!(o.unsupported_flags(), vec!["--placement-host-address"]);
    }
}
