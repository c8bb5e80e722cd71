//! daprd's `state.redis` metadata (components-contrib `common/component/redis/settings.go`),
//! parsed into what the connection and the store need. Keys Outrigger cannot honour (cluster,
//! Sentinel, Entra ID, OIDC) fail startup with a message naming them, rather than being
//! silently ignored and connecting somewhere other than the user meant.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::state::StateError;

/// go-redis defaults, which daprd keeps unless the metadata says otherwise.
const DEFAULT_PORT: u16 = 6379;
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_MAX_RETRIES: usize = 3;
const DEFAULT_MIN_RETRY_INTERVAL: Duration = Duration::from_millis(8);
const DEFAULT_MAX_RETRY_INTERVAL: Duration = Duration::from_millis(512);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Settings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    pub tls: Option<Tls>,
    /// Reconnect attempts per outage before pending calls fail (`redisMaxRetries`, else the
    /// state-level `maxRetries`, as daprd layers them).
    pub max_retries: usize,
    pub min_retry_interval: Duration,
    pub max_retry_interval: Duration,
    pub dial_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// `ttlInSeconds`: the expiry of writes that set none themselves (`<= 0` = persist).
    pub default_ttl: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tls {
    /// `insecureSkipTLSVerify`: no certificate or host name check.
    pub insecure: bool,
    /// `clientCert` + `clientKey` (PEM text) for mutual TLS.
    pub client_identity: Option<(String, String)>,
}

impl Settings {
    pub fn parse(name: &str, metadata: &BTreeMap<String, String>) -> Result<Self, StateError> {
        let bad = |msg: String| {
            StateError::InvalidRequest(format!("state.redis component {name:?}: {msg}"))
        };
        let get = |key: &str| {
            metadata
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let flag = |key: &str| -> Result<bool, StateError> {
            get(key)
                .map(|v| {
                    parse_bool(v)
                        .ok_or_else(|| bad(format!("{key} must be true or false, got {v:?}")))
                })
                .transpose()
                .map(|v| v.unwrap_or(false))
        };
        let int = |key: &str| -> Result<Option<i64>, StateError> {
            get(key)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| bad(format!("{key} must be an integer, got {v:?}")))
                })
                .transpose()
        };
        let duration = |key: &str| -> Result<Option<Duration>, StateError> {
            get(key)
                .map(|v| parse_duration(v).map_err(|e| bad(format!("{key}: {e}"))))
                .transpose()
                .map(Option::flatten)
        };

        if let Some(kind) = get("redisType").filter(|t| !t.eq_ignore_ascii_case("node")) {
            return Err(bad(format!(
                "redisType {kind:?} is not supported by Outrigger; only a single node (\"node\")"
            )));
        }
        for key in ["failover", "useEntraID", "useAzureAD", "useOIDC"] {
            if flag(key)? {
                return Err(bad(format!("{key}: true is not supported by Outrigger")));
            }
        }

        let host = get("redisHost").ok_or_else(|| bad("redisHost is required".into()))?;
        if host.contains(',') {
            return Err(bad(format!(
                "redisHost {host:?} lists several servers (cluster or Sentinel), which Outrigger does not support"
            )));
        }
        let port = get("redisPort")
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| bad(format!("redisPort must be a port number, got {p:?}")))
            })
            .transpose()?;
        let (host, port) = split_host_port(host, port).map_err(bad)?;

        let tls = if flag("enableTLS")? {
            let client_identity = match (get("clientCert"), get("clientKey")) {
                (Some(cert), Some(key)) => Some((cert.to_owned(), key.to_owned())),
                (None, None) => None,
                _ => return Err(bad("clientCert and clientKey must be set together".into())),
            };
            Some(Tls {
                insecure: flag("insecureSkipTLSVerify")?,
                client_identity,
            })
        } else {
            None
        };

        // go-redis: -1 disables retries; 0 means "the default".
        let retries = match int("redisMaxRetries")?.or(int("maxRetries")?) {
            None | Some(0) => DEFAULT_MAX_RETRIES,
            Some(n) if n < 0 => 0,
            Some(n) => usize::try_from(n).unwrap_or(DEFAULT_MAX_RETRIES),
        };
        let read_timeout = duration("readTimeout")?.unwrap_or(DEFAULT_READ_TIMEOUT);
        Ok(Self {
            host,
            port,
            username: get("redisUsername").map(str::to_owned),
            password: metadata
                .get("redisPassword")
                .filter(|p| !p.is_empty())
                .cloned(),
            db: int("redisDB")?.unwrap_or(0),
            tls,
            max_retries: retries,
            min_retry_interval: duration("redisMinRetryInterval")?
                .unwrap_or(DEFAULT_MIN_RETRY_INTERVAL),
            max_retry_interval: duration("redisMaxRetryInterval")?
                .or(duration("maxRetryBackoff")?)
                .unwrap_or(DEFAULT_MAX_RETRY_INTERVAL),
            dial_timeout: duration("dialTimeout")?.unwrap_or(DEFAULT_DIAL_TIMEOUT),
            read_timeout,
            write_timeout: duration("writeTimeout")?.unwrap_or(read_timeout),
            default_ttl: int("ttlInSeconds")?,
        })
    }

    /// One deadline for a whole call (waiting for a reconnect, sending, reading the reply):
    /// a call may need both its write and its read phase.
    pub fn call_timeout(&self) -> Duration {
        self.write_timeout + self.read_timeout
    }
}

