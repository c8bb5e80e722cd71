//! `pubsub.jetstream` component metadata, read the way daprd reads it: components-contrib
//! `pubsub/jetstream/metadata.go` (`parseMetadata`), decoded by dapr/kit `DecodeMetadata`. So keys
//! match case-insensitively, a duration is a Go duration or a whole number of seconds, a boolean
//! is a "truthy" string, an empty value counts as unset, unknown keys are ignored (the common
//! pubsub keys such as `consumerID` and the scoping keys arrive here too), and the defaults are
//! daprd's.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};

use crate::config::duration;
use crate::pubsub::PubSubError;

/// daprd's default connection name (`name`), shown by the server in connection listings.
const DEFAULT_CONNECTION_NAME: &str = "dapr.io - pubsub.jetstream";

/// Everything `open` and `subscribe` need from the component's metadata.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub nats_url: String,
    pub auth: Auth,
    pub connection_name: String,
    pub stream_name: Option<String>,
    pub durable_name: Option<String>,
    pub queue_group_name: Option<String>,
    pub deliver_policy: DeliverPolicy,
    pub ack_policy: AckPolicy,
    pub ack_wait: Option<Duration>,
    pub max_deliver: Option<i64>,
    pub backoff: Vec<Duration>,
    pub max_ack_pending: Option<i64>,
    pub replicas: Option<usize>,
    pub memory_storage: bool,
    pub domain: Option<String>,
    pub api_prefix: Option<String>,
    pub concurrency: Concurrency,
    /// Keys set in this component that only mean something to daprd's push consumers
    /// (`flowControl`, `rateLimit`, `heartbeat`); Outrigger's pull consumers ignore them.
    pub push_only: Vec<&'static str>,
}

/// How the connection authenticates. daprd's order of precedence when several are set:
/// `jwt`+`seedKey`, then the TLS client certificate, then `token`.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Auth {
    None,
    Jwt { jwt: String, seed: String },
    ClientCert { cert: PathBuf, key: PathBuf },
    Token(String),
}

// Secrets stay out of logs and error messages.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Jwt { .. } => f.write_str("Jwt(..)"),
            Self::ClientCert { cert, key } => f
                .debug_struct("ClientCert")
                .field("cert", cert)
                .field("key", key)
                .finish(),
            Self::Token(_) => f.write_str("Token(..)"),
        }
    }
}

/// daprd's `concurrency` mode: `single` (its default) hands one message at a time to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Concurrency {
    Single,
    Parallel,
}

/// Case-insensitive view of a metadata map, as dapr/kit's decoder sees it.
struct Props<'a> {
    by_lower: HashMap<String, &'a str>,
}

impl<'a> Props<'a> {
    fn new<'m>(
        metadata: impl IntoIterator<Item = (&'m String, &'a String)>,
    ) -> Result<Self, PubSubError> {
        let mut by_lower = HashMap::new();
        for (key, value) in metadata {
            // dapr/kit refuses a map where two keys differ only by case.
            if by_lower
                .insert(key.to_ascii_lowercase(), value.as_str())
                .is_some()
            {
                return Err(config(format!(
                    "key {} is duplicate in the metadata",
                    key.to_ascii_lowercase()
                )));
            }
        }
        Ok(Self { by_lower })
    }

    /// The value of `key`; an empty value counts as unset, as in daprd's weak decoding.
    fn get(&self, key: &str) -> Option<&'a str> {
        self.by_lower
            .get(&key.to_ascii_lowercase())
            .copied()
            .filter(|v| !v.is_empty())
    }

    fn string(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_owned)
    }

    fn truthy(&self, key: &str) -> bool {
        self.get(key).is_some_and(is_truthy)
    }

    fn duration(&self, key: &str) -> Result<Option<Duration>, PubSubError> {
        self.get(key).map(|v| go_duration(key, v)).transpose()
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, PubSubError> {
        self.get(key)
            .map(|v| {
                v.trim()
                    .parse::<T>()
                    .map_err(|_| config(format!("{key} must be a whole number, got `{v}`")))
            })
            .transpose()
    }
}

