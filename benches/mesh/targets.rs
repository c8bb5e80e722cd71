//! The goals from issue 3, checked against a run. They are reported, never enforced: a missed
//! target is a finding to profile, not a failed build.

use crate::results::Results;

pub const RATE_1K: &str = "rate-1000";
pub const MAX: &str = "max";

pub struct Check {
    pub goal: &'static str,
    pub measured: String,
    /// `None` when the run lacks what the goal needs (e.g. nginx was not installed).
    pub met: Option<bool>,
}

/// The row a scenario's added latency is measured against: gRPC rows against the direct gRPC
/// call, everything else against the direct HTTP request.
pub fn baseline(scenario: &str) -> &'static str {
    if scenario.starts_with("grpc-") {
        crate::grpc::DIRECT
    } else {
        "direct"
    }
}

/// Added latency of `scenario` over its [`baseline`] in `phase` at each percentile column.
pub fn added(r: &Results, scenario: &str, phase: &str) -> Option<[f64; 5]> {
    let base = r.row(baseline(scenario), phase)?.percentiles();
    let row = r.row(scenario, phase)?.percentiles();
    Some(std::array::from_fn(|i| row[i] - base[i]))
}

pub fn checks(r: &Results) -> Vec<Check> {
    let mut out = Vec::new();
    let two = added(r, "outrigger-2hop", RATE_1K);
    out.push(limit(
        "outrigger-2hop added p50 at 1,000 rps <= 0.10 ms",
        two.map(|a| a[0]),
        0.10,
        "ms",
    ));
    out.push(limit(
        "outrigger-2hop added p99 at 1,000 rps <= 0.25 ms",
        two.map(|a| a[2]),
        0.25,
        "ms",
    ));
    let one = added(r, "outrigger-1hop", RATE_1K).map(|a| a[2]);
    let nginx = added(r, "nginx", RATE_1K).map(|a| a[2]);
    out.push(Check {
        goal: "outrigger-1hop added p99 at 1,000 rps <= nginx's",
        measured: match (one, nginx) {
            (Some(o), Some(n)) => format!("{o:.3} ms vs nginx {n:.3} ms"),
            _ => "no nginx row".to_owned(),
        },
        met: one.zip(nginx).map(|(o, n)| o <= n),
    });
    let one = r.row("outrigger-1hop", MAX).map(|x| x.achieved_rps);
    let nginx = r.row("nginx", MAX).map(|x| x.achieved_rps);
    out.push(Check {
        goal: "outrigger-1hop max throughput >= nginx (1 worker)",
        measured: match (one, nginx) {
            (Some(o), Some(n)) => format!("{o:.0} rps vs nginx {n:.0} rps"),
            _ => "no nginx row".to_owned(),
        },
        met: one.zip(nginx).map(|(o, n)| o >= n),
    });
    let worst = |f: &dyn Fn(&crate::results::SidecarFigures) -> Option<f64>| {
        r.sidecars.iter().filter_map(f).reduce(f64::max)
    };
    out.push(limit(
        "sidecar RSS idle <= 10 MB (largest sidecar)",
        worst(&|s| Some(s.rss_idle_mb)),
        10.0,
        "MB",
    ));
    out.push(limit(
        "sidecar RSS <= 20 MB at 1,000 rps (peak, largest sidecar)",
        worst(&|s| s.rss_peak_mb.get(RATE_1K).copied()),
        20.0,
        "MB",
    ));
    out.push(limit(
        "ready (start to /v1.0/healthz/outbound = 204) <= 50 ms (median)",
        median(&r.ready_ms),
        50.0,
        "ms",
    ));
    out
}

fn limit(goal: &'static str, value: Option<f64>, max: f64, unit: &str) -> Check {
    Check {
        goal,
        measured: value.map_or("not measured".to_owned(), |v| format!("{v:.3} {unit}")),
        met: value.map(|v| v <= max),
    }
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}
