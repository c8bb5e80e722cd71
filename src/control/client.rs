//! A client of the CA for tests and tooling: TLS to the CA, verifying its chain against the trust
//! bundle and its SPIFFE ID (URI SAN) rather than a DNS name, as daprd does.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;

use super::spiffe::SpiffeId;
use crate::proto::sentry::ca_client::CaClient;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("trust anchors: {0}")]
    TrustAnchors(String),
    #[error("connecting to the CA: {0}")]
    Connect(#[from] tonic::transport::Error),
}

/// The URI SANs of a DER certificate that parse as SPIFFE IDs.
pub fn spiffe_ids(der: &[u8]) -> Vec<SpiffeId> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => SpiffeId::parse(uri),
            _ => None,
        })
        .collect()
}

/// Accepts a server whose chain leads to one of `roots` and whose certificate carries `expected`.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    roots: Vec<rustls::pki_types::TrustAnchor<'static>>,
    expected: SpiffeId,
    provider: Arc<CryptoProvider>,
}

impl SpiffeServerVerifier {
    pub fn new(roots_pem: &[u8], expected: SpiffeId) -> Result<Self, ClientError> {
        let roots = CertificateDer::pem_slice_iter(roots_pem)
            .map(|der| {
                let der = der.map_err(|e| ClientError::TrustAnchors(e.to_string()))?;
                webpki::anchor_from_trusted_cert(&der)
                    .map(|a| a.to_owned())
                    .map_err(|e| ClientError::TrustAnchors(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if roots.is_empty() {
            return Err(ClientError::TrustAnchors("no certificate".to_owned()));
        }
        Ok(Self {
            roots,
            expected,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }
}

fn pki_error(error: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let cert_error = match error {
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(cert_error)
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(pki_error)?;
        if spiffe_ids(end_entity).contains(&self.expected) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
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

/// Connects to the CA at `addr`, trusting `roots_pem` and requiring the CA's SPIFFE ID.
pub async fn connect(
    addr: SocketAddr,
    roots_pem: &[u8],
    expected: SpiffeId,
) -> Result<CaClient<Channel>, ClientError> {
    let verifier = Arc::new(SpiffeServerVerifier::new(roots_pem, expected)?);
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::TrustAnchors(e.to_string()))?
    .dangerous()
    .with_custom_certificate_verifier(verifier)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                // The name only fills SNI; the verifier checks the SPIFFE ID instead.
                let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, io::Error>(TokioIo::new(tls))
            }
        }))
        .await?;
    Ok(CaClient::new(channel))
}
