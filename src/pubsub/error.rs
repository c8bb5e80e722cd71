/// What a broker reports.
#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    /// The component's metadata cannot work (missing `redisHost`, bad duration...).
    #[error("invalid pubsub metadata: {0}")]
    Config(String),
    /// The broker failed or could not be reached in time.
    #[error("{0}")]
    Backend(String),
    #[error("{0} is not supported by this pubsub")]
    NotSupported(&'static str),
}
