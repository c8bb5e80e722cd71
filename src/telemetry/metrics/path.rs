//! The `path` label: daprd's `convertPathToMetricLabel` (pkg/diagnostics), which drops the
//! parts of Dapr API paths that vary per request (state keys, actor ids, workflow instance ids,
//! everything after the first segment of an invoked method) so the label set stays bounded.

use std::borrow::Cow;

/// daprd splits on at most 6 segments (`v1/actors/DemoActor/1/timer/name`); the last one keeps
/// the rest of the path, slashes included.
const MAX_PARTS: usize = 6;

/// Normalizes a request path for the `path` label, e.g.
/// `/v1.0/state/store/key` -> `/v1.0/state/store`,
/// `/v1.0/invoke/app/method/orders/123` -> `/v1.0/invoke/app/method/orders`,
/// `/v1.0/actors/Type/42/state/k` -> `/v1.0/actors/Type/{id}/state`.
/// A query string or fragment is dropped; paths daprd does not know are returned unchanged.
/// Borrows from `path` unless an id had to be replaced or a leading `/` added.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    let path = match path.find(['?', '#']) {
        Some(end) => &path[..end],
        None => path,
    };
    if path.is_empty() {
        return Cow::Borrowed(path);
    }
    let parts = Parts::split(path);
    if parts.len < 3 {
        return Cow::Borrowed(path);
    }

    if parts.get(0) == "actors" {
        // App callback for actors: `actors/<type>/<id>/method/<name>[/...]`.
        let keep = if parts.len > 5 && parts.get(3) == "method" {
            5
        } else {
            parts.len
        };
        return parts.join(keep, &[(2, "{id}")]);
    }

    match parts.get(1) {
        // `/v1.0/state/<store>/<key>`, `/v1.0/secrets/<store>/<name>`: keep the store.
        "state" | "secrets" => parts.join(3, &[]),
        "actors" if parts.len >= 5 => {
            if parts.get(4) != "method" {
                // state, reminders, timers: cut after the category.
                return parts.join(5, &[(3, "{id}")]);
            }
            if parts.len == MAX_PARTS {
                // Keep the method name, drop anything after it.
                let rest = parts.get(5);
                let method = rest.split('/').next().unwrap_or(rest);
                return parts.join(5, &[(3, "{id}")]) + "/" + method;
            }
            parts.join(parts.len, &[(3, "{id}")])
        }
        // `/v1.0/invoke/<app>/method/<name>[/...]`: keep the method's first segment.
        "invoke" if parts.len >= 5 && parts.get(3) == "method" => parts.join(5, &[]),
        "workflows" if parts.len >= 4 => normalize_workflow(&parts),
        _ => Cow::Borrowed(path),
    }
}

/// `/v1.0-beta1/workflows/<component>/...`.
fn normalize_workflow<'a>(parts: &Parts<'a>) -> Cow<'a, str> {
    const INSTANCE: (usize, &str) = (3, "{instanceId}");
    if parts.len == 4 {
        return parts.join(4, &[INSTANCE]);
    }
    // `<component>/<workflowName>/start[?instanceID=..]`: the name is not an id, keep it.
    if parts.len == 5 && parts.get(4).starts_with("start") {
        return parts.join(4, &[]) + "/start";
    }
    // `<component>/<instanceId>/raiseEvent/<eventName>`.
    if parts.len == MAX_PARTS && parts.get(4) == "raiseEvent" && !parts.get(5).is_empty() {
        return parts.join(6, &[INSTANCE, (5, "{eventName}")]);
    }
    // `<component>/<instanceId>/{terminate,pause,resume,purge,...}`.
    parts.join(5, &[INSTANCE])
}

/// A path split like Go's `strings.SplitN(strings.TrimPrefix(path, "/"), "/", 6)`, kept as
/// byte ranges so unchanged prefixes can be returned borrowed.
struct Parts<'a> {
    /// The full path as given, leading `/` included if there was one.
    path: &'a str,
    /// The path without its leading `/`; the ranges index into this.
    trimmed: &'a str,
    ranges: [(usize, usize); MAX_PARTS],
    len: usize,
}

impl<'a> Parts<'a> {
    fn split(path: &'a str) -> Self {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let mut ranges = [(0, 0); MAX_PARTS];
        let mut len = 0;
        let mut start = 0;
        for (i, _) in trimmed.match_indices('/') {
            if len == MAX_PARTS - 1 {
                break;
            }
            ranges[len] = (start, i);
            len += 1;
            start = i + 1;
        }
        ranges[len] = (start, trimmed.len());
        Self {
            path,
            trimmed,
            ranges,
            len: len + 1,
        }
    }

