//! Where a JWK set comes from, as Sentry's `source` option: a URL (fetched at start and again
//! when it is older than the refresh interval, or sooner when a token names a key it lacks), a
//! file (re-read when its modification time changes), or the JSON itself, optionally base64.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use tokio::time::Instant;

/// A JWK set larger than this is not one.
const MAX_SET_BYTES: usize = 1 << 20;
/// Floor between two fetches prompted by an unknown key id, so tokens with made-up key ids
/// cannot turn the CA into a load generator against the issuer.
const UNKNOWN_KID_FLOOR: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

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
    #[error("invalid JWKS URL {0:?}")]
    Url(String),
    #[error("fetching {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("TLS roots for fetching the JWK set: {0}")]
    Roots(String),
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

#[derive(Debug)]
pub(super) enum Source {
    Url(Box<UrlSource>),
    File {
        path: PathBuf,
        /// The set as last read, with the file's modification time then.
        cached: Mutex<Option<(SystemTime, Arc<JwkSet>)>>,
    },
    Inline(Arc<JwkSet>),
}

impl Source {
    /// Reads or fetches the set once, so a bad source fails at start.
    pub(super) async fn open(source: &str, refresh: Duration) -> Result<Self, JwksError> {
        let source = source.trim();
        if source.starts_with("http://") || source.starts_with("https://") {
            let url: http::Uri = source
                .parse()
                .map_err(|_| JwksError::Url(source.to_owned()))?;
            let client = https_client()?;
            let set = fetch(&client, &url).await?;
            return Ok(Self::Url(Box::new(UrlSource {
                url,
                client,
                refresh,
                cached: tokio::sync::Mutex::new((Instant::now(), Arc::new(set))),
            })));
        }
        if let Some(set) = inline(source) {
            return Ok(Self::Inline(Arc::new(set?)));
        }
        let path = PathBuf::from(source);
        let set = load_file(&path)?;
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Ok(Self::File {
            cached: Mutex::new(modified.map(|at| (at, Arc::new(set)))),
            path,
        })
    }

    /// The current set; `kid` is the key id the token names, to refresh early when it is new.
    pub(super) async fn keys(&self, kid: Option<&str>) -> Result<Arc<JwkSet>, JwksError> {
        match self {
            Self::Inline(set) => Ok(set.clone()),
            Self::File { path, cached } => {
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
            Self::Url(source) => Ok(source.keys(kid).await),
        }
    }
}

#[derive(Debug)]
pub(super) struct UrlSource {
    url: http::Uri,
    client: Client<Https, Empty<Bytes>>,
    refresh: Duration,
    /// The set as last fetched, and when.
    cached: tokio::sync::Mutex<(Instant, Arc<JwkSet>)>,
}

impl UrlSource {
    async fn keys(&self, kid: Option<&str>) -> Arc<JwkSet> {
        // One fetch at a time; callers behind it get its result.
        let mut cached = self.cached.lock().await;
        let (fetched_at, set) = &*cached;
        let age = fetched_at.elapsed();
        let unknown = kid.is_some_and(|kid| set.find(kid).is_none());
        let stale = age >= self.refresh || (unknown && age >= UNKNOWN_KID_FLOOR.min(self.refresh));
        if !stale {
            return set.clone();
        }
        match fetch(&self.client, &self.url).await {
            Ok(fresh) => *cached = (Instant::now(), Arc::new(fresh)),
            Err(err) => {
                // The issuer being briefly away must not stop the CA: keep the last set.
                tracing::warn!(%err, "keeping the previous JWK set");
                cached.0 = Instant::now();
            }
        }
        cached.1.clone()
    }
}

fn https_client() -> Result<Client<Https, Empty<Bytes>>, JwksError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 && !native.errors.is_empty() {
        let reasons: Vec<String> = native.errors.iter().map(ToString::to_string).collect();
        return Err(JwksError::Roots(reasons.join("; ")));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| JwksError::Roots(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

async fn fetch(client: &Client<Https, Empty<Bytes>>, url: &http::Uri) -> Result<JwkSet, JwksError> {
    let failed = |reason: String| JwksError::Fetch {
        url: url.to_string(),
        reason,
    };
    let get = async {
        let res = client
            .get(url.clone())
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !res.status().is_success() {
            return Err(failed(format!("HTTP {}", res.status())));
        }
        let body = Limited::new(res.into_body(), MAX_SET_BYTES)
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?
            .to_bytes();
        parse(&body)
    };
    tokio::time::timeout(FETCH_TIMEOUT, get)
        .await
        .map_err(|_| failed(format!("no answer within {FETCH_TIMEOUT:?}")))?
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
