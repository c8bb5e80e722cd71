//! Outrigger sidecars under test: the release binary as child processes, daprd's flags, every
//! port on loopback, and name resolution through one SQLite file shared by the mesh.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::procs::{self, Guard};

/// How long a sidecar may take to become ready before the run is abandoned.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Environment variables the sidecar reads that must not leak in from the caller's shell.
pub const SCRUBBED_ENV: [&str; 10] = [
    "DAPR_HOST_IP",
    "DAPR_API_TOKEN",
    "APP_API_TOKEN",
    "NAMESPACE",
    "POD_NAME",
    "DAPR_CONTROLPLANE_NAMESPACE",
    "DAPR_TRUST_ANCHORS",
    "DAPR_SENTRY_TOKEN_FILE",
    "SENTRY_LOCAL_IDENTITY",
    "DAPR_CONTROLPLANE_TRUST_DOMAIN",
];

pub struct Sidecar {
    pub guard: Guard,
    pub app_id: String,
    /// The Dapr HTTP API.
    pub http: SocketAddr,
    /// The gRPC API port (gRPC proxying).
    pub grpc: SocketAddr,
    /// The internal port peers dial (mTLS when the sidecar has an identity).
    pub internal: SocketAddr,
    /// From spawn to `/v1.0/healthz/outbound` answering 204.
    pub ready_in: Duration,
}

impl Sidecar {
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }
}

/// The sidecar binary: `OUTRIGGER_BIN` if set, else the one cargo built for this bench (cargo
/// builds the package's binaries with the bench profile, i.e. release settings, before running
/// a bench target).
pub fn binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("OUTRIGGER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_outrigger")));
    if !path.is_file() {
        bail!(
            "sidecar binary {} not found: build it with `cargo build --release --bin outrigger` \
             (or run through `cargo bench --bench mesh`, which builds it)",
            path.display()
        );
    }
    Ok(path)
}

/// A Configuration that points name resolution at `<dir>/nr.db` (as tests/support does).
pub fn write_config(dir: &Path) -> anyhow::Result<PathBuf> {
    let config = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: bench\nspec:\n  nameResolution:\n    component: sqlite\n    version: v1\n    configuration:\n      connectionString: {}\n",
        dir.join("nr.db").display()
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).context("writing the sidecar Configuration")?;
    Ok(path)
}

/// Starts one sidecar for `app_id` in front of the app and waits until it is fully ready
/// (`/v1.0/healthz` = 204, i.e. the app port is reachable too). `resources` is passed as
/// `--resources-path` (component YAML); without it the sidecar has only its defaults.
pub fn start(
    bin: &Path,
    config: &Path,
    resources: Option<&Path>,
    dir: &Path,
    app_id: &str,
    app: SocketAddr,
) -> anyhow::Result<Sidecar> {
    let extra: Vec<String> = resources
        .map(|r| vec!["--resources-path".to_owned(), r.display().to_string()])
        .unwrap_or_default();
    start_with(bin, config, dir, app_id, app, &extra)
}

/// [`start`] with `extra` flags appended (the mTLS sidecars).
pub fn start_with(
    bin: &Path,
    config: &Path,
    dir: &Path,
    app_id: &str,
    app: SocketAddr,
    extra: &[String],
) -> anyhow::Result<Sidecar> {
    let [http, grpc, internal, metrics] = procs::free_ports()?;
    let log_path = dir.join(format!("{app_id}.log"));
    let log = std::fs::File::create(&log_path).context("creating the sidecar log")?;
    let mut cmd = Command::new(bin);
    cmd.args(["--app-id", app_id])
        .args(["--app-port", &app.port().to_string()])
        .args(["--dapr-http-port", &http.to_string()])
        .args(["--dapr-grpc-port", &grpc.to_string()])
        .args(["--dapr-internal-grpc-port", &internal.to_string()])
        .args(["--metrics-port", &metrics.to_string()])
        .args(["--metrics-listen-address", "127.0.0.1"])
        .arg("--config")
        .arg(config)
        .args(["--log-level", "warn"]);
    cmd.args(extra);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    let started = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut guard = Guard::new(app_id, child);
    let addr = SocketAddr::from(([127, 0, 0, 1], http));
    let see_log = || format!("sidecar {app_id}; see {}", log_path.display());
    let ready_in = procs::wait_for(
        &mut guard,
        addr,
        "/v1.0/healthz/outbound",
        204,
        started,
        START_DEADLINE,
    )
    .with_context(see_log)?;
    procs::wait_for(
        &mut guard,
        addr,
        "/v1.0/healthz",
        204,
        started,
        START_DEADLINE,
    )
    .with_context(see_log)?;
    Ok(Sidecar {
        guard,
        app_id: app_id.to_owned(),
        http: addr,
        grpc: SocketAddr::from(([127, 0, 0, 1], grpc)),
        internal: SocketAddr::from(([127, 0, 0, 1], internal)),
        ready_in,
    })
}
