//! Plain-HTTP helpers for the state API tests: sidecars with chosen components
//! and daprd's error body shapes.

use std::path::Path;

use http::StatusCode;
use outrigger::sidecar::Sidecar;
use serde_json::json;

pub use super::Api;
use super::{write, Mesh, Reply};

/// A sidecar with the embedded default components (`statestore` is in-memory).
pub async fn default_sidecar(mesh: &Mesh, app_id: &str) -> Sidecar {
    mesh.sidecar(app_id, None, &[]).await
}

/// A sidecar whose resources directory holds `yaml`.
pub async fn sidecar_with(mesh: &Mesh, app_id: &str, yaml: &str) -> (Sidecar, tempfile::TempDir) {
    let resources = tempfile::tempdir().unwrap();
    write(resources.path(), "components.yaml", yaml);
    let sidecar = mesh
        .sidecar(
            app_id,
            None,
            &["--resources-path", path_str(resources.path())],
        )
        .await;
    (sidecar, resources)
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

pub fn memory_component(name: &str, metadata: &[(&str, &str)], scopes: &[&str]) -> String {
    let mut yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.in-memory\n  version: v1\n  metadata:\n"
    );
    for (k, v) in metadata {
        yaml.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
    }
    if metadata.is_empty() {
        yaml = yaml.replace("  metadata:\n", "  metadata: []\n");
    }
    if !scopes.is_empty() {
        yaml.push_str("scopes:\n");
        for s in scopes {
            yaml.push_str(&format!("- {s}\n"));
        }
    }
    yaml
}

pub fn etag(reply: &Reply) -> String {
    reply
        .headers
        .get("etag")
        .expect("etag header")
        .to_str()
        .unwrap()
        .to_owned()
}

/// A legacy error body has exactly `errorCode` and `message`.
pub fn assert_legacy(reply: &Reply, status: StatusCode, code: &str) -> String {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    let body = reply.json();
    let obj = body.as_object().unwrap();
    assert_eq!(obj.len(), 2, "{body}");
    assert_eq!(obj["errorCode"], code, "{body}");
    obj["message"].as_str().unwrap().to_owned()
}

/// The stored key shows in the in-memory store's etag error, which names it; a save with an
/// etag on a missing key reveals the full key the strategy produced.
pub async fn stored_key(api: &Api, store: &str, key: &str) -> String {
    let reply = api
        .post(
            &format!("/v1.0/state/{store}"),
            json!([{"key": key, "value": 1, "etag": "probe"}]),
        )
        .await;
    let message = assert_legacy(&reply, StatusCode::CONFLICT, "ERR_STATE_SAVE");
    message
        .rsplit("key=")
        .next()
        .expect("key in message")
        .to_owned()
}
