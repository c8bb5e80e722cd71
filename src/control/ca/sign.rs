//! Workload certificates from CSRs, shaped like Sentry's (`bundle.GenerateWorkloadCert`).

use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    PublicKeyData, SanType, SubjectPublicKeyInfo,
};
use rustls_pki_types::pem::{PemObject as _, SectionKind};
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer as _;

use super::generate::random_serial;
use super::material::CaMaterial;
use crate::control::spiffe::SpiffeId;

/// Lifetime and back-dating of issued certificates.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadPolicy {
    pub ttl: Duration,
    pub allowed_clock_skew: Duration,
}

/// The CSR is unusable: gRPC `INVALID_ARGUMENT`.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("invalid CSR: no PEM block of type CERTIFICATE REQUEST")]
    NoPem,
    #[error("invalid CSR: {0}")]
    Malformed(String),
    #[error("invalid CSR: signature does not verify")]
    BadSignature,
    #[error("invalid CSR: unsupported public key type")]
    UnsupportedKey,
}

/// Signing failed on our side: gRPC `INTERNAL`.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the issuer expires before the certificate would start")]
    IssuerExpired,
    #[error("signing: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// A signed certificate: PEM chain (leaf then issuer chain) and its expiry.
#[derive(Debug, Clone)]
pub struct SignedCert {
    pub chain_pem: Bytes,
    pub leaf_der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Reads the public key out of a PEM CSR after checking its self-signature. The block may be
/// labelled `CERTIFICATE REQUEST` or, as Sentry still accepts from old clients, `CERTIFICATE`.
/// Subject and extensions of the request are ignored: the identity comes from the validated
/// credential, never from what the CSR asks for.
pub fn parse_csr(pem: &[u8]) -> Result<SubjectPublicKeyInfo, CsrError> {
    let der = <(SectionKind, Vec<u8>)>::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .find(|(kind, _)| matches!(kind, SectionKind::Csr | SectionKind::Certificate))
        .map(|(_, der)| der)
        .ok_or(CsrError::NoPem)?;
    let (_, csr) =
        X509CertificationRequest::from_der(&der).map_err(|e| CsrError::Malformed(e.to_string()))?;
    csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
    SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|_| CsrError::UnsupportedKey)
}

/// Signs a workload certificate for `id` over `public_key`.
pub fn sign_workload(
    ca: &CaMaterial,
    public_key: &impl PublicKeyData,
    id: &SpiffeId,
    policy: WorkloadPolicy,
    now: OffsetDateTime,
) -> Result<SignedCert, SignError> {
    sign_key(ca, public_key, id, &[], policy, now)
}

/// As [`sign_workload`], with extra DNS names (the CA's own serving certificate has some).
pub fn sign_key(
    ca: &CaMaterial,
    public_key: &impl PublicKeyData,
    id: &SpiffeId,
    dns_names: &[&str],
    policy: WorkloadPolicy,
    now: OffsetDateTime,
) -> Result<SignedCert, SignError> {
    let not_before = now - policy.allowed_clock_skew;
    let not_after = (now + policy.ttl).min(ca.issuer_not_after());
    if not_after <= not_before {
        return Err(SignError::IssuerExpired);
    }
    let mut params = CertificateParams::default();
    // No subject: the SPIFFE ID in the SAN is the identity, as in Sentry's leaves.
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
    for name in dns_names {
        params
            .subject_alt_names
            .push(SanType::DnsName((*name).try_into()?));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(public_key, ca.issuer())?;

    let leaf_pem = cert.pem();
    let issuers = ca.issuer_chain_pem();
    let mut chain = BytesMut::with_capacity(leaf_pem.len() + issuers.len());
    chain.put_slice(leaf_pem.as_bytes());
    chain.put_slice(issuers);
    Ok(SignedCert {
        chain_pem: chain.freeze(),
        leaf_der: cert.der().to_vec(),
        not_before,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ca::CaDir;
    use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519};
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::GeneralName;

    fn policy() -> WorkloadPolicy {
        WorkloadPolicy {
            ttl: Duration::from_secs(3600),
            allowed_clock_skew: Duration::from_secs(900),
        }
    }

    fn csr(alg: &'static rcgen::SignatureAlgorithm) -> String {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn accepts_ed25519_p256_and_legacy_label_and_rejects_tampering() {
        for alg in [&PKCS_ED25519, &PKCS_ECDSA_P256_SHA256] {
            parse_csr(csr(alg).as_bytes()).unwrap();
        }
        let legacy = csr(&PKCS_ED25519).replace("CERTIFICATE REQUEST", "CERTIFICATE");
        parse_csr(legacy.as_bytes()).unwrap();

        assert!(matches!(parse_csr(b"not pem"), Err(CsrError::NoPem)));
        // Flip one bit of the DER inside the PEM: the signature no longer verifies (or the
        // structure no longer parses); either way the CSR is refused.
        let pem = csr(&PKCS_ECDSA_P256_SHA256);
        let der =
            rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap();
        let mut bytes = der.as_ref().to_vec();
        let at = bytes.len() / 3;
        bytes[at] ^= 0x01;
        use base64::Engine as _;
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        assert!(parse_csr(tampered.as_bytes()).is_err());
    }

    #[test]
    fn leaf_has_sentry_shape_and_never_outlives_the_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let (ca, _) = CaDir::new(dir.path()).load_or_init(now).unwrap();
        let key = parse_csr(csr(&PKCS_ED25519).as_bytes()).unwrap();
        let id = SpiffeId::new("public", "default", "orders");
        let signed = sign_workload(&ca, &key, &id, policy(), now).unwrap();
        let (_, leaf) = X509Certificate::from_der(&signed.leaf_der).unwrap();
        let san = leaf.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::URI("spiffe://public/ns/default/orders")]
        );
        let ku = leaf.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign());
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(!leaf.is_ca());
        let skew = leaf.validity().not_before.timestamp() - (now.unix_timestamp() - 900);
        assert!(skew.abs() <= 1, "not before is back-dated by the skew");
        let ttl = leaf.validity().not_after.timestamp() - (now.unix_timestamp() + 3600);
        assert!(ttl.abs() <= 1);

        let long = WorkloadPolicy {
            ttl: Duration::from_secs(2 * 365 * 24 * 3600),
            ..policy()
        };
        let capped = sign_workload(&ca, &key, &id, long, now).unwrap();
        assert_eq!(capped.not_after, ca.issuer_not_after());
    }
}
