use serde_json::json;

use super::*;

fn rule(m: &str, path: &str) -> RuleSpec {
    RuleSpec {
        match_expr: m.to_owned(),
        path: path.to_owned(),
    }
}

/// Routes with one rule `m` -> `/hit` and a default `/default`.
fn with_default(m: &str) -> Routes {
    Routes::compile(&[rule(m, "/hit")], Some("/default"), None).expect("compile")
}

fn event() -> serde_json::Value {
    json!({
        "id": "1", "type": "order.created", "source": "shop", "specversion": "1.0",
        "data": { "amount": 150, "price": 9.5, "customer": "alice-smith", "tags": ["a"] }
    })
}

fn routed(m: &str) -> String {
    with_default(m)
        .route(&event())
        .expect("evaluate")
        .expect("some route")
        .to_owned()
}

#[test]
fn every_supported_form_evaluates() {
    let hits = [
        r#"event.type == "order.created""#,
        "event.data.amount > 100",
        "event.data.amount == 150",
        "event.data.price < 10.0",
        "event.data.price > 9",
        r#"event.type == "order.created" && event.data.amount > 100"#,
        r#"event.type == "nope" || event.data.amount >= 150"#,
        r#"!(event.type == "nope")"#,
        r#"event.type.startsWith("order.")"#,
        r#"event.type.endsWith(".created")"#,
        r#"event.data.customer.contains("smith")"#,
        "has(event.data.amount)",
        "!has(event.data.missing)",
        r#"has(event.data.amount) && event.data.amount != 1"#,
    ];
    for m in hits {
        assert_eq!(routed(m), "/hit", "`{m}` should match");
    }
    let misses = [
        r#"event.type == "x""#,
        "event.data.amount > 1000",
        r#"event.type.startsWith("ship")"#,
        "has(event.data.missing)",
        r#"!event.type.endsWith("created")"#,
    ];
    for m in misses {
        assert_eq!(routed(m), "/default", "`{m}` should not match");
    }
}

#[test]
fn first_true_rule_wins_in_order() {
    let routes = Routes::compile(
        &[
            rule("event.data.amount > 1000", "/big"),
            rule("event.data.amount > 100", "/medium"),
            rule("event.data.amount > 10", "/small"),
        ],
        None,
        None,
    )
    .expect("compile");
    assert_eq!(routes.route(&event()).expect("eval"), Some("/medium"));
    assert_eq!(
        routes.paths().collect::<Vec<_>>(),
        ["/big", "/medium", "/small"]
    );
}

#[test]
fn no_match_without_default_is_none() {
    let routes = Routes::compile(&[rule(r#"event.type == "x""#, "/x")], None, None).expect("c");
    assert_eq!(routes.route(&event()).expect("eval"), None);
}

#[test]
fn default_wins_over_legacy_route_and_legacy_is_the_fallback() {
    let both = Routes::compile(&[], Some("/d"), Some("/legacy")).expect("c");
    assert_eq!(both.paths().collect::<Vec<_>>(), ["/d"]);
    let legacy = Routes::compile(&[], Some(""), Some("/legacy")).expect("c");
    assert_eq!(legacy.route(&event()).expect("e"), Some("/legacy"));
    assert!(Routes::compile(&[], None, None).expect("c").is_empty());
}

#[test]
fn empty_match_is_a_catch_all_rule() {
    let routes =
        Routes::compile(&[rule("", "/all"), rule("true", "/never")], None, None).expect("compile");
    assert_eq!(routes.route(&event()).expect("e"), Some("/all"));
}

#[test]
fn invalid_expressions_are_clear_errors() {
    for bad in [
        "event.type ==",
        "event.type == \"unterminated",
        "&& true",
        "event.data.amount > > 1",
    ] {
        let err =
            Routes::compile(&[rule("true", "/a"), rule(bad, "/b")], None, None).expect_err(bad);
        match &err {
            RoutingError::InvalidExpression { rule, expr, .. } => {
                assert_eq!((*rule, expr.as_str()), (1, bad.trim()));
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(err.to_string().contains("routes.rules[1].match"), "{err}");
    }
}

#[test]
fn empty_path_is_refused() {
    let err = Routes::compile(&[rule("true", "")], None, None).expect_err("empty path");
    assert_eq!(err, RoutingError::EmptyPath { rule: 0 });
}

#[test]
fn evaluation_errors_and_non_bool_results_are_errors() {
    // Missing field without has(): daprd's CEL fails, and the message is redelivered.
    let missing = with_default("event.data.missing > 1");
    assert!(matches!(
        missing.route(&event()),
        Err(RoutingError::Evaluation { .. })
    ));
    let not_bool = with_default("event.data.amount + 1");
    assert!(matches!(
        not_bool.route(&event()),
        Err(RoutingError::Evaluation { .. })
    ));
}
