//! Pub/sub scenarios (issue 5): publish through one sidecar's `POST /v1.0/publish` into a
//! `pubsub.redis` component and have a second sidecar deliver to a subscriber app, against the
//! reference of the same traffic as raw `XADD` plus an `XREADGROUP`/`XACK` loop in the harness.
//!
//! Both go to a `redis-server` the harness starts on a free port (no persistence), so streams
//! and consumer groups never touch shared data. Every message carries its scheduled send time
//! (ns on the harness's monotonic clock); the app, or the raw consumer, subtracts it from the
//! time it sees the message: that is the publish-to-handler latency, coordinated omission
//! included, as for every open-loop row.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};

use crate::args::{Args, Settings};
use crate::load::{histogram, Outcome};
use crate::procs::{self, Guard};
use crate::results::{Phase, Row};
use crate::sidecar;

pub const SIDECAR: &str = "pubsub-redis";
pub const RAW: &str = "pubsub-raw-redis";
const PUBSUB: &str = "pubsub";
const TOPIC: &str = "bench";
const ROUTE: &str = "/bench";
/// The raw reference's stream and consumer group (the sidecar's are the topic and its app id).
const RAW_STREAM: &str = "raw-bench";
const RAW_GROUP: &str = "raw-bench";
/// daprd's `queueDepth` default: the `COUNT` of every `XREADGROUP`.
const QUEUE_DEPTH: usize = 100;
/// `BLOCK` of the raw consumer's reads; only bounds how late it sees the stop flag, a message
/// ends the block at once.
const RAW_BLOCK_MS: u64 = 100;

/// Whether a scenario belongs to the pub/sub tables rather than the invocation tables.
pub fn is_pubsub(scenario: &str) -> bool {
    scenario == SIDECAR || scenario == RAW
}

/// Publish-to-handler figures of one scenario in one phase (ms), next to how many of the
/// measured publishes were delivered.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Delivery {
    pub scenario: String,
    pub phase: String,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Measured publishes the broker accepted.
    pub published: u64,
    /// Distinct measured messages the handler saw.
    pub delivered: u64,
    /// Deliveries of a message already seen.
    pub duplicates: u64,
    /// From the last scheduled publish until the last delivery arrived (or the drain gave up).
    pub drain_ms: f64,
}

/// What the pub/sub scenarios add to a run.
#[derive(Default)]
pub struct Outputs {
    pub rows: Vec<Row>,
    pub deliveries: Vec<Delivery>,
    pub notes: Vec<String>,
}

/// The origin of every `sentNs`: one monotonic clock for publisher and handler alike.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The published payload; the sidecar wraps it as the CloudEvent's `data`.
#[derive(Serialize, Deserialize)]
struct Payload {
    run: u64,
    id: u64,
    #[serde(rename = "sentNs")]
    sent_ns: u64,
}

#[derive(Deserialize)]
struct CloudEvent {
    data: Payload,
}

