//! rustls configurations for the internal port (server) and for calls to peers and to the CA
//! (client). Both are built once; what they present and trust is read from the
//! [`MaterialStore`] at each handshake, so a rotation or a new bundle affects new handshakes
//! only and established connections carry on.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig,
    SignatureScheme,
};

use super::material::MaterialStore;
use super::spiffe;

/// ALPN for gRPC over TLS.
const H2: &[u8] = b"h2";

/// The one crypto provider of the crate.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The identity a server must prove.
#[derive(Debug, Clone)]
pub enum Expected {
    /// A sidecar: path `/ns/<namespace>/<app-id>` in any trust domain, as daprd checks.
    Workload { namespace: String, app_id: String },
    /// An exact SPIFFE ID (the CA: `spiffe://<cp-trust-domain>/ns/<cp-namespace>/dapr-sentry`).
    Exact(String),
}

impl Expected {
    fn matches(&self, uri: &str) -> bool {
        match self {
            Self::Exact(id) => uri == id,
            Self::Workload { namespace, app_id } => spiffe::SpiffeId::parse(uri)
                .is_some_and(|id| id.namespace == *namespace && id.app_id == *app_id),
        }
    }
}

/// The server config of the internal port: a client certificate chained to the bundle is
/// required.
pub fn server_config(store: Arc<MaterialStore>) -> Arc<ServerConfig> {
    let provider = provider();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_client_cert_verifier(Arc::new(CurrentClientVerifier(store.clone())))
        .with_cert_resolver(Arc::new(CurrentCert(store)));
    config.alpn_protocols = vec![H2.to_vec()];
    Arc::new(config)
}

/// A client config that proves `expected` on the server side and presents our certificate
/// when `present` (the CA is called before we have one).
pub fn client_config(
    store: Arc<MaterialStore>,
    expected: Expected,
    present: bool,
) -> Arc<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier {
            store: store.clone(),
            expected,
            provider,
        }));
    let mut config = if present {
        builder.with_client_cert_resolver(Arc::new(CurrentCert(store)))
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![H2.to_vec()];
    Arc::new(config)
}

/// Presents the current, unexpired workload certificate.
#[derive(Debug)]
struct CurrentCert(Arc<MaterialStore>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current_key()
    }
}

impl ResolvesClientCert for CurrentCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.current_key()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// webpki's client verifier over the current bundle.
#[derive(Debug)]
struct CurrentClientVerifier(Arc<MaterialStore>);

impl ClientCertVerifier for CurrentClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would borrow from a bundle that may be swapped; they are optional and our
        // clients (and daprd's) present their certificate without them.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let material = self.0.load();
        material
            .trust
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)?;
        if spiffe::id_of(end_entity).is_none() {
            return Err(Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(NoSpiffeId)),
            )));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0
            .load()
            .trust
            .client_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0
            .load()
            .trust
            .client_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .load()
            .trust
            .client_verifier
            .supported_verify_schemes()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the certificate carries no SPIFFE ID in Dapr's layout")]
struct NoSpiffeId;

#[derive(Debug, thiserror::Error)]
#[error("the server's SPIFFE ID {found:?} is not the expected {expected:?}")]
struct WrongSpiffeId {
    found: Option<String>,
    expected: Expected,
}

/// Checks the chain against the current bundle and the SPIFFE ID instead of a DNS name (Dapr's
/// certificates carry no DNS SAN).
#[derive(Debug)]
struct SpiffeServerVerifier {
    store: Arc<MaterialStore>,
    expected: Expected,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        let material = self.store.load();
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &material.trust.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let found = spiffe::uri_of(end_entity);
        if found
            .as_deref()
            .is_some_and(|uri| self.expected.matches(uri))
        {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(WrongSpiffeId {
                    found,
                    expected: self.expected.clone(),
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A short label for a failed handshake, for the failure counter.
pub fn failure_reason(err: &std::io::Error) -> &'static str {
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return match err.kind() {
            std::io::ErrorKind::TimedOut => "timeout",
            std::io::ErrorKind::UnexpectedEof => "eof",
            _ => "io",
        };
    };
    match tls {
        Error::NoCertificatesPresented => "no_client_cert",
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => "unknown_issuer",
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "expired",
        Error::InvalidCertificate(CertificateError::BadSignature) => "bad_signature",
        Error::InvalidCertificate(_) => "invalid_certificate",
        Error::AlertReceived(_) => "alert_received",
        Error::NoApplicationProtocol => "no_alpn",
        _ => "tls",
    }
}
