//! Issuer keys as operators have them: PKCS#8 (`PRIVATE KEY`, what we write), SEC1
//! (`EC PRIVATE KEY`, what Go's `x509.MarshalECPrivateKey`, `openssl ecparam -genkey` and many
//! existing Dapr installations write) or PKCS#1 (`RSA PRIVATE KEY`). rcgen signs from PKCS#8 only,
//! so the other two are wrapped, unchanged, in a PKCS#8 envelope naming their algorithm.

use pkcs8::der::asn1::{AnyRef, ObjectIdentifier};
use pkcs8::der::Encode as _;
use pkcs8::{AlgorithmIdentifierRef, PrivateKeyInfo};
use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sec1::{EcParameters, EcPrivateKey};

/// id-ecPublicKey (RFC 5480).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// rsaEncryption (RFC 8017).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// The named curves, for a SEC1 key that leaves its curve out (then its length tells).
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no private key in PEM: {0}")]
    Pem(String),
    #[error("malformed EC private key: {0}")]
    Sec1(String),
    #[error("the EC private key names no curve and its length fits none we know")]
    UnknownCurve,
    #[error("cannot re-encode the key as PKCS#8: {0}")]
    Encode(String),
    #[error(transparent)]
    Unusable(#[from] rcgen::Error),
}

/// Reads the first private key in `pem`, whichever of the three encodings it uses.
pub fn from_pem(pem: &str) -> Result<KeyPair, KeyError> {
    let key =
        PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| KeyError::Pem(e.to_string()))?;
    let pkcs8 = match &key {
        PrivateKeyDer::Pkcs8(der) => return Ok(KeyPair::try_from(der)?),
        PrivateKeyDer::Sec1(der) => sec1_to_pkcs8(der.secret_sec1_der())?,
        PrivateKeyDer::Pkcs1(der) => wrap(
            AlgorithmIdentifierRef {
                oid: RSA_ENCRYPTION,
                parameters: Some(AnyRef::NULL),
            },
            der.secret_pkcs1_der(),
        )?,
        _ => return Err(KeyError::Pem("unsupported private key type".to_owned())),
    };
    Ok(KeyPair::try_from(&PrivatePkcs8KeyDer::from(pkcs8))?)
}

fn sec1_to_pkcs8(der: &[u8]) -> Result<Vec<u8>, KeyError> {
    let key = EcPrivateKey::try_from(der).map_err(|e| KeyError::Sec1(e.to_string()))?;
    let curve = match key.parameters {
        Some(EcParameters::NamedCurve(oid)) => oid,
        None => match key.private_key.len() {
            32 => P256,
            48 => P384,
            _ => return Err(KeyError::UnknownCurve),
        },
    };
    wrap(
        AlgorithmIdentifierRef {
            oid: EC_PUBLIC_KEY,
            parameters: Some(AnyRef::from(&curve)),
        },
        der,
    )
}

fn wrap(algorithm: AlgorithmIdentifierRef<'_>, key: &[u8]) -> Result<Vec<u8>, KeyError> {
    PrivateKeyInfo::new(algorithm, key)
        .to_der()
        .map_err(|e| KeyError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData as _;

    /// The SEC1 form of a PKCS#8 EC key, with its curve named as Go and OpenSSL write it.
    fn as_sec1_pem(key: &KeyPair) -> String {
        let der = key.serialize_der();
        let info = PrivateKeyInfo::try_from(der.as_slice()).unwrap();
        let inner = EcPrivateKey::try_from(info.private_key).unwrap();
        let curve = info.algorithm.parameters_oid().unwrap();
        let named = EcPrivateKey {
            parameters: Some(EcParameters::NamedCurve(curve)),
            ..inner
        };
        let sec1 = named.to_der().unwrap();
        pem_block("EC PRIVATE KEY", &sec1)
    }

    fn pem_block(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn pkcs8_and_sec1_keys_load_as_the_same_key() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
        ] {
            let key = KeyPair::generate_for(alg).unwrap();
            let from_pkcs8 = from_pem(&key.serialize_pem()).unwrap();
            let from_sec1 = from_pem(&as_sec1_pem(&key)).unwrap();
            assert_eq!(
                from_pkcs8.subject_public_key_info(),
                key.subject_public_key_info()
            );
            assert_eq!(
                from_sec1.subject_public_key_info(),
                key.subject_public_key_info()
            );
        }
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(matches!(from_pem("not a key"), Err(KeyError::Pem(_))));
        let broken = pem_block("EC PRIVATE KEY", b"\x30\x03\x02\x01\x01");
        assert!(matches!(from_pem(&broken), Err(KeyError::Sec1(_))));
    }
}
