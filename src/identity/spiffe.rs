//! SPIFFE IDs as Dapr uses them: `spiffe://<trust-domain>/ns/<namespace>/<app-id>`, carried as
//! the URI SAN of every workload certificate.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A workload's identity as read from its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub app_id: String,
}

impl SpiffeId {
    /// Parses daprd's layout. Like daprd's server side, extra path segments after the app id are
    /// tolerated and ignored; fewer segments, or anything but `ns` in second place, is malformed.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("spiffe://")?;
        let mut parts = rest.split('/');
        let trust_domain = parts.next().filter(|s| !s.is_empty())?;
        if parts.next()? != "ns" {
            return None;
        }
        let namespace = parts.next().filter(|s| !s.is_empty())?;
        let app_id = parts.next().filter(|s| !s.is_empty())?;
        Some(Self {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            app_id: app_id.to_owned(),
        })
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

/// The first `spiffe://` URI SAN of a DER certificate, as written (daprd takes the first too).
pub fn uri_of(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some((*uri).to_owned()),
        _ => None,
    })
}

/// The parsed SPIFFE ID of a DER certificate, when it carries one in Dapr's layout.
pub fn id_of(cert_der: &[u8]) -> Option<SpiffeId> {
    uri_of(cert_der).and_then(|uri| SpiffeId::parse(&uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_daprs_layout_and_rejects_others() {
        let id = SpiffeId::parse("spiffe://public/ns/default/orders").unwrap();
        assert_eq!(id.trust_domain, "public");
        assert_eq!(id.namespace, "default");
        assert_eq!(id.app_id, "orders");
        assert_eq!(id.to_string(), "spiffe://public/ns/default/orders");
        assert!(SpiffeId::parse("spiffe://public/ns/default/orders/extra").is_some());
        assert!(SpiffeId::parse("spiffe://public/ns/default").is_none());
        assert!(SpiffeId::parse("spiffe://public/x/default/orders").is_none());
        assert!(SpiffeId::parse("https://public/ns/default/orders").is_none());
        assert!(SpiffeId::parse("spiffe:///ns/default/orders").is_none());
    }
}
