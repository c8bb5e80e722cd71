//! Command line and the durations each mode runs for.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::results::Phase;

pub const USAGE: &str = "usage: cargo bench --bench mesh -- [--quick] [--baseline <results.json>] \
[--out <dir>] [--only <scenario>[,<scenario>...]]
  --quick      run each scenario briefly (also OUTRIGGER_BENCH_QUICK=1); writes to target/mesh-quick
  --baseline   print (and add to RESULTS.md) the change against a saved results.json
  --out        where RESULTS.md and results.json go (default: benches/, or target/mesh-quick)
  --only       run only these scenarios: direct, nginx, outrigger-1hop, outrigger-2hop,
               state-save-sidecar, redis-hset, state-get-sidecar, redis-get-script,
               grpc-direct, grpc-2hop, pubsub-redis, pubsub-raw-redis";

#[derive(Debug)]
pub struct Args {
    pub quick: bool,
    pub baseline: Option<PathBuf>,
    pub out: PathBuf,
    pub only: Option<Vec<String>>,
}

impl Args {
    pub fn parse() -> anyhow::Result<Self> {
        let env_quick = std::env::var("OUTRIGGER_BENCH_QUICK")
            .is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        let mut quick = env_quick;
        let (mut baseline, mut out, mut only) = (None, None, None);
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                // cargo passes --bench to every harness = false bench target.
                "--bench" => {}
                "--quick" => quick = true,
                "--baseline" => baseline = Some(PathBuf::from(value("--baseline")?)),
                "--out" => out = Some(PathBuf::from(value("--out")?)),
                "--only" => {
                    only = Some(value("--only")?.split(',').map(str::to_owned).collect());
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        // A quick run must never overwrite the committed full results.
        let out = out.unwrap_or_else(|| {
            if quick {
                root.join("target/mesh-quick")
            } else {
                root.join("benches")
            }
        });
        Ok(Self {
            quick,
            baseline,
            out,
            only,
        })
    }

    pub fn runs(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == scenario))
    }
}

/// Durations and sizes of one mode.
pub struct Settings {
    pub phases: Vec<Phase>,
    /// Per-request deadline; a request past it counts as an error.
    pub timeout: Duration,
    /// Extra sidecar starts, beyond the three the scenarios use, for the start-up figure.
    pub extra_boots: usize,
    /// Quiet time after start-up before idle RSS is read.
    pub settle: Duration,
}

impl Settings {
    /// Full: about 3 minutes of load on 2 cores. Quick: about 20 seconds.
    pub fn new(quick: bool) -> Self {
        let (warm, m1k, m10k, mmax) = if quick {
            (0.3, 1.5, 1.5, 1.5)
        } else {
            (2.0, 15.0, 10.0, 8.0)
        };
        let rate = |rps: u32, measure: f64| Phase {
            key: format!("rate-{rps}"),
            title: format!("{} rps", thousands(rps)),
            rps: Some(rps),
            connections: 64,
            warmup_s: warm,
            measure_s: measure,
        };
        Self {
            phases: vec![
                rate(1_000, m1k),
                rate(10_000, m10k),
                Phase {
                    key: "max".to_owned(),
                    title: "max throughput".to_owned(),
                    rps: None,
                    connections: 32,
                    warmup_s: warm,
                    measure_s: mmax,
                },
            ],
            timeout: Duration::from_secs(if quick { 2 } else { 5 }),
            extra_boots: if quick { 1 } else { 5 },
            settle: Duration::from_millis(if quick { 200 } else { 1000 }),
        }
    }
}

fn thousands(n: u32) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
