//! `/v1.0/invoke/<app>/method/<method>` and its two other addressing forms (`dapr-app-id` header,
//! Basic auth), translated into one [`Call`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::StatusCode;
use percent_encoding::percent_decode_str;

use super::error::ApiError;
use super::ApiState;
use crate::app_channel::AppChannelError;
use crate::http_path::clean_method;
use crate::invoke::headers::{strip_hop_by_hop, DAPR_APP_ID};
use crate::invoke::{Call, InvokeError};
use crate::resolve::AppTarget;

const INVOKE_PREFIX: &str = "/v1.0/invoke/";

/// Where the target came from; the Basic form's `Authorization` header is ours, not the app's.
#[derive(Debug, PartialEq, Eq)]
enum Addressing {
    Header,
    BasicAuth,
    Path,
}

pub async fn invoke(State(state): State<Arc<ApiState>>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let Some((addressing, target, method)) = locate(&parts) else {
        return ApiError::no_app_id().into_response();
    };
    let target = match parse_target(&target, &state.namespace) {
        Ok(t) => t,
        Err(e) => return ApiError::direct_invoke(&target, e).into_response(),
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(DAPR_APP_ID);
    if addressing == Addressing::BasicAuth {
        parts.headers.remove(AUTHORIZATION);
    }
    let call = Call {
        method,
        verb: parts.method,
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body: Body::new(body),
    };
    match state.invoker.invoke(&target, call).await {
        Ok(res) => res.into_response(),
        Err(err) => invoke_error(&target.app_id, err, state.max_body).into_response(),
    }
}

/// Finds the target app and method, in daprd's order: header, Basic auth, path.
fn locate(parts: &Parts) -> Option<(Addressing, String, String)> {
    let path = parts.uri.path();
    if let Some(id) = parts.headers.get(DAPR_APP_ID).and_then(|v| v.to_str().ok()) {
        if !id.is_empty() {
            return Some((Addressing::Header, id.to_owned(), clean_method(path)));
        }
    }
    if let Some(id) = basic_auth_app_id(parts) {
        return Some((Addressing::BasicAuth, id, clean_method(path)));
    }
    let rest = path.strip_prefix(INVOKE_PREFIX)?;
    let (target, method) = match rest.find("/method/") {
        Some(i) => (&rest[..i], &rest[i + "/method/".len()..]),
        None => (rest.strip_suffix("/method")?, ""),
    };
    if target.is_empty() {
        return None;
    }
    let target = percent_decode_str(target).decode_utf8().ok()?.into_owned();
    Some((Addressing::Path, target, clean_method(method)))
}

/// `Authorization: Basic base64("dapr-app-id:<target>")`.
fn basic_auth_app_id(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let id = decoded.strip_prefix("dapr-app-id:")?;
    (!id.is_empty()).then(|| id.to_owned())
}

/// `appid` or `appid.namespace`; more dots are an error, as in daprd.
pub(super) fn parse_target(target: &str, own_namespace: &str) -> Result<AppTarget, String> {
    if target.starts_with("http://") || target.starts_with("https://") {
        return Err("invoking non-Dapr endpoints by URL is not supported yet".to_owned());
    }
    let mut parts = target.split('.');
    let app_id = parts.next().unwrap_or_default();
    let namespace = parts.next();
    if parts.next().is_some() || app_id.is_empty() || namespace == Some("") {
        return Err(format!(
            "invalid app id {target:?}: expected <app-id> or <app-id>.<namespace>"
        ));
    }
    Ok(AppTarget {
        app_id: app_id.to_owned(),
        namespace: namespace.unwrap_or(own_namespace).to_owned(),
    })
}

pub(super) fn invoke_error(app_id: &str, err: InvokeError, max_body: u64) -> ApiError {
    match err {
        InvokeError::BodyTooLarge(limit) => ApiError::body_too_large(limit),
        InvokeError::App(AppChannelError::BodyTooLarge) => ApiError::body_too_large(max_body),
        InvokeError::BodyRead(e) => ApiError::body_read(e),
        e if e.is_permission_denied() => {
            let mut api = ApiError::direct_invoke(app_id, e);
            api.status = StatusCode::FORBIDDEN;
            api
        }
        e => ApiError::direct_invoke(app_id, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn three_addressing_forms() {
        let p = parts("/v1.0/invoke/beta/method/orders/7?x=1", &[]);
        assert_eq!(
            locate(&p),
            Some((Addressing::Path, "beta".into(), "orders/7".into()))
        );

        let p = parts("/orders/7", &[("dapr-app-id", "beta")]);
        assert_eq!(
            locate(&p),
            Some((Addressing::Header, "beta".into(), "orders/7".into()))
        );

        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("dapr-app-id:beta")
        );
        let p = parts("/orders/7", &[("authorization", &auth)]);
        assert_eq!(
            locate(&p),
            Some((Addressing::BasicAuth, "beta".into(), "orders/7".into()))
        );

        assert_eq!(locate(&parts("/orders/7", &[])), None);
        assert_eq!(locate(&parts("/v1.0/invoke//method/x", &[])), None);
    }

    #[test]
    fn target_is_unescaped_and_method_cleaned() {
        let p = parts("/v1.0/invoke/beta%2Ens/method/a/../b", &[]);
        assert_eq!(
            locate(&p),
            Some((Addressing::Path, "beta.ns".into(), "b".into()))
        );
    }

    #[test]
    fn namespaced_targets() {
        assert_eq!(
            parse_target("beta", "default").unwrap(),
            AppTarget {
                app_id: "beta".into(),
                namespace: "default".into()
            }
        );
        assert_eq!(
            parse_target("beta.prod", "default").unwrap(),
            AppTarget {
                app_id: "beta".into(),
                namespace: "prod".into()
            }
        );
        assert!(parse_target("a.b.c", "default").is_err());
        assert!(parse_target("beta.", "default").is_err());
    }
}