    fn get(&self, i: usize) -> &'a str {
        let (start, end) = self.ranges[i];
        &self.trimmed[start..end]
    }

    /// `"/" + parts[..keep].join("/")`, with some parts replaced. Borrowed when nothing is
    /// replaced and the path already had its leading `/`.
    fn join(&self, keep: usize, replace: &[(usize, &str)]) -> Cow<'a, str> {
        let end = self.ranges[keep - 1].1;
        if replace.is_empty() && self.path.starts_with('/') {
            return Cow::Borrowed(&self.path[..end + 1]);
        }
        let mut out = String::with_capacity(end + 16);
        for i in 0..keep {
            out.push('/');
            let replacement = replace
                .iter()
                .find(|(at, _)| *at == i)
                .map(|(_, with)| *with);
            out.push_str(replacement.unwrap_or_else(|| self.get(i)));
        }
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(normalize_path(input), expected, "input {input:?}");
    }

    #[test]
    fn invoke_keeps_app_and_first_method_segment() {
        check(
            "/v1.0/invoke/myApp/method/orders/123",
            "/v1.0/invoke/myApp/method/orders",
        );
        check(
            "/v1.0/invoke/myApp/method/orders",
            "/v1.0/invoke/myApp/method/orders",
        );
        check(
            "/v1.0/invoke/myApp/method/a/b/c?x=1",
            "/v1.0/invoke/myApp/method/a",
        );
        check("/v1.0/invoke/myApp/method", "/v1.0/invoke/myApp/method");
        check("/v1.0/invoke/myApp/other/x", "/v1.0/invoke/myApp/other/x");
    }

    #[test]
    fn state_and_secrets_keep_the_store_only() {
        check("/v1.0/state/statestore/key", "/v1.0/state/statestore");
        check("/v1.0/state/statestore/a/b", "/v1.0/state/statestore");
        check("/v1.0/state/statestore", "/v1.0/state/statestore");
        check("/v1.0/secrets/keyvault/name", "/v1.0/secrets/keyvault");
    }

    #[test]
    fn other_api_paths_are_unchanged() {
        check("/v1.0/publish/pubsub/orders", "/v1.0/publish/pubsub/orders");
        check("/v1.0/bindings/kafka", "/v1.0/bindings/kafka");
        check("/v1.0/healthz", "/v1.0/healthz");
        check("/healthz", "/healthz");
        check("/orders/123", "/orders/123");
        check("", "");
    }

    #[test]
    fn actor_ids_become_placeholders() {
        check(
            "/v1.0/actors/DemoActor/1/state/key",
            "/v1.0/actors/DemoActor/{id}/state",
        );
        check(
            "/v1.0/actors/DemoActor/1/reminders/name",
            "/v1.0/actors/DemoActor/{id}/reminders",
        );
        check(
            "/v1.0/actors/DemoActor/1/timers/name?q=s",
            "/v1.0/actors/DemoActor/{id}/timers",
        );
        check(
            "/v1.0/actors/DemoActor/1/method/doIt/extra",
            "/v1.0/actors/DemoActor/{id}/method/doIt",
        );
        check(
            "/v1.0/actors/DemoActor/1/method",
            "/v1.0/actors/DemoActor/{id}/method",
        );
        check(
            "v1/actors/DemoActor/1/timer/name",
            "/v1/actors/DemoActor/{id}/timer",
        );
        check(
            "actors/DemoActor/1/method/method1",
            "/actors/DemoActor/{id}/method/method1",
        );
        check(
            "/actors/DemoActor/1/method/timer/timer1",
            "/actors/DemoActor/{id}/method/timer",
        );
    }

    #[test]
    fn workflow_instance_ids_become_placeholders() {
        let base = "/v1.0-beta1/workflows/dapr";
        check(
            &format!("{base}/mywf/start?instanceID=1"),
            &format!("{base}/mywf/start"),
        );
        check(&format!("{base}/1234"), &format!("{base}/{{instanceId}}"));
        check(
            &format!("{base}/1234/terminate"),
            &format!("{base}/{{instanceId}}/terminate"),
        );
        check(
            &format!("{base}/1234/start/v1/v2"),
            &format!("{base}/{{instanceId}}/start"),
        );
        check(
            &format!("{base}/1234/raiseEvent/paid"),
            &format!("{base}/{{instanceId}}/raiseEvent/{{eventName}}"),
        );
        check(base, base);
    }

    #[test]
    fn unchanged_results_borrow() {
        assert!(matches!(
            normalize_path("/v1.0/state/s/k"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            normalize_path("/v1.0/invoke/a/method/m/x"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(normalize_path("/orders/1"), Cow::Borrowed(_)));
    }
}
