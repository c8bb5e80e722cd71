//! `--log-level` / `--log-as-json` with daprd's line shapes and keys.
//!
//! [`init`] is what the binaries call. The pieces it is made of ([`parse_level`], [`filter`],
//! [`fmt_layer`], [`subscriber`]) are public so that tests can capture output with
//! `tracing::subscriber::with_default`, and so that other layers (e.g. OpenTelemetry) can be
//! stacked next to ours.

mod escape;
mod format;
mod timefmt;

// Shared with the state building block, which reports `ttlExpireTime` in RFC 3339.
pub(crate) use timefmt::write_rfc3339_nanos;

#[cfg(test)]
mod tests;

use anyhow::Context as _;
use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::DefaultFields;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use format::DaprFormat;

/// The levels daprd accepts (dapr/kit `logger.toLogLevel`, case-insensitive).
pub const VALID_LEVELS: [&str; 5] = ["debug", "info", "warn", "error", "fatal"];

/// `--log-level` was not one of [`VALID_LEVELS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log level {given:?}; valid levels are: debug, info, warn, error, fatal")]
pub struct InvalidLogLevel {
    pub given: String,
}

/// Maps a daprd level name to a filter. `fatal` means `error`: tracing has no fatal level, and
/// daprd's fatal lines are errors after which the process exits.
pub fn parse_level(level: &str) -> Result<LevelFilter, InvalidLogLevel> {
    let filter = match level.to_ascii_lowercase().as_str() {
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" => LevelFilter::WARN,
        "error" | "fatal" => LevelFilter::ERROR,
        _ => {
            return Err(InvalidLogLevel {
                given: level.to_owned(),
            })
        }
    };
    Ok(filter)
}

/// Our own crate logs at `level`; dependencies are capped at `info`, because daprd's
/// `--log-level debug` means daprd's debug lines, not every hyper/h2 internal.
pub fn filter(level: LevelFilter) -> Targets {
    Targets::new()
        .with_default(level.min(LevelFilter::INFO))
        .with_target(env!("CARGO_CRATE_NAME"), level)
}

/// The formatting layer alone (no filter), writing daprd-shaped lines to `make_writer`.
pub fn fmt_layer<S, W>(
    json: bool,
    app_id: &str,
    make_writer: W,
) -> tracing_subscriber::fmt::Layer<S, DefaultFields, DaprFormat, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .event_format(DaprFormat::new(json, app_id))
        .with_writer(make_writer)
}

/// A complete subscriber (filter + format), not installed anywhere.
pub fn subscriber<W>(
    level: &str,
    json: bool,
    app_id: &str,
    make_writer: W,
) -> Result<impl Subscriber + Send + Sync + 'static, InvalidLogLevel>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let level = parse_level(level)?;
    Ok(tracing_subscriber::registry()
        .with(filter(level))
        .with(fmt_layer(json, app_id, make_writer)))
}

/// Installs the global `tracing` subscriber writing to stdout (where daprd logs). Called once,
/// by the binaries; records from the `log` crate are forwarded too.
pub fn init(level: &str, json: bool, app_id: &str) -> anyhow::Result<()> {
    subscriber(level, json, app_id, std::io::stdout)?
        .try_init()
        .context("installing the global log subscriber")
}
