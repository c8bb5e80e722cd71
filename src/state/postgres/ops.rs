//! Reads and writes against daprd's v1 table, with the statements of components-contrib
//! `common/component/postgresql/v1/postgresql.go` (get, delete, transactions) and
//! `state/postgresql/v1/postgresql.go` (the set queries, whose `xmin` column is the etag).
//! Generic over the client so the same code runs alone or inside a transaction.

use std::time::{Duration, SystemTime};

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::value::{self, JsonbText, RawJsonb, Xid};
use super::{describe, PostgresStore};
use crate::state::{Concurrency, DeleteRequest, Item, Operation, SetRequest, StateError, Ttl};

/// `SELECT` of one live row: expired rows that the cleanup has not removed yet are invisible.
pub(super) async fn get(
    db: &impl GenericClient,
    table: &str,
    key: &str,
) -> Result<Option<Item>, StateError> {
    let sql = format!(
        "SELECT value, isbinary, xmin, expiredate FROM {table} \
         WHERE key = $1 AND (expiredate IS NULL OR expiredate >= CURRENT_TIMESTAMP)"
    );
    let stmt = db.prepare_cached(&sql).await.map_err(backend("get"))?;
    let Some(row) = db.query_opt(&stmt, &[&key]).await.map_err(backend("get"))? else {
        return Ok(None);
    };
    let json: RawJsonb<'_> = row.try_get(0).map_err(backend("get"))?;
    let is_binary: bool = row.try_get(1).map_err(backend("get"))?;
    let etag: Xid = row.try_get(2).map_err(backend("get"))?;
    let expires: Option<SystemTime> = row.try_get(3).map_err(backend("get"))?;
    let value = value::decode(json.0, is_binary)
        .map_err(|e| StateError::Backend(format!("stored value of {key:?}: {e}")))?;
    Ok(Some(Item {
        value,
        etag: Some(etag.0.to_string()),
        expires,
    }))
}

/// daprd's set: without an etag an upsert (with first-write, one that only replaces an expired
/// row); with an etag an `UPDATE ... AND xmin = $etag` of a live row. Zero rows touched means
/// the condition failed.
pub(super) async fn set(
    db: &impl GenericClient,
    table: &str,
    req: &SetRequest,
) -> Result<(), StateError> {
    let etag = given_etag(req.etag.as_deref())?;
    let encoded = value::encode(&req.value);
    let json = JsonbText(&encoded.json);
    // daprd: a TTL of zero or less (and no TTL) stores NULL, clearing an earlier expiry.
    let ttl_secs = match req.ttl {
        Some(Ttl::Expire(d)) if !d.is_zero() => Some(d.as_secs_f64()),
        _ => None,
    };
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&req.key, &json, &encoded.is_binary];
    let (sql, first_write_conflict) = match &etag {
        None => {
            let expires = expire_expr(ttl_secs.is_some(), 4);
            // first-write without an etag: the row may exist but be expired (not yet cleaned
            // up); it is then free to take, otherwise the insert must not touch it.
            let only_expired = if req.concurrency == Concurrency::FirstWrite {
                " WHERE (t.expiredate IS NOT NULL AND t.expiredate < CURRENT_TIMESTAMP)"
            } else {
                ""
            };
            let sql = format!(
                "INSERT INTO {table} AS t (key, value, isbinary, expiredate) \
                 VALUES ($1, $2, $3, {expires}) \
                 ON CONFLICT (key) DO UPDATE SET \
                 value = excluded.value, isbinary = excluded.isbinary, \
                 updatedate = CURRENT_TIMESTAMP, expiredate = excluded.expiredate{only_expired}"
            );
            (sql, req.concurrency == Concurrency::FirstWrite)
        }
        Some(xid) => {
            params.push(xid);
            let expires = expire_expr(ttl_secs.is_some(), 5);
            let sql = format!(
                "UPDATE {table} SET value = $2, isbinary = $3, \
                 updatedate = CURRENT_TIMESTAMP, expiredate = {expires} \
                 WHERE key = $1 AND xmin = $4 \
                 AND (expiredate IS NULL OR expiredate > CURRENT_TIMESTAMP)"
            );
            (sql, false)
        }
    };
    if let Some(secs) = &ttl_secs {
        params.push(secs);
    }
    let stmt = db.prepare_cached(&sql).await.map_err(backend("set"))?;
    let rows = db.execute(&stmt, &params).await.map_err(backend("set"))?;
    match rows {
        1 => Ok(()),
        _ if etag.is_some() => Err(StateError::EtagMismatch(format!(
            "the etag of {:?} does not match, or the item does not exist",
            req.key
        ))),
        // daprd reports "no item was updated"; our contract makes it the 409 it means.
        _ if first_write_conflict => Err(StateError::EtagMismatch(format!(
            "{:?} already exists and first-write needs its etag",
            req.key
        ))),
        n => Err(StateError::Backend(format!(
            "set of {:?} changed {n} rows instead of 1",
            req.key
        ))),
    }
}

