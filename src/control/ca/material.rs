//! One validated snapshot of the CA files. A snapshot is only ever built whole: a half-written
//! rotation (new key, old certificate) fails validation and the previous snapshot stays in use.

use bytes::Bytes;
use rcgen::{Issuer, KeyPair, PublicKeyData as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

/// Why the files do not make a usable CA.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error("{file}: no PEM certificate found")]
    NoCertificate { file: &'static str },
    #[error("{file}: malformed PEM: {reason}")]
    Pem { file: &'static str, reason: String },
    #[error("{file}: malformed certificate: {reason}")]
    Certificate { file: &'static str, reason: String },
    #[error("{file}: certificate {subject:?} is not a CA")]
    NotCa { file: &'static str, subject: String },
    #[error("issuer key: {0}")]
    Key(#[from] super::KeyError),
    #[error("the issuer key does not belong to the issuer certificate")]
    KeyMismatch,
    #[error("the issuer certificate is not signed by any root in the trust bundle")]
    NotChained,
}

/// The trust bundle and the issuer, ready to sign.
pub struct CaMaterial {
    roots: Vec<CertificateDer<'static>>,
    /// One PEM per root: responses carry them as separate `trust_chain_certificates`.
    roots_pem: Vec<Bytes>,
    /// The issuer and any intermediates above it, as PEM, appended to every leaf.
    issuer_chain_pem: Bytes,
    issuer_chain: Vec<CertificateDer<'static>>,
    issuer: Issuer<'static, KeyPair>,
    issuer_not_after: OffsetDateTime,
    roots_not_after: OffsetDateTime,
    /// The file contents this snapshot was built from, to notice changes.
    pub(crate) source: Source,
}

/// The raw bytes of the three files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Source {
    pub ca: Vec<u8>,
    pub issuer_cert: Vec<u8>,
    pub issuer_key: Vec<u8>,
}

impl std::fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaMaterial")
            .field("roots", &self.roots.len())
            .field("issuer_not_after", &self.issuer_not_after)
            .finish_non_exhaustive()
    }
}

fn certificates(
    file: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MaterialError::Pem {
            file,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(MaterialError::NoCertificate { file });
    }
    Ok(certs)
}

fn parse<'a>(file: &'static str, der: &'a [u8]) -> Result<X509Certificate<'a>, MaterialError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| MaterialError::Certificate {
            file,
            reason: e.to_string(),
        })
}

fn require_ca(file: &'static str, cert: &X509Certificate<'_>) -> Result<(), MaterialError> {
    if cert.is_ca() {
        Ok(())
    } else {
        Err(MaterialError::NotCa {
            file,
            subject: cert.subject().to_string(),
        })
    }
}

fn not_after(cert: &X509Certificate<'_>) -> OffsetDateTime {
    cert.validity().not_after.to_datetime()
}

pub(crate) fn to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

impl CaMaterial {
    pub(crate) fn from_source(source: Source) -> Result<Self, MaterialError> {
        let roots = certificates(super::CA_FILE, &source.ca)?;
        let mut roots_not_after = None::<OffsetDateTime>;
        for der in &roots {
            let cert = parse(super::CA_FILE, der)?;
            require_ca(super::CA_FILE, &cert)?;
            let expiry = not_after(&cert);
            roots_not_after = Some(roots_not_after.map_or(expiry, |t| t.min(expiry)));
        }
        let issuer_chain = certificates(super::ISSUER_CERT_FILE, &source.issuer_cert)?;
        let issuer_der = &issuer_chain[0];
        let issuer_cert = parse(super::ISSUER_CERT_FILE, issuer_der)?;
        require_ca(super::ISSUER_CERT_FILE, &issuer_cert)?;

        let key_pem = std::str::from_utf8(&source.issuer_key).map_err(|_| MaterialError::Pem {
            file: super::ISSUER_KEY_FILE,
            reason: "not UTF-8".to_owned(),
        })?;
        let key = super::key::from_pem(key_pem)?;
        if key.subject_public_key_info() != issuer_cert.public_key().raw {
            return Err(MaterialError::KeyMismatch);
        }
        Self::check_chain(&roots, &issuer_chain)?;

        let issuer_not_after = not_after(&issuer_cert);
        let issuer =
            Issuer::from_ca_cert_der(issuer_der, key).map_err(|e| MaterialError::Key(e.into()))?;
        let roots_pem = roots.iter().map(|d| Bytes::from(to_pem(d))).collect();
        let issuer_chain_pem: String = issuer_chain.iter().map(|d| to_pem(d)).collect();
        Ok(Self {
            roots_not_after: roots_not_after.unwrap_or(issuer_not_after),
            roots,
            roots_pem,
            issuer_chain_pem: Bytes::from(issuer_chain_pem),
            issuer_chain,
            issuer,
            issuer_not_after,
            source,
        })
    }

    /// Each certificate in `issuer.crt` must be signed by the next, and the last by a root.
    fn check_chain(
        roots: &[CertificateDer<'static>],
        chain: &[CertificateDer<'static>],
    ) -> Result<(), MaterialError> {
        for pair in chain.windows(2) {
            let child = parse(super::ISSUER_CERT_FILE, &pair[0])?;
            let parent = parse(super::ISSUER_CERT_FILE, &pair[1])?;
            child
                .verify_signature(Some(parent.public_key()))
                .map_err(|_| MaterialError::NotChained)?;
        }
        let top = parse(super::ISSUER_CERT_FILE, &chain[chain.len() - 1])?;
        let signed_by_a_root = roots.iter().any(|root| {
            parse(super::CA_FILE, root)
                .is_ok_and(|root| top.verify_signature(Some(root.public_key())).is_ok())
        });
        if signed_by_a_root {
            Ok(())
        } else {
            Err(MaterialError::NotChained)
        }
    }

    /// Roots in the trust bundle, DER.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// Roots in the trust bundle, one PEM each.
    pub fn roots_pem(&self) -> &[Bytes] {
        &self.roots_pem
    }

    /// The issuer certificate and any intermediates above it, DER.
    pub fn issuer_chain(&self) -> &[CertificateDer<'static>] {
        &self.issuer_chain
    }

    pub(crate) fn issuer_chain_pem(&self) -> &Bytes {
        &self.issuer_chain_pem
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// When the issuer certificate expires: no leaf may outlive it.
    pub fn issuer_not_after(&self) -> OffsetDateTime {
        self.issuer_not_after
    }

    /// When the first root of the bundle expires.
    pub fn roots_not_after(&self) -> OffsetDateTime {
        self.roots_not_after
    }
}