fn config(msg: String) -> PubSubError {
    PubSubError::Config(msg)
}

/// dapr/kit `utils.IsTruthy`.
fn is_truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "y" | "yes" | "true" | "t" | "on" | "1"
    )
}

/// dapr/kit's duration hook: a Go duration, or else a whole number of seconds.
fn go_duration(key: &str, v: &str) -> Result<Duration, PubSubError> {
    let v = v.trim();
    duration::parse(v).or_else(|why| {
        v.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| config(format!("{key}: {why}")))
    })
}

/// `backOff`: a comma-separated list of durations (dapr/kit's duration-array hook), also
/// accepting the `[1s, 2s]` spelling of components-contrib's own metadata.yaml example.
fn duration_list(key: &str, v: &str) -> Result<Vec<Duration>, PubSubError> {
    let v = v.trim().trim_start_matches('[').trim_end_matches(']');
    v.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| go_duration(key, part))
        .collect()
}

impl Settings {
    /// Reads a `pubsub.jetstream` component's metadata.
    pub fn parse(metadata: &BTreeMap<String, String>) -> Result<Self, PubSubError> {
        let props = Props::new(metadata)?;
        let nats_url = props
            .string("natsURL")
            .ok_or_else(|| config("missing nats URL (natsURL)".into()))?;
        let auth = auth(&props)?;
        let deliver_policy = deliver_policy(&props)?;
        let ack_policy = match props.get("ackPolicy") {
            Some("all") => AckPolicy::All,
            Some("none") => AckPolicy::None,
            // daprd falls back to explicit for any other value, including none given.
            _ => AckPolicy::Explicit,
        };
        let replicas = props
            .number::<i64>("replicas")?
            .filter(|r| *r != 0)
            .map(|r| {
                usize::try_from(r).map_err(|_| config(format!("replicas must be >= 0, got {r}")))
            })
            .transpose()?;
        let backoff = match props.get("backOff") {
            Some(v) => duration_list("backOff", v)?,
            None => Vec::new(),
        };
        // Still checked, so a value daprd could not decode fails here too.
        props.duration("heartbeat")?;
        props.number::<u64>("rateLimit")?;
        let push_only = ["flowControl", "rateLimit", "heartbeat"]
            .into_iter()
            .filter(|key| match *key {
                "flowControl" => props.truthy(key),
                _ => props.get(key).is_some_and(|v| v.trim() != "0"),
            })
            .collect();
        Ok(Self {
            nats_url,
            auth,
            connection_name: props
                .string("name")
                .unwrap_or_else(|| DEFAULT_CONNECTION_NAME.to_owned()),
            stream_name: props.string("streamName"),
            durable_name: props.string("durableName"),
            queue_group_name: props.string("queueGroupName"),
            deliver_policy,
            ack_policy,
            ack_wait: props.duration("ackWait")?.filter(|d| !d.is_zero()),
            max_deliver: props.number::<i64>("maxDeliver")?.filter(|n| *n != 0),
            backoff,
            max_ack_pending: props.number::<i64>("maxAckPending")?.filter(|n| *n != 0),
            replicas,
            memory_storage: props.truthy("memoryStorage"),
            domain: props.string("domain"),
            api_prefix: props.string("apiPrefix"),
            concurrency: concurrency(metadata, &props)?,
            push_only,
        })
    }

    /// The ack wait for one subscription: its own `ackWait` metadata (an Outrigger extension;
    /// daprd reads it only from the component), else the component's.
    pub fn ack_wait_for(
        &self,
        subscription: &HashMap<String, String>,
    ) -> Result<Option<Duration>, PubSubError> {
        let props = Props::new(subscription)?;
        Ok(props
            .duration("ackWait")?
            .filter(|d| !d.is_zero())
            .or(self.ack_wait))
    }
}

