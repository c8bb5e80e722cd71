//! What the run was measured on (machine, commit, build, load, scheduling) and the caveats
//! printed under the tables, so nobody reads numbers without their circumstances.

use std::path::Path;

use anyhow::Context as _;

use crate::results::{Meta, Row};
use crate::{nginx, procs, targets};

/// Caveats about single rows: errors and requests that waited for a connection.
pub fn row_notes(rows: &[Row]) -> Vec<String> {
    let mut notes = Vec::new();
    for r in rows {
        if r.errors > 0 {
            notes.push(format!(
                "{} at {}: {} errors (first: {}); its latency covers successful requests only.",
                r.scenario,
                r.phase,
                r.errors,
                r.first_error.as_deref().unwrap_or("?")
            ));
        }
        if r.pool_waits > 0 && r.phase != targets::MAX {
            notes.push(format!(
                "{} at {}: {} requests waited for a free connection (the wait is counted in their latency).",
                r.scenario, r.phase, r.pool_waits
            ));
        }
    }
    notes
}

/// Everything about the run except its numbers.
pub fn meta(bin: &Path, quick: bool, clk_tck: u64, clk_tck_assumed: bool) -> anyhow::Result<Meta> {
    let root = env!("CARGO_MANIFEST_DIR");
    let commit = procs::command_line_output("git", &["-C", root, "rev-parse", "--short", "HEAD"]);
    let dirty = procs::command_line_output(
        "git",
        &["-C", root, "status", "--porcelain", "--untracked-files=no"],
    )
    .is_some();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    });
    Ok(Meta {
        date: procs::command_line_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
            .unwrap_or_else(|| "unknown".to_owned()),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        kernel: procs::command_line_output("uname", &["-r"]),
        git_commit: commit.map(|c| {
            if dirty {
                format!("{c} (+ local changes)")
            } else {
                c
            }
        }),
        // The harness and the sidecar binary are built by the same cargo command, so its own
        // profile tells which build it is measuring (CI's smoke run uses the debug build).
        sidecar_build: if cfg!(debug_assertions) {
            "debug (smoke run: the numbers mean nothing)"
        } else {
            "release"
        }
        .to_owned(),
        binary_bytes: std::fs::metadata(bin)
            .with_context(|| format!("reading {}", bin.display()))?
            .len(),
        nginx: nginx::version(),
        quick,
        clk_tck,
        clk_tck_assumed,
        load_before: None,
        load_after: None,
        scheduling: procs::scheduling(),
    })
}

/// Under real-time scheduling the kernel throttles RT tasks that saturate the CPUs (by default
/// 50 ms of every second), which shows up as ~50 ms stalls in closed-loop tails.
pub fn realtime_note(meta: &Meta) -> Option<String> {
    let policy = meta.scheduling.as_deref()?;
    if !(policy.starts_with("SCHED_RR") || policy.starts_with("SCHED_FIFO")) {
        return None;
    }
    let runtime = std::fs::read_to_string("/proc/sys/kernel/sched_rt_runtime_us").ok()?;
    let period = std::fs::read_to_string("/proc/sys/kernel/sched_rt_period_us").ok()?;
    Some(format!(
        "Run under {policy}: the kernel lets real-time tasks use {} of every {} µs, so rows that saturate both cores (closed loop, or a rate a scenario cannot sustain) include stalls of up to the remainder in their p99.9 and max.",
        runtime.trim(),
        period.trim()
    ))
}

/// Says so when other work was running: a 1-minute load above half the cores before or after.
pub fn busy_note(meta: &Meta) -> Option<String> {
    let one_min = |l: &Option<String>| -> f64 {
        l.as_deref()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let worst = one_min(&meta.load_before).max(one_min(&meta.load_after));
    (worst > meta.cores as f64 / 2.0).then(|| {
        format!(
            "The machine was busy with other work (load average {worst:.1} on {} cores): every row is disturbed, tails most.",
            meta.cores
        )
    })
}