/// daprd's redis durations: a bare integer is milliseconds, anything else is Go syntax. A
/// negative value means "none" to go-redis; a call must still end, so we keep the default
/// (`None`), and 0 means the default there too.
fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(u64::try_from(ms)
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis));
    }
    if text.starts_with('-') {
        return Ok(None);
    }
    crate::config::duration::parse(text).map(|d| Some(d).filter(|d| !d.is_zero()))
}

/// Go's `strconv.ParseBool`, which daprd's metadata decoder uses.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `host:port`, `[v6]:port`, or a bare host completed by `redisPort` (default 6379). A port in
/// both places must agree, as daprd requires.
fn split_host_port(addr: &str, port: Option<u16>) -> Result<(String, u16), String> {
    let (host, own_port) = if let Some(rest) = addr.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("redisHost {addr:?}: unclosed '['"))?;
        match tail.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if tail.is_empty() => (host, None),
            None => return Err(format!("redisHost {addr:?} is not host:port")),
        }
    } else {
        match addr.rsplit_once(':') {
            // More than one ':' without brackets is a bare IPv6 address.
            Some((host, p)) if !host.contains(':') => (host, Some(p)),
            _ => (addr, None),
        }
    };
    let own_port = own_port
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| format!("redisHost {addr:?} has a bad port {p:?}"))
        })
        .transpose()?;
    if host.is_empty() {
        return Err(format!("redisHost {addr:?} has no host"));
    }
    let port = match (own_port, port) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "redis host {addr:?} already contains port {a}, but redisPort is set to {b}; \
                 either remove the port from redisHost or remove the redisPort setting"
            ))
        }
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => DEFAULT_PORT,
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Settings, StateError> {
        let md = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::parse("statestore", &md)
    }

    #[test]
    fn defaults_are_daprds() {
        let s = parse(&[("redisHost", "localhost:6380")]).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("localhost", 6380));
        assert_eq!(s.db, 0);
        assert_eq!(s.tls, None);
        assert_eq!(s.max_retries, 3);
        assert_eq!(s.dial_timeout, Duration::from_secs(5));
        assert_eq!(s.read_timeout, Duration::from_secs(3));
        assert_eq!(s.write_timeout, Duration::from_secs(3));
        assert_eq!(s.default_ttl, None);
        assert_eq!(s.password, None);
    }

    #[test]
    fn reads_every_supported_key() {
        let s = parse(&[
            ("redisHost", "[::1]"),
            ("redisPort", "7000"),
            ("redisUsername", "u"),
            ("redisPassword", "p w"),
            ("redisDB", "3"),
            ("enableTLS", "true"),
            ("insecureSkipTLSVerify", "True"),
            ("redisMaxRetries", "-1"),
            ("maxRetries", "9"),
            ("dialTimeout", "250"),
            ("readTimeout", "1s"),
            ("writeTimeout", "1500ms"),
            ("ttlInSeconds", "60"),
        ])
        .unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 7000));
        assert_eq!(s.username.as_deref(), Some("u"));
        assert_eq!(s.password.as_deref(), Some("p w"));
        assert_eq!(s.db, 3);
        assert_eq!(
            s.tls,
            Some(Tls {
                insecure: true,
                client_identity: None
            })
        );
        assert_eq!(s.max_retries, 0, "redisMaxRetries wins over maxRetries");
        assert_eq!(
            s.dial_timeout,
            Duration::from_millis(250),
            "integers are ms"
        );
        assert_eq!(s.call_timeout(), Duration::from_millis(2500));
        assert_eq!(s.default_ttl, Some(60));
        assert_eq!(
            parse(&[("redisHost", "h"), ("maxRetries", "7")])
                .unwrap()
                .max_retries,
            7
        );
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        for bad in [
            vec![],
            vec![("redisHost", "a:1,b:2")],
            vec![("redisHost", "a:1"), ("redisPort", "2")],
            vec![("redisHost", "a:x")],
            vec![("redisHost", "a"), ("redisType", "cluster")],
            vec![("redisHost", "a"), ("failover", "true")],
            vec![("redisHost", "a"), ("enableTLS", "yes")],
            vec![("redisHost", "a"), ("redisDB", "one")],
            vec![
                ("redisHost", "a"),
                ("enableTLS", "true"),
                ("clientCert", "x"),
            ],
        ] {
            let err = parse(&bad).expect_err(&format!("{bad:?}"));
            assert!(err.to_string().contains("statestore"), "{err}");
        }
    }
}
