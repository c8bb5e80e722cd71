//! [`StatesError`] as daprd answers it over HTTP: status, `errorCode`, and for the errors daprd
//! builds with dapr/kit (`pkg/api/errors/state.go`) the same `details`.

use std::collections::BTreeMap;

use http::StatusCode;

use super::super::error::{ApiError, ErrorDetail};
use crate::state::{StateError, StatesError};

const HELP_URL: &str =
    "https://docs.dapr.io/reference/components-reference/supported-state-stores/";
const HELP_TEXT: &str = "Check the list of state stores and the features they support";

pub(in crate::api) fn api_error(err: StatesError) -> ApiError {
    let message = err.to_string();
    let status_for = |source: &StateError| match source {
        StateError::EtagMismatch(_) => StatusCode::CONFLICT,
        StateError::EtagInvalid(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    match err {
        StatesError::NotConfigured { app_id, .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_STORE_NOT_CONFIGURED",
            message,
        )
        .with_details(vec![error_info("NOT_CONFIGURED", app_metadata(app_id))]),
        StatesError::NotFound { app_id, .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_STATE_STORE_NOT_FOUND",
            message,
        )
        .with_details(vec![error_info("NOT_FOUND", app_metadata(app_id))]),
        StatesError::IllegalKey { store, key } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            message.clone(),
        )
        .with_details(vec![
            ErrorDetail::BadRequest {
                field_violations: vec![(key, message)],
            },
            resource_info(store),
            error_info("ILLEGAL_KEY", None),
        ]),
        StatesError::EmptyKey => ApiError::malformed_request(message),
        StatesError::TransactionsNotSupported { store } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_STORE_NOT_SUPPORTED",
            message,
        )
        .with_details(vec![
            ErrorDetail::Help {
                links: vec![(HELP_URL.to_owned(), HELP_TEXT.to_owned())],
            },
            resource_info(store),
            error_info("TRANSACTIONS_NOT_SUPPORTED", None),
        ]),
        StatesError::QueryNotSupported { store } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_STORE_NOT_SUPPORTED",
            message,
        )
        .with_details(vec![
            resource_info(store),
            error_info("QUERYING_NOT_SUPPORTED", None),
        ]),
        StatesError::TooManyOperations { store, count, max } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS",
            message,
        )
        .with_details(vec![
            resource_info(store),
            error_info(
                "TOO_MANY_TRANSACTIONS",
                Some(BTreeMap::from([
                    ("currentOpsTransaction".to_owned(), count.to_string()),
                    ("maxOpsPerTransaction".to_owned(), max.to_string()),
                ])),
            ),
        ]),
        StatesError::UnsupportedOperation(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_NOT_SUPPORTED_STATE_OPERATION",
            message,
        ),
        StatesError::Get { .. } => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "ERR_STATE_GET", message)
        }
        StatesError::Save { ref source, .. } => {
            ApiError::new(status_for(source), "ERR_STATE_SAVE", message)
        }
        StatesError::Delete { ref source, .. } => {
            ApiError::new(status_for(source), "ERR_STATE_DELETE", message)
        }
        StatesError::Transaction { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_TRANSACTION",
            message,
        ),
        StatesError::QueryFailed { store, .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_QUERY",
            message,
        )
        .with_details(vec![resource_info(store), error_info("QUERY_FAILED", None)]),
    }
}

/// dapr/kit's `ErrorInfo` with the state store reason prefix.
fn error_info(reason: &str, metadata: Option<BTreeMap<String, String>>) -> ErrorDetail {
    ErrorDetail::ErrorInfo {
        reason: format!("DAPR_STATE_{reason}"),
        metadata,
    }
}

/// daprd adds `{"appID": ...}` only when it has an app id; otherwise the map is nil.
fn app_metadata(app_id: String) -> Option<BTreeMap<String, String>> {
    (!app_id.is_empty()).then(|| BTreeMap::from([("appID".to_owned(), app_id)]))
}

fn resource_info(store: String) -> ErrorDetail {
    ErrorDetail::ResourceInfo {
        resource_type: "state".to_owned(),
        resource_name: store,
        owner: String::new(),
        description: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_failures_pick_the_status() {
        let save = |source| StatesError::Save {
            store: "s".into(),
            source,
        };
        let mismatch = api_error(save(StateError::EtagMismatch("x".into())));
        assert_eq!(
            (mismatch.status, mismatch.code),
            (StatusCode::CONFLICT, "ERR_STATE_SAVE")
        );
        assert_eq!(
            mismatch.message,
            "failed saving state in state store s: possible etag mismatch. error from state store: x"
        );
        assert!(mismatch.details.is_empty(), "legacy shape");
        let invalid = api_error(save(StateError::EtagInvalid("x".into())));
        assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
        let other = api_error(save(StateError::Backend("down".into())));
        assert_eq!(other.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn illegal_key_is_rich() {
        let err = api_error(StatesError::IllegalKey {
            store: "s".into(),
            key: "a||b".into(),
        });
        let body: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
        assert_eq!(body["errorCode"], "ERR_MALFORMED_REQUEST");
        assert_eq!(body["details"][0]["field_violations"][0]["field"], "a||b");
        assert_eq!(body["details"][1]["resource_name"], "s");
        assert_eq!(body["details"][2]["reason"], "DAPR_STATE_ILLEGAL_KEY");
    }
}
