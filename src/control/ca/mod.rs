//! The certificate authority, in Dapr's on-disk layout: `ca.crt` is the trust bundle (one or more
//! roots), `issuer.crt` + `issuer.key` the intermediate that signs workload certificates.
//!
//! [`CaMaterial`] is one validated snapshot of those files; [`CaDir`] creates, loads and rotates
//! them; [`watch`] swaps a new snapshot in when an operator (or `outrigger-control ca ...`)
//! changes the files; [`sign_workload`] turns a CSR into a workload certificate.

mod files;
mod generate;
mod key;
mod material;
mod rotate;
mod sign;
mod watch;

pub use files::{
    CaDir, FilesError, Origin, CA_FILE, ISSUER_CERT_FILE, ISSUER_KEY_FILE, NEXT_ISSUER_CERT_FILE,
    NEXT_ISSUER_KEY_FILE,
};
pub use generate::{GenerateError, ROOT_TTL};
pub use key::KeyError;
pub use material::{CaMaterial, MaterialError};
pub use rotate::{RotateError, RotationReport, RotationStep};
pub use sign::{
    parse_csr, sign_key, sign_workload, CsrError, SignError, SignedCert, WorkloadPolicy,
};
pub use watch::watch;
