//! What one harness run found, in the shape written to `results.json` (and read back by
//! `--baseline`). Latencies are milliseconds, memory is MB (10^6 bytes).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::load::Outcome;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Results {
    pub meta: Meta,
    pub phases: Vec<Phase>,
    pub rows: Vec<Row>,
    pub sidecars: Vec<SidecarFigures>,
    /// Start-up times (ms) of every sidecar process the run started.
    pub ready_ms: Vec<f64>,
    /// Skipped rows and other caveats, in plain words.
    pub notes: Vec<String>,
    /// State rows over their direct Redis reference (issue 4); empty when Redis was absent.
    #[serde(default)]
    pub state_added: Vec<StateAdded>,
    /// Publish-to-handler latency and delivery counts of the pub/sub rows (issue 5).
    #[serde(default)]
    pub pubsub_delivery: Vec<crate::pubsub::Delivery>,
}

/// What a sidecar state row adds over the same Redis work done directly (ms per percentile).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct StateAdded {
    pub scenario: String,
    pub reference: String,
    pub phase: String,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Meta {
    pub date: String,
    pub cores: usize,
    pub cpu_model: Option<String>,
    pub kernel: Option<String>,
    pub git_commit: Option<String>,
    /// "release" under `cargo bench` (bench profile); "debug ..." when run through `cargo test`.
    pub sidecar_build: String,
    pub binary_bytes: u64,
    pub nginx: Option<String>,
    pub quick: bool,
    pub clk_tck: u64,
    pub clk_tck_assumed: bool,
    /// /proc/loadavg (1, 5, 15 min) before and after the run: other work on the machine
    /// disturbs every figure, so a busy machine must be visible next to them.
    #[serde(default)]
    pub load_before: Option<String>,
    #[serde(default)]
    pub load_after: Option<String>,
    /// The harness's scheduling policy, inherited by every process it starts.
    #[serde(default)]
    pub scheduling: Option<String>,
}

/// One load setting that every scenario runs at: a fixed rate, or closed-loop saturation.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Phase {
    /// Stable key used to match rows against a baseline: `rate-1000`, `rate-10000`, `max`.
    pub key: String,
    pub title: String,
    pub rps: Option<u32>,
    /// Keep-alive connections (open loop) or requests in flight (closed loop).
    pub connections: usize,
    pub warmup_s: f64,
    pub measure_s: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Row {
    pub scenario: String,
    pub phase: String,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub achieved_rps: f64,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub pool_waits: u64,
    pub reconnects: u64,
    /// Open loop: 99th percentile of the dispatcher's own lateness (part of every row's latency).
    pub lag_p99_ms: Option<f64>,
    /// CPU seconds the proxy processes (sidecars or nginx) spent per 1,000 requests.
    pub cpu_s_per_1k: Option<f64>,
}

impl Row {
    pub fn new(scenario: &str, phase: &Phase, out: &Outcome, cpu_s: Option<f64>) -> Self {
        let ms = |ns: u64| ns as f64 / 1e6;
        let q = |p: f64| ms(out.latency.value_at_quantile(p));
        let requests = out.ok + out.errors;
        Self {
            scenario: scenario.to_owned(),
            phase: phase.key.clone(),
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: ms(out.latency.max()),
            achieved_rps: out.achieved_rps(),
            ok: out.ok,
            errors: out.errors,
            first_error: out.first_error.clone(),
            pool_waits: out.pool_waits,
            reconnects: out.reconnects,
            lag_p99_ms: (!out.lag.is_empty()).then(|| ms(out.lag.value_at_quantile(0.99))),
            cpu_s_per_1k: cpu_s
                .filter(|_| requests > 0)
                .map(|s| s * 1000.0 / requests as f64),
        }
    }

    /// p50, p90, p99, p99.9, max: the columns every latency table shows.
    pub fn percentiles(&self) -> [f64; 5] {
        [
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
        ]
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct SidecarFigures {
    pub app_id: String,
    pub role: String,
    pub ready_ms: f64,
    pub rss_idle_mb: f64,
    /// Of the idle RSS: anonymous memory (heap, stacks, relocated data) and file pages.
    #[serde(default)]
    pub rss_idle_anon_mb: f64,
    #[serde(default)]
    pub rss_idle_file_mb: f64,
    /// Peak RSS (VmHWM) at the end of each phase, keyed by phase key. Phases run in order of
    /// load, so each value is the peak up to and including that phase.
    pub rss_peak_mb: BTreeMap<String, f64>,
}

impl Results {
    pub fn row(&self, scenario: &str, phase: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.phase == phase)
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    pub fn read_json(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The three load averages from /proc/loadavg.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// KiB (as /proc reports) to MB.
pub fn kib_to_mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}