/// daprd runs a single operation as it is and several in one SQL transaction; any failure
/// (an etag mismatch included) rolls all of them back.
pub(super) async fn transact(
    client: &mut deadpool_postgres::Client,
    table: &str,
    ops: Vec<Operation>,
) -> Result<(), StateError> {
    if let [op] = ops.as_slice() {
        return apply(&*client, table, op).await;
    }
    if ops.is_empty() {
        return Ok(());
    }
    let tx = client.transaction().await.map_err(backend("transaction"))?;
    for op in &ops {
        if let Err(e) = apply(&tx, table, op).await {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rolling back a state transaction failed");
            }
            return Err(e);
        }
    }
    tx.commit().await.map_err(backend("transaction commit"))
}

async fn apply(
    db: &impl deadpool_postgres::GenericClient,
    table: &str,
    op: &Operation,
) -> Result<(), StateError> {
    match op {
        Operation::Upsert(req) => set(db, table, req).await,
        Operation::Delete(req) => delete(db, table, req).await,
    }
}

/// `CURRENT_TIMESTAMP + ttl`, or `NULL`. The TTL goes in as a parameter (daprd splices the
/// number into the text; the result is the same, and the statement stays cacheable).
fn expire_expr(with_ttl: bool, param: usize) -> String {
    if with_ttl {
        format!("CURRENT_TIMESTAMP + make_interval(secs => ${param})")
    } else {
        "NULL".to_owned()
    }
}

pub(super) async fn delete(
    db: &impl GenericClient,
    table: &str,
    req: &DeleteRequest,
) -> Result<(), StateError> {
    let etag = given_etag(req.etag.as_deref())?;
    let rows = match &etag {
        None => {
            let sql = format!("DELETE FROM {table} WHERE key = $1");
            let stmt = db.prepare_cached(&sql).await.map_err(backend("delete"))?;
            db.execute(&stmt, &[&req.key]).await
        }
        Some(xid) => {
            let sql = format!("DELETE FROM {table} WHERE key = $1 AND xmin = $2");
            let stmt = db.prepare_cached(&sql).await.map_err(backend("delete"))?;
            db.execute(&stmt, &[&req.key, xid]).await
        }
    }
    .map_err(backend("delete"))?;
    if rows != 1 && etag.is_some() {
        return Err(StateError::EtagMismatch(format!(
            "the etag of {:?} does not match, or the item does not exist",
            req.key
        )));
    }
    Ok(())
}

/// An empty etag counts as none (daprd's `HasETag`); a non-numeric one is invalid.
fn given_etag(etag: Option<&str>) -> Result<Option<Xid>, StateError> {
    match etag {
        None | Some("") => Ok(None),
        Some(text) => value::parse_etag(text)
            .map(Some)
            .map_err(StateError::EtagInvalid),
    }
}

pub(super) fn backend(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StateError {
    move |e| StateError::Backend(describe(&format!("postgresql {what} failed"), &e))
}

impl PostgresStore {
    /// Runs `work` on a pooled connection within the store's timeout. A call that times out
    /// is dropped mid-flight; its connection is then discarded rather than handed to the
    /// next caller with an unknown amount of the old exchange still pending.
    pub(super) async fn with_client<T, F>(&self, what: &str, work: F) -> Result<T, StateError>
    where
        F: for<'c> FnOnce(
            &'c mut deadpool_postgres::Client,
        ) -> futures_util::future::BoxFuture<'c, Result<T, StateError>>,
    {
        let timeout = self.inner.timeout;
        let attempt = async {
            let obj = self.inner.pool.get().await.map_err(|e| {
                StateError::Backend(format!("postgresql {what}: no database connection: {e}"))
            })?;
            let mut guard = Guard(Some(obj));
            let out = match guard.0.as_mut() {
                Some(obj) => work(obj).await,
                None => Err(StateError::Backend("connection vanished".into())),
            };
            guard.release();
            out
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(timed_out(what, timeout)))
    }
}

fn timed_out(what: &str, timeout: Duration) -> StateError {
    StateError::Backend(format!(
        "postgresql {what} timed out after {timeout:?} (the component's timeout)"
    ))
}

/// Returns the connection to the pool when released; when dropped otherwise (the call was
/// cancelled by its timeout) it asks the server to cancel the running statement, as pgx
/// does for daprd, and closes the connection instead of pooling it.
struct Guard(Option<deadpool_postgres::Object>);

impl Guard {
    fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(obj) = self.0.take() else { return };
        let cancel = obj.cancel_token();
        drop(deadpool_postgres::Object::take(obj));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = cancel.cancel_query(tokio_postgres::NoTls).await {
                    tracing::debug!(error = %e, "cancelling a timed-out statement failed");
                }
            });
        }
    }
}
