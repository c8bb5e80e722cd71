//! gRPC scenarios (issue 6): a unary call (1 KiB each way) to a tonic upstream, directly
//! (`grpc-direct`) and proxied through two sidecars (`grpc-2hop`: the caller's gRPC port with
//! `dapr-app-id`, the callee sidecar's internal port, then the app), so the difference is what
//! gRPC proxying adds. The client multiplexes every call on one HTTP/2 connection, as gRPC SDKs do.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::sidecar::{self, Sidecar};
use crate::upstream::{payload, BODY_BYTES};
use crate::Scenario;

pub mod echo {
    tonic::include_proto!("outrigger.echo");
}

use echo::echo_client::EchoClient;
use echo::echo_server::{Echo, EchoServer};
use echo::Msg;

pub const DIRECT: &str = "grpc-direct";
pub const TWO_HOP: &str = "grpc-2hop";
/// The callee sidecar in front of the gRPC upstream.
pub const CALLEE: &str = "grpc-callee";

/// Where a gRPC scenario sends its calls, and to which app id when through a sidecar.
#[derive(Clone, Debug)]
pub struct GrpcTarget {
    pub addr: SocketAddr,
    pub app_id: Option<String>,
}

/// One multiplexed HTTP/2 connection shared by every call of a run.
pub struct GrpcClient {
    client: EchoClient<Channel>,
    app_id: Option<AsciiMetadataValue>,
    payload: Bytes,
}

impl GrpcClient {
    pub async fn open(target: &GrpcTarget) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(format!("http://{}", target.addr))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        let app_id = target
            .app_id
            .as_deref()
            .map(str::parse)
            .transpose()
            .context("app id as metadata")?;
        Ok(Self {
            client: EchoClient::new(channel),
            app_id,
            payload: payload(),
        })
    }

    pub async fn request(&self) -> anyhow::Result<()> {
        let mut req = tonic::Request::new(Msg {
            data: self.payload.clone(),
            ..Msg::default()
        });
        if let Some(id) = &self.app_id {
            req.metadata_mut().insert("dapr-app-id", id.clone());
        }
        let answer = self.client.clone().unary(req).await?.into_inner();
        if answer.data.len() != BODY_BYTES {
            bail!("{} data bytes, expected {BODY_BYTES}", answer.data.len());
        }
        Ok(())
    }
}

/// The tonic upstream: answers `Unary` with a fixed 1 KiB message.
struct Upstream {
    body: Bytes,
}

#[tonic::async_trait]
impl Echo for Upstream {
    async fn unary(
        &self,
        _request: tonic::Request<Msg>,
    ) -> Result<tonic::Response<Msg>, tonic::Status> {
        Ok(tonic::Response::new(Msg {
            data: self.body.clone(),
            ..Msg::default()
        }))
    }

    async fn collect(
        &self,
        _request: tonic::Request<tonic::Streaming<Msg>>,
    ) -> Result<tonic::Response<Msg>, tonic::Status> {
        Err(tonic::Status::unimplemented("only Unary is benchmarked"))
    }

    type RepeatStream = futures_util::stream::Empty<Result<Msg, tonic::Status>>;

    async fn repeat(
        &self,
        _request: tonic::Request<Msg>,
    ) -> Result<tonic::Response<Self::RepeatStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("only Unary is benchmarked"))
    }

    type ChatStream = futures_util::stream::Empty<Result<Msg, tonic::Status>>;

    async fn chat(
        &self,
        _request: tonic::Request<tonic::Streaming<Msg>>,
    ) -> Result<tonic::Response<Self::ChatStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("only Unary is benchmarked"))
    }
}

/// Starts the upstream on its own single-threaded runtime and OS thread, like the HTTP app.
pub fn start_upstream() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the gRPC app")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the gRPC app's runtime")?;
    std::thread::Builder::new()
        .name("upstream-grpc".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    eprintln!("gRPC app: cannot register its listener with tokio");
                    return;
                };
                // Small messages: Nagle would add delay to every one.
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                let service = EchoServer::new(Upstream { body: payload() });
                if let Err(err) = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(incoming)
                    .await
                {
                    eprintln!("gRPC app stopped: {err}");
                }
            });
        })
        .context("spawning the gRPC app thread")?;
    Ok(addr)
}

/// The gRPC upstream, its callee sidecar, and the two scenarios; `caller` is an already
/// running sidecar whose gRPC port takes the proxied calls.
pub struct GrpcBench {
    pub callee: Sidecar,
    upstream: SocketAddr,
}

impl GrpcBench {
    pub fn start(bin: &Path, config: &Path, dir: &Path) -> anyhow::Result<Self> {
        let upstream = start_upstream()?;
        let callee = sidecar::start(bin, config, None, dir, CALLEE, upstream)?;
        Ok(Self { callee, upstream })
    }

    /// A quick (CI) run measures them at 1,000 rps only, to stay short.
    pub fn scenarios(&self, caller: &Sidecar, quick: bool) -> Vec<Scenario> {
        let only_phases: &'static [&'static str] = if quick {
            &[crate::targets::RATE_1K]
        } else {
            &[]
        };
        vec![
            Scenario {
                name: DIRECT,
                target: crate::client::Target::Grpc(GrpcTarget {
                    addr: self.upstream,
                    app_id: None,
                }),
                proxy_pids: vec![],
                only_phases,
            },
            Scenario {
                name: TWO_HOP,
                target: crate::client::Target::Grpc(GrpcTarget {
                    addr: caller.grpc,
                    app_id: Some(CALLEE.to_owned()),
                }),
                proxy_pids: vec![caller.pid(), self.callee.pid()],
                only_phases,
            },
        ]
    }
}
