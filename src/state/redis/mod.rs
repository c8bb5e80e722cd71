//! `state.redis`: daprd's Redis state store, with daprd's storage layout so a daprd sidecar and
//! an Outrigger sidecar read and write the same keys (see [`scripts`] for the layout and the
//! few places our rules are stricter than daprd's).
//!
//! One [`ConnectionManager`] (a multiplexed connection that reconnects by itself) serves every
//! call. Each call runs under one deadline (`writeTimeout` + `readTimeout`), so when Redis goes
//! away calls fail with [`StateError::Backend`] instead of hanging, and the same store works
//! again once Redis is back.
//!
//! Not implemented: the query API (daprd's needs the RediSearch and RedisJSON modules and
//! `queryIndexes`), and daprd's RedisJSON layout for items written with
//! `contentType: application/json` — daprd only uses it when the server has RedisJSON loaded;
//! on a plain Redis daprd writes those items as hashes too, which is what we read and write.

mod scripts;
mod settings;

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value};

use self::scripts::Scripts;
use self::settings::Settings;
use crate::config::Component;
use crate::state::{
    Concurrency, Consistency, DeleteRequest, Feature, GetRequest, Item, Operation, SetRequest,
    StateError, StateStore, Ttl,
};

/// The longest expiry we pass to `EXPIRE` (about 31,700 years). Redis rejects seconds whose
/// millisecond deadline overflows, and an error inside the write script would come after earlier
/// writes it cannot undo, so larger TTLs are clamped here instead.
const MAX_TTL_SECS: i64 = 1_000_000_000_000;

/// How long `WAIT` may hold a strongly consistent write for replicas (daprd's 1000 ms).
const REPLICA_WAIT_MS: u64 = 1000;

pub struct RedisStore {
    conn: ConnectionManager,
    scripts: Scripts,
    settings: Settings,
    /// Replicas seen at startup; strongly consistent writes wait for them, as daprd does.
    replicas: u64,
}

