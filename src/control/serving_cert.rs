//! The CA's own serving certificate: Sentry's SPIFFE ID, issued by the current issuer, renewed at
//! half its lifetime and whenever the issuer changes. Handshakes read it through arc-swap, so a
//! renewal only affects new connections.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::ca::{sign_key, CaMaterial, SignError, WorkloadPolicy};
use super::metrics::ControlMetrics;
use super::spiffe::SpiffeId;

/// Wait after a failed renewal (Sentry's sidecars retry every 10 s too).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// Never renew more often than this, however short the TTL.
const MIN_RENEW_INTERVAL: Duration = Duration::from_millis(500);
/// DNS names a client may dial the CA by, besides its SPIFFE ID.
const DNS_NAMES: [&str; 2] = ["localhost", "dapr-sentry"];

#[derive(Debug, thiserror::Error)]
pub enum ServingCertError {
    #[error("serving key: {0}")]
    Key(#[from] rcgen::Error),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("serving key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A certificate, and when to renew it.
struct Issued {
    key: Arc<CertifiedKey>,
    renew_at: OffsetDateTime,
}

fn issue(
    ca: &CaMaterial,
    id: &SpiffeId,
    policy: WorkloadPolicy,
) -> Result<Issued, ServingCertError> {
    let now = OffsetDateTime::now_utc();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let signed = sign_key(ca, &key, id, &DNS_NAMES, policy, now)?;
    let mut chain = Vec::with_capacity(1 + ca.issuer_chain().len());
    chain.push(CertificateDer::from(signed.leaf_der));
    chain.extend(ca.issuer_chain().iter().cloned());
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_supported_type(&private)?;
    // Half of the time from issuance, not from the back-dated NotBefore: with a short TTL and the
    // default 15m skew, the latter would already be in the past.
    let renew_at = now + (signed.not_after - now) / 2;
    Ok(Issued {
        key: Arc::new(CertifiedKey::new(chain, signing)),
        renew_at,
    })
}

#[derive(Debug)]
pub(crate) struct ServingCert {
    current: ArcSwap<CertifiedKey>,
    id: SpiffeId,
    policy: WorkloadPolicy,
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl ServingCert {
    pub(crate) fn new(
        ca: &CaMaterial,
        id: SpiffeId,
        policy: WorkloadPolicy,
    ) -> Result<(Arc<Self>, OffsetDateTime), ServingCertError> {
        let issued = issue(ca, &id, policy)?;
        let this = Arc::new(Self {
            current: ArcSwap::new(issued.key),
            id,
            policy,
        });
        Ok((this, issued.renew_at))
    }

    /// Renews at half-life and on every CA change until `stop` fires. Also keeps the CA expiry
    /// gauges current, since it is the one task that hears of every CA change.
    pub(crate) async fn keep_fresh(
        self: Arc<Self>,
        ca: Arc<ArcSwap<CaMaterial>>,
        mut generation: watch::Receiver<u64>,
        mut renew_at: OffsetDateTime,
        metrics: ControlMetrics,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let wait = (renew_at - OffsetDateTime::now_utc())
                .try_into()
                .unwrap_or(Duration::ZERO)
                .max(MIN_RENEW_INTERVAL);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = generation.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let material = ca.load();
                    metrics.ca_changed();
                    metrics.ca_loaded(material.issuer_not_after(), material.roots_not_after());
                }
                _ = stop.changed() => return,
            }
            match issue(&ca.load(), &self.id, self.policy) {
                Ok(issued) => {
                    self.current.store(issued.key);
                    renew_at = issued.renew_at;
                    tracing::debug!(id = %self.id, "renewed the serving certificate");
                }
                Err(error) => {
                    metrics.server_cert_failed();
                    tracing::error!(%error, "cannot renew the serving certificate; retrying");
                    renew_at = OffsetDateTime::now_utc() + RETRY_AFTER_FAILURE;
                }
            }
        }
    }
}
