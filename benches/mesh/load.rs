//! The in-process load generator: requests (see `client.rs`: pooled keep-alive HTTP/1.1, or Redis
//! commands on a multiplexed connection) driven either open-loop (a fixed schedule; latency counted from each request's *scheduled* time, so
//! a stalled server is charged for the requests it delayed: coordinated omission is corrected)
//! or closed-loop (fixed concurrency, as fast as answers come back: a throughput figure).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::runtime::Runtime;

use crate::client::{Client, Target};

/// Open-loop settings: `rps` requests a second for `warmup` (not recorded), then `measure`.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub rps: u32,
    pub warmup: Duration,
    pub measure: Duration,
    pub connections: usize,
    pub timeout: Duration,
}

/// Closed-loop settings: `concurrency` requests always in flight.
#[derive(Clone, Debug)]
pub struct Saturate {
    pub concurrency: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub timeout: Duration,
}

/// What a run measured, over its measured window only.
pub struct Outcome {
    /// Latency in nanoseconds of the requests that succeeded.
    pub latency: Histogram<u64>,
    /// Open loop: how late the dispatcher sent each request (ns); empty for closed loop.
    pub lag: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the first measured send (or scheduled send) to the last measured answer.
    pub window: Duration,
    /// Requests that found every pooled connection busy and had to wait for one.
    pub pool_waits: u64,
    /// Connections opened during the run (after one broke or was closed by the server).
    pub reconnects: u64,
}

impl Outcome {
    pub fn achieved_rps(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }
}

/// 1 ns to 60 s at 3 significant digits (0.1% resolution).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Results shared by the request tasks of one run.
struct Tally {
    latency: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

impl Tally {
    fn shared() -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            latency: histogram(),
            ok: 0,
            errors: 0,
            first_error: None,
            last_done: None,
        }))
    }

    fn record(tally: &Mutex<Self>, result: anyhow::Result<()>, latency: Duration) {
        let mut t = tally.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(()) => {
                t.ok += 1;
                t.latency.saturating_record(nanos(latency));
            }
            Err(err) => {
                t.errors += 1;
                t.first_error.get_or_insert_with(|| format!("{err:#}"));
            }
        }
        t.last_done = Some(Instant::now());
    }
}

/// Runs an open-loop schedule. The calling thread is the dispatcher: it sleeps until each
/// request's scheduled time and hands it to `rt`. `on_measure` runs when the warm-up ends.
pub fn open_loop(
    rt: &Runtime,
    target: &Target,
    s: &Schedule,
    on_measure: impl FnOnce(),
) -> anyhow::Result<Outcome> {
    let client = rt.block_on(Client::open(target, s.connections))?;
    let tally = Tally::shared();
    let done = Arc::new(AtomicU64::new(0));
    let interval = 1e9 / f64::from(s.rps);
    let warm = (f64::from(s.rps) * s.warmup.as_secs_f64()).round() as u64;
    let total = warm + ((f64::from(s.rps) * s.measure.as_secs_f64()).round() as u64).max(1);
    let mut lag = histogram();
    let mut on_measure = Some(on_measure);
    let start = Instant::now() + Duration::from_millis(5);
    let mut measure_start = start;
    let mut last_at = start;
    for i in 0..total {
        let at = start + Duration::from_nanos((i as f64 * interval) as u64);
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        let measured = i >= warm;
        if i == warm {
            if let Some(f) = on_measure.take() {
                f();
            }
            client.reset_counters();
            measure_start = at;
        }
        if measured {
            lag.saturating_record(nanos(at.elapsed()));
        }
        last_at = at;
        let (client, tally, done) = (client.clone(), tally.clone(), done.clone());
        let deadline = tokio::time::Instant::from_std(at + s.timeout);
        rt.spawn(async move {
            let result = match tokio::time::timeout_at(deadline, client.request(i)).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!("no answer within the timeout")),
            };
            if measured {
                Tally::record(&tally, result, at.elapsed());
            }
            done.fetch_add(1, Ordering::Relaxed);
        });
    }
    // Every request ends by its deadline; the extra second covers task scheduling.
    let drain_until = last_at + s.timeout + Duration::from_secs(1);
    rt.block_on(async {
        while done.load(Ordering::Relaxed) < total && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    Ok(finish(&client, &tally, lag, measure_start))
}

/// Runs `concurrency` request loops back to back; latency is counted from each actual send.
pub fn closed_loop(
    rt: &Runtime,
    target: &Target,
    s: &Saturate,
    on_measure: impl FnOnce(),
) -> anyhow::Result<Outcome> {
    let client = rt.block_on(Client::open(target, s.concurrency))?;
    let tally = Tally::shared();
    // Numbers the requests (which key or path each uses) across all loops.
    let sequence = Arc::new(AtomicU64::new(0));
    let measure_start = Instant::now() + s.warmup;
    let end = measure_start + s.measure;
    let workers: Vec<_> = (0..s.concurrency)
        .map(|_| {
            let (client, tally, timeout) = (client.clone(), tally.clone(), s.timeout);
            let sequence = sequence.clone();
            rt.spawn(async move {
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let n = sequence.fetch_add(1, Ordering::Relaxed);
                    let result = match tokio::time::timeout(timeout, client.request(n)).await {
                        Ok(result) => result,
                        Err(_) => Err(anyhow::anyhow!("no answer within the timeout")),
                    };
                    if sent >= measure_start {
                        Tally::record(&tally, result, sent.elapsed());
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(measure_start.saturating_duration_since(Instant::now()));
    on_measure();
    client.reset_counters();
    rt.block_on(async {
        for worker in workers {
            let _ = worker.await;
        }
    });
    Ok(finish(&client, &tally, histogram(), measure_start))
}

fn finish(client: &Client, tally: &Mutex<Tally>, lag: Histogram<u64>, from: Instant) -> Outcome {
    let (pool_waits, reconnects) = client.waits_and_reconnects();
    let mut t = tally.lock().unwrap_or_else(PoisonError::into_inner);
    let window = t
        .last_done
        .map_or(Duration::ZERO, |last| last.saturating_duration_since(from));
    Outcome {
        latency: std::mem::replace(&mut t.latency, histogram()),
        lag,
        ok: t.ok,
        errors: t.errors,
        first_error: t.first_error.take(),
        window,
        pool_waits,
        reconnects,
    }
}