/// Runs the pub/sub scenarios `args` selects, at every fixed-rate phase. `Err` only when the
/// setup or a run breaks; a missing `redis-server` skips them with a note.
pub fn run(
    rt: &tokio::runtime::Runtime,
    settings: &Settings,
    bin: &Path,
    config: &Path,
    dir: &Path,
    args: &Args,
) -> anyhow::Result<Outputs> {
    let mut out = Outputs::default();
    let (hz, _) = procs::clock_ticks();
    let Some(server) = procs::which("redis-server") else {
        out.notes.push("Pub/sub rows skipped: `redis-server` is not installed (`apt-get install -y redis-server`).".to_owned());
        return Ok(out);
    };
    let redis = RedisServer::start(&server, dir)?;
    let recorder = Arc::new(Recorder::default());
    let phases: Vec<Phase> = settings
        .phases
        .iter()
        .filter(|p| p.rps.is_some())
        .map(|p| shorten(p, args.quick))
        .collect();
    // Late deliveries must not leak into the next phase: each phase publishes under its own run.
    let mut run_no = 0;

    if args.runs(SIDECAR) {
        crate::log("starting the pub/sub sidecars and the subscriber app");
        let resources = write_component(dir, redis.port)?;
        let subs = format!(r#"[{{"pubsubname":"{PUBSUB}","topic":"{TOPIC}","route":"{ROUTE}"}}]"#);
        let app = start_app(Bytes::from(subs), Some(recorder.clone()))?;
        // The publisher's app subscribes to nothing: its sidecar only publishes.
        let quiet_app = start_app(Bytes::from_static(b"[]"), None)?;
        let mut sub = sidecar::start(bin, config, Some(&resources), dir, "ps-sub", app)?;
        let mut publisher =
            sidecar::start(bin, config, Some(&resources), dir, "ps-pub", quiet_app)?;
        let connections = phases.first().map_or(64, |p| p.connections);
        let publish = Publisher::new(publisher.http, connections);
        wait_subscribed(rt, &publish, &recorder)?;
        let pids = [sub.pid(), publisher.pid()];
        for phase in &phases {
            run_no += 1;
            let p = publish.clone();
            let send = move |run, id, sent| {
                let p = p.clone();
                async move { p.send(run, id, sent).await }
            };
            let (row, delivery) = measure(
                rt, SIDECAR, phase, settings, run_no, &recorder, &pids, hz, send,
            )?;
            out.rows.push(row);
            out.deliveries.push(delivery);
            for s in [&mut sub, &mut publisher] {
                if let Some(status) = s.guard.exited() {
                    bail!("sidecar {} exited during the run ({status})", s.app_id);
                }
            }
        }
    }

    if args.runs(RAW) {
        let url = format!("redis://127.0.0.1:{}/", redis.port);
        let consumer = RawConsumer::start(&url, recorder.clone())?;
        let conn = rt.block_on(async {
            redis::Client::open(url.as_str())?
                .get_multiplexed_async_connection()
                .await
        })?;
        for phase in &phases {
            run_no += 1;
            let conn = conn.clone();
            let send = move |run, id, sent| {
                let mut conn = conn.clone();
                async move {
                    let body = serde_json::to_vec(&Payload {
                        run,
                        id,
                        sent_ns: sent,
                    })?;
                    redis::cmd("XADD")
                        .arg(RAW_STREAM)
                        .arg("*")
                        .arg("data")
                        .arg(body)
                        .query_async::<String>(&mut conn)
                        .await?;
                    Ok(())
                }
            };
            let (row, delivery) =
                measure(rt, RAW, phase, settings, run_no, &recorder, &[], hz, send)?;
            out.rows.push(row);
            out.deliveries.push(delivery);
        }
        consumer.stop()?;
    }
    Ok(out)
}

/// Quick mode keeps the pub/sub part to a few seconds: each phase is short and drains fast.
fn shorten(p: &Phase, quick: bool) -> Phase {
    let mut p = p.clone();
    if quick {
        p.warmup_s = p.warmup_s.min(0.2);
        p.measure_s = p.measure_s.min(0.5);
    }
    p
}

/// One scenario in one phase: the open-loop publish, then the wait for the tail to drain.
#[allow(clippy::too_many_arguments)]
fn measure<F, Fut>(
    rt: &tokio::runtime::Runtime,
    name: &str,
    phase: &Phase,
    settings: &Settings,
    run: u64,
    recorder: &Recorder,
    pids: &[u32],
    hz: u64,
    send: F,
) -> anyhow::Result<(Row, Delivery)>
where
    F: Fn(u64, u64, u64) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let rps = phase.rps.context("pub/sub runs at fixed rates only")?;
    let warm = (f64::from(rps) * phase.warmup_s).round() as u64;
    recorder.begin(run, warm);
    let cpu = || -> anyhow::Result<u64> { pids.iter().map(|p| procs::cpu_ticks(*p)).sum() };
    let mut before = None;
    let outcome = open_loop(rt, rps, warm, phase, settings.timeout, run, &send, || {
        before = Some(cpu());
    })
    .with_context(|| format!("{name} at {}", phase.title))?;
    let scheduled_end = Instant::now();
    let drained = recorder.drain(outcome.ok, drain_patience(settings));
    let cpu_s = match (pids.is_empty(), before) {
        (false, Some(before)) => Some(cpu()?.saturating_sub(before?) as f64 / hz as f64),
        _ => None,
    };
    let row = Row::new(name, phase, &outcome, cpu_s);
    let d = recorder.take();
    let ms = |ns: u64| ns as f64 / 1e6;
    let q = |p: f64| ms(d.latency.value_at_quantile(p));
    let delivery = Delivery {
        scenario: name.to_owned(),
        phase: phase.key.clone(),
        p50_ms: q(0.50),
        p90_ms: q(0.90),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        max_ms: ms(d.latency.max()),
        published: outcome.ok,
        delivered: d.ids.len() as u64,
        duplicates: d.duplicates,
        drain_ms: drained
            .map_or(scheduled_end.elapsed(), |at| {
                at.saturating_duration_since(scheduled_end)
            })
            .as_secs_f64()
            * 1e3,
    };
    crate::log(&format!(
        "{} {name}: publish p50 {:.3} p99 {:.3} ms, {:.0} msgs/s, {} errors; delivery p50 {:.3} p99 {:.3} ms, {}/{} delivered",
        phase.title, row.p50_ms, row.p99_ms, row.achieved_rps, row.errors,
        delivery.p50_ms, delivery.p99_ms, delivery.delivered, delivery.published
    ));
    Ok((row, delivery))
}

