//! `pubsub.redis` component metadata, read with daprd's names, defaults and value syntax
//! (components-contrib `common/component/redis/settings.go` and `redis.go`
//! `ParseClientFromProperties`), so an existing Component YAML works unchanged.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use crate::config::duration;
use crate::pubsub::PubSubError;

/// daprd's pub/sub defaults as its code applies them (`ParseClientFromProperties`): a message
/// must be pending 60s before it is reclaimed, and pending messages are scanned every 15s.
/// (The component's `metadata.yaml` documents the two the other way round; the code wins, since
/// it is what running daprd does, and 60s is the time a handler gets before it is abandoned.)
const DEFAULT_PROCESSING_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_REDELIVER_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_QUEUE_DEPTH: usize = 100;
const DEFAULT_CONCURRENCY: usize = 10;
/// go-redis defaults for the connection timeouts and retry backoff.
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_MIN_RETRY_INTERVAL: Duration = Duration::from_millis(8);
const DEFAULT_MAX_RETRY_INTERVAL: Duration = Duration::from_millis(512);
/// A reconnect loop never spins faster than this, even when backoff is disabled (`-1`).
const RETRY_FLOOR: Duration = Duration::from_millis(10);
/// Far above any real deployment; keeps the semaphore arithmetic in range.
const MAX_CONCURRENCY: usize = 65_535;
const DEFAULT_PORT: u16 = 6379;

/// A password that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// How published messages trim the stream: daprd's `maxLenApprox` (`XADD MAXLEN ~ n`) or
/// `streamTTL` (`XADD MINID ~ <now - ttl>`). When both are set daprd's client uses MAXLEN and
/// ignores the TTL; so do we.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trim {
    None,
    MaxLenApprox(u64),
    MinAge(Duration),
}

/// When unacked messages are reclaimed. Either duration zero disables redelivery, as in daprd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Redelivery {
    pub interval: Duration,
    pub processing_timeout: Duration,
}

impl Redelivery {
    /// `processingTimeout` when redelivery is on: the idle time after which a pending message is
    /// reclaimed, and so also the time a handler call gets before it is abandoned (daprd gives
    /// the handler a context with this deadline).
    pub fn timeout(&self) -> Option<Duration> {
        (!self.interval.is_zero() && !self.processing_timeout.is_zero())
            .then_some(self.processing_timeout)
    }

    /// Applies the Outrigger extension: a subscription's own `redeliverInterval` /
    /// `processingTimeout` metadata override the component's for that subscription.
    pub fn with_overrides(self, metadata: &HashMap<String, String>) -> Result<Self, PubSubError> {
        let meta = Meta::new(metadata.iter());
        Ok(Self {
            interval: meta
                .millis_or_duration("redeliverInterval")?
                .unwrap_or(self.interval),
            processing_timeout: meta
                .millis_or_duration("processingTimeout")?
                .unwrap_or(self.processing_timeout),
        })
    }
}

/// Everything `open` needs, validated.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: i64,
    /// The consumer group, and (as in daprd) the consumer name within it.
    pub consumer_id: String,
    pub redelivery: Redelivery,
    pub queue_depth: usize,
    pub concurrency: usize,
    pub trim: Trim,
    pub dial_timeout: Duration,
    /// Bounds each non-blocking command, and is the `BLOCK` time of `XREADGROUP` (as in daprd).
    /// `None` (`-1`) means no timeout and a read that blocks until a message arrives.
    pub read_timeout: Option<Duration>,
    /// Bounds a publish (`XADD`); defaults to `read_timeout`.
    pub write_timeout: Option<Duration>,
    /// The consumer's reconnect backoff: starts at the min, doubles, capped at the max.
    pub min_retry_interval: Duration,
    pub max_retry_interval: Duration,
}

