//! The in-process load generator: hyper HTTP/1.1 client connections kept alive in a pool, driven
//! either open-loop (a fixed schedule; latency counted from each request's *scheduled* time, so
//! a stalled server is charged for the requests it delayed: coordinated omission is corrected)
//! or closed-loop (fixed concurrency, as fast as answers come back: a throughput figure).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

use crate::upstream::{payload, BODY_BYTES};

/// Where requests go: an address and the path to POST to.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
}

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

/// Keep-alive HTTP/1.1 connections to one target; a request borrows one, and the semaphore
/// makes a request wait (counted) when all are busy.
struct Pool {
    addr: SocketAddr,
    uri: Uri,
    host: String,
    payload: Bytes,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    permits: Semaphore,
    waits: AtomicU64,
    reconnects: AtomicU64,
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the pool drops the connection or the server closes it.
        let _ = conn.await;
    });
    Ok(send)
}

impl Pool {
    /// Opens all `size` connections up front, so no run pays for a TCP handshake.
    async fn open(target: &Target, size: usize) -> anyhow::Result<Arc<Self>> {
        let mut idle = Vec::with_capacity(size);
        for _ in 0..size {
            idle.push(connect(target.addr).await?);
        }
        Ok(Arc::new(Self {
            addr: target.addr,
            uri: target.path.parse().context("request path")?,
            host: target.addr.to_string(),
            payload: payload(),
            idle: Mutex::new(idle),
            permits: Semaphore::new(size),
            waits: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }))
    }

    /// Counts only what happens in the measured window.
    fn reset_counters(&self) {
        self.waits.store(0, Ordering::Relaxed);
        self.reconnects.store(0, Ordering::Relaxed);
    }

    async fn request(&self) -> anyhow::Result<()> {
        let _permit = match self.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                self.waits.fetch_add(1, Ordering::Relaxed);
                self.permits.acquire().await?
            }
        };
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match pooled {
            Some(conn) if !conn.is_closed() => conn,
            _ => {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
                connect(self.addr).await?
            }
        };
        conn.ready().await?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(HOST, self.host.as_str())
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(self.payload.clone()))?;
        let res = conn.send_request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        // Only a connection whose answer was read whole is ready for the next request; one
        // dropped by an error or a timeout is replaced by a fresh one later.
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
        if status != http::StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            bail!("status {status}: {text}");
        }
        if body.len() != BODY_BYTES {
            bail!("{} body bytes, expected {BODY_BYTES}", body.len());
        }
        Ok(())
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
    let pool = rt.block_on(Pool::open(target, s.connections))?;
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
            pool.reset_counters();
            measure_start = at;
        }
        if measured {
            lag.saturating_record(nanos(at.elapsed()));
        }
        last_at = at;
        let (pool, tally, done) = (pool.clone(), tally.clone(), done.clone());
        let deadline = tokio::time::Instant::from_std(at + s.timeout);
        rt.spawn(async move {
            let result = match tokio::time::timeout_at(deadline, pool.request()).await {
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
    Ok(finish(&pool, &tally, lag, measure_start))
}

/// Runs `concurrency` request loops back to back; latency is counted from each actual send.
pub fn closed_loop(
    rt: &Runtime,
    target: &Target,
    s: &Saturate,
    on_measure: impl FnOnce(),
) -> anyhow::Result<Outcome> {
    let pool = rt.block_on(Pool::open(target, s.concurrency))?;
    let tally = Tally::shared();
    let measure_start = Instant::now() + s.warmup;
    let end = measure_start + s.measure;
    let workers: Vec<_> = (0..s.concurrency)
        .map(|_| {
            let (pool, tally, timeout) = (pool.clone(), tally.clone(), s.timeout);
            rt.spawn(async move {
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let result = match tokio::time::timeout(timeout, pool.request()).await {
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
    pool.reset_counters();
    rt.block_on(async {
        for worker in workers {
            let _ = worker.await;
        }
    });
    Ok(finish(&pool, &tally, histogram(), measure_start))
}

fn finish(pool: &Pool, tally: &Mutex<Tally>, lag: Histogram<u64>, from: Instant) -> Outcome {
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
        pool_waits: pool.waits.load(Ordering::Relaxed),
        reconnects: pool.reconnects.load(Ordering::Relaxed),
    }
}
