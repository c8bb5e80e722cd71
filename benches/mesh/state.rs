//! State scenarios (issue 4): save and get through the `solo` sidecar's `state.redis` store, and
//! the same Redis work done directly with the `redis` crate, so the difference is what the
//! sidecar adds. They run at 1,000 rps only, against the machine's Redis on 127.0.0.1:6379.
//!
//! Every key lives under a `keyPrefix` unique to the run and is deleted at the end (SCAN + DEL
//! on that prefix, also when the run fails): the Redis is shared with other work.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, StatusCode};

use crate::client::{Client, HttpTarget, RedisOp, RedisTarget, Target};
use crate::results::{Results, StateAdded};
use crate::sidecar::Sidecar;
use crate::targets::RATE_1K;
use crate::upstream::payload;
use crate::Scenario;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
const REDIS_HOST: &str = "127.0.0.1:6379";
/// Distinct keys; request `n` uses key `n % KEYS`, as issue 4 asks.
const KEYS: usize = 1000;
/// The stored value: a JSON string whose text (quotes included) is 1 KiB, so the sidecar stores
/// and returns exactly 1,024 bytes.
const VALUE_BYTES: usize = 1024;
const STORE: &str = "statestore";

/// Each sidecar row and its direct reference. The reference does the Redis work the sidecar's
/// store does for that call, from the same process, clock and histogram.
pub const PAIRS: [(&str, &str); 2] = [
    ("state-save-sidecar", "redis-hset"),
    ("state-get-sidecar", "redis-get-script"),
];

/// Whether a scenario belongs to the state table rather than the invocation tables.
pub fn is_state(scenario: &str) -> bool {
    PAIRS.iter().any(|(s, r)| *s == scenario || *r == scenario)
}

/// The store's GET script, taken from the sidecar's source at compile time rather than copied,
/// so the reference cannot drift from what the sidecar sends.
const SCRIPTS_RS: &str = include_str!("../../src/state/redis/scripts.rs");

fn get_script() -> anyhow::Result<redis::Script> {
    let start = "const GET: &str = r#\"";
    let body = SCRIPTS_RS
        .split_once(start)
        .and_then(|(_, rest)| rest.split_once("\"#;"))
        .map(|(body, _)| body)
        .context("src/state/redis/scripts.rs no longer defines `const GET: &str = r#\"...\"#;`: update benches/mesh/state.rs")?;
    Ok(redis::Script::new(body))
}

/// A run's state setup: the resources dir for `solo`, and the keys to delete afterwards.
pub struct StateBench {
    pub resources: PathBuf,
    prefix: String,
    _cleanup: Cleanup,
}

impl StateBench {
    /// Writes the `statestore` component if Redis answers; `Err` says why the rows are skipped.
    pub fn prepare(dir: &Path) -> Result<Self, String> {
        ping().map_err(|e| format!("{e:#}"))?;
        let prefix = format!("outrigger-bench-{}", std::process::id());
        let resources = dir.join("resources");
        let component = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {STORE}\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{REDIS_HOST}\"\n  - name: keyPrefix\n    value: \"{prefix}\"\n"
        );
        std::fs::create_dir_all(&resources)
            .and_then(|()| std::fs::write(resources.join("statestore.yaml"), component))
            .map_err(|e| format!("writing the state component: {e}"))?;
        Ok(Self {
            resources,
            // The store's key layout (`<keyPrefix>||<key>`), so the reference touches the very
            // keys the sidecar does.
            _cleanup: Cleanup {
                pattern: format!("{prefix}||*"),
            },
            prefix,
        })
    }

    /// The four rows, in the order they run: each sidecar row next to its reference.
    pub fn scenarios(&self, solo: &Sidecar) -> anyhow::Result<Vec<Scenario>> {
        let keys: Vec<String> = (0..KEYS).map(|n| format!("bench-{n}")).collect();
        let stored: Vec<String> = keys
            .iter()
            .map(|k| format!("{}||{k}", self.prefix))
            .collect();
        let value = json_value();
        let save = save_target(solo, &keys, &value);
        let get = Target::Http(HttpTarget {
            addr: solo.http,
            method: Method::GET,
            paths: keys
                .iter()
                .map(|k| format!("/v1.0/state/{STORE}/{k}"))
                .collect(),
            bodies: vec![Bytes::new()],
            content_type: "application/json",
            status: StatusCode::OK,
            body_bytes: VALUE_BYTES,
        });
        let redis = |op| {
            Target::Redis(RedisTarget {
                url: REDIS_URL.to_owned(),
                keys: stored.clone(),
                op,
            })
        };
        let hset = redis(RedisOp::HSet { data: value });
        let script = redis(RedisOp::Script {
            script: Arc::new(get_script()?),
            data_bytes: VALUE_BYTES,
        });
        let row = |name, target, proxy_pids| Scenario {
            name,
            target,
            proxy_pids,
            only_phases: &[RATE_1K],
        };
        Ok(vec![
            row(PAIRS[0].0, save, vec![solo.pid()]),
            row(PAIRS[0].1, hset, vec![]),
            row(PAIRS[1].0, get, vec![solo.pid()]),
            row(PAIRS[1].1, script, vec![]),
        ])
    }

    /// Saves every key once through the sidecar, so the get rows find all of them even when
    /// the save rows do not run (`--only`).
    pub fn prefill(&self, rt: &tokio::runtime::Runtime, solo: &Sidecar) -> anyhow::Result<()> {
        let keys: Vec<String> = (0..KEYS).map(|n| format!("bench-{n}")).collect();
        let target = save_target(solo, &keys, &json_value());
        rt.block_on(async {
            let client = Client::open(&target, 1).await?;
            for n in 0..KEYS as u64 {
                client
                    .request(n)
                    .await
                    .with_context(|| format!("saving bench-{n} through solo"))?;
            }
            Ok(())
        })
    }
}

