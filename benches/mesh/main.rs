//! The mesh load harness (issue 3): one run starts an upstream app, nginx and Outrigger
//! sidecars on loopback, drives each scenario at fixed rates and at saturation with an
//! in-process load generator, and writes `RESULTS.md` + `results.json`. See benches/README.md.
//!
//! `cargo bench --bench mesh` (full, under 5 minutes on 2 cores) or
//! `cargo bench --bench mesh -- --quick` (CI smoke run).

// The harness drives load from plain threads on a clock; blocking sleeps there are the point,
// not a stall of an async runtime (which is what clippy.toml guards against).
#![allow(clippy::disallowed_methods)]

mod args;
mod baseline;
mod client;
mod environment;
mod grpc;
mod load;
mod markdown;
mod mtls;
mod nginx;
mod procs;
mod pubsub;
mod results;
mod sidecar;
mod state;
mod targets;
mod upstream;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};

use args::{Args, Settings};
use client::{HttpTarget, Target};
use load::{Saturate, Schedule};
use results::{kib_to_mb, Phase, Results, Row, SidecarFigures};

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(err) => {
            eprintln!("{err:#}");
            return ExitCode::from(2);
        }
    };
    let dir = match tempfile::Builder::new().prefix("outrigger-mesh-").tempdir() {
        Ok(d) => d,
        Err(err) => {
            eprintln!("mesh bench: cannot create a scratch directory: {err}");
            return ExitCode::FAILURE;
        }
    };
    match run(&args, dir.path()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mesh bench failed: {err:#}");
            print_logs(dir.path());
            ExitCode::FAILURE
        }
    }
}

/// One scenario: where the client sends, and whose CPU time counts as the proxy's.
struct Scenario {
    name: &'static str,
    target: Target,
    proxy_pids: Vec<u32>,
    /// Runs only in these phases (the state rows: issue 4 asks for 1,000 rps only); empty: in
    /// every phase.
    only_phases: &'static [&'static str],
}

