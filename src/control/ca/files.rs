//! The CA directory: file names as Dapr lays them out, atomic writes, key files 0600.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::generate::{self, GenerateError};
use super::material::{CaMaterial, MaterialError, Source};

/// The trust bundle: one or more root certificates.
pub const CA_FILE: &str = "ca.crt";
/// The certificate that signs workload certificates (plus intermediates above it, if any).
pub const ISSUER_CERT_FILE: &str = "issuer.crt";
/// The issuer's private key (PKCS#8 PEM).
pub const ISSUER_KEY_FILE: &str = "issuer.key";
/// A prepared issuer under a newly added root, waiting for `use-root`.
pub const NEXT_ISSUER_CERT_FILE: &str = "next-issuer.crt";
/// The prepared issuer's key.
pub const NEXT_ISSUER_KEY_FILE: &str = "next-issuer.key";

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{dir}: found {present:?} but not {missing:?}; refusing to overwrite a partial CA")]
    Partial {
        dir: PathBuf,
        present: Vec<&'static str>,
        missing: Vec<&'static str>,
    },
    #[error(transparent)]
    Material(#[from] MaterialError),
    #[error(transparent)]
    Generate(#[from] GenerateError),
}

/// A CA directory on disk.
#[derive(Debug, Clone)]
pub struct CaDir {
    path: PathBuf,
}

/// How [`CaDir::load_or_init`] found the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Loaded,
    Generated,
}

impl CaDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub(crate) fn read(&self, name: &'static str) -> Result<Vec<u8>, FilesError> {
        let path = self.file(name);
        fs::read(&path).map_err(|source| FilesError::Io {
            action: "reading",
            path,
            source,
        })
    }

    pub(crate) fn read_source(&self) -> Result<Source, FilesError> {
        Ok(Source {
            ca: self.read(CA_FILE)?,
            issuer_cert: self.read(ISSUER_CERT_FILE)?,
            issuer_key: self.read(ISSUER_KEY_FILE)?,
        })
    }

    /// Reads and validates the current files.
    pub fn load(&self) -> Result<CaMaterial, FilesError> {
        Ok(CaMaterial::from_source(self.read_source()?)?)
    }

    /// Loads the CA, or creates a root and an issuer when the directory holds none of the files.
    pub fn load_or_init(&self, now: OffsetDateTime) -> Result<(CaMaterial, Origin), FilesError> {
        let names = [CA_FILE, ISSUER_CERT_FILE, ISSUER_KEY_FILE];
        let (present, missing): (Vec<_>, Vec<_>) =
            names.into_iter().partition(|n| self.file(n).exists());
        if missing.is_empty() {
            return Ok((self.load()?, Origin::Loaded));
        }
        if !present.is_empty() {
            return Err(FilesError::Partial {
                dir: self.path.clone(),
                present,
                missing,
            });
        }
        self.create_dir()?;
        let root = generate::root(now)?;
        let issuer = generate::issuer(&root, now)?;
        // The bundle goes last: a reader that sees it sees the issuer it vouches for.
        self.write_atomic(ISSUER_KEY_FILE, issuer.key.serialize_pem().as_bytes(), true)?;
        self.write_atomic(ISSUER_CERT_FILE, issuer.cert_pem.as_bytes(), false)?;
        self.write_atomic(CA_FILE, root.cert_pem.as_bytes(), false)?;
        Ok((self.load()?, Origin::Generated))
    }

    fn create_dir(&self) -> Result<(), FilesError> {
        fs::create_dir_all(&self.path).map_err(|source| FilesError::Io {
            action: "creating",
            path: self.path.clone(),
            source,
        })?;
        // The directory holds private keys; nobody else needs to list it.
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700)).map_err(|source| {
            FilesError::Io {
                action: "restricting",
                path: self.path.clone(),
                source,
            }
        })
    }

    /// Writes through a temporary file in the same directory and renames it into place, so a
    /// reader (the watcher, a sidecar reading `ca.crt`) never sees a partial file. Key files are
    /// created 0600 from the start rather than narrowed afterwards.
    pub(crate) fn write_atomic(
        &self,
        name: &str,
        contents: &[u8],
        secret: bool,
    ) -> Result<(), FilesError> {
        let target = self.file(name);
        let tmp = self.file(&format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let io_err = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| FilesError::Io {
                action,
                path,
                source,
            }
        };
        let write = || -> io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(if secret { 0o600 } else { 0o644 })
                .open(&tmp)?;
            file.write_all(contents)?;
            file.sync_all()
        };
        if let Err(source) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("writing", &tmp)(source));
        }
        fs::rename(&tmp, &target).map_err(io_err("renaming into", &target))?;
        Ok(())
    }

    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<(), FilesError> {
        fs::rename(self.file(from), self.file(to)).map_err(|source| FilesError::Io {
            action: "renaming",
            path: self.file(from),
            source,
        })
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.file(name).exists()
    }
}
