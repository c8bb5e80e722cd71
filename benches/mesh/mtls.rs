//! mTLS scenarios (issue 7). `outrigger-control` (the release binary, as its own process) is the
//! CA; two more sidecars take their workload certificates from it and call each other over mTLS:
//! `outrigger-2hop-mtls` next to `outrigger-2hop` is what mTLS adds to a call on an established
//! connection. The connection rows measure what a new connection to a sidecar's internal port
//! costs until it can carry a request (the server's first HTTP/2 bytes have arrived):
//! `connect-tcp` (the plaintext sidecar), `handshake-mtls-full` (a full mutual TLS 1.3 handshake:
//! ECDSA signatures both ways, both chains and SPIFFE IDs verified) and `handshake-mtls` (with
//! the client configuration sidecars use, so TLS session resumption where it applies). In the
//! max-throughput phase their achieved rate is new connections per second.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use outrigger::identity::{Identity, IdentitySettings, IdentityTuning, TrustSource};
use outrigger::telemetry::metrics::SecurityMetrics;
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::procs::{self, Guard};
use crate::sidecar::{self, Sidecar};
use crate::Scenario;

pub const TWO_HOP: &str = "outrigger-2hop-mtls";
pub const CONNECT_TCP: &str = "connect-tcp";
pub const HANDSHAKE: &str = "handshake-mtls";
pub const HANDSHAKE_FULL: &str = "handshake-mtls-full";
/// Every scenario this module adds.
pub const ALL: [&str; 4] = [TWO_HOP, CONNECT_TCP, HANDSHAKE, HANDSHAKE_FULL];
const CALLER: &str = "alpha-mtls";
const CALLEE: &str = "beta-mtls";
/// The identity the harness's handshake client asks the CA for.
const CLIENT_ID: &str = "bench-client";

/// The connection rows get their own table: their unit is a connection, not a request.
pub fn is_connection(scenario: &str) -> bool {
    [CONNECT_TCP, HANDSHAKE, HANDSHAKE_FULL].contains(&scenario)
}

/// A new connection to `addr`, ready once the server's first bytes (its HTTP/2 SETTINGS)
/// arrive: over TLS that is also after the server accepted the client's certificate.
#[derive(Clone, Debug)]
pub struct ConnectTarget {
    pub addr: SocketAddr,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

pub struct ConnectClient {
    target: ConnectTarget,
    tls: Option<tokio_rustls::TlsConnector>,
    name: ServerName<'static>,
}

impl ConnectClient {
    pub fn open(target: &ConnectTarget) -> anyhow::Result<Self> {
        Ok(Self {
            target: target.clone(),
            tls: target.tls.clone().map(tokio_rustls::TlsConnector::from),
            // Only SNI: the verifier checks the SPIFFE ID, as between sidecars.
            name: ServerName::try_from(target.addr.ip().to_string())?,
        })
    }

    pub async fn request(&self) -> anyhow::Result<()> {
        let tcp = TcpStream::connect(self.target.addr).await?;
        tcp.set_nodelay(true)?;
        let mut first = [0u8; 9];
        let read = match &self.tls {
            Some(tls) => {
                let mut stream = tls.connect(self.name.clone(), tcp).await?;
                stream.read(&mut first).await?
            }
            None => {
                let mut stream = tcp;
                stream.read(&mut first).await?
            }
        };
        if read == 0 {
            bail!("the sidecar closed the connection without a word");
        }
        Ok(())
    }
}

/// The CA process, the two mTLS sidecars and the harness's own workload identity.
pub struct MtlsBench {
    control: Guard,
    pub caller: Sidecar,
    pub callee: Sidecar,
    identity: Arc<Identity>,
    stop: CancellationToken,
}

impl Drop for MtlsBench {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `outrigger-control`: `OUTRIGGER_CONTROL_BIN` if set, else the one cargo built for this bench.
fn control_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("OUTRIGGER_CONTROL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_outrigger-control")));
    if !path.is_file() {
        bail!(
            "control plane binary {} not found: build it with `cargo build --release --bin outrigger-control`",
            path.display()
        );
    }
    Ok(path)
}

