//! [`PublishError`] as daprd answers it over HTTP: status, `errorCode` and the dapr/kit
//! `details` of `pkg/api/errors/pubsub.go`.

use std::collections::BTreeMap;

use http::StatusCode;

use super::super::error::{ApiError, ErrorDetail};
use crate::pubsub::PublishError;

pub(in crate::api) fn api_error(err: PublishError) -> ApiError {
    let message = err.to_string();
    match err {
        PublishError::NotConfigured { pubsub, app_id } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_PUBSUB_NOT_CONFIGURED",
            message,
        )
        .with_details(vec![
            error_info("NOT_CONFIGURED", meta(&[("appID", app_id)])),
            resource_info(pubsub),
        ]),
        PublishError::EmptyName { app_id } => {
            ApiError::new(StatusCode::NOT_FOUND, "ERR_PUBSUB_EMPTY", message).with_details(vec![
                error_info("NAME_EMPTY", meta(&[("appID", app_id)])),
                resource_info(String::new()),
            ])
        }
        // daprd adds no ResourceInfo for an unknown name.
        PublishError::NotFound { app_id, .. } => {
            ApiError::new(StatusCode::NOT_FOUND, "ERR_PUBSUB_NOT_FOUND", message)
                .with_details(vec![error_info("NOT_FOUND", meta(&[("appID", app_id)]))])
        }
        PublishError::EmptyTopic { pubsub } => {
            ApiError::new(StatusCode::NOT_FOUND, "ERR_TOPIC_NAME_EMPTY", message).with_details(
                vec![error_info("TOPIC_NAME_EMPTY", None), resource_info(pubsub)],
            )
        }
        PublishError::Forbidden {
            pubsub,
            topic,
            app_id,
        } => ApiError::new(StatusCode::FORBIDDEN, "ERR_PUBSUB_FORBIDDEN", message).with_details(
            vec![
                error_info("FORBIDDEN", meta(&[("appID", app_id), ("topic", topic)])),
                resource_info(pubsub),
            ],
        ),
        PublishError::Metadata { pubsub, .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_PUBSUB_REQUEST_METADATA",
            message,
        )
        .with_details(vec![
            error_info("METADATA_DESERIALIZATION", None),
            resource_info(pubsub),
        ]),
        PublishError::CloudEvent {
            pubsub,
            topic,
            reason,
        } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_PUBSUB_CLOUD_EVENTS_SER",
            message,
        )
        .with_details(vec![
            error_info(
                "CLOUD_EVENT_CREATION",
                meta(&[("topic", topic), ("error", reason)]),
            ),
            resource_info(pubsub),
        ]),
        PublishError::BulkEntries { pubsub, .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "ERR_PUBSUB_EVENTS_SER", message).with_details(
                vec![error_info("MARSHAL_EVENTS", None), resource_info(pubsub)],
            )
        }
        PublishError::Publish {
            pubsub,
            topic,
            source,
        } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_PUBSUB_PUBLISH_MESSAGE",
            message,
        )
        .with_details(vec![
            error_info(
                "PUBLISH_MESSAGE",
                meta(&[("topic", topic), ("error", source.to_string())]),
            ),
            resource_info(pubsub),
        ]),
        // Answered with the failed-entries body by the bulk handler; this is its fallback.
        PublishError::BulkFailed { pubsub, topic, .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_PUBSUB_PUBLISH_MESSAGE",
            message,
        )
        .with_details(vec![
            error_info("PUBLISH_MESSAGE", meta(&[("topic", topic)])),
            resource_info(pubsub),
        ]),
    }
}

/// A body that is not the bulk JSON array, or an event that does not fit its content type.
pub(super) fn events_ser(pubsub: &str, reason: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "ERR_PUBSUB_EVENTS_SER", message).with_details(vec![
        error_info(reason, None),
        resource_info(pubsub.to_owned()),
    ])
}

fn meta(pairs: &[(&str, String)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

fn error_info(reason: &str, metadata: Option<BTreeMap<String, String>>) -> ErrorDetail {
    ErrorDetail::ErrorInfo {
        reason: format!("DAPR_PUBSUB_{reason}"),
        metadata,
    }
}

fn resource_info(name: String) -> ErrorDetail {
    ErrorDetail::ResourceInfo {
        resource_type: "pubsub".into(),
        resource_name: name,
        owner: String::new(),
        description: String::new(),
    }
}