/// `POST /v1.0/state/statestore` with one item, key `n % KEYS`: a bulk save of one, as SDKs send.
fn save_target(solo: &Sidecar, keys: &[String], value: &Bytes) -> Target {
    let value = std::str::from_utf8(value).expect("the value is ASCII JSON");
    Target::Http(HttpTarget {
        addr: solo.http,
        method: Method::POST,
        paths: vec![format!("/v1.0/state/{STORE}")],
        bodies: keys
            .iter()
            .map(|k| Bytes::from(format!(r#"[{{"key":"{k}","value":{value}}}]"#)))
            .collect(),
        content_type: "application/json",
        status: StatusCode::NO_CONTENT,
        body_bytes: 0,
    })
}

/// `"abc…"`: letters only, so the JSON text is already compact and the sidecar stores these
/// exact bytes (which the direct HSET writes too).
fn json_value() -> Bytes {
    let letters = &payload()[..VALUE_BYTES - 2];
    let mut v = Vec::with_capacity(VALUE_BYTES);
    v.push(b'"');
    v.extend_from_slice(letters);
    v.push(b'"');
    Bytes::from(v)
}

fn ping() -> anyhow::Result<()> {
    let client = redis::Client::open(REDIS_URL)?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .with_context(|| format!("no Redis answers on {REDIS_HOST}"))?;
    redis::cmd("PING")
        .query::<String>(&mut conn)
        .with_context(|| format!("Redis on {REDIS_HOST} does not answer PING"))?;
    Ok(())
}

/// Deletes the run's keys when dropped, also while unwinding from a failed run. Never FLUSHALL:
/// the Redis is shared.
struct Cleanup {
    pattern: String,
}

impl Cleanup {
    fn run(&self) -> anyhow::Result<usize> {
        let client = redis::Client::open(REDIS_URL)?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let mut cursor = 0u64;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&self.pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)?;
            if !keys.is_empty() {
                deleted += redis::cmd("DEL").arg(&keys).query::<usize>(&mut conn)?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self.run() {
            Ok(n) => eprintln!("[mesh] deleted {n} Redis keys matching {}", self.pattern),
            Err(e) => eprintln!(
                "[mesh] could not delete the Redis keys matching {}: {e:#}",
                self.pattern
            ),
        }
    }
}

/// Each sidecar row minus its reference at p50, p90, p99, p99.9 (rows of one phase).
pub fn added(r: &Results) -> Vec<StateAdded> {
    PAIRS
        .iter()
        .filter_map(|(scenario, reference)| {
            let s = r.row(scenario, RATE_1K)?.percentiles();
            let d = r.row(reference, RATE_1K)?.percentiles();
            Some(StateAdded {
                scenario: (*scenario).to_owned(),
                reference: (*reference).to_owned(),
                phase: RATE_1K.to_owned(),
                p50_ms: s[0] - d[0],
                p90_ms: s[1] - d[1],
                p99_ms: s[2] - d[2],
                p999_ms: s[3] - d[3],
            })
        })
        .collect()
}
