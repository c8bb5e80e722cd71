//! Opening the components of one building block, with daprd's `ignoreErrors` rule written once
//! for every block: a component that fails fails startup, naming itself, unless it sets
//! `ignoreErrors: true`, in which case it is logged and left out.

use std::collections::HashMap;
use std::future::Future;

use super::Component;

/// A component that failed to open (and does not set `ignoreErrors`).
#[derive(Debug, thiserror::Error)]
#[error("{kind} {name:?} ({type_name}, from {origin}) failed to initialize: {error}")]
pub struct InitError<E: std::error::Error + 'static> {
    /// What the block calls its components ("state store", "pubsub").
    pub kind: &'static str,
    pub name: String,
    pub type_name: String,
    pub origin: String,
    #[source]
    pub error: E,
}

/// Opens every component of `category` with `open`, keyed by component name.
pub async fn open_each<'a, T, E, F, Fut>(
    components: &'a [Component],
    category: &str,
    kind: &'static str,
    mut open: F,
) -> Result<HashMap<String, T>, InitError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut(&'a Component) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut opened = HashMap::new();
    for component in components.iter().filter(|c| c.category() == category) {
        match open(component).await {
            Ok(value) => {
                tracing::info!(component = %component.name, r#type = %component.type_name, "{kind} loaded");
                opened.insert(component.name.clone(), value);
            }
            Err(error) if component.ignore_errors => {
                tracing::warn!(component = %component.name, r#type = %component.type_name, %error, "{kind} failed to initialize; ignoring it because ignoreErrors is set");
            }
            Err(error) => {
                return Err(InitError {
                    kind,
                    name: component.name.clone(),
                    type_name: component.type_name.clone(),
                    origin: component.source.to_string(),
                    error,
                })
            }
        }
    }
    Ok(opened)
}
