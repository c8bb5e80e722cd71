//! `outrigger-control`: the control plane's CA (no subcommand), or a root rotation step on a CA
//! directory (`outrigger-control ca add-root|use-root|drop-root --ca-dir DIR`).

use std::process::ExitCode;

use anyhow::Context as _;
use outrigger::control::ca::{CaDir, RotationStep};
use outrigger::control::options::{CaCommand, Cli, Command};
use outrigger::control::{ControlPlane, Options};

fn main() -> ExitCode {
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    if let Some(Command::Ca(step)) = cli.command {
        return rotate(step);
    }
    let options = cli.run;
    if let Err(err) =
        outrigger::telemetry::logging::init(&options.log_level, options.log_as_json, "dapr-sentry")
    {
        eprintln!("cannot set up logging: {err:#}");
        return ExitCode::FAILURE;
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
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("fatal error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let control = ControlPlane::start(options)
        .await
        .context("starting outrigger-control")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("received a termination signal; shutting down");
    control.shutdown().await;
    Ok(())
}

fn rotate(command: CaCommand) -> ExitCode {
    let (step, arg, next) = match command {
        CaCommand::AddRoot(arg) => (
            RotationStep::AddRoot,
            arg,
            "once every sidecar trusts the new bundle, run `ca use-root`",
        ),
        CaCommand::UseRoot(arg) => (
            RotationStep::UseRoot,
            arg,
            "once every certificate from the old issuer has expired (one workload TTL), run `ca drop-root`",
        ),
        CaCommand::DropRoot(arg) => (RotationStep::DropRoot, arg, "rotation complete"),
    };
    let dir = CaDir::new(arg.ca_dir);
    match dir.rotate(step, time::OffsetDateTime::now_utc()) {
        Ok(report) => {
            println!(
                "{}: trust bundle has {} root(s) (was {}); {next}",
                dir.path().display(),
                report.roots_after,
                report.roots_before
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{}: {err}", dir.path().display());
            ExitCode::FAILURE
        }
    }
}
