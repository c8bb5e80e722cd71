//! Hand-driven TLS clients for an internal port: with or without a client certificate, reading
//! the certificate the server presents, and calling `CallLocal` directly (to test what a caller
//! can and cannot make the callee believe).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use outrigger::identity::transport::TlsConnect;
use outrigger::proto::common::{http_extension::Verb, HttpExtension, InvokeRequest};
use outrigger::proto::internals::service_invocation_client::ServiceInvocationClient;
use outrigger::proto::internals::{InternalInvokeRequest, InternalInvokeResponse, ListStringValue};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

/// Accepts any server certificate: these clients test the server's side of the handshake.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

pub fn config(identity: Option<ClientIdentity>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// The leaf certificate `addr` presents in a handshake.
pub async fn served_certificate(
    addr: SocketAddr,
    identity: ClientIdentity,
) -> anyhow::Result<CertificateDer<'static>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(config(Some(identity)));
    let tls = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| anyhow::anyhow!("no server certificate"))?
        .clone()
        .into_owned();
    Ok(cert)
}

/// The serial number of a DER certificate.
pub fn serial(cert: &CertificateDer<'_>) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert).expect("x509");
    parsed.raw_serial().to_vec()
}

/// The issuer's common name of a DER certificate.
pub fn issuer(cert: &CertificateDer<'_>) -> String {
    use x509_parser::prelude::FromDer;
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert).expect("x509");
    parsed.issuer().to_string()
}

/// One unary `CallLocal` to an internal port over TLS, with `metadata` as the caller's
/// headers and `verb` as the HTTP verb.
pub async fn call_local(
    addr: SocketAddr,
    identity: Option<ClientIdentity>,
    method: &str,
    verb: Verb,
    metadata: &[(&str, &str)],
) -> Result<InternalInvokeResponse, tonic::Status> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://localhost:{}", addr.port()))
            .expect("endpoint")
            .connect_with_connector_lazy(TlsConnect::new(config(identity), None));
    let mut client = ServiceInvocationClient::new(channel);
    let metadata: HashMap<String, ListStringValue> = metadata
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                ListStringValue {
                    values: vec![(*v).to_owned()],
                },
            )
        })
        .collect();
    let req = InternalInvokeRequest {
        ver: 1,
        metadata,
        message: Some(InvokeRequest {
            method: method.to_owned(),
            data: None,
            content_type: String::new(),
            http_extension: Some(HttpExtension {
                verb: verb as i32,
                querystring: String::new(),
            }),
        }),
        actor: None,
    };
    client
        .call_local(req)
        .await
        .map(tonic::Response::into_inner)
}
