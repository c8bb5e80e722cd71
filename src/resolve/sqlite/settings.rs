//! Settings of the SQLite resolver, read from the same keys daprd's `nameresolution.sqlite`
//! accepts (Configuration `spec.nameResolution.configuration`), with daprd's defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::super::{parse_go_duration, ResolveError};

/// Characters escaped in the `file:` URI handed to SQLite: the ones that would end the path
/// (`?`, `#`) or start an escape (`%`), plus the query separators for parameter values.
const URI_ESCAPES: &AsciiSet = &CONTROLS
    .add(b'%')
    .add(b'?')
    .add(b'#')
    .add(b'&')
    .add(b'=')
    .add(b' ');

/// Settings from Configuration `spec.nameResolution.configuration` (daprd's keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteSettings {
    /// The database file every sidecar on the machine shares.
    pub path: PathBuf,
    /// SQLite URI parameters from the connection string (`cache`, `vfs`, `mode=rwc`, ...),
    /// passed on as they are.
    pub uri_params: Vec<(String, String)>,
    /// `_pragma=...` values from the connection string (daprd's driver syntax, e.g.
    /// `synchronous(NORMAL)`), each run as `PRAGMA <value>` after opening.
    pub pragmas: Vec<String>,
    pub table_name: String,
    pub metadata_table_name: String,
    /// A row younger than this (whole seconds) is a live instance.
    pub update_interval: Duration,
    /// How long one query may take.
    pub timeout: Duration,
    /// How long to wait for another process's lock; zero fails at once.
    pub busy_timeout: Duration,
    /// How often dead rows are deleted; zero turns the cleanup off.
    pub cleanup_interval: Duration,
    /// Journal in DELETE mode instead of WAL (for network file systems, where WAL is unsafe).
    pub disable_wal: bool,
}

impl SqliteSettings {
    pub const DEFAULT_TABLE_NAME: &'static str = "hosts";
    pub const DEFAULT_METADATA_TABLE_NAME: &'static str = "metadata";
    pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(5);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_millis(800);
    pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(3600);

