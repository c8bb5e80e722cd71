//! daprd hands its connection string to pgx; we hand ours to tokio-postgres. Both read the
//! libpq key=value form and the `postgres://` URL form, but pgx also takes a few keys that
//! tokio-postgres rejects as unknown (`database`, the `pool_*` settings of pgxpool, its
//! statement-cache knobs). This module rewrites those so a connection string written for
//! daprd works here unchanged, and refuses TLS modes we cannot honour instead of silently
//! connecting without TLS.

use percent_encoding::percent_decode_str;

/// A connection string after rewriting, plus what it said about the pool.
#[derive(Debug)]
pub(super) struct Parsed {
    pub config: tokio_postgres::Config,
    /// `pool_max_conns`, which pgxpool reads from the connection string.
    pub pool_max_conns: Option<usize>,
}

/// What one parameter turns into.
enum Action {
    Keep,
    Rename(&'static str),
    /// Replace the value (used to map `sslmode=allow` onto a mode tokio-postgres knows).
    Value(&'static str),
    Drop,
}

/// Decides what to do with one `key=value`; records pool settings in `pool_max`.
fn classify(key: &str, value: &str, pool_max: &mut Option<usize>) -> Result<Action, String> {
    Ok(match key {
        // pgx accepts both spellings; tokio-postgres only `dbname`.
        "database" => Action::Rename("dbname"),
        "sslmode" => match value {
            "disable" | "prefer" => Action::Keep,
            // "try without TLS first": the same as prefer when the client has no TLS.
            "allow" => Action::Value("prefer"),
            "require" | "verify-ca" | "verify-full" => {
                return Err(format!(
                    "sslmode={value} asks for TLS, which Outrigger's state.postgresql does not \
                     support yet; use sslmode=disable (or prefer) with a server that accepts \
                     plain connections"
                ))
            }
            other => return Err(format!("unknown sslmode {other:?}")),
        },
        "pool_max_conns" => {
            let n = value
                .parse::<usize>()
                .map_err(|_| format!("pool_max_conns must be a positive integer, got {value:?}"))?;
            *pool_max = Some(n);
            Action::Drop
        }
        // pgxpool's other knobs and pgx's statement-cache settings tune pgx internals that
        // have no counterpart here; the TLS file keys only matter with TLS, which is refused
        // above. Dropping them keeps daprd connection strings working.
        k if k.starts_with("pool_") => Action::Drop,
        "statement_cache_capacity"
        | "description_cache_capacity"
        | "default_query_exec_mode"
        | "min_read_buffer_size"
        | "sslcert"
        | "sslkey"
        | "sslrootcert"
        | "sslpassword"
        | "sslsni" => Action::Drop,
        _ => Action::Keep,
    })
}

/// Parses a daprd `connectionString` (URL or key=value form).
pub(super) fn parse(text: &str) -> Result<Parsed, String> {
    let mut pool_max_conns = None;
    let rewritten = if let Some(rest) = strip_url_prefix(text) {
        rewrite_url(text, rest, &mut pool_max_conns)?
    } else {
        rewrite_key_values(text, &mut pool_max_conns)?
    };
    let config = rewritten
        .parse::<tokio_postgres::Config>()
        .map_err(|e| describe_parse_error(&e))?;
    Ok(Parsed {
        config,
        pool_max_conns,
    })
}

fn describe_parse_error(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("invalid connection string: {cause}"),
        None => format!("invalid connection string: {e}"),
    }
}

fn strip_url_prefix(s: &str) -> Option<&str> {
    ["postgres://", "postgresql://"]
        .iter()
        .find_map(|p| s.strip_prefix(p))
}

/// URL form: only the query string (`?k=v&...`) carries parameters to rewrite. The query
/// starts at the first `?` after the credentials, as tokio-postgres reads it.
fn rewrite_url(whole: &str, rest: &str, pool_max: &mut Option<usize>) -> Result<String, String> {
    let prefix_len = whole.len() - rest.len();
    let creds_end = rest.find('@').map_or(0, |i| i + 1);
    let Some(q) = rest[creds_end..].find('?') else {
        return Ok(whole.to_owned());
    };
    let query_start = prefix_len + creds_end + q + 1;
    let mut kept = Vec::new();
    for pair in whole[query_start..].split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair
            .split_once('=')
            .ok_or_else(|| format!("invalid connection string: parameter {pair:?} has no value"))?;
        let key = percent_decode_str(raw_key).decode_utf8_lossy();
        let value = percent_decode_str(raw_value).decode_utf8_lossy();
        match classify(&key, &value, pool_max)? {
            Action::Keep => kept.push(pair.to_owned()),
            Action::Rename(new) => kept.push(format!("{new}={raw_value}")),
            Action::Value(new) => kept.push(format!("{raw_key}={new}")),
            Action::Drop => {}
        }
    }
    let base = &whole[..query_start - 1];
    Ok(if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

/// Key=value form. Values keep their original spelling (quotes, backslash escapes), so what
/// tokio-postgres parses is exactly what the user wrote, minus the keys it does not know.
fn rewrite_key_values(text: &str, pool_max: &mut Option<usize>) -> Result<String, String> {
    let mut kept = Vec::new();
    for param in KeyValues::new(text) {
        let param = param?;
        match classify(param.key, &param.value, pool_max)? {
            Action::Keep => kept.push(format!("{}={}", param.key, param.raw_value)),
            Action::Rename(new) => kept.push(format!("{new}={}", param.raw_value)),
            Action::Value(new) => kept.push(format!("{}={new}", param.key)),
            Action::Drop => {}
        }
    }
    Ok(kept.join(" "))
}

struct Param<'a> {
    key: &'a str,
    /// The value as written, quotes and escapes included.
    raw_value: &'a str,
    /// The value as libpq reads it.
    value: String,
}

/// libpq's key=value tokenizer: whitespace-separated `key = value`, values optionally in
/// single quotes, backslash escaping the next character.
struct KeyValues<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> KeyValues<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }

    fn skip_ws(&mut self) {
        let rest = &self.s[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn next_param(&mut self) -> Result<Option<Param<'a>>, String> {
        self.skip_ws();
        let rest = &self.s[self.pos..];
        if rest.is_empty() {
            return Ok(None);
        }
        let key_len = rest
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(rest.len());
        let key = &rest[..key_len];
        self.pos += key_len;
        self.skip_ws();
        if !self.s[self.pos..].starts_with('=') {
            return Err(format!(
                "invalid connection string: expected `=` after {key:?}"
            ));
        }
        self.pos += 1;
        self.skip_ws();
        let start = self.pos;
        let quoted = self.s[self.pos..].starts_with('\'');
        if quoted {
            self.pos += 1;
        }
        let mut value = String::new();
        let mut chars = self.s[self.pos..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '\'' if quoted => {
                    end = Some(i + 1);
                    break;
                }
                c if c.is_whitespace() && !quoted => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        match end {
            Some(len) => self.pos += len,
            None if quoted => {
                return Err(format!(
                    "invalid connection string: unterminated quoted value for {key:?}"
                ))
            }
            None => self.pos = self.s.len(),
        }
        let raw_value = &self.s[start..self.pos];
        if raw_value.is_empty() {
            return Err(format!("invalid connection string: {key:?} has no value"));
        }
        Ok(Some(Param {
            key,
            raw_value,
            value,
        }))
    }
}

impl<'a> Iterator for KeyValues<'a> {
    type Item = Result<Param<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_param().transpose()
    }
}
