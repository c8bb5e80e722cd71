//! Programmatic subscriptions: `GET /dapr/subscribe` on the app (daprd
//! `pkg/runtime/pubsub/subscriptions.go`). 200 = JSON array, 404 = none, anything else = error
//! logged and none.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::Value;

use super::plan::{Spec, SubscriptionKind};
use crate::app_channel::AppChannel;
use crate::config::subscription::{BulkSubscribeDoc, RoutesDoc};
use crate::invoke::Call;
use crate::pubsub::routing::RuleSpec;

/// daprd's `DaprBuiltInInitializationRetries` budget, for an app that just started listening.
const ATTEMPTS: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_millis(500);
const MAX_BODY: usize = 4 * 1024 * 1024;

/// One `/dapr/subscribe` item. Unknown fields are allowed: SDKs add their own.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    #[serde(rename = "pubsubname", alias = "pubsubName")]
    pubsub_name: String,
    topic: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    routes: Option<RoutesDoc>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    dead_letter_topic: Option<String>,
    #[serde(default)]
    bulk_subscribe: Option<BulkSubscribeDoc>,
}

/// Asks the app for its subscriptions. Never fails: daprd carries on without them.
pub(super) async fn discover(app: &AppChannel) -> Vec<Spec> {
    for attempt in 1..=ATTEMPTS {
        match fetch(app).await {
            Ok(specs) => return specs,
            Err(Fetch::Final(reason)) => {
                tracing::error!(%reason, "subscription discovery (GET /dapr/subscribe) failed");
                return Vec::new();
            }
            Err(Fetch::Transient(reason)) if attempt == ATTEMPTS => {
                tracing::error!(
                    %reason, attempts = ATTEMPTS,
                    "subscription discovery (GET /dapr/subscribe) failed"
                );
            }
            Err(Fetch::Transient(_)) => tokio::time::sleep(RETRY_DELAY).await,
        }
    }
    Vec::new()
}

enum Fetch {
    Transient(String),
    Final(String),
}

async fn fetch(app: &AppChannel) -> Result<Vec<Spec>, Fetch> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let call = Call {
        method: "dapr/subscribe".to_owned(),
        verb: Method::GET,
        query: String::new(),
        headers,
        body: Body::empty(),
    };
    let res = app
        .call(call)
        .await
        .map_err(|e| Fetch::Transient(e.to_string()))?;
    let status = res.status();
    let body = Limited::new(res.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| Fetch::Transient(format!("reading the answer: {e}")))?
        .to_bytes();
    if status == StatusCode::NOT_FOUND {
        tracing::debug!("the app has no /dapr/subscribe endpoint: no programmatic subscriptions");
        return Ok(Vec::new());
    }
    if status != StatusCode::OK {
        return Err(Fetch::Final(format!("the app answered {status}")));
    }
    let items: Vec<Value> = serde_json::from_slice(&body)
        .map_err(|e| Fetch::Final(format!("the answer is not a JSON array: {e}")))?;
    Ok(items.into_iter().enumerate().filter_map(to_spec).collect())
}

/// One item, or `None` (logged) when it cannot be used.
fn to_spec((index, value): (usize, Value)) -> Option<Spec> {
    let item: Item = match serde_json::from_value(value) {
        Ok(item) => item,
        Err(e) => {
            tracing::error!(index, error = %e, "ignoring an invalid /dapr/subscribe item");
            return None;
        }
    };
    let bulk = match item.bulk_subscribe.unwrap_or_default().resolve() {
        Ok(b) => b,
        Err((field, reason)) => {
            tracing::error!(index, field, %reason, "ignoring an invalid /dapr/subscribe item");
            return None;
        }
    };
    let routes = item.routes.unwrap_or_default();
    Some(Spec {
        origin: format!("/dapr/subscribe item {index}"),
        kind: SubscriptionKind::Programmatic,
        pubsub_name: item.pubsub_name,
        topic: item.topic,
        rules: routes
            .rules
            .into_iter()
            .map(|r| RuleSpec {
                match_expr: r.match_expr,
                path: r.path,
            })
            .collect(),
        default_route: routes.default,
        legacy_route: item.route,
        dead_letter_topic: item.dead_letter_topic,
        metadata: item.metadata.unwrap_or_default(),
        bulk,
        grpc_app: false,
    })
}
