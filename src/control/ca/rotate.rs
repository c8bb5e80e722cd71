//! Root rotation in three steps, each a small change of files that a running `outrigger-control`
//! picks up by itself (see [`super::watch`]):
//!
//! 1. [`RotationStep::AddRoot`]: a new root joins `ca.crt` and an issuer under it is prepared as
//!    `next-issuer.*`. Issuance is unchanged; sidecars learn to trust the new root.
//! 2. [`RotationStep::UseRoot`]: the prepared issuer replaces `issuer.*`; new leaves chain to the
//!    new root, old leaves still verify against the old one.
//! 3. [`RotationStep::DropRoot`]: roots that did not sign the current issuer leave `ca.crt`, once
//!    every leaf from the old issuer has expired (one workload TTL after step 2).

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

use super::files::{
    CaDir, FilesError, CA_FILE, ISSUER_CERT_FILE, ISSUER_KEY_FILE, NEXT_ISSUER_CERT_FILE,
    NEXT_ISSUER_KEY_FILE,
};
use super::generate;
use super::material::{to_pem, CaMaterial, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStep {
    AddRoot,
    UseRoot,
    DropRoot,
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("a rotation is already prepared ({0} exists); run `use-root` or remove next-issuer.*")]
    AlreadyPrepared(&'static str),
    #[error("nothing to use: run `add-root` first ({0} is missing)")]
    NotPrepared(&'static str),
    #[error("the bundle holds only the roots the issuer needs; nothing to drop")]
    NothingToDrop,
}

/// What a step changed, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    pub roots_before: usize,
    pub roots_after: usize,
}

impl CaDir {
    /// Runs one rotation step on the files.
    pub fn rotate(
        &self,
        step: RotationStep,
        now: OffsetDateTime,
    ) -> Result<RotationReport, RotateError> {
        match step {
            RotationStep::AddRoot => self.add_root(now),
            RotationStep::UseRoot => self.use_root(),
            RotationStep::DropRoot => self.drop_root(),
        }
    }

    fn refuse_if_prepared(&self) -> Result<(), RotateError> {
        for name in [NEXT_ISSUER_CERT_FILE, NEXT_ISSUER_KEY_FILE] {
            if self.exists(name) {
                return Err(RotateError::AlreadyPrepared(name));
            }
        }
        Ok(())
    }

    fn add_root(&self, now: OffsetDateTime) -> Result<RotationReport, RotateError> {
        self.refuse_if_prepared()?;
        let current = self.load()?;
        let root = generate::root(now).map_err(FilesError::from)?;
        let issuer = generate::issuer(&root, now).map_err(FilesError::from)?;
        self.write_atomic(
            NEXT_ISSUER_KEY_FILE,
            issuer.key.serialize_pem().as_bytes(),
            true,
        )?;
        self.write_atomic(NEXT_ISSUER_CERT_FILE, issuer.cert_pem.as_bytes(), false)?;
        let mut bundle = current.source.ca.clone();
        if !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
        bundle.extend_from_slice(root.cert_pem.as_bytes());
        self.write_atomic(CA_FILE, &bundle, false)?;
        Ok(RotationReport {
            roots_before: current.roots().len(),
            roots_after: current.roots().len() + 1,
        })
    }

    fn use_root(&self) -> Result<RotationReport, RotateError> {
        for name in [NEXT_ISSUER_CERT_FILE, NEXT_ISSUER_KEY_FILE] {
            if !self.exists(name) {
                return Err(RotateError::NotPrepared(name));
            }
        }
        // Validate the prepared issuer against the current bundle before anything moves.
        let prepared = CaMaterial::from_source(Source {
            ca: self.read(CA_FILE)?,
            issuer_cert: self.read(NEXT_ISSUER_CERT_FILE)?,
            issuer_key: self.read(NEXT_ISSUER_KEY_FILE)?,
        })
        .map_err(FilesError::from)?;
        // Key first: until the certificate follows, the pair does not match and the watcher
        // keeps serving the previous issuer rather than a mix.
        self.rename(NEXT_ISSUER_KEY_FILE, ISSUER_KEY_FILE)?;
        self.rename(NEXT_ISSUER_CERT_FILE, ISSUER_CERT_FILE)?;
        let roots = prepared.roots().len();
        Ok(RotationReport {
            roots_before: roots,
            roots_after: roots,
        })
    }

    fn drop_root(&self) -> Result<RotationReport, RotateError> {
        self.refuse_if_prepared()?;
        let current = self.load()?;
        let top = current
            .issuer_chain()
            .last()
            .and_then(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c));
        let keep: Vec<_> = current
            .roots()
            .iter()
            .filter(|root| {
                let Ok((_, root)) = X509Certificate::from_der(root) else {
                    return false;
                };
                top.as_ref()
                    .is_some_and(|top| top.verify_signature(Some(root.public_key())).is_ok())
            })
            .collect();
        if keep.len() == current.roots().len() {
            return Err(RotateError::NothingToDrop);
        }
        let bundle: String = keep.iter().map(|der| to_pem(der)).collect();
        self.write_atomic(CA_FILE, bundle.as_bytes(), false)?;
        Ok(RotationReport {
            roots_before: current.roots().len(),
            roots_after: keep.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_steps_move_issuance_to_a_new_root() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaDir::new(dir.path().join("ca"));
        let now = OffsetDateTime::now_utc();
        let (first, _) = ca.load_or_init(now).unwrap();
        let old_root = first.roots()[0].clone();

        assert!(matches!(
            ca.rotate(RotationStep::UseRoot, now),
            Err(RotateError::NotPrepared(_))
        ));
        assert!(matches!(
            ca.rotate(RotationStep::DropRoot, now),
            Err(RotateError::NothingToDrop)
        ));

        let added = ca.rotate(RotationStep::AddRoot, now).unwrap();
        assert_eq!((added.roots_before, added.roots_after), (1, 2));
        let both = ca.load().unwrap();
        assert_eq!(both.roots().len(), 2);
        assert_eq!(
            both.issuer_chain(),
            first.issuer_chain(),
            "issuance unchanged"
        );
        assert!(matches!(
            ca.rotate(RotationStep::AddRoot, now),
            Err(RotateError::AlreadyPrepared(_))
        ));

        ca.rotate(RotationStep::UseRoot, now).unwrap();
        let switched = ca.load().unwrap();
        assert_ne!(switched.issuer_chain(), first.issuer_chain());
        assert_eq!(switched.roots().len(), 2);

        let dropped = ca.rotate(RotationStep::DropRoot, now).unwrap();
        assert_eq!((dropped.roots_before, dropped.roots_after), (2, 1));
        let last = ca.load().unwrap();
        assert_eq!(last.roots().len(), 1);
        assert_ne!(last.roots()[0], old_root);
    }
}
