/// What a store reports. The API layer maps each to daprd's error code and status.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The stored etag differs, or the item is missing while an etag was given (409 / Aborted).
    #[error("possible etag mismatch. error from state store: {0}")]
    EtagMismatch(String),
    /// The etag cannot be one this store issues (400 / InvalidArgument).
    #[error("invalid etag value: {0}")]
    EtagInvalid(String),
    #[error("{0} is not supported by this state store")]
    NotSupported(&'static str),
    /// Bad input the store cannot act on (an unparsable `ttlInSeconds`, a bad query).
    #[error("{0}")]
    InvalidRequest(String),
    /// The backend failed or timed out.
    #[error("{0}")]
    Backend(String),
}
