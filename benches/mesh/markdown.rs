//! Renders a run as `RESULTS.md`. benches/README.md explains every column.

use std::fmt::Write as _;

use crate::results::{Phase, Results, Row};
use crate::targets::{self, added};
use crate::{mtls, pubsub, state};

const LATENCY_HEAD: &str = "| scenario | p50 | p90 | p99 | p99.9 | max | achieved rps | errors | pool waits | proxy CPU s / 1k req |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
const ADDED_HEAD: &str = "| scenario | +p50 | +p90 | +p99 | +p99.9 | ×nginx p50 | ×nginx p90 | ×nginx p99 | ×nginx p99.9 |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n";

pub fn render(r: &Results) -> String {
    let mut md = String::new();
    let m = &r.meta;
    md.push_str("# Outrigger mesh benchmark results\n\n");
    md.push_str("Written by `cargo bench --bench mesh` (see [README.md](README.md) for what every column means).\n\n");
    let _ = writeln!(md, "- date: {}", m.date);
    let _ = writeln!(
        md,
        "- machine: {} cores{}{}",
        m.cores,
        m.cpu_model
            .as_deref()
            .map_or(String::new(), |c| format!(", {c}")),
        m.kernel
            .as_deref()
            .map_or(String::new(), |k| format!(", Linux {k}"))
    );
    let _ = writeln!(
        md,
        "- git commit: {}",
        m.git_commit.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        md,
        "- sidecar: {} build, binary {:.1} MB",
        m.sidecar_build,
        m.binary_bytes as f64 / 1e6
    );
    let _ = writeln!(
        md,
        "- nginx: {}",
        m.nginx
            .as_deref()
            .map_or("not installed (row skipped)".to_owned(), |v| format!(
                "{v}, 1 worker, keep-alive upstream"
            ))
    );
    let _ = writeln!(
        md,
        "- mode: {}; latencies in ms; client, app, proxies all share the same cores",
        if m.quick {
            "quick (CI smoke run: numbers are not meaningful)"
        } else {
            "full"
        }
    );
    let _ = writeln!(
        md,
        "- load average (1/5/15 min) before: {}, after: {}",
        m.load_before.as_deref().unwrap_or("?"),
        m.load_after.as_deref().unwrap_or("?")
    );
    let _ = writeln!(
        md,
        "- scheduling of the harness and every process it started: {}",
        m.scheduling.as_deref().unwrap_or("unknown")
    );
    if m.clk_tck_assumed {
        md.push_str("- CPU figures assume 100 clock ticks per second (`getconf CLK_TCK` failed)\n");
    }
    for phase in &r.phases {
        phase_section(&mut md, r, phase);
    }
    state_section(&mut md, r);
    connection_section(&mut md, r);
    pubsub_section(&mut md, r);
    resources(&mut md, r);
    md.push_str("\n## Targets (issue 3; reported, not enforced)\n\n| target | measured | met |\n|---|---|---|\n");
    for c in targets::checks(r) {
        let met = match c.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        let _ = writeln!(md, "| {} | {} | {met} |", c.goal, c.measured);
    }
    if !r.notes.is_empty() {
        md.push_str("\n## Notes\n\n");
        for note in &r.notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    md
}

fn phase_section(md: &mut String, r: &Results, phase: &Phase) {
    let how = match phase.rps {
        Some(_) => format!("open loop, {} keep-alive connections", phase.connections),
        None => format!("closed loop, {} requests in flight", phase.connections),
    };
    let _ = write!(
        md,
        "\n## {} ({how}; {} s measured after {} s warm-up)\n\n{LATENCY_HEAD}",
        phase.title, phase.measure_s, phase.warmup_s
    );
    // The state rows go to their own table: their baseline is Redis, not `direct`.
    let rows: Vec<&Row> = r
        .rows
        .iter()
        .filter(|x| {
            x.phase == phase.key
                && !state::is_state(&x.scenario)
                && !pubsub::is_pubsub(&x.scenario)
                && !mtls::is_connection(&x.scenario)
        })
        .collect();
    latency_rows(md, &rows);
    if let Some(lag) = rows.iter().filter_map(|x| x.lag_p99_ms).reduce(f64::max) {
        let _ = writeln!(
            md,
            "\nDispatcher lateness p99 (in every row, also `direct`): {lag:.3} ms."
        );
    }
    md.push_str("\nAdded over `direct` (gRPC rows: over `grpc-direct`) (ms), and as a multiple of nginx's added latency:\n\n");
    md.push_str(ADDED_HEAD);
    let nginx = added(r, "nginx", &phase.key);
    for row in rows
        .iter()
        .filter(|x| targets::baseline(&x.scenario) != x.scenario)
    {
        let Some(a) = added(r, &row.scenario, &phase.key) else {
            continue;
        };
        // A ratio only means something when nginx added a positive amount.
        let ratio = |i: usize| match nginx {
            Some(n) if n[i] > 0.0 && a[i] / n[i] >= 100.0 => format!("{:.0}", a[i] / n[i]),
            Some(n) if n[i] > 0.0 => format!("{:.2}", a[i] / n[i]),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} |",
            row.scenario,
            a[0],
            a[1],
            a[2],
            a[3],
            ratio(0),
            ratio(1),
            ratio(2),
            ratio(3)
        );
    }
    if phase.rps.is_none() {
        if let Some(n) = r.row("nginx", &phase.key) {
            md.push_str("\nThroughput as a multiple of nginx's: ");
            let parts: Vec<String> = rows
                .iter()
                .map(|x| format!("{} {:.2}", x.scenario, x.achieved_rps / n.achieved_rps))
                .collect();
            md.push_str(&parts.join(", "));
            md.push('\n');
        }
    }
}

