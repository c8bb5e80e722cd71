//! What one request of a run is: an HTTP request on a pooled keep-alive connection, or one Redis
//! command on a multiplexed connection. The load loops (`load.rs`) only call [`Client::request`]
//! with the request's sequence number, so every kind shares their clock and histogram.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::upstream::{payload, BODY_BYTES};

/// Where a scenario's requests go.
#[derive(Clone, Debug)]
pub enum Target {
    Http(HttpTarget),
    Redis(RedisTarget),
    Grpc(crate::grpc::GrpcTarget),
    /// One new connection per request (the mTLS handshake rows).
    Connect(crate::mtls::ConnectTarget),
}

/// HTTP requests. Request `n` goes to `paths[n % paths.len()]` with `bodies[n % bodies.len()]`:
/// everything is built before the run, so a request only indexes and clones (a refcount).
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub addr: SocketAddr,
    pub method: Method,
    pub paths: Vec<String>,
    pub bodies: Vec<Bytes>,
    pub content_type: &'static str,
    /// The answer every request must get: this status and a body of exactly this many bytes.
    pub status: StatusCode,
    pub body_bytes: usize,
}

impl HttpTarget {
    /// The invocation scenarios: POST 1 KiB, expect 200 with 1 KiB.
    pub fn echo(addr: SocketAddr, path: String) -> Self {
        Self {
            addr,
            method: Method::POST,
            paths: vec![path],
            bodies: vec![payload()],
            content_type: "application/octet-stream",
            status: StatusCode::OK,
            body_bytes: BODY_BYTES,
        }
    }
}

/// Redis commands on one multiplexed connection (what the sidecar's store uses too).
#[derive(Clone, Debug)]
pub struct RedisTarget {
    pub url: String,
    /// Request `n` uses `keys[n % keys.len()]`.
    pub keys: Vec<String>,
    pub op: RedisOp,
}

#[derive(Clone, Debug)]
pub enum RedisOp {
    /// `HSET key data <data> version <n>`: a write of the store's hash layout.
    HSet { data: Bytes },
    /// `EVALSHA` of a read script with the key as its only KEYS entry; the reply must be the
    /// store's `{1, data, version, pttl}` with `data_bytes` bytes of data.
    Script {
        script: Arc<redis::Script>,
        data_bytes: usize,
    },
}

/// A target opened for a run.
pub enum Client {
    Http(HttpPool),
    Redis(RedisClient),
    Grpc(crate::grpc::GrpcClient),
    Connect(crate::mtls::ConnectClient),
}

impl Client {
    /// Opens every connection a run needs up front, so no request pays for a handshake.
    pub async fn open(target: &Target, connections: usize) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(match target {
            Target::Http(t) => Self::Http(HttpPool::open(t, connections).await?),
            Target::Redis(t) => Self::Redis(RedisClient::open(t).await?),
            Target::Grpc(t) => Self::Grpc(crate::grpc::GrpcClient::open(t).await?),
            Target::Connect(t) => Self::Connect(crate::mtls::ConnectClient::open(t)?),
        }))
    }

    pub async fn request(&self, n: u64) -> anyhow::Result<()> {
        match self {
            Self::Http(pool) => pool.request(n).await,
            Self::Redis(client) => client.request(n).await,
            Self::Grpc(client) => client.request().await,
            Self::Connect(client) => client.request().await,
        }
    }

    /// Counts only what happens in the measured window.
    pub fn reset_counters(&self) {
        if let Self::Http(pool) = self {
            pool.waits.store(0, Ordering::Relaxed);
            pool.reconnects.store(0, Ordering::Relaxed);
        }
    }

    /// Requests that found every connection busy, and connections opened during the run. A
    /// multiplexed Redis connection never makes a request wait for it.
    pub fn waits_and_reconnects(&self) -> (u64, u64) {
        match self {
            Self::Http(pool) => (
                pool.waits.load(Ordering::Relaxed),
                pool.reconnects.load(Ordering::Relaxed),
            ),
            Self::Redis(_) | Self::Grpc(_) | Self::Connect(_) => (0, 0),
        }
    }
}