impl RedisStore {
    /// Connects as daprd's `Init` does: parse the metadata, connect, `PING`. Fails with a clear
    /// error when the server cannot be reached within `dialTimeout`.
    pub async fn open(component: &Component) -> Result<RedisStore, StateError> {
        let settings = Settings::parse(&component.name, &component.metadata)?;
        if !component
            .metadata
            .get("queryIndexes")
            .is_none_or(|q| q.trim().is_empty())
        {
            tracing::warn!(
                component = %component.name,
                "queryIndexes is set, but Outrigger's state.redis does not serve the query API"
            );
        }
        let client = client(&settings)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(settings.max_retries)
            .set_min_delay(settings.min_retry_interval)
            .set_max_delay(settings.max_retry_interval)
            .set_connection_timeout(Some(settings.dial_timeout))
            .set_response_timeout(Some(settings.call_timeout()));
        let unreachable = |why: String| {
            StateError::Backend(format!(
                "redis store: error connecting to redis at {}:{}: {why}",
                settings.host, settings.port
            ))
        };
        let connect = async {
            let mut conn = ConnectionManager::new_with_config(client, config).await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await?;
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>((conn, connected_replicas(&info)))
        };
        let (conn, replicas) = tokio::time::timeout(settings.dial_timeout, connect)
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no answer within dialTimeout {:?}",
                    settings.dial_timeout
                ))
            })?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(RedisStore {
            conn,
            scripts: Scripts::new(),
            settings,
            replicas,
        })
    }

    /// Runs one Redis call under the store's deadline; every failure is a backend error.
    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StateError> {
        let limit = self.settings.call_timeout();
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StateError::Backend(format!("redis {what}: {e}"))),
            Err(_) => Err(StateError::Backend(format!(
                "redis {what}: no answer within {limit:?}"
            ))),
        }
    }

    async fn get_item(&self, req: GetRequest) -> Result<Option<Item>, StateError> {
        let mut conn = self.conn.clone();
        let call = self.scripts.get.key(&req.key);
        let reply = self
            .bounded(
                &format!("get {:?}", req.key),
                call.invoke_async::<Value>(&mut conn),
            )
            .await?;
        decode_get(reply, SystemTime::now())
            .map_err(|e| StateError::Backend(format!("redis get {:?}: {e}", req.key)))
    }

    /// Runs `ops` through the write script: all apply, or (on a failed etag check) none does.
    async fn write(&self, ops: Vec<WriteOp>, what: &str) -> Result<(), StateError> {
        if ops.is_empty() {
            return Ok(());
        }
        let strong = ops.iter().any(|op| op.strong);
        let mut call = self.scripts.write.prepare_invoke();
        for op in &ops {
            call.key(&op.key)
                .arg(if op.value.is_some() { "set" } else { "del" })
                .arg(op.etag.as_deref().unwrap_or(""))
                .arg(op.value.as_deref().unwrap_or_default())
                .arg(if op.first_write { "0" } else { "1" })
                .arg(op.ttl.map(|t| t.to_string()).unwrap_or_default());
        }
        let mut conn = self.conn.clone();
        let failed: usize = self.bounded(what, call.invoke_async(&mut conn)).await?;
        if let Some(op) = failed.checked_sub(1).and_then(|i| ops.get(i)) {
            let verb = if op.value.is_some() {
                "set key"
            } else {
                "delete"
            };
            return Err(StateError::EtagMismatch(format!(
                "failed to {verb} {}",
                op.key
            )));
        }
        if strong && self.replicas > 0 {
            let mut wait = redis::cmd("WAIT");
            wait.arg(self.replicas).arg(REPLICA_WAIT_MS);
            self.bounded("waiting for replicas", wait.query_async::<i64>(&mut conn))
                .await?;
        }
        Ok(())
    }

    fn set_op(&self, req: SetRequest) -> Result<WriteOp, StateError> {
        let ttl = match req.ttl {
            // EXPIRE takes whole seconds; round up so a sub-second TTL still expires.
            Some(Ttl::Expire(d)) => Some(
                i64::try_from(d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)))
                    .unwrap_or(i64::MAX)
                    .max(1),
            ),
            Some(Ttl::Never) => Some(-1),
            None => self.settings.default_ttl,
        }
        .map(|secs| secs.min(MAX_TTL_SECS));
        Ok(WriteOp {
            etag: etag_arg(req.etag)?,
            key: req.key,
            value: Some(req.value),
            first_write: req.concurrency == Concurrency::FirstWrite,
            ttl,
            strong: req.consistency == Consistency::Strong,
        })
    }

    fn delete_op(req: DeleteRequest) -> Result<WriteOp, StateError> {
        Ok(WriteOp {
            etag: etag_arg(req.etag)?,
            key: req.key,
            value: None,
            first_write: false,
            ttl: None,
            strong: req.consistency == Consistency::Strong,
        })
    }
}

/// One operation for the write script. `value: None` is a delete.
struct WriteOp {
    key: String,
    value: Option<Bytes>,
    etag: Option<String>,
    first_write: bool,
    /// Seconds for `EXPIRE`, `<= 0` for `PERSIST`, `None` to leave the expiry alone.
    ttl: Option<i64>,
    strong: bool,
}

/// Redis etags are the decimal `version`; anything else can never match, and daprd calls it
/// invalid. An empty etag counts as none. Normalised (`"007"` -> `"7"`) as daprd's `Atoi` does.
fn etag_arg(etag: Option<String>) -> Result<Option<String>, StateError> {
    match etag.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .map(|v| Some(v.to_string()))
            .map_err(|e| StateError::EtagInvalid(format!("{text:?}: {e}"))),
    }
}