/// A latency table with the phase in its first column.
fn latency_rows_by_phase(md: &mut String, r: &Results, rows: &[&Row]) {
    md.push_str(
        &LATENCY_HEAD
            .replacen("| scenario", "| phase | scenario", 1)
            .replacen("|---|", "|---|---|", 1),
    );
    for row in rows {
        let title = r
            .phases
            .iter()
            .find(|p| p.key == row.phase)
            .map_or(row.phase.as_str(), |p| p.title.as_str());
        let mut line = String::new();
        latency_rows(&mut line, &[row]);
        let _ = write!(md, "| {title} {line}");
    }
}

fn latency_rows(md: &mut String, rows: &[&Row]) {
    for row in rows {
        let p = row.percentiles();
        let cpu = row
            .cpu_s_per_1k
            .map_or("—".to_owned(), |c| format!("{c:.3}"));
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {} | {} | {cpu} |",
            row.scenario,
            p[0],
            p[1],
            p[2],
            p[3],
            p[4],
            row.achieved_rps,
            row.errors,
            row.pool_waits
        );
    }
}

/// Issue 4: each state call through `solo` next to the same Redis work done directly.
fn state_section(md: &mut String, r: &Results) {
    let rows: Vec<&Row> = r
        .rows
        .iter()
        .filter(|x| state::is_state(&x.scenario))
        .collect();
    let Some(first) = rows.first() else {
        return;
    };
    let phase = r.phases.iter().find(|p| p.key == first.phase);
    let _ = write!(
        md,
        "\n## State (through Redis)\n\n{}: `solo`'s `state.redis` store against the machine's Redis, and the same Redis work sent directly with the `redis` crate (one multiplexed connection) as the reference. Keys `bench-0` to `bench-999`, values of 1,024 bytes.\n\n{LATENCY_HEAD}",
        phase.map_or(first.phase.clone(), |p| format!(
            "{} ({} s measured after {} s warm-up)",
            p.title, p.measure_s, p.warmup_s
        ))
    );
    latency_rows(md, &rows);
    md.push_str("\nAdded by the sidecar over its direct Redis reference (ms):\n\n| scenario | reference | +p50 | +p90 | +p99 | +p99.9 |\n|---|---|--:|--:|--:|--:|\n");
    for a in &r.state_added {
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            a.scenario, a.reference, a.p50_ms, a.p90_ms, a.p99_ms, a.p999_ms
        );
    }
}

