use std::path::PathBuf;

/// Why the resources could not be loaded. Each variant names the file and, where there is one,
/// the document index and field path, so the user knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: document {document}: {field}: {reason}")]
    Invalid {
        path: PathBuf,
        document: usize,
        field: String,
        reason: String,
    },
}
