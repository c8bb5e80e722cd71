//! `outrigger-control`'s flags. Names follow Sentry where Sentry has the flag (`--port`,
//! `--trust-domain`, `--healthz-port`, `--metrics-port`, `--issuer-credentials` as an alias of
//! `--ca-dir`), and like Sentry's Go flags they may be written with one dash.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::validator::SENTRY_AUDIENCE;
use crate::resolve::parse_go_duration;

/// The command line: run the CA (no subcommand), or change the CA files (`ca ...`).
#[derive(Debug, Parser)]
#[command(
    name = "outrigger-control",
    version,
    about = "The Outrigger control plane: a certificate authority speaking Dapr Sentry's API",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: Options,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Root rotation steps on a CA directory; a running outrigger-control picks them up.
    #[command(subcommand)]
    Ca(CaCommand),
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Step 1: add a new root to ca.crt and prepare an issuer under it (next-issuer.*).
    AddRoot(CaDirArg),
    /// Step 2: issue from the prepared issuer from now on.
    UseRoot(CaDirArg),
    /// Step 3: remove roots that did not sign the current issuer from ca.crt.
    DropRoot(CaDirArg),
}

#[derive(Debug, Args)]
pub struct CaDirArg {
    /// The CA directory (ca.crt, issuer.crt, issuer.key).
    #[arg(long, alias = "issuer-credentials")]
    pub ca_dir: PathBuf,
}

/// Flags of the running CA.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Port of the CA's gRPC API (Sentry's default).
    #[arg(long, default_value_t = 50001)]
    pub port: u16,

    /// Address the gRPC API binds to. Localhost by default; sidecars on other machines need an
    /// explicit address.
    #[arg(long, default_value = "127.0.0.1")]
    pub listen_address: IpAddr,

    /// The control plane's trust domain: the CA serves as
    /// spiffe://<trust-domain>/ns/<namespace>/dapr-sentry.
    #[arg(long, default_value = "localhost")]
    pub trust_domain: String,

    /// The control plane's namespace.
    #[arg(long, env = "NAMESPACE", default_value = "default")]
    pub namespace: String,

    /// Lifetime of workload certificates (and of the CA's own serving certificate).
    #[arg(long, default_value = "24h", value_parser = duration)]
    pub workload_cert_ttl: Duration,

    /// How far NotBefore is back-dated, for clocks that lag.
    #[arg(long, default_value = "15m", value_parser = duration)]
    pub allowed_clock_skew: Duration,

    /// Directory with ca.crt, issuer.crt and issuer.key; created with a new root on first start.
    /// Default: ~/.outrigger/ca.
    #[arg(long, alias = "issuer-credentials")]
    pub ca_dir: Option<PathBuf>,

    /// Join tokens (one per line, optionally followed by the namespace/app-id they grant).
    /// Turns the INSECURE validator off.
    #[arg(long, conflicts_with = "jwks_source")]
    pub token_file: Option<PathBuf>,

    /// Sentry's JWKS validator: tokens are JWTs signed by a key of this JWK set (an http(s) URL,
    /// a file re-read when it changes, or the JSON itself, optionally base64), minted for the CA's SPIFFE ID
    /// (`aud`) with the requested SPIFFE ID as `sub`. Turns the INSECURE validator off.
    #[arg(long)]
    pub jwks_source: Option<String>,

    /// How old a JWK set fetched from a URL may get before it is fetched again (sooner, at most
    /// every 10 s, when a token names a key the set lacks).
    #[arg(long, default_value = "10m", value_parser = duration)]
    pub jwks_min_refresh_interval: Duration,

    /// kubernetes: verify service-account tokens with the API server's TokenReview (the default
    /// validator); standalone: INSECURE unless --token-file is given.
    #[arg(long, default_value = "standalone", value_parser = ["standalone", "kubernetes"])]
    pub mode: String,

    /// Audiences a Kubernetes token must be minted for.
    #[arg(long = "kubernetes-audience", default_value = SENTRY_AUDIENCE)]
    pub kubernetes_audiences: Vec<String>,

    /// Port of /healthz and /readyz.
    #[arg(long, default_value_t = 8080)]
    pub healthz_port: u16,

    /// Port of the Prometheus exporter.
    #[arg(long, default_value_t = 9090)]
    pub metrics_port: u16,

    /// How often the CA directory is checked for changed files.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub ca_poll_interval: Duration,

    /// debug, info, warn, error or fatal.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Log JSON lines instead of text.
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub log_as_json: bool,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_go_duration(s).ok_or_else(|| format!("invalid duration {s:?}"))
}

/// Go's flag package accepts `-flag`; turn it into `--flag` for clap.
fn normalize_dash(arg: OsString) -> OsString {
    match arg.to_str() {
        Some(s) if s.len() > 2 && s.starts_with('-') && s.as_bytes()[1].is_ascii_alphabetic() => {
            OsString::from(format!("-{s}"))
        }
        _ => arg,
    }
}

impl Cli {
    /// Parses a command line, accepting single-dash flags.
    pub fn parse_args<I, T>(args: I) -> Result<Self, clap::Error>
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
}

impl Options {
    /// The CA directory, defaulting under the home directory.
    pub fn ca_dir(&self) -> PathBuf {
        self.ca_dir.clone().unwrap_or_else(|| {
            dirs::home_dir()
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".outrigger")
                .join("ca")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sentrys() {
        let cli = Cli::parse_args(["outrigger-control"]).unwrap();
        assert!(cli.command.is_none());
        let o = cli.run;
        assert_eq!(o.port, 50001);
        assert_eq!(o.trust_domain, "localhost");
        assert_eq!(o.workload_cert_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(o.allowed_clock_skew, Duration::from_secs(15 * 60));
        assert_eq!(o.healthz_port, 8080);
        assert_eq!(o.metrics_port, 9090);
        assert_eq!(o.listen_address.to_string(), "127.0.0.1");
    }

    #[test]
    fn single_dash_flags_and_subcommands() {
        let o = Cli::parse_args([
            "outrigger-control",
            "-issuer-credentials",
            "/tmp/x",
            "-workload-cert-ttl",
            "1h30m",
        ])
        .unwrap()
        .run;
        assert_eq!(o.ca_dir(), PathBuf::from("/tmp/x"));
        assert_eq!(o.workload_cert_ttl, Duration::from_secs(5400));
        let cli =
            Cli::parse_args(["outrigger-control", "ca", "add-root", "--ca-dir", "/d"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Ca(CaCommand::AddRoot(CaDirArg { ref ca_dir }))) if ca_dir == &PathBuf::from("/d")
        ));
        assert!(Cli::parse_args(["outrigger-control", "--workload-cert-ttl", "soon"]).is_err());
    }
}
