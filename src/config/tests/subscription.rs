use std::time::Duration;

use super::super::*;
use super::{invalid_parts, load_text};
use crate::pubsub::routing::RuleSpec;

const V2: &str = "apiVersion: dapr.io/v2alpha1\nkind: Subscription\n";
const V1: &str = "apiVersion: dapr.io/v1alpha1\nkind: Subscription\n";

fn load_subs(text: &str) -> Result<Vec<Subscription>, ConfigError> {
    let (_dir, res) = load_text(text);
    res.map(|r| r.subscriptions)
}

/// The field and reason of the error loading `text`.
fn error_of(text: &str) -> (usize, String, String) {
    let err = load_subs(text).expect_err("should be refused");
    let (path, document, field, reason) = invalid_parts(err);
    assert!(path.ends_with("components.yaml"), "{path:?}");
    (document, field, reason)
}

#[test]
fn v2alpha1_with_every_field() {
    let subs = load_subs(&format!(
        "{V2}metadata:\n  name: s1\nspec:\n  pubsubname: pubsub\n  topic: orders\n  routes:\n    \
         rules:\n      - match: 'event.type == \"a\"'\n        path: /a\n      - match: \
         event.data.n > 1\n        path: /b\n    default: /orders\n  deadLetterTopic: poison\n  \
         metadata:\n    rawPayload: true\n    concurrency: 5\n  bulkSubscribe:\n    enabled: true\n    \
         maxMessagesCount: 10\n    maxAwaitDurationMs: 50\nscopes: [myapp, other]\n"
    ))
    .expect("load");
    assert_eq!(subs.len(), 1);
    let s = &subs[0];
    assert_eq!(
        (s.name.as_str(), s.pubsub_name.as_str(), s.topic.as_str()),
        ("s1", "pubsub", "orders")
    );
    assert_eq!(
        s.rules,
        vec![
            RuleSpec {
                match_expr: "event.type == \"a\"".into(),
                path: "/a".into()
            },
            RuleSpec {
                match_expr: "event.data.n > 1".into(),
                path: "/b".into()
            },
        ]
    );
    assert_eq!(s.default_route.as_deref(), Some("/orders"));
    assert_eq!(s.dead_letter_topic.as_deref(), Some("poison"));
    assert_eq!(s.metadata["rawPayload"], "true");
    assert_eq!(s.metadata["concurrency"], "5");
    assert_eq!(
        s.bulk_subscribe,
        BulkSubscribe {
            enabled: true,
            max_messages_count: 10,
            max_await: Duration::from_millis(50)
        }
    );
    assert_eq!(s.scopes, ["myapp", "other"]);
}

#[test]
fn v1alpha1_route_and_defaults() {
    let subs = load_subs(&format!(
        "{V1}metadata: {{name: s}}\nspec: {{pubsubname: p, topic: t, route: /t}}\n"
    ))
    .expect("load");
    let s = &subs[0];
    assert!(s.rules.is_empty());
    assert_eq!(s.default_route.as_deref(), Some("/t"));
    assert_eq!(s.dead_letter_topic, None);
    assert_eq!(s.bulk_subscribe, BulkSubscribe::default());
    assert_eq!(s.bulk_subscribe.max_messages_count, 100);
}

#[test]
fn scopes_keep_only_this_apps_subscriptions() {
    let doc = |name: &str, scopes: &str| {
        format!("{V1}metadata: {{name: {name}}}\nspec: {{pubsubname: p, topic: t, route: /t}}\n{scopes}")
    };
    let text = [
        doc("mine", "scopes: [myapp]\n"),
        doc("theirs", "scopes: [other]\n"),
        doc("everyone", ""),
    ]
    .join("---\n");
    let subs = load_subs(&text).expect("load");
    let names: Vec<_> = subs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["mine", "everyone"]);
}

#[test]
fn errors_name_document_and_field() {
    let ok = format!("{V1}metadata: {{name: ok}}\nspec: {{pubsubname: p, topic: t, route: /t}}\n");
    let cases: &[(&str, &str, &str)] = &[
        (
            "metadata: {name: s}\nspec: {pubsubname: p, topic: t, routes: {rules: [{match: 'event.type ==', path: /a}]}}\n",
            "spec.routes.rules[0].match",
            "invalid CEL expression",
        ),
        (
            "metadata: {name: s}\nspec: {pubsubname: p, topic: t, routes: {rules: [{match: 'true', path: ''}]}}\n",
            "spec.routes.rules[0].path",
            "non-empty path",
        ),
        (
            "metadata: {name: s}\nspec: {pubsubname: p, topic: t}\n",
            "spec.routes.default",
            "no route",
        ),
        (
            "metadata: {name: s}\nspec: {pubsubname: p, topic: t, route: /x}\n",
            "spec.route",
            "unknown field `route`",
        ),
        (
            "metadata: {name: s}\nspec: {pubsubname: p, topic: '', routes: {default: /d}}\n",
            "spec.topic",
            "empty",
        ),
        (
            "metadata: {name: s}\nspec: {pubsubname: p, topic: t, routes: {default: /d}, bulkSubscribe: {maxMessagesCount: -1}}\n",
            "spec.bulkSubscribe.maxMessagesCount",
            "positive",
        ),
        (
            "metadata: {name: s}\nspec: {pubsubname: p, topic: t, routes: {default: /d}, deadLeterTopic: x}\n",
            "spec.deadLeterTopic",
            "unknown field `deadLeterTopic`",
        ),
        (
            "metadata: {name: ''}\nspec: {pubsubname: p, topic: t, routes: {default: /d}}\n",
            "metadata.name",
            "non-empty",
        ),
    ];
    for (body, field, reason) in cases {
        // The broken document is the second one, so the index in the error is checked too.
        let (document, got_field, got_reason) = error_of(&format!("{ok}---\n{V2}{body}"));
        assert_eq!(document, 1, "{body}");
        assert_eq!(&got_field, field, "{body}: {got_reason}");
        assert!(got_reason.contains(reason), "{body}: {got_reason}");
    }
    // v1alpha1 refuses the v2alpha1 field.
    let (_, field, reason) = error_of(&format!(
        "{V1}metadata: {{name: s}}\nspec: {{pubsubname: p, topic: t, routes: {{default: /d}}}}\n"
    ));
    assert_eq!(field, "spec.routes");
    assert!(reason.contains("unknown field `routes`"), "{reason}");
}

#[test]
fn unknown_subscription_version_is_skipped_like_other_kinds() {
    let subs = load_subs("apiVersion: dapr.io/v3\nkind: Subscription\nmetadata: {name: s}\n")
        .expect("load");
    assert!(subs.is_empty());
}
