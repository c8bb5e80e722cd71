//! SPIFFE IDs as Dapr writes them: `spiffe://<trust-domain>/ns/<namespace>/<app-id>`.

use std::fmt;

/// The trust domain Sentry's validators give a workload that names none.
pub const DEFAULT_TRUST_DOMAIN: &str = "public";

/// The app id Sentry serves its own API under; daprd refuses a CA without it.
pub const SENTRY_APP_ID: &str = "dapr-sentry";

/// A workload identity. Built only from validated parts, so [`fmt::Display`] is its URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub app_id: String,
}

impl SpiffeId {
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        app_id: impl Into<String>,
    ) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            app_id: app_id.into(),
        }
    }

    /// Parses a URI SAN. Like daprd, the path must be `/ns/<namespace>/<app-id>` and may carry
    /// further segments, which are ignored.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("spiffe://")?;
        let (trust_domain, path) = rest.split_once('/')?;
        let mut segments = path.split('/');
        if segments.next()? != "ns" {
            return None;
        }
        let namespace = segments.next().filter(|s| !s.is_empty())?;
        let app_id = segments.next().filter(|s| !s.is_empty())?;
        if trust_domain.is_empty() {
            return None;
        }
        Some(Self::new(trust_domain, namespace, app_id))
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/{}",
            self.trust_domain, self.namespace, self.app_id
        )
    }
}

/// A trust domain as SPIFFE allows it: lower-case letters, digits, `.`, `-` and `_`.
pub fn valid_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td.len() <= 255
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_malformed_ids() {
        let id = SpiffeId::new("public", "default", "orders");
        assert_eq!(id.to_string(), "spiffe://public/ns/default/orders");
        assert_eq!(SpiffeId::parse(&id.to_string()), Some(id));
        assert_eq!(
            SpiffeId::parse("spiffe://td/ns/a/b/extra"),
            Some(SpiffeId::new("td", "a", "b"))
        );
        for bad in [
            "spiffe://td/ns/a",
            "spiffe://td/x/a/b",
            "spiffe:///ns/a/b",
            "http://td/ns/a/b",
            "spiffe://td/ns//b",
        ] {
            assert_eq!(SpiffeId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn trust_domain_charset() {
        assert!(valid_trust_domain("cluster.local"));
        assert!(!valid_trust_domain("Upper"));
        assert!(!valid_trust_domain(""));
        assert!(!valid_trust_domain("a/b"));
    }
}
