//! A tiny HTTP app to put behind a sidecar: it answers every request, whatever the method or
//! path, with what it received as JSON: `{method, path, query, headers, body}`.
//!
//! ```text
//! cargo run --example echo_app -- 8082
//! ```
//!
//! It listens on 127.0.0.1 only (the sidecar calls it there, `--app-channel-address` default) and
//! stops on Ctrl-C or SIGTERM. `examples/invoke.sh` runs two of these behind two sidecars.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use axum::extract::Request;
use axum::Json;
use http_body_util::BodyExt;
use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| anyhow::anyhow!("usage: echo_app [PORT]; {arg:?} is not a port"))?,
        None => 8081,
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    println!("echo_app listening on http://{addr}");
    let app = axum::Router::new().fallback(echo);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop_signal())
        .await?;
    Ok(())
}

/// Reflects the request. Header values that are not UTF-8 are shown lossily; repeated headers
/// are joined with `, ` as HTTP allows.
async fn echo(req: Request) -> Json<Value> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => return Json(json!({ "error": format!("reading the body: {err}") })),
    };
    let mut headers: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query().unwrap_or_default(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
