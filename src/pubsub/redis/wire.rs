//! The Redis commands and replies of daprd's `pubsub.redis` (components-contrib
//! `pubsub/redis/redis.go` over `common/component/redis/v9client.go`), written out as raw
//! commands so the wire format is visible here and stays identical to daprd's:
//!
//! - publish: `XADD <topic> [MAXLEN ~ n | MINID ~ <ms>] * data <payload> [metadata <json>]`
//! - group: `XGROUP CREATE <topic> <consumerID> 0 MKSTREAM` (BUSYGROUP ignored)
//! - read: `XREADGROUP GROUP <consumerID> <consumerID> COUNT <queueDepth> BLOCK <ms> STREAMS <topic> >`
//! - settle: `XACK <topic> <consumerID> <id>` once the handler accepted the message
//! - redeliver: `XPENDING <topic> <consumerID> - + <queueDepth>` then
//!   `XCLAIM <topic> <consumerID> <consumerID> <processingTimeout ms> <id>...`

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::{Cmd, Value};

use super::settings::Trim;

/// A command failure, keeping Redis's error code (`NOGROUP`, `BUSYGROUP`) for the callers that
/// act on it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CmdError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("no answer from redis within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply from redis to {0}")]
    Reply(&'static str),
}

impl CmdError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Redis(e) => e.code(),
            _ => None,
        }
    }
}

/// One stream entry as daprd reads it: the `data` field (empty when missing, as in daprd) and
/// the `metadata` field's JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: String,
    pub data: Bytes,
    pub metadata: HashMap<String, String>,
}

/// One `XPENDING` line that matters for reclaiming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub id: String,
    pub idle: Duration,
}

pub(crate) fn xadd(
    topic: &str,
    trim: Trim,
    data: &[u8],
    metadata: &HashMap<String, String>,
) -> Result<Cmd, serde_json::Error> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(topic);
    match trim {
        Trim::None => {}
        Trim::MaxLenApprox(n) => {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        Trim::MinAge(ttl) => {
            cmd.arg("MINID")
                .arg("~")
                .arg(min_id(SystemTime::now(), ttl));
        }
    }
    cmd.arg("*").arg("data").arg(data);
    // daprd writes `metadata` whenever the request carries a metadata map: `{}` for an HTTP
    // publish without `metadata.*` parameters, nothing for a gRPC publish without metadata.
    // Readers (daprd and this one) treat both the same, so only a non-empty map is written.
    if !metadata.is_empty() {
        // Go's encoding/json sorts map keys; a BTreeMap gives the same bytes.
        let sorted: BTreeMap<&String, &String> = metadata.iter().collect();
        cmd.arg("metadata").arg(serde_json::to_vec(&sorted)?);
    }
    Ok(cmd)
}

/// The stream ID below which entries are older than `ttl` (IDs start with milliseconds since
/// the epoch).
fn min_id(now: SystemTime, ttl: Duration) -> u64 {
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    u64::try_from(now_ms.saturating_sub(ttl.as_millis())).unwrap_or(u64::MAX)
}

pub(crate) fn xgroup_create(topic: &str, group: &str) -> Cmd {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(topic)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM");
    cmd
}

pub(crate) fn xreadgroup(
    topic: &str,
    group: &str,
    consumer: &str,
    count: usize,
    block: Duration,
) -> Cmd {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX))
        .arg("STREAMS")
        .arg(topic)
        .arg(">");
    cmd
}

pub(crate) fn xack(topic: &str, group: &str, id: &str) -> Cmd {
    let mut cmd = redis::cmd("XACK");
    cmd.arg(topic).arg(group).arg(id);
    cmd
}

pub(crate) fn xpending(topic: &str, group: &str, start: &str, count: usize) -> Cmd {
    let mut cmd = redis::cmd("XPENDING");
    cmd.arg(topic).arg(group).arg(start).arg("+").arg(count);
    cmd
}

pub(crate) fn xclaim(
    topic: &str,
    group: &str,
    consumer: &str,
    min_idle: Duration,
    ids: &[String],
) -> Cmd {
    let mut cmd = redis::cmd("XCLAIM");
    cmd.arg(topic)
        .arg(group)
        .arg(consumer)
        .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
        .arg(ids);
    cmd
}

