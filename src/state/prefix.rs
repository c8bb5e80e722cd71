//! Key namespacing (daprd's `pkg/components/state/state_config.go`): the stored key is
//! `<prefix>||<key>`, the prefix chosen by the component's `keyPrefix` metadata.

use std::collections::BTreeMap;

/// The separator between prefix and key; app keys must not contain it.
pub(crate) const SEPARATOR: &str = "||";

const STRATEGY_KEY: &str = "keyPrefix";

/// The prefix one store puts before every key, resolved once when the store opens (daprd
/// recomputes it per call from the same inputs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPrefix(Option<String>);

/// Who this sidecar is, for the `appid` and `namespace` strategies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity<'a> {
    pub app_id: &'a str,
    /// The `NAMESPACE` environment variable as daprd reads it; `None` when unset.
    pub namespace: Option<&'a str>,
}

impl KeyPrefix {
    /// `appid` (default; no prefix without an app id), `name` (component name), `namespace`
    /// (`<NAMESPACE>.<appid>`, falling back to `appid`), `none`, or any other text as a literal
    /// prefix. daprd lower-cases the setting before using it, literal prefixes included.
    pub(crate) fn from_metadata(
        metadata: &BTreeMap<String, String>,
        store_name: &str,
        who: Identity<'_>,
    ) -> Result<Self, String> {
        let raw = metadata.get(STRATEGY_KEY).map(String::as_str).unwrap_or("");
        if raw.contains(SEPARATOR) {
            return Err(illegal_key_message(raw));
        }
        let strategy = raw.to_lowercase();
        let prefix = match strategy.as_str() {
            "" | "appid" => non_empty(who.app_id),
            "none" => None,
            "name" => Some(store_name.to_owned()),
            "namespace" => match (who.app_id, who.namespace) {
                ("", _) => None,
                (app_id, None | Some("")) => Some(app_id.to_owned()),
                (app_id, Some(ns)) => Some(format!("{ns}.{app_id}")),
            },
            _ => Some(strategy),
        };
        Ok(Self(prefix))
    }

    /// The stored key for an app key. `Err` carries daprd's message when the key contains `||`.
    pub(crate) fn apply(&self, key: &str) -> Result<String, String> {
        if key.contains(SEPARATOR) {
            return Err(illegal_key_message(key));
        }
        Ok(match &self.0 {
            Some(prefix) => format!("{prefix}{SEPARATOR}{key}"),
            None => key.to_owned(),
        })
    }
}

/// daprd's `GetOriginalStateKey`: the text between the first and second `||`, or the whole key
/// when it has none.
pub(crate) fn strip(stored: &str) -> &str {
    match stored.split_once(SEPARATOR) {
        Some((_, rest)) => rest.split(SEPARATOR).next().unwrap_or(rest),
        None => stored,
    }
}

pub(crate) fn illegal_key_message(key: &str) -> String {
    format!("input key/keyPrefix '{key}' can't contain '{SEPARATOR}'")
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(setting: Option<&str>, app_id: &str, namespace: Option<&str>) -> KeyPrefix {
        let mut metadata = BTreeMap::new();
        if let Some(s) = setting {
            metadata.insert(STRATEGY_KEY.to_owned(), s.to_owned());
        }
        KeyPrefix::from_metadata(&metadata, "store1", Identity { app_id, namespace }).unwrap()
    }

    #[test]
    fn strategies() {
        let key = |p: KeyPrefix| p.apply("k").unwrap();
        assert_eq!(key(prefix(None, "app", None)), "app||k");
        assert_eq!(key(prefix(Some("AppID"), "app", None)), "app||k");
        assert_eq!(key(prefix(None, "", None)), "k");
        assert_eq!(key(prefix(Some("name"), "app", None)), "store1||k");
        assert_eq!(key(prefix(Some("none"), "app", None)), "k");
        assert_eq!(
            key(prefix(Some("namespace"), "app", Some("prod"))),
            "prod.app||k"
        );
        assert_eq!(key(prefix(Some("namespace"), "app", None)), "app||k");
        assert_eq!(key(prefix(Some("namespace"), "", Some("prod"))), "k");
        assert_eq!(key(prefix(Some("MyShared"), "app", None)), "myshared||k");
    }

    #[test]
    fn separator_is_refused_in_keys_and_prefixes() {
        let p = prefix(None, "app", None);
        assert_eq!(
            p.apply("a||b").unwrap_err(),
            "input key/keyPrefix 'a||b' can't contain '||'"
        );
        let metadata = BTreeMap::from([(STRATEGY_KEY.to_owned(), "x||y".to_owned())]);
        let who = Identity {
            app_id: "app",
            namespace: None,
        };
        assert!(KeyPrefix::from_metadata(&metadata, "s", who).is_err());
    }

    #[test]
    fn strip_takes_the_second_segment() {
        assert_eq!(strip("app||k"), "k");
        assert_eq!(strip("k"), "k");
        assert_eq!(strip("a||b||c"), "b");
        assert_eq!(strip("app||"), "");
    }
}