impl Settings {
    pub fn parse(metadata: &BTreeMap<String, String>, app_id: &str) -> Result<Self, PubSubError> {
        let meta = Meta::new(metadata.iter());

        let redis_type = meta.get("redisType").unwrap_or("node");
        if !redis_type.eq_ignore_ascii_case("node") {
            return Err(config(format!(
                "redisType `{redis_type}` is not supported; only `node` (a single Redis server)"
            )));
        }
        if meta.bool("failover")? {
            return Err(config(
                "failover (Redis Sentinel) is not supported; point redisHost at the master",
            ));
        }
        if meta.bool("enableTLS")? {
            return Err(config(
                "enableTLS is not supported by Outrigger's pubsub.redis yet; use a plain-TCP \
                 Redis (e.g. behind a TLS-terminating sidecar) or set enableTLS to false",
            ));
        }
        if meta.bool("useEntraID")? || meta.bool("useAzureAD")? {
            return Err(config("Entra ID authentication is not supported"));
        }

        let host_text = meta
            .get("redisHost")
            .ok_or_else(|| config("redisHost is required, e.g. localhost:6379"))?;
        let (host, port) = parse_host(host_text)?;

        let consumer_id = match meta.get("consumerID") {
            Some(id) => id.to_owned(),
            None if !app_id.is_empty() => app_id.to_owned(),
            None => return Err(config("consumerID is required when the app has no app-id")),
        };

        let read_timeout = match meta.client_duration("readTimeout")? {
            ClientDuration::Default => Some(DEFAULT_READ_TIMEOUT),
            ClientDuration::Disabled => None,
            ClientDuration::Set(d) => Some(d),
        };
        let write_timeout = match meta.client_duration("writeTimeout")? {
            ClientDuration::Default => read_timeout,
            ClientDuration::Disabled => None,
            ClientDuration::Set(d) => Some(d),
        };
        let dial_timeout = match meta.client_duration("dialTimeout")? {
            ClientDuration::Set(d) => d,
            // go-redis has no "no dial timeout"; a startup that can hang forever helps nobody.
            ClientDuration::Default | ClientDuration::Disabled => DEFAULT_DIAL_TIMEOUT,
        };
        let retry = |key: &str, default: Duration| -> Result<Duration, PubSubError> {
            Ok(match meta.client_duration(key)? {
                ClientDuration::Default => default,
                ClientDuration::Disabled => RETRY_FLOOR,
                ClientDuration::Set(d) => d.max(RETRY_FLOOR),
            })
        };
        let min_retry_interval = retry("redisMinRetryInterval", DEFAULT_MIN_RETRY_INTERVAL)?;
        let max_retry_interval =
            retry("redisMaxRetryInterval", DEFAULT_MAX_RETRY_INTERVAL)?.max(min_retry_interval);
        // Accepted for compatibility: commands are not retried inside the broker (a publish fails
        // fast and the caller's resiliency policy decides), but a bad value is still an error.
        meta.integer::<i64>("redisMaxRetries")?;

        let trim = match (
            meta.integer::<i64>("maxLenApprox")?,
            meta.seconds_or_duration("streamTTL")?,
        ) {
            (Some(n), _) if n > 0 => Trim::MaxLenApprox(n.unsigned_abs()),
            (_, Some(ttl)) if !ttl.is_zero() => Trim::MinAge(ttl),
            _ => Trim::None,
        };

        Ok(Self {
            host,
            port,
            username: meta.get("redisUsername").map(str::to_owned),
            password: meta.get("redisPassword").map(|p| Secret(p.to_owned())),
            db: meta.integer::<i64>("redisDB")?.unwrap_or(0),
            consumer_id,
            redelivery: Redelivery {
                interval: meta
                    .millis_or_duration("redeliverInterval")?
                    .unwrap_or(DEFAULT_REDELIVER_INTERVAL),
                processing_timeout: meta
                    .millis_or_duration("processingTimeout")?
                    .unwrap_or(DEFAULT_PROCESSING_TIMEOUT),
            },
            queue_depth: meta.count("queueDepth", DEFAULT_QUEUE_DEPTH)?,
            concurrency: meta.count("concurrency", DEFAULT_CONCURRENCY)?,
            trim,
            dial_timeout,
            read_timeout,
            write_timeout,
            min_retry_interval,
            max_retry_interval,
        })
    }

    /// `host:port` for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn config(msg: impl Into<String>) -> PubSubError {
    PubSubError::Config(msg.into())
}

