//! Sentry's `JWKS` validator: the request's token is a JWT signed by a key of a JWK set, whose
//! `aud` includes the CA's own SPIFFE ID and whose `sub` is exactly the SPIFFE ID asked for, with
//! five minutes of clock skew (Sentry's `jwt.Parse` options). As in Sentry, `exp` and `nbf` are
//! checked when present and not required. Where the set comes from is [`source`]'s business.

mod source;

use std::time::Duration;

use jsonwebtoken::{DecodingKey, Validation};

use super::{Claim, ValidationError};
use crate::control::spiffe::SpiffeId;
use source::Source;

pub use source::JwksError;

/// Sentry's `jwt.WithAcceptableSkew(5*time.Minute)`.
const LEEWAY_SECS: u64 = 300;

#[derive(Debug)]
pub struct JwksValidator {
    source: Source,
    /// The CA's SPIFFE ID, which tokens must be minted for.
    audience: String,
}

impl JwksValidator {
    /// `source` is a URL, a file path or the set itself (JSON, or base64 of it); a URL is fetched
    /// again once `refresh` has passed. `audience` is the CA's SPIFFE ID. The set is read once
    /// here, so a bad source fails at start.
    pub async fn new(source: &str, refresh: Duration, audience: String) -> Result<Self, JwksError> {
        Ok(Self {
            source: Source::open(source, refresh).await?,
            audience,
        })
    }

    /// The identity of `claim` in `trust_domain` if its token proves it.
    pub async fn validate(
        &self,
        claim: &Claim<'_>,
        trust_domain: String,
    ) -> Result<SpiffeId, ValidationError> {
        if claim.token.is_empty() {
            return Err(ValidationError::InvalidToken);
        }
        let wanted = SpiffeId::new(trust_domain, claim.namespace, claim.app_id);
        let header =
            jsonwebtoken::decode_header(claim.token).map_err(|_| ValidationError::InvalidToken)?;
        let set = self
            .source
            .keys(header.kid.as_deref())
            .await
            .map_err(|e| ValidationError::Jwks(e.to_string()))?;
        let mut rules = Validation::new(header.alg);
        rules.leeway = LEEWAY_SECS;
        rules.set_audience(&[&self.audience]);
        rules.sub = Some(wanted.to_string());
        rules.set_required_spec_claims(&["aud", "sub"]);
        rules.validate_nbf = true;
        let proven = set
            .keys
            .iter()
            .filter(|jwk| header.kid.is_none() || jwk.common.key_id == header.kid)
            .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok())
            .any(|key| {
                jsonwebtoken::decode::<serde_json::Value>(claim.token, &key, &rules).is_ok()
            });
        if proven {
            Ok(wanted)
        } else {
            Err(ValidationError::InvalidToken)
        }
    }
}