fn run(args: &Args, dir: &Path) -> anyhow::Result<()> {
    let settings = Settings::new(args.quick);
    let old = match &args.baseline {
        Some(path) => Some(Results::read_json(path)?),
        None => None,
    };
    let bin = sidecar::binary()?;
    let load_before = results::load_average();
    let (hz, hz_assumed) = procs::clock_ticks();
    let app = upstream::start()?;
    let config = sidecar::write_config(dir)?;
    let mut notes = vec![
        "The client (one tokio thread plus the dispatcher thread), the app (one thread), nginx and the sidecars run on the same machine and compete for its cores; compare rows, not absolute numbers across machines.".to_owned(),
    ];

    // The state rows need Redis; without it they are skipped and `solo` gets no components.
    let state = if state::PAIRS
        .iter()
        .any(|(s, r)| args.runs(s) || args.runs(r))
    {
        match state::StateBench::prepare(dir) {
            Ok(state) => Some(state),
            Err(why) => {
                notes.push(format!(
                    "State rows skipped: {why} (they need a Redis on 127.0.0.1:6379)."
                ));
                None
            }
        }
    } else {
        None
    };

    // The three sidecars under load. `solo` serves 1-hop calls to itself and the state API;
    // `alpha` calls `beta`.
    log("starting sidecars");
    let start = |id: &str| sidecar::start(&bin, &config, None, dir, id, app);
    let resources = state.as_ref().map(|s| s.resources.as_path());
    let mut sidecars = vec![
        (
            sidecar::start(&bin, &config, resources, dir, "solo", app)?,
            if state.is_some() {
                "outrigger-1hop, state"
            } else {
                "outrigger-1hop"
            },
        ),
        (start("alpha")?, "outrigger-2hop caller"),
        (start("beta")?, "outrigger-2hop callee"),
    ];
    let mut ready_ms: Vec<f64> = sidecars.iter().map(|(s, _)| ms(s.ready_in)).collect();
    for i in 0..settings.extra_boots {
        // Dropping the guard stops it again; only the start-up time is kept.
        let boot = start(&format!("boot{i}"))?;
        ready_ms.push(ms(boot.ready_in));
    }
    std::thread::sleep(settings.settle);
    let mut figures: Vec<SidecarFigures> = sidecars
        .iter()
        .map(|(s, role)| {
            let mem = procs::memory(s.pid())?;
            Ok(SidecarFigures {
                app_id: s.app_id.clone(),
                role: (*role).to_owned(),
                ready_ms: ms(s.ready_in),
                rss_idle_mb: kib_to_mb(mem.rss_kib),
                rss_idle_anon_mb: kib_to_mb(mem.anon_kib),
                rss_idle_file_mb: kib_to_mb(mem.file_kib),
                rss_peak_mb: BTreeMap::new(),
            })
        })
        .collect::<anyhow::Result<_>>()?;

    let nginx = if args.runs("nginx") {
        nginx::start(dir, app)?
    } else {
        None
    };
    if nginx.is_none() && args.runs("nginx") {
        notes.push("nginx is not installed, so the nginx row and the nginx ratios are skipped (`apt-get install -y nginx`).".to_owned());
    }

    let echo = |addr, path: &str| Target::Http(HttpTarget::echo(addr, path.to_owned()));
    let invoke = |sidecar: &sidecar::Sidecar, callee: &str| {
        echo(sidecar.http, &format!("/v1.0/invoke/{callee}/method/echo"))
    };
    let every_phase = |name, target, proxy_pids| Scenario {
        name,
        target,
        proxy_pids,
        only_phases: &[],
    };
    let mut scenarios = vec![every_phase("direct", echo(app, "/echo"), vec![])];
    if let Some(n) = &nginx {
        scenarios.push(every_phase("nginx", echo(n.addr, "/echo"), n.pids()));
    }
    let (solo, alpha, beta) = (&sidecars[0].0, &sidecars[1].0, &sidecars[2].0);
    scenarios.push(every_phase(
        "outrigger-1hop",
        invoke(solo, "solo"),
        vec![solo.pid()],
    ));
    scenarios.push(every_phase(
        "outrigger-2hop",
        invoke(alpha, "beta"),
        vec![alpha.pid(), beta.pid()],
    ));
    if let Some(state) = &state {
        scenarios.extend(state.scenarios(solo)?);
    }
    // Not in a plain --quick (CI) run: a debug build of the gRPC client and upstream falls
    // behind 1,000 rps on a busy machine, so the rows would only measure the harness.
    let wants_grpc = !args.quick || args.only.is_some();
    let mut grpc_bench = if wants_grpc && (args.runs(grpc::DIRECT) || args.runs(grpc::TWO_HOP)) {
        log("starting the gRPC app and its sidecar");
        Some(grpc::GrpcBench::start(&bin, &config, dir)?)
    } else {
        None
    };
    if let Some(g) = &grpc_bench {
        scenarios.extend(g.scenarios(alpha, args.quick));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("load-client")
        .enable_all()
        .build()
        .context("building the client runtime")?;
    let mut mtls_bench = if mtls::ALL.iter().any(|s| args.runs(s)) {
        log("starting outrigger-control and two sidecars with mTLS");
        Some(mtls::MtlsBench::start(&rt, &bin, &config, dir, app)?)
    } else {
        None
    };
    if let Some(m) = &mtls_bench {
        scenarios.extend(m.scenarios(beta, args.quick));
    }
    scenarios.retain(|s| args.runs(s.name));

    if let Some(state) = &state {
        log("saving every state key once through solo");
        state.prefill(&rt, solo)?;
    }
    let mut rows = Vec::new();
    for phase in &settings.phases {
        for sc in scenarios
            .iter()
            .filter(|s| s.only_phases.is_empty() || s.only_phases.contains(&phase.key.as_str()))
        {
            let row = measure(&rt, sc, phase, &settings, hz)?;
            log(&format!(
                "{} {}: p50 {:.3} p99 {:.3} p99.9 {:.3} ms, {:.0} rps, {} errors",
                phase.title,
                sc.name,
                row.p50_ms,
                row.p99_ms,
                row.p999_ms,
                row.achieved_rps,
                row.errors
            ));
            rows.push(row);
            for (s, _) in &mut sidecars {
                if let Some(status) = s.guard.exited() {
                    bail!("sidecar {} exited during the run ({status})", s.app_id);
                }
            }
            if let Some(s) = grpc_bench.as_mut().map(|g| &mut g.callee) {
                if let Some(status) = s.guard.exited() {
                    bail!("sidecar {} exited during the run ({status})", s.app_id);
                }
            }
            for guard in mtls_bench.iter_mut().flat_map(mtls::MtlsBench::guards) {
                if let Some(status) = guard.exited() {
                    bail!("{} exited during the run ({status})", guard.name);
                }
            }
            settle(&scenarios);
        }
        for ((s, _), f) in sidecars.iter().zip(&mut figures) {
            let peak = kib_to_mb(procs::memory(s.pid())?.hwm_kib);
            f.rss_peak_mb.insert(phase.key.clone(), peak);
        }
    }
    // Pub/sub brings its own Redis, sidecars and apps, and reports delivery next to publish.
    let mut pubsub_delivery = Vec::new();
    if args.runs(pubsub::SIDECAR) || args.runs(pubsub::RAW) {
        let ps = pubsub::run(&rt, &settings, &bin, &config, dir, args)?;
        rows.extend(ps.rows);
        notes.extend(ps.notes);
        pubsub_delivery = ps.deliveries;
    }
    notes.extend(environment::row_notes(&rows));
    let mut meta = environment::meta(&bin, args.quick, hz, hz_assumed)?;
    meta.load_before = load_before;
    meta.load_after = results::load_average();
    notes.extend(environment::busy_note(&meta));
    notes.extend(environment::realtime_note(&meta));

    let mut results = Results {
        meta,
        phases: settings.phases.clone(),
        rows,
        sidecars: figures,
        ready_ms,
        notes,
        state_added: Vec::new(),
        pubsub_delivery,
    };
    results.state_added = state::added(&results);
    write(args, &results, old.as_ref())?;
    // Not a timing assertion: a scenario that answered nothing at the gentlest rate means the
    // harness or the sidecar is broken, which a CI smoke run must report.
    let first = &results.phases[0].key;
    if let Some(dead) = results.rows.iter().find(|r| &r.phase == first && r.ok == 0) {
        bail!(
            "{} answered no request at {} (first error: {})",
            dead.scenario,
            first,
            dead.first_error.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}

/// Runs one scenario in one phase and reads the proxies' CPU time around the measured window.
fn measure(
    rt: &tokio::runtime::Runtime,
    sc: &Scenario,
    phase: &Phase,
    settings: &Settings,
    hz: u64,
) -> anyhow::Result<Row> {
    let cpu =
        || -> anyhow::Result<u64> { sc.proxy_pids.iter().map(|p| procs::cpu_ticks(*p)).sum() };
    let mut before = None;
    let on_measure = || before = Some(cpu());
    let secs = Duration::from_secs_f64;
    let outcome = match phase.rps {
        Some(rps) => load::open_loop(
            rt,
            &sc.target,
            &Schedule {
                rps,
                warmup: secs(phase.warmup_s),
                measure: secs(phase.measure_s),
                connections: phase.connections,
                timeout: settings.timeout,
            },
            on_measure,
        ),
        None => load::closed_loop(
            rt,
            &sc.target,
            &Saturate {
                concurrency: phase.connections,
                warmup: secs(phase.warmup_s),
                measure: secs(phase.measure_s),
                timeout: settings.timeout,
            },
            on_measure,
        ),
    }
    .with_context(|| format!("{} at {}", sc.name, phase.title))?;
    let cpu_s = match (sc.proxy_pids.is_empty(), before) {
        (false, Some(before)) => {
            let ticks = cpu()?.saturating_sub(before?);
            Some(ticks as f64 / hz as f64)
        }
        _ => None,
    };
    Ok(Row::new(sc.name, phase, &outcome, cpu_s))
}

/// Waits (at most 10 s) until no proxy has used CPU for 200 ms: a scenario that fell behind
/// may still be working off its backlog, which would disturb the next row.
fn settle(scenarios: &[Scenario]) {
    let pids: Vec<u32> = scenarios
        .iter()
        .flat_map(|s| s.proxy_pids.clone())
        .collect();
    let ticks = || -> u64 { pids.iter().filter_map(|p| procs::cpu_ticks(*p).ok()).sum() };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut last = ticks();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = ticks();
        if now == last {
            return;
        }
        last = now;
    }
}

fn write(args: &Args, results: &Results, old: Option<&Results>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut md = markdown::render(results);
    if let (Some(old), Some(path)) = (old, &args.baseline) {
        md.push_str(&baseline::compare(
            old,
            results,
            &path.display().to_string(),
        ));
    }
    let md_path = args.out.join("RESULTS.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    results.write_json(&args.out.join("results.json"))?;
    println!("{md}");
    log(&format!("wrote {} and results.json", md_path.display()));
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn log(msg: &str) {
    eprintln!("[mesh] {msg}");
}

/// On failure, the tail of every process log: the scratch directory is deleted on exit.
fn print_logs(dir: &Path) {
    let logs = [
        "solo.log",
        "alpha.log",
        "beta.log",
        "grpc-callee.log",
        "control.log",
        "alpha-mtls.log",
        "beta-mtls.log",
        "nginx/error.log",
        "ps-pub.log",
        "ps-sub.log",
        "redis.log",
    ];
    for name in logs {
        let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(20)..];
        if !tail.is_empty() {
            eprintln!(
                "--- {name} (last {} lines) ---\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}