fn auth(props: &Props<'_>) -> Result<Auth, PubSubError> {
    let jwt = props.string("jwt");
    let seed = props.string("seedKey");
    let cert = props.string("tls_client_cert");
    let key = props.string("tls_client_key");
    match (&jwt, &seed) {
        (Some(_), None) => return Err(config("missing seed key (seedKey)".into())),
        (None, Some(_)) => return Err(config("missing jwt (jwt)".into())),
        _ => {}
    }
    match (&cert, &key) {
        (Some(_), None) => return Err(config("missing tls client key (tls_client_key)".into())),
        (None, Some(_)) => return Err(config("missing tls client cert (tls_client_cert)".into())),
        _ => {}
    }
    if let (Some(jwt), Some(seed)) = (jwt, seed) {
        return Ok(Auth::Jwt { jwt, seed });
    }
    if let (Some(cert), Some(key)) = (cert, key) {
        // daprd hands both values to nats.go's ClientCert, which reads them as file paths,
        // whatever its metadata.yaml example suggests; PEM text would fail there too.
        for (name, value) in [("tls_client_cert", &cert), ("tls_client_key", &key)] {
            if value.trim_start().starts_with("-----BEGIN") {
                return Err(config(format!(
                    "{name} must be the path of a PEM file (daprd reads it as a path); \
                     inline PEM content is not supported"
                )));
            }
        }
        return Ok(Auth::ClientCert {
            cert: cert.into(),
            key: key.into(),
        });
    }
    Ok(props.string("token").map_or(Auth::None, Auth::Token))
}

fn deliver_policy(props: &Props<'_>) -> Result<DeliverPolicy, PubSubError> {
    let start_sequence = props.number::<u64>("startSequence")?.filter(|s| *s > 0);
    let start_time = props.number::<u64>("startTime")?;
    let policy = props.get("deliverPolicy").unwrap_or("all");
    // The server refuses a start sequence or time that the policy does not use; saying so
    // here names the metadata keys instead of the server's consumer fields.
    let unused = |key: &str| {
        config(format!(
            "{key} is set but deliverPolicy is `{policy}`; it is only used with deliverPolicy {}",
            if key == "startSequence" {
                "sequence"
            } else {
                "time"
            }
        ))
    };
    if start_sequence.is_some() && policy != "sequence" {
        return Err(unused("startSequence"));
    }
    if start_time.is_some() && policy != "time" {
        return Err(unused("startTime"));
    }
    match policy {
        "all" => Ok(DeliverPolicy::All),
        "last" => Ok(DeliverPolicy::Last),
        "new" => Ok(DeliverPolicy::New),
        "sequence" => start_sequence
            .map(|start_sequence| DeliverPolicy::ByStartSequence { start_sequence })
            .ok_or_else(|| config("deliverPolicy sequence needs startSequence (> 0)".into())),
        "time" => {
            let secs = start_time.ok_or_else(|| {
                config("deliverPolicy time needs startTime (Unix seconds)".into())
            })?;
            async_nats::datetime::from_nanos(i128::from(secs) * 1_000_000_000)
                .map(|start_time| DeliverPolicy::ByStartTime { start_time })
                .map_err(|e| config(format!("startTime {secs}: {e}")))
        }
        other => Err(config(format!(
            "deliver policy {other} is not one of: all, last, new, sequence, time"
        ))),
    }
}

/// daprd reads the mode twice: `concurrency` through the metadata decoder (any case), then the
/// generic pubsub key `concurrencyMode` (exact spelling), which wins when set. Default: single.
fn concurrency(
    metadata: &BTreeMap<String, String>,
    props: &Props<'_>,
) -> Result<Concurrency, PubSubError> {
    let (key, value) = match metadata.get("concurrencyMode").filter(|v| !v.is_empty()) {
        Some(v) => ("concurrencyMode", v.as_str()),
        None => match props.get("concurrency") {
            Some(v) => ("concurrency", v),
            None => return Ok(Concurrency::Single),
        },
    };
    match value {
        "single" => Ok(Concurrency::Single),
        "parallel" => Ok(Concurrency::Parallel),
        other => Err(config(format!(
            "invalid {key} `{other}`: use single or parallel"
        ))),
    }
}
