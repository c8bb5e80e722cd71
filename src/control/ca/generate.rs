//! New roots and issuers: ECDSA P-256 like Sentry's, valid for a year.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

/// Sentry's default root (and issuer) lifetime.
pub const ROOT_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Back-dating of CA certificates, so a machine whose clock is slightly behind accepts them.
const CA_BACKDATE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
#[error("generating a CA certificate: {0}")]
pub struct GenerateError(#[from] rcgen::Error);

/// A certificate (PEM) and its key.
pub(crate) struct Generated {
    pub cert_pem: String,
    pub key: KeyPair,
    pub params: CertificateParams,
}

/// A random positive serial of 128 bits, as RFC 5280 recommends (at least 64 bits of entropy).
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn ca_params(
    common_name: &str,
    path_len: BasicConstraints,
    now: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "outrigger");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(path_len);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    params.not_before = now - CA_BACKDATE;
    params.not_after = now + ROOT_TTL;
    params.use_authority_key_identifier_extension = true;
    params
}

/// A self-signed root. Its key is only needed to sign an issuer right away; like Sentry's, it is
/// not kept on disk.
pub(crate) fn root(now: OffsetDateTime) -> Result<Generated, GenerateError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    // The serial in the CN tells roots apart in `ca.crt` during a rotation.
    let serial = random_serial();
    let mut params = ca_params(
        &format!("outrigger root {}", hex_prefix(serial.as_ref())),
        BasicConstraints::Unconstrained,
        now,
    );
    params.serial_number = Some(serial);
    let cert = params.self_signed(&key)?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key,
        params,
    })
}

/// An issuer signed by `root`, expiring with it.
pub(crate) fn issuer(root: &Generated, now: OffsetDateTime) -> Result<Generated, GenerateError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = ca_params("outrigger issuer", BasicConstraints::Constrained(0), now);
    params.not_after = root.params.not_after;
    let signer = Issuer::from_params(&root.params, &root.key);
    let cert = params.signed_by(&key, &signer)?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key,
        params,
    })
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(4).map(|b| format!("{b:02x}")).collect()
}