fn pick<T>(items: &[T], n: u64) -> &T {
    &items[(n % items.len() as u64) as usize]
}

/// Keep-alive HTTP/1.1 connections to one target; a request borrows one, and the semaphore
/// makes a request wait (counted) when all are busy.
pub struct HttpPool {
    target: HttpTarget,
    uris: Vec<Uri>,
    host: String,
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

impl HttpPool {
    async fn open(target: &HttpTarget, size: usize) -> anyhow::Result<Self> {
        if target.paths.is_empty() || target.bodies.is_empty() {
            bail!("an HTTP target needs at least one path and one body");
        }
        let mut idle = Vec::with_capacity(size);
        for _ in 0..size {
            idle.push(connect(target.addr).await?);
        }
        let uris = target
            .paths
            .iter()
            .map(|p| p.parse().with_context(|| format!("request path {p:?}")))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            target: target.clone(),
            uris,
            host: target.addr.to_string(),
            idle: Mutex::new(idle),
            permits: Semaphore::new(size),
            waits: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        })
    }

    async fn request(&self, n: u64) -> anyhow::Result<()> {
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
                connect(self.target.addr).await?
            }
        };
        conn.ready().await?;
        let t = &self.target;
        let req = Request::builder()
            .method(t.method.clone())
            .uri(pick(&self.uris, n).clone())
            .header(HOST, self.host.as_str())
            .header(CONTENT_TYPE, t.content_type)
            .body(Full::new(pick(&t.bodies, n).clone()))?;
        let res = conn.send_request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        // Only a connection whose answer was read whole is ready for the next request; one
        // dropped by an error or a timeout is replaced by a fresh one later.
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
        if status != t.status {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            bail!("status {status}, expected {}: {text}", t.status);
        }
        if body.len() != t.body_bytes {
            bail!("{} body bytes, expected {}", body.len(), t.body_bytes);
        }
        Ok(())
    }
}

/// One multiplexed connection shared by every request, as the sidecar's store shares its one
/// `ConnectionManager`: requests pipeline on it instead of waiting for each other.
pub struct RedisClient {
    conn: redis::aio::MultiplexedConnection,
    keys: Vec<String>,
    op: RedisOp,
}

impl RedisClient {
    async fn open(target: &RedisTarget) -> anyhow::Result<Self> {
        if target.keys.is_empty() {
            bail!("a Redis target needs at least one key");
        }
        let client = redis::Client::open(target.url.as_str()).context("Redis URL")?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("connecting to {}", target.url))?;
        Ok(Self {
            conn,
            keys: target.keys.clone(),
            op: target.op.clone(),
        })
    }

    async fn request(&self, n: u64) -> anyhow::Result<()> {
        let key = pick(&self.keys, n);
        let mut conn = self.conn.clone();
        match &self.op {
            RedisOp::HSet { data } => {
                redis::cmd("HSET")
                    .arg(key)
                    .arg("data")
                    .arg(&data[..])
                    .arg("version")
                    .arg(n)
                    .query_async::<i64>(&mut conn)
                    .await?;
            }
            RedisOp::Script { script, data_bytes } => {
                let reply: redis::Value = script.key(key).invoke_async(&mut conn).await?;
                check_get_reply(reply, *data_bytes)?;
            }
        }
        Ok(())
    }
}

/// The store's GET script answers `{1, data, version, pttl}` for a hash item.
fn check_get_reply(reply: redis::Value, data_bytes: usize) -> anyhow::Result<()> {
    use redis::Value;
    let Value::Array(fields) = reply else {
        bail!("unexpected reply {reply:?}");
    };
    match fields.as_slice() {
        [Value::Int(1), Value::BulkString(data), ..] if data.len() == data_bytes => Ok(()),
        [Value::Int(1), Value::BulkString(data), ..] => {
            bail!("{} data bytes, expected {data_bytes}", data.len())
        }
        other => bail!("not a stored item: {:?}", other.first()),
    }
}