/// How long the tail may take to arrive once publishing stopped before the rest counts as lost.
fn drain_patience(settings: &Settings) -> Duration {
    settings.timeout * 3
}

/// The open-loop dispatcher of `load.rs`, except that each message is built when it is sent,
/// because it carries its own scheduled time.
#[allow(clippy::too_many_arguments)]
fn open_loop<F, Fut>(
    rt: &tokio::runtime::Runtime,
    rps: u32,
    warm: u64,
    phase: &Phase,
    timeout: Duration,
    run: u64,
    send: &F,
    on_measure: impl FnOnce(),
) -> anyhow::Result<Outcome>
where
    F: Fn(u64, u64, u64) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let tally = Arc::new(Mutex::new(Tally::default()));
    let done = Arc::new(AtomicU64::new(0));
    let interval = 1e9 / f64::from(rps);
    let total = warm + ((f64::from(rps) * phase.measure_s).round() as u64).max(1);
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
            measure_start = at;
        }
        if measured {
            lag.saturating_record(nanos(at.elapsed()));
        }
        last_at = at;
        let fut = send(run, i, nanos(at.saturating_duration_since(epoch())));
        let (tally, done) = (tally.clone(), done.clone());
        let deadline = tokio::time::Instant::from_std(at + timeout);
        rt.spawn(async move {
            let result = match tokio::time::timeout_at(deadline, fut).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!("no answer within the timeout")),
            };
            if measured {
                tally
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(result, at.elapsed());
            }
            done.fetch_add(1, Ordering::Relaxed);
        });
    }
    let drain_until = last_at + timeout + Duration::from_secs(1);
    while done.load(Ordering::Relaxed) < total && Instant::now() < drain_until {
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut t = tally.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(Outcome {
        latency: std::mem::replace(&mut t.latency, histogram()),
        lag,
        ok: t.ok,
        errors: t.errors,
        first_error: t.first_error.take(),
        window: t.last_done.map_or(Duration::ZERO, |l| {
            l.saturating_duration_since(measure_start)
        }),
        pool_waits: 0,
        reconnects: 0,
    })
}

struct Tally {
    latency: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            latency: histogram(),
            ok: 0,
            errors: 0,
            first_error: None,
            last_done: None,
        }
    }
}

impl Tally {
    fn record(&mut self, result: anyhow::Result<()>, latency: Duration) {
        match result {
            Ok(()) => {
                self.ok += 1;
                self.latency.saturating_record(nanos(latency));
            }
            Err(err) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{err:#}"));
            }
        }
        self.last_done = Some(Instant::now());
    }
}

