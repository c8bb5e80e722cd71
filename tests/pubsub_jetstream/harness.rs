//! The nats-server child processes and the small builders every JetStream test uses.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::jetstream;
use bytes::Bytes;
use outrigger::config::{Component, ComponentSource};
use outrigger::pubsub::jetstream::{open, JetStreamPubSub};
use outrigger::pubsub::{Handler, Message, PublishRequest, SubscribeRequest};
use tokio::sync::watch;

use crate::support::{eventually, unused_port};

/// The nats-server binary: on PATH, or where the Debian package puts it.
pub fn nats_server_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin", "/usr/local/bin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .expect("nats-server not found on PATH or in /usr/sbin; install the `nats-server` package")
}

/// One nats-server child process; killed when dropped.
pub struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    /// Starts a server with JetStream storing in `store`, and waits until JetStream answers.
    pub async fn start(port: u16, store: &Path, extra: &[&str]) -> Self {
        let log = store.with_extension(format!("{port}.log"));
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .arg("-l")
            .arg(&log)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let server = Self { child, port };
        let url = server.url();
        let token = extra
            .iter()
            .position(|a| *a == "--auth")
            .map(|i| extra[i + 1].to_owned());
        eventually("nats-server with JetStream", || {
            let (url, token) = (url.clone(), token.clone());
            async move {
                let mut options = async_nats::ConnectOptions::new();
                if let Some(token) = token {
                    options = options.token(token);
                }
                let client = options.connect(url).await.ok()?;
                // The raw account-info request: async-nats' typed answer expects fields that
                // older servers (2.9) do not send.
                let answer = client.request("$JS.API.INFO", Bytes::new()).await.ok()?;
                let answer = String::from_utf8_lossy(&answer.payload);
                (!answer.contains("\"error\"")).then_some(())
            }
        })
        .await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server on a fresh port with a fresh store, and the directory holding the store.
pub async fn nats(extra: &[&str]) -> (tempfile::TempDir, NatsServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start(unused_port().await, &dir.path().join("store"), extra).await;
    (dir, server)
}

/// Streams are the operator's job (daprd and Outrigger both expect them), so tests make them.
pub async fn create_stream(url: &str, name: &str, subjects: &[&str]) {
    let js = jetstream::new(async_nats::connect(url).await.expect("admin connect"));
    js.create_stream(jetstream::stream::Config {
        name: name.to_owned(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("create stream");
}

pub fn component(url: &str, pairs: &[(&str, &str)]) -> Component {
    let mut metadata: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    metadata.insert("natsURL".into(), url.to_owned());
    Component {
        name: "pubsub".into(),
        type_name: "pubsub.jetstream".into(),
        version: "v1".into(),
        ignore_errors: false,
        metadata,
        scopes: Vec::new(),
        source: ComponentSource::Embedded,
        namespace: None,
        init_timeout: None,
        secret_store: None,
    }
}

pub async fn broker(url: &str, pairs: &[(&str, &str)]) -> JetStreamPubSub {
    open(&component(url, pairs), "app").await.expect("open")
}

pub fn publish(topic: &str, data: impl Into<Bytes>) -> PublishRequest {
    PublishRequest {
        topic: topic.to_owned(),
        data: data.into(),
        content_type: Some("text/plain".into()),
        metadata: HashMap::new(),
    }
}

pub fn subscribe(topic: &str, max_concurrency: usize) -> SubscribeRequest {
    SubscribeRequest {
        topic: topic.to_owned(),
        metadata: HashMap::new(),
        max_concurrency,
    }
}

/// A handler that records every payload it accepts.
pub fn recording() -> (Handler, Arc<Mutex<Vec<Bytes>>>) {
    let seen: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let handler: Handler = {
        let seen = seen.clone();
        Arc::new(move |msg: Message| {
            let seen = seen.clone();
            Box::pin(async move {
                seen.lock().unwrap().push(msg.data);
                Ok(())
            })
        })
    };
    (handler, seen)
}

/// A holding handler and what it observed.
pub struct Holding {
    pub handler: Handler,
    /// Messages in the handler right now.
    pub now: Arc<AtomicUsize>,
    /// The most that were ever in it at once.
    pub max: Arc<AtomicUsize>,
    /// Payloads handled, in completion order.
    pub done: Arc<Mutex<Vec<Bytes>>>,
}

/// A handler that holds every message until `release` turns true, tracking how many it holds.
pub fn holding(release: watch::Receiver<bool>) -> Holding {
    let (now, max, done) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let handler: Handler = {
        let (now, max, done) = (now.clone(), max.clone(), done.clone());
        Arc::new(move |msg: Message| {
            let (now, max, done, mut release) =
                (now.clone(), max.clone(), done.clone(), release.clone());
            Box::pin(async move {
                let held = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(held, Ordering::SeqCst);
                let _ = release.wait_for(|go| *go).await;
                now.fetch_sub(1, Ordering::SeqCst);
                done.lock().unwrap().push(msg.data);
                Ok(())
            })
        })
    };
    Holding {
        handler,
        now,
        max,
        done,
    }
}
