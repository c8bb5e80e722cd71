//! What the TLS configs present and trust right now: the workload certificate (SVID) and the
//! trust bundle, behind one `ArcSwap`. Rotation and new anchors swap it whole; every handshake
//! loads it once, so connections already established carry on untouched.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::spiffe::{self, SpiffeId};
use super::IdentityError;

/// A workload certificate with its key and what we read from it.
#[derive(Debug)]
pub struct Svid {
    pub key: Arc<CertifiedKey>,
    pub id: SpiffeId,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The leaf's serial number, big-endian, as encoded.
    pub serial: Vec<u8>,
}

impl Svid {
    /// Reads validity, serial and SPIFFE ID from the leaf of `key`'s chain.
    pub fn new(key: CertifiedKey) -> Result<Self, IdentityError> {
        let leaf = key
            .cert
            .first()
            .ok_or_else(|| IdentityError::BadCertificate("empty certificate chain".into()))?;
        let (_, cert) = X509Certificate::from_der(leaf)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let validity = cert.validity();
        let not_before = unix_to_system(validity.not_before.timestamp());
        let not_after = unix_to_system(validity.not_after.timestamp());
        let serial = cert.raw_serial().to_vec();
        let id = spiffe::id_of(leaf).ok_or_else(|| {
            IdentityError::BadCertificate("the certificate carries no Dapr SPIFFE ID".into())
        })?;
        Ok(Self {
            key: Arc::new(key),
            id,
            not_before,
            not_after,
            serial,
        })
    }

    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.not_after
    }

    /// daprd's renewal point: half of the validity window (NotBefore is back-dated by the CA's
    /// clock skew allowance, so this lands a little before half the TTL after issuance).
    pub fn renewal_time(&self) -> SystemTime {
        let window = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + window / 2
    }

    pub fn window(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }
}

fn unix_to_system(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// The trust anchors, ready for both directions of verification.
pub struct TrustBundle {
    pub roots: Arc<RootCertStore>,
    pub client_verifier: Arc<dyn ClientCertVerifier>,
    /// The PEM as read, to tell a changed file from a touched one.
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBundle")
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl TrustBundle {
    /// Parses one or more PEM `CERTIFICATE` blocks. An empty bundle is refused: it would lock
    /// every peer out.
    pub fn from_pem(pem: &[u8]) -> Result<Self, IdentityError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| IdentityError::TrustAnchors(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| IdentityError::TrustAnchors(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(IdentityError::TrustAnchors(
                "no PEM CERTIFICATE block found".into(),
            ));
        }
        let roots = Arc::new(roots);
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), super::tls::provider())
                .build()
                .map_err(|e| IdentityError::TrustAnchors(e.to_string()))?;
        Ok(Self {
            roots,
            client_verifier,
            pem: pem.to_vec(),
        })
    }
}

/// One consistent view: the certificate we present (if any is valid) and the anchors we trust.
#[derive(Debug)]
pub struct Material {
    pub svid: Option<Arc<Svid>>,
    pub trust: Arc<TrustBundle>,
}

/// The swap point shared by the TLS configs, the renewal loop and the anchors watcher.
#[derive(Debug)]
pub struct MaterialStore(ArcSwap<Material>);

impl MaterialStore {
    pub fn new(trust: TrustBundle) -> Self {
        Self(ArcSwap::from_pointee(Material {
            svid: None,
            trust: Arc::new(trust),
        }))
    }

    pub fn load(&self) -> Arc<Material> {
        self.0.load_full()
    }

    pub fn set_svid(&self, svid: Option<Arc<Svid>>) {
        self.0.rcu(|m| Material {
            svid: svid.clone(),
            trust: m.trust.clone(),
        });
    }

    pub fn set_trust(&self, trust: TrustBundle) {
        let trust = Arc::new(trust);
        self.0.rcu(|m| Material {
            svid: m.svid.clone(),
            trust: trust.clone(),
        });
    }

    /// The certificate to present now: never an expired one.
    pub fn current_key(&self) -> Option<Arc<CertifiedKey>> {
        let material = self.0.load();
        let svid = material.svid.as_ref()?;
        let now = UnixTime::now();
        let now = UNIX_EPOCH + Duration::from_secs(now.as_secs());
        (!svid.is_expired(now)).then(|| svid.key.clone())
    }
}
