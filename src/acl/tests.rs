use super::*;
use crate::config::access_control::{AppPolicy, OperationPolicy};

fn id(app: &str, ns: &str, td: &str) -> SpiffeId {
    SpiffeId {
        trust_domain: td.into(),
        namespace: ns.into(),
        app_id: app.into(),
    }
}

fn spec(default: Action, policy_default: Option<Action>) -> AccessControlSpec {
    AccessControlSpec {
        default_action: default,
        trust_domain: "public".into(),
        policies: vec![AppPolicy {
            app_id: "alpha".into(),
            trust_domain: "public".into(),
            namespace: "default".into(),
            default_action: policy_default,
            operations: vec![
                OperationPolicy {
                    name: "/op1".into(),
                    http_verbs: vec!["POST".into(), "GET".into()],
                    action: Action::Deny,
                },
                OperationPolicy {
                    name: "/op2/*".into(),
                    http_verbs: vec!["*".into()],
                    action: Action::Allow,
                },
            ],
        }],
    }
}

#[test]
fn policies_decide_for_their_caller_and_the_global_default_for_others() {
    let acl = AccessControl::new(&spec(Action::Deny, Some(Action::Allow)), AppKind::Http);
    let alpha = id("alpha", "default", "public");
    assert!(!acl.check(Some(&alpha), "op1", Some("GET")).allowed);
    assert!(acl.check(Some(&alpha), "op1", Some("PUT")).allowed);
    assert!(acl.check(Some(&alpha), "OP2/x", Some("DELETE")).allowed);
    assert!(acl.check(Some(&alpha), "other", Some("GET")).allowed);
    assert_eq!(
        acl.check(Some(&alpha), "other", Some("GET")).level,
        AclLevel::App
    );
    // Same app id in another trust domain or namespace, unknown apps, no identity: global deny.
    for caller in [
        Some(id("alpha", "default", "other")),
        Some(id("alpha", "prod", "public")),
        Some(id("gamma", "default", "public")),
        None,
    ] {
        let d = acl.check(caller.as_ref(), "op2/x", Some("GET"));
        assert!(!d.allowed, "{caller:?}");
        assert_eq!(d.level, AclLevel::Global);
    }
}

#[test]
fn grpc_apps_take_the_operation_action() {
    let acl = AccessControl::new(&spec(Action::Allow, None), AppKind::Grpc);
    let alpha = id("alpha", "default", "public");
    assert!(!acl.check(Some(&alpha), "op1", None).allowed);
    assert!(acl.check(Some(&alpha), "op2/a", None).allowed);
    assert!(acl.check(Some(&alpha), "op3", None).allowed);
}

#[test]
fn operations_are_normalized() {
    assert_eq!(normalize("op1"), "/op1");
    assert_eq!(normalize("//a/./b/../c/"), "/a/c");
    assert_eq!(normalize(""), "/");
}
