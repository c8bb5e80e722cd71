use std::path::PathBuf;

use super::ComponentSource;

/// Why the resources could not be loaded. Each variant names the file and, where there is one,
/// the document index and field path, so the user knows what to fix. Document indexes are
/// 0-based (the first document of a file is document 0) and the messages say so.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not valid YAML. `line` and `column` are 1-based and count from the start of
    /// the file.
    #[error(
        "{path}: document {document} (0-based): YAML syntax error at line {line}, column {column}: \
         {reason}"
    )]
    Syntax {
        path: PathBuf,
        document: usize,
        line: usize,
        column: usize,
        reason: String,
    },
    /// A well-formed document that Dapr (or Outrigger) would not accept. `field` is a path such
    /// as `spec.metadata[2].value`.
    #[error("{path}: document {document} (0-based): field `{field}`: {reason}")]
    Invalid {
        path: PathBuf,
        document: usize,
        field: String,
        reason: String,
    },
    #[error(
        "component name `{name}` is defined twice, in {first} and in {second}: component names \
         must be unique across all resources paths; rename or remove one"
    )]
    DuplicateComponent {
        name: String,
        first: ComponentSource,
        second: ComponentSource,
    },
}
