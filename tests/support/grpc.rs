//! Fixtures for the tests that call Dapr's gRPC API with tonic clients: a sidecar over a
//! resources directory, a connected client, and a tap on a broker to see what was published.

use std::collections::HashMap;
use std::sync::Arc;

use outrigger::proto::runtime::dapr_client::DaprClient;
use outrigger::pubsub::{Handler, Message, SubscribeRequest, Subscription};
use outrigger::sidecar::Sidecar;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::{Mesh, DEADLINE};

/// One component document; `metadata` is written right after `metadata:` (" []" or a list).
pub fn component(name: &str, ty: &str, metadata: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n  metadata:{metadata}\n"
    )
}

/// A sidecar named `alpha` with a connected client; keeps its mesh and resources alive.
pub struct Fixture {
    pub sidecar: Sidecar,
    pub client: DaprClient<Channel>,
    _resources: tempfile::TempDir,
    _mesh: Mesh,
}

/// Starts `alpha` over `resources` with `extra` daprd flags. The API token is an option, not
/// a flag, because daprd reads it from the environment.
pub async fn start(
    resources: tempfile::TempDir,
    extra: &[&str],
    token: Option<&str>,
    app_port: Option<u16>,
) -> Fixture {
    let mesh = Mesh::new();
    let path = resources.path().display().to_string();
    let mut args = vec!["--resources-path", path.as_str()];
    args.extend_from_slice(extra);
    let mut options = mesh.options("alpha", app_port, &args);
    options.api_token = token.map(str::to_owned);
    let sidecar = Sidecar::start(options).await.expect("sidecar starts");
    let client = client(&sidecar).await;
    Fixture {
        sidecar,
        client,
        _resources: resources,
        _mesh: mesh,
    }
}

pub async fn channel(sidecar: &Sidecar) -> Channel {
    Channel::from_shared(format!("http://{}", sidecar.grpc_addrs[0]))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the gRPC API")
}

pub async fn client(sidecar: &Sidecar) -> DaprClient<Channel> {
    DaprClient::new(channel(sidecar).await)
}

/// Subscribes on the sidecar's own broker, to see what reached a topic.
pub async fn tap(
    sidecar: &Sidecar,
    pubsub: &str,
    topic: &str,
) -> (Subscription, mpsc::UnboundedReceiver<Message>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |msg| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(msg);
            Ok(())
        })
    });
    let sub = sidecar
        .pubsubs
        .get(pubsub)
        .expect("component")
        .broker
        .subscribe(
            SubscribeRequest {
                topic: topic.into(),
                metadata: HashMap::new(),
                max_concurrency: 1,
            },
            handler,
        )
        .await
        .expect("subscribe");
    (sub, rx)
}

/// The next message a tap received, as the CloudEvent it carries.
pub async fn next_cloud_event(rx: &mut mpsc::UnboundedReceiver<Message>) -> serde_json::Value {
    let msg = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("a message in time")
        .expect("channel open");
    serde_json::from_slice(&msg.data).expect("a CloudEvent")
}