    /// daprd's defaults for the database file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            uri_params: Vec::new(),
            pragmas: Vec::new(),
            table_name: Self::DEFAULT_TABLE_NAME.into(),
            metadata_table_name: Self::DEFAULT_METADATA_TABLE_NAME.into(),
            update_interval: Self::DEFAULT_UPDATE_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            cleanup_interval: Self::DEFAULT_CLEANUP_INTERVAL,
            disable_wal: false,
        }
    }

    /// Defaults at `<state dir>/outrigger/nameresolution.db` (or `~/.outrigger/...` where the
    /// platform has no state dir), creating the directory. A daprd sidecar joins by setting
    /// its `connectionString` to the same path.
    pub fn default_for_standalone() -> Result<Self, ResolveError> {
        let dir = match (dirs::state_dir(), dirs::home_dir()) {
            (Some(state), _) => state.join("outrigger"),
            (None, Some(home)) => home.join(".outrigger"),
            (None, None) => {
                return Err(ResolveError::Config(
                    "found neither a state nor a home directory for the name-resolution \
                     database; set connectionString to a file path"
                        .into(),
                ))
            }
        };
        std::fs::create_dir_all(&dir).map_err(|e| {
            ResolveError::Config(format!(
                "cannot create {} for the name-resolution database: {e}; make it writable or \
                 set connectionString to another path",
                dir.display()
            ))
        })?;
        Ok(Self::new(dir.join("nameresolution.db")))
    }

    /// Reads daprd's keys (matched case-insensitively, like daprd does, with daprd's aliases).
    /// Durations are Go durations ("5s", "1m30s") or whole seconds ("5"); unknown keys are
    /// ignored, as daprd ignores them.
    pub fn from_configuration(config: &BTreeMap<String, String>) -> Result<Self, ResolveError> {
        let get = |names: &[&str]| {
            config
                .iter()
                .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let connection_string = get(&["connectionString", "url"]).ok_or_else(|| {
            ResolveError::Config(
                "connectionString is missing; set it to the path of the SQLite file that all \
                 sidecars on this machine share"
                    .into(),
            )
        })?;
        let (path, uri_params, pragmas) = parse_connection_string(connection_string)?;
        let mut settings = Self::new(path);
        settings.uri_params = uri_params;
        settings.pragmas = pragmas;
        if let Some(v) = get(&["tableName"]) {
            settings.table_name = v.into();
        }
        if let Some(v) = get(&["metadataTableName"]) {
            settings.metadata_table_name = v.into();
        }
        let duration = |names: &[&str], default| match get(names) {
            Some(v) => setting_duration(names[0], v),
            None => Ok(default),
        };
        settings.update_interval = duration(&["updateInterval"], settings.update_interval)?;
        settings.timeout = duration(&["timeout", "timeoutInSeconds"], settings.timeout)?;
        settings.busy_timeout = duration(&["busyTimeout"], settings.busy_timeout)?;
        settings.cleanup_interval = duration(
            &["cleanupInterval", "cleanupIntervalInSeconds"],
            settings.cleanup_interval,
        )?;
        if let Some(v) = get(&["disableWAL"]) {
            settings.disable_wal = parse_go_bool(v).ok_or_else(|| {
                ResolveError::Config(format!("disableWAL must be true or false, not {v:?}"))
            })?;
        }
        settings.validate()?;
        Ok(settings)
    }

    /// The checks daprd makes, so that a configuration daprd refuses is refused here too.
    pub fn validate(&self) -> Result<(), ResolveError> {
        let fail = |msg: String| Err(ResolveError::Config(msg));
        if self.path.as_os_str().is_empty() {
            return fail("the database path is empty; set connectionString to a file path".into());
        }
        for (key, name) in [
            ("tableName", &self.table_name),
            ("metadataTableName", &self.metadata_table_name),
        ] {
            if !valid_identifier(name) {
                return fail(format!(
                    "{key} {name:?} must be non-empty and use only ASCII letters, digits and _"
                ));
            }
        }
        if self.timeout < Duration::from_secs(1) {
            return fail(format!(
                "timeout must be at least 1s, not {:?}",
                self.timeout
            ));
        }
        if self.update_interval.subsec_nanos() != 0 {
            return fail(format!(
                "updateInterval must be whole seconds (e.g. \"5s\"), not {:?}",
                self.update_interval
            ));
        }
        if self.update_interval < self.timeout + Duration::from_secs(1) {
            return fail(format!(
                "updateInterval ({:?}) must be at least 1s longer than timeout ({:?})",
                self.update_interval, self.timeout
            ));
        }
        Ok(())
    }

    /// The `file:` URI SQLite opens (with `SQLITE_OPEN_URI`).
    pub(super) fn uri(&self) -> Result<String, ResolveError> {
        let path = self.path.to_str().ok_or_else(|| {
            ResolveError::Config(format!(
                "the database path {} is not valid UTF-8; choose another path",
                self.path.display()
            ))
        })?;
        let mut uri = format!("file:{}", utf8_percent_encode(path, URI_ESCAPES));
        for (i, (key, value)) in self.uri_params.iter().enumerate() {
            uri.push(if i == 0 { '?' } else { '&' });
            uri.push_str(&utf8_percent_encode(key, URI_ESCAPES).to_string());
            uri.push('=');
            uri.push_str(&utf8_percent_encode(value, URI_ESCAPES).to_string());
        }
        Ok(uri)
    }
}

type ParsedConnectionString = (PathBuf, Vec<(String, String)>, Vec<String>);

