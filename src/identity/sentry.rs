//! The client of Dapr Sentry's CA API (`dapr.proto.sentry.v1.CA/SignCertificate`): a fresh
//! Ed25519 key and an empty-template CSR per request, as daprd sends them. The private key never
//! leaves the process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ED25519};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use tonic::transport::{Channel, Endpoint};

use super::material::{MaterialStore, Svid};
use super::tls::{self, Expected};
use super::transport::TlsConnect;
use crate::proto::sentry::ca_client::CaClient;
use crate::proto::sentry::sign_certificate_request::TokenValidator;
use crate::proto::sentry::SignCertificateRequest;
use crate::telemetry::metrics::SecurityMetrics;

/// daprd gives each attempt 3 s; a loaded CA signing Ed25519 answers far quicker.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a certificate request failed; the label is daprd's `reason` on the failure counters.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("could not reach the CA: {0}")]
    Connect(String),
    #[error("could not read the CA token file {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA refused to sign: {0}")]
    Sign(String),
    #[error("the CA returned an unusable certificate: {0}")]
    InvalidCertificate(String),
    #[error("could not create the key or CSR: {0}")]
    Key(String),
}

impl SignError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Connect(_) => "sentry_conn",
            Self::Token { .. } => "sentry_token",
            Self::Sign(_) | Self::Key(_) => "sign",
            Self::InvalidCertificate(_) => "invalid_ts",
        }
    }
}

/// What we ask the CA for, in daprd's request fields.
#[derive(Debug, Clone)]
pub struct Request {
    /// `SENTRY_LOCAL_IDENTITY` or the app id.
    pub id: String,
    pub namespace: String,
    pub token_file: Option<PathBuf>,
    /// Kubernetes mode sends file tokens to the KUBERNETES validator, standalone to JWKS.
    pub kubernetes: bool,
    pub jwt_audiences: Vec<String>,
}

pub struct SentryClient {
    client: CaClient<Channel>,
    request: Request,
}

impl SentryClient {
    /// `address` is `host:port`; the CA must prove `sentry_id` with a chain to our bundle.
    pub fn new(
        address: &str,
        sentry_id: String,
        request: Request,
        store: Arc<MaterialStore>,
        metrics: Arc<SecurityMetrics>,
    ) -> Result<Self, super::IdentityError> {
        let config = tls::client_config(store, Expected::Exact(sentry_id), false);
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| super::IdentityError::SentryAddress(e.to_string()))?
            .connect_timeout(ATTEMPT_TIMEOUT)
            .connect_with_connector_lazy(TlsConnect::new(config, Some(metrics)));
        Ok(Self {
            client: CaClient::new(channel),
            request,
        })
    }

    /// One signing round trip: new key, CSR, call, and the resulting certificate checked.
    pub async fn sign(&self) -> Result<Svid, SignError> {
        let key =
            KeyPair::generate_for(&PKCS_ED25519).map_err(|e| SignError::Key(e.to_string()))?;
        // daprd's CSR template is empty: no subject, no SANs; the CA decides the identity.
        let mut template = CertificateParams::default();
        template.distinguished_name = DistinguishedName::new();
        let csr = template
            .serialize_request(&key)
            .and_then(|csr| csr.pem())
            .map_err(|e| SignError::Key(e.to_string()))?;
        let (token, validator) = match &self.request.token_file {
            Some(path) => {
                let token =
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|source| SignError::Token {
                            path: path.clone(),
                            source,
                        })?;
                let validator = if self.request.kubernetes {
                    TokenValidator::Kubernetes
                } else {
                    TokenValidator::Jwks
                };
                (token.trim().to_owned(), validator)
            }
            None => (String::new(), TokenValidator::Unknown),
        };
        let mut req = tonic::Request::new(SignCertificateRequest {
            id: self.request.id.clone(),
            token,
            trust_domain: String::new(),
            namespace: self.request.namespace.clone(),
            certificate_signing_request: csr.into_bytes().into(),
            token_validator: validator as i32,
            jwt_audiences: self.request.jwt_audiences.clone(),
        });
        req.set_timeout(ATTEMPT_TIMEOUT);
        let res = tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.clone().sign_certificate(req))
            .await
            .map_err(|_| SignError::Connect("timed out".into()))?
            .map_err(|status| match status.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                    SignError::Connect(status.to_string())
                }
                _ => SignError::Sign(status.message().to_owned()),
            })?
            .into_inner();
        let chain = CertificateDer::pem_slice_iter(&res.workload_certificate)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SignError::InvalidCertificate(e.to_string()))?;
        if chain.is_empty() {
            return Err(SignError::InvalidCertificate(
                "no certificate in the response".into(),
            ));
        }
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = tls::provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| SignError::Key(e.to_string()))?;
        let certified = CertifiedKey::new(chain, signing);
        certified
            .keys_match()
            .map_err(|e| SignError::InvalidCertificate(e.to_string()))?;
        let svid =
            Svid::new(certified).map_err(|e| SignError::InvalidCertificate(e.to_string()))?;
        if svid.id.app_id != self.request.id || svid.id.namespace != self.request.namespace {
            return Err(SignError::InvalidCertificate(format!(
                "the CA issued {} for a request as {}/{}",
                svid.id, self.request.namespace, self.request.id
            )));
        }
        Ok(svid)
    }
}