fn client(s: &Settings) -> Result<Client, StateError> {
    let invalid = |e: redis::RedisError| StateError::InvalidRequest(format!("redis settings: {e}"));
    let addr = match &s.tls {
        None => ConnectionAddr::Tcp(s.host.clone(), s.port),
        Some(tls) => ConnectionAddr::TcpTls {
            host: s.host.clone(),
            port: s.port,
            insecure: tls.insecure,
            tls_params: None,
        },
    };
    let mut redis_info = RedisConnectionInfo::default().set_db(s.db);
    if let Some(user) = &s.username {
        redis_info = redis_info.set_username(user);
    }
    if let Some(password) = &s.password {
        redis_info = redis_info.set_password(password);
    }
    let info = addr
        .into_connection_info()
        .map_err(invalid)?
        .set_redis_settings(redis_info);
    let Some(tls) = &s.tls else {
        return Client::open(info).map_err(invalid);
    };
    // rustls needs one process-wide crypto provider; install ring's unless someone already did.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let certs = redis::TlsCertificates {
        client_tls: tls
            .client_identity
            .as_ref()
            .map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.as_bytes().to_vec(),
                client_key: key.as_bytes().to_vec(),
            }),
        root_cert: None,
    };
    Client::build_with_tls(info, certs).map_err(invalid)
}

/// `connected_slaves:N` from `INFO replication`, as daprd's `getConnectedSlaves` reads it.
fn connected_replicas(info: &str) -> u64 {
    info.lines()
        .find_map(|line| line.trim().strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Turns the GET script's reply into an item; `now` anchors `PTTL` to a wall-clock expiry.
fn decode_get(reply: Value, now: SystemTime) -> Result<Option<Item>, String> {
    let Value::Array(fields) = reply else {
        return Err(format!("unexpected reply {reply:?}"));
    };
    let mut fields = fields.into_iter();
    let kind = match fields.next() {
        Some(Value::Int(kind)) => kind,
        other => return Err(format!("unexpected reply kind {other:?}")),
    };
    if kind == 0 {
        return Ok(None);
    }
    let (Some(Value::BulkString(data)), Some(version), Some(Value::Int(pttl))) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Err("unexpected reply shape".into());
    };
    let etag = match version {
        Value::BulkString(v) if kind == 1 => {
            Some(String::from_utf8(v).map_err(|_| "version is not text".to_owned())?)
        }
        _ => None,
    };
    let expires = u64::try_from(pttl)
        .ok()
        .map(|ms| now + Duration::from_millis(ms));
    Ok(Some(Item {
        // The reply's buffer becomes the value without a copy.
        value: Bytes::from(data),
        etag,
        expires,
    }))
}

impl StateStore for RedisStore {
    fn type_name(&self) -> &'static str {
        "state.redis"
    }

    /// daprd's list for a server without RedisJSON (no `QUERY_API`).
    fn features(&self) -> &'static [Feature] {
        &[Feature::Etag, Feature::Transactional, Feature::Ttl]
    }

    fn get(&self, req: GetRequest) -> BoxFuture<'_, Result<Option<Item>, StateError>> {
        Box::pin(self.get_item(req))
    }

    fn set(&self, req: SetRequest) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let what = format!("set {:?}", req.key);
            let op = self.set_op(req)?;
            self.write(vec![op], &what).await
        })
    }

    fn delete(&self, req: DeleteRequest) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let what = format!("delete {:?}", req.key);
            let op = Self::delete_op(req)?;
            self.write(vec![op], &what).await
        })
    }

    fn transact(
        &self,
        ops: Vec<Operation>,
        _metadata: HashMap<String, String>,
    ) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let ops = ops
                .into_iter()
                .map(|op| match op {
                    Operation::Upsert(req) => self.set_op(req),
                    Operation::Delete(req) => Self::delete_op(req),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let what = format!("transaction of {} operations", ops.len());
            self.write(ops, &what).await
        })
    }
}

#[cfg(test)]
mod tests;
