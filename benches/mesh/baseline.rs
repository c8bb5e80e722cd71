//! `--baseline <results.json>`: how this run differs from a saved one, row by row.

use std::fmt::Write as _;

use crate::results::Results;

/// A markdown table of old -> new with the relative change; rows only in one run are listed.
pub fn compare(old: &Results, new: &Results, old_name: &str) -> String {
    let mut md = format!(
        "\n## Compared with baseline `{old_name}` (commit {}, {})\n\n",
        old.meta.git_commit.as_deref().unwrap_or("unknown"),
        old.meta.date
    );
    md.push_str("| phase | scenario | p50 (ms) | p99 (ms) | p99.9 (ms) | achieved rps | proxy CPU s / 1k |\n|---|---|---|---|---|---|---|\n");
    for row in &new.rows {
        let Some(was) = old.row(&row.scenario, &row.phase) else {
            let _ = writeln!(md, "| {} | {} | new row | | | | |", row.phase, row.scenario);
            continue;
        };
        let cpu = match (was.cpu_s_per_1k, row.cpu_s_per_1k) {
            (Some(a), Some(b)) => delta(a, b, 3),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {cpu} |",
            row.phase,
            row.scenario,
            delta(was.p50_ms, row.p50_ms, 3),
            delta(was.p99_ms, row.p99_ms, 3),
            delta(was.p999_ms, row.p999_ms, 3),
            delta(was.achieved_rps, row.achieved_rps, 0),
        );
    }
    for was in &old.rows {
        if new.row(&was.scenario, &was.phase).is_none() {
            let _ = writeln!(
                md,
                "| {} | {} | missing from this run | | | | |",
                was.phase, was.scenario
            );
        }
    }
    if old.meta.quick != new.meta.quick || old.meta.cores != new.meta.cores {
        md.push_str("\nThe two runs differ in mode or core count: compare with care.\n");
    }
    md
}

fn delta(old: f64, new: f64, decimals: usize) -> String {
    let pct = if old != 0.0 {
        format!(" ({:+.0}%)", (new - old) / old * 100.0)
    } else {
        String::new()
    };
    format!("{old:.decimals$} → {new:.decimals$}{pct}")
}
