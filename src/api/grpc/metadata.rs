//! `GetMetadata`, `SetMetadata` and `Shutdown`: the same data and effects as
//! `GET/PUT /v1.0/metadata` and `POST /v1.0/shutdown`.

use super::super::metadata::{components, extended, set, RUNTIME_VERSION};
use super::super::ApiState;
use crate::lifecycle::StopKind;
use crate::proto::runtime::{
    actor_runtime::ActorRuntimeStatus, ActorRuntime, AppConnectionHealthProperties,
    AppConnectionProperties, GetMetadataResponse, PubsubSubscription, PubsubSubscriptionRule,
    PubsubSubscriptionRules, PubsubSubscriptionType, RegisteredComponents,
};
use crate::pubsub::subscriber::SubscriptionKind;

pub(super) fn get(api: &ApiState) -> GetMetadataResponse {
    let live = api.live.load();
    let registered_components = components(api, &live.resources.components)
        .into_iter()
        .map(|c| RegisteredComponents {
            name: c.name.to_owned(),
            r#type: c.type_name.to_owned(),
            version: c.version.to_owned(),
            capabilities: c.capabilities.iter().map(|s| (*s).to_owned()).collect(),
        })
        .collect();
    let app_subscriptions = api.app_subscriptions.load();
    let declared = app_subscriptions.iter().map(|s| PubsubSubscription {
        pubsub_name: s.pubsub_name.clone(),
        topic: s.topic.clone(),
        metadata: s.metadata.clone(),
        rules: Some(PubsubSubscriptionRules {
            rules: s
                .rules
                .iter()
                .map(|(m, p)| PubsubSubscriptionRule {
                    r#match: m.clone(),
                    path: p.clone(),
                })
                .collect(),
        }),
        dead_letter_topic: s.dead_letter_topic.clone().unwrap_or_default(),
        r#type: match s.kind {
            SubscriptionKind::Declarative => PubsubSubscriptionType::Declarative,
            SubscriptionKind::Programmatic => PubsubSubscriptionType::Programmatic,
        }
        .into(),
    });
    let subscriptions = declared
        .chain(
            api.streaming
                .list()
                .into_iter()
                .map(|s| PubsubSubscription {
                    pubsub_name: s.pubsub,
                    topic: s.topic,
                    metadata: s.metadata,
                    rules: None,
                    dead_letter_topic: s.dead_letter_topic.unwrap_or_default(),
                    r#type: PubsubSubscriptionType::Streaming.into(),
                }),
        )
        .collect();
    let app = &api.app_connection;
    GetMetadataResponse {
        id: api.app_id.clone(),
        registered_components,
        extended_metadata: extended(api).into_iter().collect(),
        subscriptions,
        app_connection_properties: Some(AppConnectionProperties {
            port: i32::from(app.port),
            protocol: app.protocol.clone(),
            channel_address: app.channel_address.clone(),
            max_concurrency: i32::try_from(app.max_concurrency).unwrap_or(i32::MAX),
            health: app.health.as_ref().map(|h| AppConnectionHealthProperties {
                health_check_path: h.health_check_path.clone(),
                health_probe_interval: h.health_probe_interval.clone(),
                health_probe_timeout: h.health_probe_timeout.clone(),
                health_threshold: i32::try_from(h.health_threshold).unwrap_or(i32::MAX),
            }),
        }),
        runtime_version: RUNTIME_VERSION.to_owned(),
        actor_runtime: Some(ActorRuntime {
            runtime_status: ActorRuntimeStatus::Disabled.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn set_metadata(api: &ApiState, key: String, value: String) {
    set(api, key, value);
}

/// As the HTTP shutdown: answered at once, the graceful stop runs in the background.
pub(super) fn shutdown(api: &ApiState) {
    tracing::info!("shutdown requested through the gRPC API");
    api.lifecycle.stop(StopKind::Graceful);
}
