//! Join tokens from a file (`--token-file`), for self-hosted meshes that want more than
//! `INSECURE` without a JWKS issuer. One token per line, optionally followed by the identities it
//! grants as `<namespace>/<app-id>`, where either side may be `*`:
//!
//! ```text
//! # any identity
//! 3f9c0d...
//! # only orders in default, and anything in staging
//! 8a1b77... default/orders staging/*
//! ```
//!
//! The file is read on every request, so adding or revoking a token needs no restart (requests
//! are rare: one per sidecar per half certificate lifetime).

use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::{Claim, ValidationError};
use crate::control::spiffe::SpiffeId;

#[derive(Debug, Clone)]
pub struct JoinTokenValidator {
    path: PathBuf,
}

#[derive(Debug, PartialEq, Eq)]
struct Grant<'a> {
    namespace: &'a str,
    app_id: &'a str,
}

impl Grant<'_> {
    fn allows(&self, namespace: &str, app_id: &str) -> bool {
        (self.namespace == "*" || self.namespace == namespace)
            && (self.app_id == "*" || self.app_id == app_id)
    }
}

/// The grants of the line whose token equals `token`, if any. Tokens are compared as SHA-256
/// digests in constant time and every line is compared, so neither the position of a match nor
/// the length of a common prefix shows in the timing.
fn grants_for<'f>(file: &'f str, token: &str) -> Option<Vec<Grant<'f>>> {
    let presented = Sha256::digest(token.as_bytes());
    let mut found = None;
    for line in file.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let Some(candidate) = fields.next() else {
            continue;
        };
        let equal: bool = Sha256::digest(candidate.as_bytes())
            .ct_eq(&presented)
            .into();
        if equal && found.is_none() {
            found = Some(
                fields
                    .filter_map(|g| g.split_once('/'))
                    .map(|(namespace, app_id)| Grant { namespace, app_id })
                    .collect::<Vec<_>>(),
            );
        }
    }
    found
}

impl JoinTokenValidator {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub(super) async fn validate(
        &self,
        claim: &Claim<'_>,
        trust_domain: String,
    ) -> Result<SpiffeId, ValidationError> {
        if claim.token.is_empty() {
            return Err(ValidationError::InvalidToken);
        }
        let file = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(ValidationError::TokenFile)?;
        let grants = grants_for(&file, claim.token).ok_or(ValidationError::InvalidToken)?;
        let id = SpiffeId::new(trust_domain, claim.namespace, claim.app_id);
        // A bare token is a shared join token: any identity.
        if grants.is_empty()
            || grants
                .iter()
                .any(|g| g.allows(claim.namespace, claim.app_id))
        {
            Ok(id)
        } else {
            Err(ValidationError::NotGranted {
                requested: id.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# comment\n\nshared\nscoped default/orders staging/*\n";

    #[test]
    fn finds_the_line_and_its_grants() {
        assert_eq!(grants_for(FILE, "shared"), Some(vec![]));
        assert_eq!(
            grants_for(FILE, "scoped"),
            Some(vec![
                Grant {
                    namespace: "default",
                    app_id: "orders"
                },
                Grant {
                    namespace: "staging",
                    app_id: "*"
                }
            ])
        );
        assert_eq!(grants_for(FILE, "shar"), None);
        assert_eq!(grants_for(FILE, "# comment"), None);
    }

    #[tokio::test]
    async fn grants_decide_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, FILE).unwrap();
        let v = JoinTokenValidator::new(&path);
        let claim = |token, namespace, app_id| Claim {
            app_id,
            namespace,
            trust_domain: "",
            token,
            has_csr: true,
            validator: None,
        };
        let td = || "public".to_owned();
        assert!(v
            .validate(&claim("scoped", "default", "orders"), td())
            .await
            .is_ok());
        assert!(v
            .validate(&claim("scoped", "staging", "any"), td())
            .await
            .is_ok());
        assert!(v.validate(&claim("shared", "x", "y"), td()).await.is_ok());
        assert!(matches!(
            v.validate(&claim("scoped", "default", "payments"), td())
                .await,
            Err(ValidationError::NotGranted { .. })
        ));
        assert!(matches!(
            v.validate(&claim("wrong", "default", "orders"), td()).await,
            Err(ValidationError::InvalidToken)
        ));
        assert!(matches!(
            v.validate(&claim("", "default", "orders"), td()).await,
            Err(ValidationError::InvalidToken)
        ));
    }
}