/// `host:port`, `[v6]:port`, or a bare host (port 6379). A comma list is a cluster, which is
/// refused here rather than dialled as one odd hostname.
fn parse_host(text: &str) -> Result<(String, u16), PubSubError> {
    let text = text.trim();
    if text.contains(',') {
        return Err(config(format!(
            "redisHost `{text}` lists several hosts; Redis Cluster is not supported"
        )));
    }
    let bad_port = |port: &str| config(format!("redisHost `{text}` has a bad port `{port}`"));
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| config(format!("redisHost `{text}` has no closing `]`")))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(config(format!("redisHost `{text}` is not host:port"))),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            Some(_) => {
                return Err(config(format!(
                    "redisHost `{text}` is ambiguous; write an IPv6 address as [addr]:port"
                )))
            }
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(config(format!("redisHost `{text}` has no host")));
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad_port(p))?,
        None => DEFAULT_PORT,
    };
    Ok((host.to_owned(), port))
}

/// A go-redis client duration: daprd's `Duration.DecodeString` reads a plain integer as
/// milliseconds, a negative one as "disabled", and anything else as a Go duration; zero or
/// unset means the client's default.
enum ClientDuration {
    Default,
    Disabled,
    Set(Duration),
}

/// Metadata lookup by name, ignoring case as daprd's decoder (mapstructure) does. Empty values
/// count as unset, as in daprd.
struct Meta<'a> {
    values: HashMap<String, &'a str>,
}

impl<'a> Meta<'a> {
    fn new(items: impl Iterator<Item = (&'a String, &'a String)>) -> Self {
        let values = items
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
            .collect();
        Self { values }
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.values.get(&key.to_ascii_lowercase()).copied()
    }

    fn bool(&self, key: &str) -> Result<bool, PubSubError> {
        match self.get(key) {
            None => Ok(false),
            // Go's strconv.ParseBool spellings.
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
            Some(v) => Err(config(format!("{key} must be true or false, not `{v}`"))),
        }
    }

    fn integer<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, PubSubError> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| config(format!("{key} must be an integer, not `{v}`")))
            })
            .transpose()
    }

    /// A positive count (`queueDepth`, `concurrency`). Zero is refused: daprd would start no
    /// worker and silently never deliver.
    fn count(&self, key: &str, default: usize) -> Result<usize, PubSubError> {
        match self.integer::<usize>(key)? {
            None => Ok(default),
            Some(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
            Some(n) => Err(config(format!(
                "{key} must be between 1 and {MAX_CONCURRENCY}, not {n}"
            ))),
        }
    }

    /// `redeliverInterval` / `processingTimeout`: a plain integer is milliseconds (daprd's
    /// legacy reading), otherwise a Go duration; "0" disables redelivery.
    fn millis_or_duration(&self, key: &str) -> Result<Option<Duration>, PubSubError> {
        self.get(key)
            .map(|v| match v.parse::<u64>() {
                Ok(ms) => Ok(Duration::from_millis(ms)),
                Err(_) => duration::parse(v).map_err(|e| config(format!("{key}: {e}"))),
            })
            .transpose()
    }

    /// `streamTTL`: a Go duration, or a plain integer of seconds (dapr kit's decoder for
    /// `time.Duration` fields reads bare numbers as seconds).
    fn seconds_or_duration(&self, key: &str) -> Result<Option<Duration>, PubSubError> {
        self.get(key)
            .map(|v| match v.parse::<u64>() {
                Ok(s) => Ok(Duration::from_secs(s)),
                Err(_) => duration::parse(v).map_err(|e| config(format!("{key}: {e}"))),
            })
            .transpose()
    }

    fn client_duration(&self, key: &str) -> Result<ClientDuration, PubSubError> {
        let Some(v) = self.get(key) else {
            return Ok(ClientDuration::Default);
        };
        if let Ok(ms) = v.parse::<i64>() {
            return Ok(match ms {
                0 => ClientDuration::Default,
                ms if ms < 0 => ClientDuration::Disabled,
                ms => ClientDuration::Set(Duration::from_millis(ms.unsigned_abs())),
            });
        }
        if v.starts_with('-') {
            // Any negative duration ("-1s" as well as "-1") disables, as in go-redis.
            return Ok(ClientDuration::Disabled);
        }
        let d = duration::parse(v).map_err(|e| config(format!("{key}: {e}")))?;
        Ok(if d.is_zero() {
            ClientDuration::Default
        } else {
            ClientDuration::Set(d)
        })
    }
}