/// `POST /v1.0/publish/pubsub/bench` on at most `connections` keep-alive connections, as the
/// other open-loop rows: a publish that finds all busy waits (in its latency) for a free one.
#[derive(Clone)]
struct Publisher {
    client: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    uri: http::Uri,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Publisher {
    fn new(sidecar: SocketAddr, connections: usize) -> Self {
        let mut connector = HttpConnector::new();
        // Small request/response pairs: Nagle would add delay to every one.
        connector.set_nodelay(true);
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(None)
            .pool_max_idle_per_host(connections)
            .build(connector);
        let uri = format!("http://{sidecar}/v1.0/publish/{PUBSUB}/{TOPIC}")
            .parse()
            .expect("a valid publish URI");
        Self {
            client,
            uri,
            permits: Arc::new(tokio::sync::Semaphore::new(connections)),
        }
    }

    async fn send(&self, run: u64, id: u64, sent_ns: u64) -> anyhow::Result<()> {
        let _permit = self.permits.acquire().await?;
        let body = serde_json::to_vec(&Payload { run, id, sent_ns })?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let res = self.client.request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        if status != StatusCode::NO_CONTENT {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            bail!("status {status}, expected 204: {text}");
        }
        Ok(())
    }
}

/// Publishes probes (run 0) until one reaches the app: the subscriber sidecar subscribes only
/// once it has found the app, and the first measured message must not wait for that.
fn wait_subscribed(
    rt: &tokio::runtime::Runtime,
    publish: &Publisher,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    recorder.begin(0, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut id = 0;
    loop {
        id += 1;
        let sent = nanos(epoch().elapsed());
        rt.block_on(publish.send(0, id, sent))
            .context("publishing a probe through ps-pub")?;
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            if recorder.delivered() > 0 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if Instant::now() > deadline {
            bail!(
                "no probe reached the subscriber app through ps-pub -> Redis -> ps-sub within 20 s"
            );
        }
    }
}

/// Deliveries of the current run: each message counted once, its latency on the first sight.
#[derive(Default)]
struct Recorder {
    state: Mutex<Seen>,
}

struct Seen {
    run: u64,
    /// Ids below this were published during warm-up and are not counted.
    warm: u64,
    latency: Histogram<u64>,
    ids: HashSet<u64>,
    duplicates: u64,
    last: Option<Instant>,
}

impl Default for Seen {
    fn default() -> Self {
        Self {
            run: 0,
            warm: 0,
            latency: histogram(),
            ids: HashSet::new(),
            duplicates: 0,
            last: None,
        }
    }
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Seen> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin(&self, run: u64, warm: u64) {
        *self.lock() = Seen {
            run,
            warm,
            ..Seen::default()
        };
    }

    fn record(&self, p: &Payload) {
        let now = nanos(epoch().elapsed());
        let mut s = self.lock();
        if p.run != s.run || p.id < s.warm {
            return;
        }
        if s.ids.insert(p.id) {
            s.latency.saturating_record(now.saturating_sub(p.sent_ns));
        } else {
            s.duplicates += 1;
        }
        s.last = Some(Instant::now());
    }

    fn delivered(&self) -> usize {
        self.lock().ids.len()
    }

    /// Waits until `published` distinct messages arrived, or nothing new came for `patience`.
    /// The time of the last delivery, if any.
    fn drain(&self, published: u64, patience: Duration) -> Option<Instant> {
        let started = Instant::now();
        loop {
            let (count, last) = {
                let s = self.lock();
                (s.ids.len() as u64, s.last)
            };
            let quiet_since = last.map_or(started, |l| l.max(started));
            if count >= published || quiet_since.elapsed() > patience {
                return last;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn take(&self) -> Seen {
        std::mem::take(&mut *self.lock())
    }
}

/// The subscriber app (with a recorder) or the publisher's app (without: it subscribes to
/// nothing). Answers `GET /dapr/subscribe` with `subscriptions` and 200 to every delivery; its
/// own thread and runtime, like the upstream app.
fn start_app(subscriptions: Bytes, recorder: Option<Arc<Recorder>>) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a pub/sub app")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a pub/sub app's runtime")?;
    std::thread::Builder::new()
        .name("pubsub-app".into())
        .spawn(move || runtime.block_on(serve(listener, subscriptions, recorder)))
        .context("spawning a pub/sub app thread")?;
    Ok(addr)
}

async fn serve(
    listener: std::net::TcpListener,
    subscriptions: Bytes,
    recorder: Option<Arc<Recorder>>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        eprintln!("pub/sub app: cannot register its listener with tokio");
        return;
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (subscriptions, recorder) = (subscriptions.clone(), recorder.clone());
        tokio::spawn(async move {
            let service =
                service_fn(move |req| handle(req, subscriptions.clone(), recorder.clone()));
            // Errors here are the sidecar hanging up at the end of a run.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    subscriptions: Bytes,
    recorder: Option<Arc<Recorder>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let is_subscribe = req.uri().path() == "/dapr/subscribe";
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    if is_subscribe {
        let mut res = Response::new(Full::new(subscriptions));
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(res);
    }
    match (recorder, serde_json::from_slice::<CloudEvent>(&body)) {
        (Some(recorder), Ok(event)) => {
            recorder.record(&event.data);
            Ok(status(StatusCode::OK))
        }
        // Anything else is a harness bug; 404 makes the sidecar drop it rather than retry.
        _ => Ok(status(StatusCode::NOT_FOUND)),
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = code;
    res
}

/// The reference consumer: what the sidecar's component does per read, minus the HTTP delivery
/// (`XREADGROUP ... COUNT 100 BLOCK`, handle, `XACK`), on its own connection, thread and runtime.
struct RawConsumer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl RawConsumer {
    fn start(url: &str, recorder: Arc<Recorder>) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        // `$`: only what is published from now on, like a fresh subscriber.
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(RAW_STREAM)
            .arg(RAW_GROUP)
            .arg("$")
            .arg("MKSTREAM")
            .query::<String>(&mut conn)
            .context("creating the raw consumer group")?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("raw-consumer".into())
            .spawn(move || runtime.block_on(consume(client, recorder, flag)))?;
        Ok(Self { stop, thread })
    }

    fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the raw consumer panicked"))?
    }
}

async fn consume(
    client: redis::Client,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    // Its own connection: a blocked read would hold up every command pipelined behind it.
    let mut conn = client.get_multiplexed_async_connection().await?;
    while !stop.load(Ordering::Relaxed) {
        let reply: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(RAW_GROUP)
            .arg("bench")
            .arg("COUNT")
            .arg(QUEUE_DEPTH)
            .arg("BLOCK")
            .arg(RAW_BLOCK_MS)
            .arg("STREAMS")
            .arg(RAW_STREAM)
            .arg(">")
            .query_async(&mut conn)
            .await
            .context("XREADGROUP")?;
        let entries = stream_entries(reply)?;
        if entries.is_empty() {
            continue;
        }
        let mut ack = redis::cmd("XACK");
        ack.arg(RAW_STREAM).arg(RAW_GROUP);
        for (id, data) in &entries {
            let payload: Payload =
                serde_json::from_slice(data).context("a raw message's data field")?;
            recorder.record(&payload);
            ack.arg(id);
        }
        ack.query_async::<u64>(&mut conn).await.context("XACK")?;
    }
    Ok(())
}

/// `(id, data)` of every entry in an `XREADGROUP` reply of one stream; nil when the block timed
/// out. RESP2 nests arrays; RESP3 answers a map of stream name to entries.
fn stream_entries(reply: redis::Value) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    use redis::Value;
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        other => bail!("unexpected XREADGROUP reply {other:?}"),
    };
    let mut out = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else {
            bail!("unexpected stream entries {entries:?}");
        };
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                bail!("unexpected stream entry {entry:?}");
            };
            let (Some(Value::Array(fields)), Some(id)) = (parts.pop(), parts.pop()) else {
                bail!("a stream entry without id and fields");
            };
            let id: String = redis::from_redis_value(id)?;
            let mut fields = fields.into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                if matches!(&name, Value::BulkString(n) if n == b"data") {
                    out.push((id.clone(), redis::from_redis_value(value)?));
                }
            }
        }
    }
    Ok(out)
}