/// Splits daprd's connection string (a path, or a `file:` URI with query parameters) into the
/// file path, SQLite URI parameters and `_pragma` values, refusing what cannot work here.
fn parse_connection_string(raw: &str) -> Result<ParsedConnectionString, ResolveError> {
    let config = |msg: String| ResolveError::Config(msg);
    let lower = raw.to_ascii_lowercase();
    if lower.starts_with(":memory:") || lower.starts_with("file::memory:") {
        return Err(config(
            "an in-memory SQLite database cannot be shared between sidecars; set \
             connectionString to a file path"
                .into(),
        ));
    }
    // daprd prefixes "file:" when missing and then hands the string to SQLite as a URI, so a
    // plain path is read the same way as a URI (up to '?', with %XX escapes).
    let uri = if lower.starts_with("file:") {
        &raw[5..]
    } else {
        raw
    };
    let (path_part, query) = uri.split_once('?').unwrap_or((uri, ""));
    let path_part = path_part.split('#').next().unwrap_or_default();
    // "file://localhost/x" and "file:///x" name /x; SQLite accepts only these authorities.
    let path_part = match path_part.strip_prefix("//") {
        Some(rest) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            if !authority.is_empty() && !authority.eq_ignore_ascii_case("localhost") {
                return Err(config(format!(
                    "connectionString {raw:?} names host {authority:?}; only local files work"
                )));
            }
            path
        }
        None => path_part,
    };
    let path = decode(path_part, false)
        .map_err(|e| config(format!("connectionString {raw:?} has a bad path: {e}")))?;
    if path.is_empty() {
        return Err(config(format!(
            "connectionString {raw:?} names no file; set it to a file path"
        )));
    }

    let mut params = Vec::new();
    let mut pragmas = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = match (decode(key, true), decode(value, true)) {
            (Ok(k), Ok(v)) => (k, v),
            (Err(e), _) | (_, Err(e)) => {
                return Err(config(format!(
                    "connectionString has a bad parameter {pair:?}: {e}"
                )))
            }
        };
        match key.as_str() {
            "_pragma" => pragmas.push(checked_pragma(&value)?),
            // Options of daprd's Go driver with no SQLite meaning here: transactions are begun
            // explicitly, and times are stored as numbers.
            "_txlock" | "_time_format" => {}
            "mode" if value == "memory" => {
                return Err(config(
                    "mode=memory cannot be shared between sidecars; remove it".into(),
                ))
            }
            "mode" if value == "ro" => {
                return Err(config(
                    "mode=ro cannot work: name resolution writes this sidecar's own row; remove it"
                        .into(),
                ))
            }
            "immutable" if value == "1" => {
                return Err(config(
                    "immutable=1 cannot work: name resolution writes this sidecar's own row; \
                     remove it"
                        .into(),
                ))
            }
            _ => params.push((key, value)),
        }
    }
    Ok((PathBuf::from(path), params, pragmas))
}

/// Percent-decodes; in query parameters `+` is a space, as Go's `url.ParseQuery` reads it.
fn decode(s: &str, query: bool) -> Result<String, std::str::Utf8Error> {
    let s = if query {
        s.replace('+', " ")
    } else {
        s.to_owned()
    };
    percent_decode_str(&s).decode_utf8().map(|c| c.into_owned())
}

/// Accepts `name` or `name(value)`; refuses the pragmas daprd also refuses (they have their
/// own keys) and anything that could smuggle in another statement.
fn checked_pragma(value: &str) -> Result<String, ResolveError> {
    let lower = value.to_ascii_lowercase();
    for (pragma, instead) in [
        ("busy_timeout", "the busyTimeout key"),
        ("journal_mode", "the disableWAL key"),
        ("foreign_keys", "nothing (it is not needed)"),
    ] {
        if lower.starts_with(pragma) {
            return Err(ResolveError::Config(format!(
                "_pragma={value} is not allowed in connectionString; use {instead} instead"
            )));
        }
    }
    let malformed = || {
        ResolveError::Config(format!(
            "_pragma={value:?} in connectionString is not of the form name or name(value)"
        ))
    };
    let (name, arg) = match value.split_once('(') {
        Some((name, rest)) => (name, rest.strip_suffix(')').ok_or_else(malformed)?),
        None => (value, ""),
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    let arg_ok = arg
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.' ".contains(&b));
    if name_ok && arg_ok {
        Ok(value.to_owned())
    } else {
        Err(malformed())
    }
}

/// A duration setting: a Go duration, or whole seconds as dapr's metadata decoder also
/// accepts. Negative values mean "none", as daprd treats values <= 0.
fn setting_duration(key: &str, value: &str) -> Result<Duration, ResolveError> {
    if let Some(magnitude) = value.strip_prefix('-') {
        if parse_go_duration(magnitude).is_some() || magnitude.parse::<u64>().is_ok() {
            return Ok(Duration::ZERO);
        }
    }
    parse_go_duration(value)
        .or_else(|| value.parse::<u64>().ok().map(Duration::from_secs))
        .ok_or_else(|| {
            ResolveError::Config(format!(
                "{key} {value:?} is not a duration; write it like \"5s\", \"1m30s\" or \"800ms\""
            ))
        })
}

/// Go's `strconv.ParseBool`, which daprd's metadata decoding uses.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// daprd's `ValidIdentifier`: table names are put into SQL text, so only these characters.
fn valid_identifier(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