/// Issue 7: what a new connection to a sidecar's internal port costs, plain and with mTLS.
fn connection_section(md: &mut String, r: &Results) {
    let rows: Vec<&Row> = r
        .rows
        .iter()
        .filter(|x| mtls::is_connection(&x.scenario))
        .collect();
    if rows.is_empty() {
        return;
    }
    md.push_str("
## New connections to a sidecar's internal port (mTLS handshakes)

One request = connect, handshake, and wait for the sidecar's first HTTP/2 bytes (so over TLS the sidecar has also accepted the client's certificate), then close. `connect-tcp`: the plaintext sidecar `beta`. `handshake-mtls-full`: a full mutual TLS 1.3 handshake with `beta-mtls` (ECDSA P-256 workload certificates from `outrigger-control`, both chains and SPIFFE IDs verified). `handshake-mtls`: the client configuration sidecars use for peers, which resumes TLS sessions. In the max-throughput phase, achieved rps is new connections per second; proxy CPU is the accepting sidecar's, per 1,000 connections.

");
    latency_rows_by_phase(md, r, &rows);
}

/// Issue 5: publish through a sidecar and delivery to an app, next to raw Redis Streams.
fn pubsub_section(md: &mut String, r: &Results) {
    let rows: Vec<&Row> = r
        .rows
        .iter()
        .filter(|x| pubsub::is_pubsub(&x.scenario))
        .collect();
    if rows.is_empty() {
        return;
    }
    md.push_str("\n## Pub/sub (through Redis Streams)\n\n`pubsub-redis`: `POST /v1.0/publish/pubsub/bench` on the publisher sidecar (`ps-pub`), `pubsub.redis` on a `redis-server` of the harness's own, the subscriber sidecar (`ps-sub`) delivering each CloudEvent to an app in the harness. `pubsub-raw-redis`: the same messages as raw `XADD` on one multiplexed connection and an `XREADGROUP ... COUNT 100 BLOCK` + `XACK` loop in the harness. Open loop; proxy CPU is both sidecars'.\n\nPublish (until the publish call returns):\n\n");
    latency_rows_by_phase(md, r, &rows);
    md.push_str("\nPublish to handler (from each message's scheduled send time until the handler sees it):\n\n| phase | scenario | p50 | p90 | p99 | p99.9 | max | published | delivered | duplicates | drain (ms) |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for d in &r.pubsub_delivery {
        let title = r
            .phases
            .iter()
            .find(|p| p.key == d.phase)
            .map_or(d.phase.as_str(), |p| p.title.as_str());
        let _ = writeln!(
            md,
            "| {title} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {:.0} |",
            d.scenario,
            d.p50_ms,
            d.p90_ms,
            d.p99_ms,
            d.p999_ms,
            d.max_ms,
            d.published,
            d.delivered,
            d.duplicates,
            d.drain_ms
        );
    }
}

fn resources(md: &mut String, r: &Results) {
    md.push_str("\n## Sidecar resources\n\n| sidecar | role | ready (ms) | RSS idle (MB) | anon / file (MB) |");
    for p in &r.phases {
        let _ = write!(md, " RSS peak to {} (MB) |", p.title);
    }
    md.push_str("\n|---|---|--:|--:|--:|");
    md.push_str(&"--:|".repeat(r.phases.len()));
    md.push('\n');
    for s in &r.sidecars {
        let _ = write!(
            md,
            "| {} | {} | {:.1} | {:.1} | {:.1} / {:.1} |",
            s.app_id, s.role, s.ready_ms, s.rss_idle_mb, s.rss_idle_anon_mb, s.rss_idle_file_mb
        );
        for p in &r.phases {
            let v = s.rss_peak_mb.get(&p.key);
            let _ = write!(md, " {} |", v.map_or("—".to_owned(), |v| format!("{v:.1}")));
        }
        md.push('\n');
    }
    if let Some(med) = targets::median(&r.ready_ms) {
        let max = r.ready_ms.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            md,
            "\nStart to `/v1.0/healthz/outbound` = 204 over {} starts: median {med:.1} ms, max {max:.1} ms.",
            r.ready_ms.len()
        );
    }
}
