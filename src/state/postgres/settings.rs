//! Component metadata of `state.postgresql`, read with daprd's keys, aliases and defaults
//! (components-contrib `common/component/postgresql/v1/metadata.go` and
//! `common/authentication/postgresql/metadata.go`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::connstr;

/// Everything `open` needs, validated.
#[derive(Debug)]
pub(super) struct Settings {
    pub pg: tokio_postgres::Config,
    /// `tableName`, `table` or `schema.table` (inserted into SQL, hence validated).
    pub table: String,
    pub metadata_table: String,
    /// Bound on every call, and on connecting.
    pub timeout: Duration,
    /// `None` when the periodic deletion of expired rows is off.
    pub cleanup_interval: Option<Duration>,
    pub max_conns: usize,
}

pub(super) const DEFAULT_TABLE: &str = "state";
pub(super) const DEFAULT_METADATA_TABLE: &str = "dapr_metadata";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(3600);

impl Settings {
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Result<Self, String> {
        let get = |names: &[&str]| lookup(metadata, names);

        let conn_str = get(&["connectionString", "url"]).ok_or(
            "missing connection string: set the `connectionString` metadata \
             (e.g. host=localhost user=postgres dbname=dapr)",
        )?;
        let parsed = connstr::parse(conn_str)?;
        let mut pg = parsed.config;

        let table = table_name("tableName", get(&["tableName"]).unwrap_or(DEFAULT_TABLE))?;
        let metadata_table = table_name(
            "metadataTableName",
            get(&["metadataTableName"]).unwrap_or(DEFAULT_METADATA_TABLE),
        )?;

        let timeout = match get(&["timeout", "timeoutInSeconds"]) {
            None => DEFAULT_TIMEOUT,
            Some(text) => match dapr_duration(text)? {
                Signed::Positive(d) if d >= Duration::from_secs(1) => d,
                _ => return Err("invalid value for 'timeout': must be greater than 1s".into()),
            },
        };
        // Non-positive means "no automatic cleanup", as in daprd.
        let cleanup_interval = match get(&["cleanupInterval", "cleanupIntervalInSeconds"]) {
            None => Some(DEFAULT_CLEANUP_INTERVAL),
            Some(text) => match dapr_duration(text)? {
                Signed::Positive(d) if !d.is_zero() => Some(d),
                _ => None,
            },
        };

        // pgxpool's default is max(4, CPUs); daprd only overrides it for values above 1, which
        // also guarantees the two connections the migration lock needs.
        let default_conns = std::thread::available_parallelism().map_or(4, |n| n.get().max(4));
        let max_conns = match get(&["maxConns"]) {
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| format!("invalid value for 'maxConns': {text:?} is not an integer"))?,
            None => 0,
        };
        let max_conns = match (max_conns, parsed.pool_max_conns) {
            (n, _) if n > 1 => usize::try_from(n).unwrap_or(default_conns),
            (_, Some(n)) if n > 1 => n,
            _ => default_conns,
        };

        if let Some(mode) = get(&["queryExecMode"]) {
            // Accepted for compatibility; statements are always prepared and cached here.
            const MODES: [&str; 5] = [
                "cache_statement",
                "cache_describe",
                "describe_exec",
                "exec",
                "simple_protocol",
            ];
            if !MODES.contains(&mode) {
                return Err(format!("invalid queryExecMode metadata value: {mode}"));
            }
        }
        for key in ["useAzureAD", "useAWSIAM"] {
            if get(&[key]).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                return Err(format!(
                    "{key} is not supported by Outrigger's state.postgresql"
                ));
            }
        }

        // pgx connects to localhost as the OS user when the string names neither.
        if pg.get_hosts().is_empty() {
            pg.host("localhost");
        }
        if pg.get_user().is_none() {
            let user = std::env::var("USER").unwrap_or_else(|_| "postgres".to_owned());
            pg.user(user);
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(timeout);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("outrigger");
        }

        Ok(Self {
            pg,
            table,
            metadata_table,
            timeout,
            cleanup_interval,
            max_conns,
        })
    }
}

/// daprd matches metadata keys case-insensitively; an empty value counts as unset.
fn lookup<'a>(metadata: &'a BTreeMap<String, String>, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| {
        metadata
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    })
}

/// Table names go into SQL text (identifiers cannot be parameters), so only plain
/// identifiers, optionally schema-qualified, are accepted. Unquoted, as daprd writes them, so
/// both fold case the same way and find the same table.
fn table_name(key: &str, name: &str) -> Result<String, String> {
    let ident = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() <= 2 && parts.iter().all(|p| ident(p)) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "invalid value for '{key}': {name:?} must be a table name or schema.table \
             (letters, digits, _)"
        ))
    }
}

pub(super) enum Signed {
    Positive(Duration),
    Negative,
}

/// dapr/kit's duration decoding: a Go duration (`90s`, `1h`) or a bare integer of seconds;
/// a leading `-` makes it negative.
pub(super) fn dapr_duration(text: &str) -> Result<Signed, String> {
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let d = match magnitude.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => crate::config::duration::parse(magnitude)?,
    };
    Ok(if negative && !d.is_zero() {
        Signed::Negative
    } else {
        Signed::Positive(d)
    })
}