/// The smallest stream ID after `id`, to page through `XPENDING` without the exclusive-range
/// syntax (which needs Redis 6.2; daprd works with Redis 5).
pub(crate) fn next_id(id: &str) -> Option<String> {
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    Some(match seq.checked_add(1) {
        Some(seq) => format!("{ms}-{seq}"),
        None => format!("{}-0", ms.checked_add(1)?),
    })
}

/// The `XREADGROUP` reply: nil when the block timed out, else one stream with its entries
/// (an array of `[name, entries]` pairs in RESP2, a map in RESP3).
pub(crate) fn parse_read(value: Value) -> Result<Vec<Entry>, CmdError> {
    const WHAT: &str = "XREADGROUP";
    let streams: Vec<(Value, Value)> = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(pair) => {
                    let mut pair = pair.into_iter();
                    match (pair.next(), pair.next()) {
                        (Some(name), Some(entries)) => Ok((name, entries)),
                        _ => Err(CmdError::Reply(WHAT)),
                    }
                }
                _ => Err(CmdError::Reply(WHAT)),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(CmdError::Reply(WHAT)),
    };
    let mut out = Vec::new();
    for (_, entries) in streams {
        for entry in parse_entries(entries, WHAT)? {
            // A `>` read never returns deleted entries; skip defensively rather than fail.
            if let Claimed::Entry(entry) = entry {
                out.push(entry);
            }
        }
    }
    Ok(out)
}

/// An entry in an `XCLAIM` reply. Before Redis 7, claiming an entry that was deleted from the
/// stream (trimmed by `MAXLEN`, or `XDEL`) returns its ID with nil fields and leaves it pending
/// for ever; daprd acks those so they stop being reclaimed, and so do we.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claimed {
    Entry(Entry),
    Deleted(String),
}

pub(crate) fn parse_claim(value: Value) -> Result<Vec<Claimed>, CmdError> {
    parse_entries(value, "XCLAIM")
}

fn parse_entries(value: Value, what: &'static str) -> Result<Vec<Claimed>, CmdError> {
    let items = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(CmdError::Reply(what)),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let parts = match item {
            // Some servers answer a vanished entry with a bare nil; nothing to settle then.
            Value::Nil => continue,
            Value::Array(parts) => parts,
            _ => return Err(CmdError::Reply(what)),
        };
        let mut parts = parts.into_iter();
        let id = parts.next().and_then(text).ok_or(CmdError::Reply(what))?;
        match parts.next() {
            None | Some(Value::Nil) => out.push(Claimed::Deleted(id)),
            Some(Value::Array(fields)) => out.push(Claimed::Entry(entry(id, fields)?)),
            Some(Value::Map(pairs)) => {
                let fields = pairs.into_iter().flat_map(|(k, v)| [k, v]).collect();
                out.push(Claimed::Entry(entry(id, fields)?));
            }
            Some(_) => return Err(CmdError::Reply(what)),
        }
    }
    Ok(out)
}

fn entry(id: String, fields: Vec<Value>) -> Result<Entry, CmdError> {
    let mut data = Bytes::new();
    let mut metadata = HashMap::new();
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match (bytes(name).as_deref(), bytes(value)) {
            (Some(b"data"), Some(v)) => data = Bytes::from(v),
            (Some(b"metadata"), Some(v)) => match serde_json::from_slice(&v) {
                Ok(map) => metadata = map,
                // daprd logs and delivers the message without metadata.
                Err(err) => tracing::warn!(
                    id = %id,
                    error = %err,
                    "redis streams: could not read the metadata of a message; delivering it without"
                ),
            },
            _ => {}
        }
    }
    Ok(Entry { id, data, metadata })
}

pub(crate) fn parse_pending(value: Value) -> Result<Vec<Pending>, CmdError> {
    const WHAT: &str = "XPENDING";
    let items = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(CmdError::Reply(WHAT)),
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Array(parts) = item else {
                return Err(CmdError::Reply(WHAT));
            };
            // [id, consumer, idle ms, delivery count]
            let mut parts = parts.into_iter();
            let id = parts.next().and_then(text).ok_or(CmdError::Reply(WHAT))?;
            let idle = match parts.nth(1) {
                Some(Value::Int(ms)) => Duration::from_millis(ms.unsigned_abs()),
                _ => return Err(CmdError::Reply(WHAT)),
            };
            Ok(Pending { id, idle })
        })
        .collect()
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        _ => None,
    }
}

fn text(value: Value) -> Option<String> {
    bytes(value).and_then(|b| String::from_utf8(b).ok())
}