/// `pubsub.yaml`: a `pubsub.redis` component on the harness's own Redis, for both sidecars.
fn write_component(dir: &Path, port: u16) -> anyhow::Result<std::path::PathBuf> {
    let resources = dir.join("pubsub-resources");
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {PUBSUB}\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"127.0.0.1:{port}\"\n"
    );
    std::fs::create_dir_all(&resources)
        .and_then(|()| std::fs::write(resources.join("pubsub.yaml"), yaml))
        .context("writing the pub/sub component")?;
    Ok(resources)
}

/// A `redis-server` of the harness's own on a free port, without persistence; stopped on drop.
struct RedisServer {
    _guard: Guard,
    port: u16,
}

impl RedisServer {
    fn start(server: &Path, dir: &Path) -> anyhow::Result<Self> {
        let [port] = procs::free_ports()?;
        let log = std::fs::File::create(dir.join("redis.log"))?;
        let child = Command::new(server)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", server.display()))?;
        let mut guard = Guard::new("redis-server", child);
        let url = format!("redis://127.0.0.1:{port}/");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = redis::Client::open(url.as_str()).and_then(|c| {
                let mut conn = c.get_connection_with_timeout(Duration::from_millis(200))?;
                redis::cmd("PING").query::<String>(&mut conn)
            });
            if pong.is_ok() {
                return Ok(Self {
                    _guard: guard,
                    port,
                });
            }
            if let Some(status) = guard.exited() {
                bail!("redis-server exited ({status}) before answering PING");
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer PING within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
