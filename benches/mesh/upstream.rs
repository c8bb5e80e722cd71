//! The upstream app every scenario ends at: a plain hyper HTTP/1.1 server that reads the request
//! body and answers 200 with a fixed 1 KiB body. It runs on its own single-threaded runtime in
//! its own OS thread, so its scheduling does not mix with the load generator's.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Size of the request and the response body in every scenario.
pub const BODY_BYTES: usize = 1024;

/// A 1 KiB payload (cheap to clone: `Bytes` shares the buffer).
pub fn payload() -> Bytes {
    Bytes::from(
        (0..BODY_BYTES)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Starts the app on a free loopback port; it lives until the process exits.
pub fn start() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the app")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the app's runtime")?;
    std::thread::Builder::new()
        .name("upstream-app".into())
        .spawn(move || runtime.block_on(serve(listener)))
        .context("spawning the app thread")?;
    Ok(addr)
}

async fn serve(listener: std::net::TcpListener) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        eprintln!("upstream app: cannot register its listener with tokio");
        return;
    };
    let body = payload();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // Small request/response pairs: Nagle would add delay to every one.
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, body.clone()));
            // Errors here are clients hanging up (end of a run); nothing to report.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(req: Request<Incoming>, body: Bytes) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the whole request body, as a real handler would, before answering.
    let _ = req.into_body().collect().await;
    let mut res = Response::new(Full::new(body));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(res)
}
