//! `outrigger`: flags -> telemetry -> sidecar. Accepts daprd's command line unchanged.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use outrigger::lifecycle::StopKind;
use outrigger::sidecar::{Options, Sidecar};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let options = match Options::parse_daprd(std::env::args_os()) {
        Ok(o) => o,
        Err(err) => err.exit(),
    };
    if options.build_info {
        println!(
            "outrigger {} (daprd-compatible sidecar)",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    if options.wait {
        return runtime.block_on(wait_for_sidecar(options.dapr_http_port));
    }
    if let Err(err) = outrigger::telemetry::logging::init(
        &options.log_level,
        options.log_as_json,
        &options.app_id,
    ) {
        eprintln!("cannot set up logging: {err:#}");
        return ExitCode::FAILURE;
    }
    match runtime.block_on(run(options)) {
        Ok(StopKind::Graceful) => ExitCode::SUCCESS,
        Ok(StopKind::Forced) => ExitCode::FAILURE,
        Err(err) => {
            tracing::error!("fatal error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> anyhow::Result<StopKind> {
    use tokio::signal::unix::{signal, SignalKind};
    // Take over SIGTERM before starting: a signal that arrives while the sidecar starts (it has
    // registered with name resolution by then) must still lead to a graceful stop, not to the
    // default action that kills the process without deregistering.
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let sidecar = Sidecar::start(options)
        .await
        .context("starting the sidecar")?;
    let lifecycle = sidecar.lifecycle().clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("received a termination signal; shutting down");
        lifecycle.stop(StopKind::Graceful);
    });
    Ok(sidecar.wait().await)
}

/// daprd's `--wait`: poll the outbound health endpoint every 100 ms for up to 60 s.
async fn wait_for_sidecar(port: u16) -> ExitCode {
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let Ok(uri) = format!("http://localhost:{port}/v1.0/healthz/outbound").parse::<http::Uri>()
    else {
        return ExitCode::FAILURE;
    };
    while Instant::now() < deadline {
        let attempt =
            tokio::time::timeout(Duration::from_millis(500), client.get(uri.clone())).await;
        if matches!(attempt, Ok(Ok(res)) if res.status().is_success()) {
            return ExitCode::SUCCESS;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("timed out waiting for the sidecar on port {port}");
    ExitCode::FAILURE
}