impl MtlsBench {
    pub fn start(
        rt: &tokio::runtime::Runtime,
        bin: &Path,
        config: &Path,
        dir: &Path,
        app: SocketAddr,
    ) -> anyhow::Result<Self> {
        let [port, healthz, metrics] = procs::free_ports()?;
        let ca_dir = dir.join("ca");
        let log_path = dir.join("control.log");
        let log = std::fs::File::create(&log_path).context("creating the control plane log")?;
        let control_bin = control_binary()?;
        let mut cmd = Command::new(&control_bin);
        cmd.args(["--port", &port.to_string()])
            .args(["--healthz-port", &healthz.to_string()])
            .args(["--metrics-port", &metrics.to_string()])
            .arg("--ca-dir")
            .arg(&ca_dir)
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for var in sidecar::SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", control_bin.display()))?;
        let mut control = Guard::new("outrigger-control", child);
        procs::wait_for(
            &mut control,
            SocketAddr::from(([127, 0, 0, 1], healthz)),
            "/readyz",
            200,
            started,
            Duration::from_secs(20),
        )
        .with_context(|| format!("outrigger-control; see {}", log_path.display()))?;

        let sentry = format!("127.0.0.1:{port}");
        let anchors = ca_dir.join("ca.crt");
        let flags = [
            "--enable-mtls".to_owned(),
            "--sentry-address".to_owned(),
            sentry.clone(),
            "--trust-anchors-file".to_owned(),
            anchors.display().to_string(),
            "--dapr-internal-grpc-listen-address".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        let start = |id| sidecar::start_with(bin, config, dir, id, app, &flags);
        let callee = start(CALLEE)?;
        let caller = start(CALLER)?;

        let stop = CancellationToken::new();
        let mut registry = prometheus_client::registry::Registry::default();
        let identity = rt.block_on(async {
            let identity = Identity::start(
                IdentitySettings {
                    id: CLIENT_ID.to_owned(),
                    namespace: "default".to_owned(),
                    sentry_address: sentry,
                    control_plane_trust_domain: "localhost".to_owned(),
                    control_plane_namespace: "default".to_owned(),
                    trust: TrustSource::File(anchors),
                    token_file: None,
                    kubernetes: false,
                    jwt_audiences: Vec::new(),
                    tuning: IdentityTuning::default(),
                },
                Arc::new(SecurityMetrics::new(&mut registry, CLIENT_ID)),
                stop.clone(),
            )
            .context("the harness's workload identity")?;
            tokio::time::timeout(Duration::from_secs(20), identity.wait_ready())
                .await
                .context("no workload certificate for the harness within 20 s")?;
            anyhow::Ok(identity)
        })?;
        Ok(Self {
            control,
            caller,
            callee,
            identity,
            stop,
        })
    }

    /// `plain` is a sidecar without mTLS, for the TCP baseline. A quick (CI) run measures the
    /// rows at 1,000 rps only.
    pub fn scenarios(&self, plain: &Sidecar, quick: bool) -> Vec<Scenario> {
        let resumed = self.identity.peer_config("default", CALLEE);
        let mut full = (*resumed).clone();
        full.resumption = rustls::client::Resumption::disabled();
        let connect = |tls: Option<Arc<rustls::ClientConfig>>, addr| {
            crate::client::Target::Connect(ConnectTarget { addr, tls })
        };
        let only_phases: &'static [&'static str] = if quick {
            &[crate::targets::RATE_1K]
        } else {
            // 10,000 new connections a second is past what two shared cores can handshake;
            // the max phase tells the rate.
            &[crate::targets::RATE_1K, crate::targets::MAX]
        };
        let callee = vec![self.callee.pid()];
        vec![
            Scenario {
                name: TWO_HOP,
                target: crate::client::Target::Http(crate::client::HttpTarget::echo(
                    self.caller.http,
                    format!("/v1.0/invoke/{CALLEE}/method/echo"),
                )),
                proxy_pids: vec![self.caller.pid(), self.callee.pid()],
                only_phases: if quick { only_phases } else { &[] },
            },
            Scenario {
                name: CONNECT_TCP,
                target: connect(None, plain.internal),
                proxy_pids: vec![plain.pid()],
                only_phases,
            },
            Scenario {
                name: HANDSHAKE_FULL,
                target: connect(Some(Arc::new(full)), self.callee.internal),
                proxy_pids: callee.clone(),
                only_phases,
            },
            Scenario {
                name: HANDSHAKE,
                target: connect(Some(resumed), self.callee.internal),
                proxy_pids: callee,
                only_phases,
            },
        ]
    }

    /// The processes that must stay up for the run to mean anything.
    pub fn guards(&mut self) -> [&mut Guard; 3] {
        [
            &mut self.control,
            &mut self.caller.guard,
            &mut self.callee.guard,
        ]
    }
}
