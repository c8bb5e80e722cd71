//! Which app a proxied call is for, and the identity metadata each hop stamps on it.

use http::header::HeaderValue;
use http::HeaderMap;

use crate::invoke::headers::{CALLEE_APP_ID, CALLER_APP_ID, CALLER_NAMESPACE, DAPR_APP_ID};
use crate::resolve::AppTarget;

/// The API token the app presented to its sidecar; it is this sidecar's secret and never
/// travels further (daprd strips it after the check).
pub const API_TOKEN: &str = "dapr-api-token";

/// daprd's message when neither routing key is present (it answers `Unknown`).
pub const MISSING_TARGET: &str =
    "failed to proxy request: required metadata dapr-callee-app-id or dapr-app-id not found";

/// The target app named by the call's metadata: `dapr-callee-app-id` wins over `dapr-app-id`,
/// as in daprd. `appid.namespace` names another namespace.
pub fn target(headers: &HeaderMap, own_namespace: &str) -> Result<AppTarget, tonic::Status> {
    let raw = headers
        .get(CALLEE_APP_ID)
        .or_else(|| headers.get(DAPR_APP_ID))
        .ok_or_else(|| tonic::Status::unknown(MISSING_TARGET))?;
    let raw = raw
        .to_str()
        .map_err(|_| tonic::Status::unknown("failed to proxy request: app id is not ASCII"))?;
    let mut parts = raw.split('.');
    let app_id = parts.next().unwrap_or_default();
    let namespace = parts.next();
    if parts.next().is_some() || app_id.is_empty() || namespace == Some("") {
        return Err(tonic::Status::unknown(format!(
            "invalid app id {raw:?}: expected <app-id> or <app-id>.<namespace>"
        )));
    }
    Ok(AppTarget {
        app_id: app_id.to_owned(),
        namespace: namespace.unwrap_or(own_namespace).to_owned(),
    })
}

/// Caller side: who is calling whom, replacing whatever the app supplied.
pub fn stamp_caller(headers: &mut HeaderMap, app_id: &str, namespace: &str, callee: &str) {
    headers.remove(API_TOKEN);
    for (name, value) in [
        (CALLER_APP_ID, app_id),
        (CALLER_NAMESPACE, namespace),
        (CALLEE_APP_ID, callee),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
}

/// Callee side, before the app sees the call. Without mTLS there is no peer identity to check
/// the stamps against; a caller sidecar that appended its values after its app's keeps only the
/// last one, as daprd does. The app's own token (`APP_API_TOKEN`) replaces the caller's.
pub fn stamp_for_app(headers: &mut HeaderMap, app_token: Option<&HeaderValue>) {
    for name in [CALLER_APP_ID, CALLER_NAMESPACE, CALLEE_APP_ID] {
        if headers.get_all(name).iter().nth(1).is_some() {
            if let Some(last) = headers.get_all(name).iter().next_back().cloned() {
                headers.insert(name, last);
            }
        }
    }
    headers.remove(API_TOKEN);
    if let Some(token) = app_token {
        headers.insert(API_TOKEN, token.clone());
    }
}

/// The caller app id recorded in metrics on the callee side.
pub fn caller(headers: &HeaderMap) -> &str {
    headers
        .get(CALLER_APP_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn callee_app_id_wins_over_app_id() {
        let h = headers(&[(DAPR_APP_ID, "a"), (CALLEE_APP_ID, "b")]);
        assert_eq!(target(&h, "default").unwrap().app_id, "b");
        let h = headers(&[(DAPR_APP_ID, "a.prod")]);
        let t = target(&h, "default").unwrap();
        assert_eq!((t.app_id.as_str(), t.namespace.as_str()), ("a", "prod"));
    }

    #[test]
    fn missing_or_malformed_targets_are_unknown() {
        let err = target(&HeaderMap::new(), "default").unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unknown);
        assert_eq!(err.message(), MISSING_TARGET);
        for bad in ["", "a.b.c", "a."] {
            let h = headers(&[(DAPR_APP_ID, bad)]);
            assert_eq!(target(&h, "ns").unwrap_err().code(), tonic::Code::Unknown);
        }
    }

    #[test]
    fn caller_stamps_replace_the_apps_and_drop_the_token() {
        let mut h = headers(&[(CALLER_APP_ID, "spoofed"), (API_TOKEN, "secret")]);
        stamp_caller(&mut h, "me", "default", "you");
        assert_eq!(h.get_all(CALLER_APP_ID).iter().count(), 1);
        assert_eq!(h[CALLER_APP_ID], "me");
        assert_eq!(h[CALLER_NAMESPACE], "default");
        assert_eq!(h[CALLEE_APP_ID], "you");
        assert!(h.get(API_TOKEN).is_none());
    }

    #[test]
    fn app_sees_the_last_stamp_and_its_own_token() {
        let mut h = headers(&[
            (CALLER_APP_ID, "from-app"),
            (CALLER_APP_ID, "from-sidecar"),
            (API_TOKEN, "callers"),
        ]);
        stamp_for_app(&mut h, Some(&HeaderValue::from_static("apps")));
        assert_eq!(h.get_all(CALLER_APP_ID).iter().count(), 1);
        assert_eq!(h[CALLER_APP_ID], "from-sidecar");
        assert_eq!(h[API_TOKEN], "apps");
        stamp_for_app(&mut h, None);
        assert!(h.get(API_TOKEN).is_none());
    }
}
