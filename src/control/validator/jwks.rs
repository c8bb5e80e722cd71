//! Sentry's `JWKS` validator: the request's token is a JWT signed by a key of a JWK set, whose
//! `aud` includes the CA's own SPIFFE ID and whose `sub` is exactly the SPIFFE ID asked for, with
//! five minutes of clock skew (Sentry's `jwt.Parse` options). As in Sentry, `exp` and `nbf` are
//! checked when present and not required.
//!
//! The set comes from `--jwks-source`: a file (re-read when it changes, so keys rotate without a
//! restart) or the JSON itself, optionally base64-encoded, as Sentry's `source` option takes it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};

use super::{Claim, ValidationError};
use crate::control::spiffe::SpiffeId;

/// Sentry's `jwt.WithAcceptableSkew(5*time.Minute)`.
const LEEWAY_SECS: u64 = 300;

/// Why a JWK set could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a JWK set: {0}")]
    Parse(String),
    #[error("JWKS from a URL is not supported; give a file or the JSON itself")]
    Url,
}

#[derive(Debug)]
enum Source {
    File {
        path: PathBuf,
        /// The set as last read, with the file's modification time then.
        cached: Mutex<Option<(SystemTime, Arc<JwkSet>)>>,
    },
    Inline(Arc<JwkSet>),
}

#[derive(Debug)]
pub struct JwksValidator {
    source: Source,
    /// The CA's SPIFFE ID, which tokens must be minted for.
    audience: String,
}

impl JwksValidator {
    /// `source` is a file path or the set itself (JSON, or base64 of it); `audience` the CA's
    /// SPIFFE ID. A file is read once here so a bad one fails at start.
    pub fn new(source: &str, audience: String) -> Result<Self, JwksError> {
        let source = source.trim();
        if source.starts_with("http://") || source.starts_with("https://") {
            return Err(JwksError::Url);
        }
        let source = if let Some(set) = inline(source) {
            Source::Inline(Arc::new(set?))
        } else {
            let path = PathBuf::from(source);
            let validator = Source::File {
                path: path.clone(),
                cached: Mutex::new(None),
            };
            load_file(&path)?;
            validator
        };
        Ok(Self { source, audience })
    }

    fn keys(&self) -> Result<Arc<JwkSet>, JwksError> {
        match &self.source {
            Source::Inline(set) => Ok(set.clone()),
            Source::File { path, cached } => {
                let modified =
                    std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .map_err(|source| JwksError::Read {
                            path: path.clone(),
                            source,
                        })?;
                let mut cached = cached.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((at, set)) = cached.as_ref() {
                    if *at == modified {
                        return Ok(set.clone());
                    }
                }
                let set = Arc::new(load_file(path)?);
                *cached = Some((modified, set.clone()));
                Ok(set)
            }
        }
    }

    /// The identity of `claim` in `trust_domain` if its token proves it.
    pub fn validate(
        &self,
        claim: &Claim<'_>,
        trust_domain: String,
    ) -> Result<SpiffeId, ValidationError> {
        if claim.token.is_empty() {
            return Err(ValidationError::InvalidToken);
        }
        let wanted = SpiffeId::new(trust_domain, claim.namespace, claim.app_id);
        let set = self
            .keys()
            .map_err(|e| ValidationError::Jwks(e.to_string()))?;
        let header =
            jsonwebtoken::decode_header(claim.token).map_err(|_| ValidationError::InvalidToken)?;
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

/// The set written in `source` itself (JSON or base64 JSON), or `None` for a path.
fn inline(source: &str) -> Option<Result<JwkSet, JwksError>> {
    if source.starts_with('{') {
        return Some(parse(source.as_bytes()));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(source)
        .ok()
        .filter(|d| d.first() == Some(&b'{'))?;
    Some(parse(&decoded))
}

fn load_file(path: &Path) -> Result<JwkSet, JwksError> {
    let bytes = std::fs::read(path).map_err(|source| JwksError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Result<JwkSet, JwksError> {
    serde_json::from_slice(bytes).map_err(|e| JwksError::Parse(e.to_string()))
}
