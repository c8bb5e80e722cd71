//! Wires one sidecar: loads resources, binds the listeners, builds the building blocks, reports
//! readiness in daprd's order, and drains on stop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::acl::{AccessControl, AppKind};
use crate::api::http::{Edge, ServeSettings};
use crate::api::{self, ApiState, AppConnectionInfo};
use crate::app_channel::{AppChannel, AppChannelSettings, GrpcAppSettings, HealthProbeSettings};
use crate::config::{self, LoadOptions, TemplateContext};
use crate::identity::{Identity, IdentitySettings, TrustSource};
use crate::invoke::grpc_proxy::{AppProxy, GrpcProxy, Upstream};
use crate::invoke::{Inbound, InboundServer, Invoker, InvokerSettings, LocalIdentity};
use crate::lifecycle::{Lifecycle, StopKind};
use crate::proto::internals::service_invocation_server::ServiceInvocationServer;
use crate::pubsub::subscriber::postman::{GrpcPostman, HttpPostman, Postman};
use crate::pubsub::subscriber::{
    pause_while_unhealthy, RunningSubscriber, Subscriber, SubscriberContext,
};
use crate::pubsub::{PubSubs, PubSubsContext};
use crate::resolve::sqlite::{Registration, SqliteResolver, SqliteSettings};
use crate::state::{States, StatesContext};
use crate::telemetry::metrics::{
    self, ComponentMetrics, GrpcServerMetrics, SecurityMetrics, SidecarMetrics,
};

pub(crate) mod accept;
mod h2c;
mod options;
mod ports;
mod quantity;

pub use options::{AppProtocol, Options, OptionsError};

/// A started sidecar: where it listens, and the handle to stop it.
pub struct Sidecar {
    /// The HTTP API listeners (one per `--dapr-listen-addresses` entry).
    pub http_addrs: Vec<SocketAddr>,
    /// The gRPC API listeners (one per `--dapr-listen-addresses` entry).
    pub grpc_addrs: Vec<SocketAddr>,
    /// The sidecar-to-sidecar listener.
    pub internal_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub public_addr: Option<SocketAddr>,
    /// The first gRPC API listener (`--dapr-grpc-port`), for callers that want one address.
    pub grpc_addr: Option<SocketAddr>,
    /// The pub/sub components, for subscribing inside the process (and tests).
    pub pubsubs: Arc<PubSubs>,
    lifecycle: Arc<Lifecycle>,
    done: tokio::task::JoinHandle<StopKind>,
}

impl Sidecar {
    /// Starts every listener and background task; returns once the API answers (outbound
    /// ready). Readiness of `/v1.0/healthz` follows when the app port opens.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        options.validate()?;
        for flag in options.unsupported_flags() {
            tracing::warn!(
                flag,
                "flag accepted for daprd compatibility but not supported yet; it has no effect"
            );
        }

        let resources = config::load(&LoadOptions {
            resources_paths: options.resources_paths(),
            config_files: options.config.clone(),
            template: TemplateContext {
                app_id: options.app_id.clone(),
                namespace: options.namespace.clone(),
                pod_name: options.pod_name.clone(),
            },
        })
        .context("loading resources")?;
        let name_resolution = resources.configuration.name_resolution.clone();
        let declarative = resources.subscriptions.clone();
        let access_control = resources.configuration.access_control.clone();
        if resources
            .configuration
            .mtls
            .as_ref()
            .and_then(|m| m.enabled)
            == Some(true)
            && !options.enable_mtls
        {
            tracing::warn!("Configuration spec.mtls.enabled is set, but mTLS between sidecars is turned on by --enable-mtls, as in daprd");
        }

        let mut registry = Registry::default();
        let metrics = Arc::new(SidecarMetrics::new(&mut registry, &options.app_id));
        let grpc_metrics = GrpcServerMetrics::new(&mut registry, &options.app_id);
        let component_metrics = Arc::new(ComponentMetrics::new(
            &mut registry,
            &options.app_id,
            &options.namespace,
        ));
        let security_metrics = Arc::new(SecurityMetrics::new(&mut registry, &options.app_id));
        let lifecycle = Arc::new(Lifecycle::default());

        // Stores open before any listener binds: a store that cannot open fails startup
        // (unless its component sets ignoreErrors), as in daprd.
        let states = Arc::new(
            States::open(
                &resources.components,
                StatesContext {
                    app_id: options.app_id.clone(),
                    namespace: key_prefix_namespace(),
                    metrics: component_metrics.clone(),
                },
            )
            .await?,
        );
        // Brokers open next, also before any listener binds, under the same rules.
        let pubsubs = Arc::new(
            PubSubs::open(
                &resources.components,
                PubSubsContext {
                    app_id: options.app_id.clone(),
                    metrics: component_metrics.clone(),
                },
            )
            .await?,
        );
        let live = config::live(resources);

        // Listeners first, so a port clash fails startup before anything registers.
        let internal_ip = internal_listen_ip(&options, options.enable_mtls)?;
        let internal = ports::bind_internal(
            internal_ip,
            options.dapr_internal_grpc_port,
            &options.app_id,
        )
        .await?;
        let internal_addr = internal.local_addr()?;
        let mut http_listeners = Vec::new();
        for ip in options.listen_addresses()? {
            let addr = SocketAddr::new(ip, options.dapr_http_port);
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTP API to {addr}"))?;
            http_listeners.push(listener);
        }
        let mut grpc_listeners = Vec::new();
        for ip in options.listen_addresses()? {
            let addr = SocketAddr::new(ip, options.dapr_grpc_port);
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the gRPC API to {addr}"))?;
            grpc_listeners.push(listener);
        }
        let public = match options.dapr_public_port {
            Some(port) => {
                let ip = parse_ip_or(
                    &options.dapr_public_listen_address,
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                )?;
                Some(
                    TcpListener::bind((ip, port))
                        .await
                        .with_context(|| format!("binding the public port {port}"))?,
                )
            }
            None => None,
        };
        let metrics_listener = if options.enable_metrics {
            let ip = parse_ip_or(
                &options.metrics_listen_address,
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            )?;
            let listener = TcpListener::bind((ip, options.metrics_port))
                .await
                .with_context(|| format!("binding the metrics port {}", options.metrics_port))?;
            Some(listener)
        } else {
            None
        };

        // After every bind, so a start error leaves no certificate task behind.
        let identity = start_identity(&options, &security_metrics, &lifecycle)?;

        let host_ip = advertised_host(&options, internal_ip);
        let settings = match &name_resolution {
            Some(spec) if spec.component == "sqlite" => {
                SqliteSettings::from_configuration(&spec.configuration)?
            }
            Some(spec) => {
                tracing::warn!(component = %spec.component, "name resolution component not supported yet; using the standalone SQLite resolver");
                SqliteSettings::default_for_standalone()?
            }
            None => SqliteSettings::default_for_standalone()?,
        };
        tracing::info!(path = %settings.path.display(), "name resolution through SQLite");
        let resolver = Arc::new(
            SqliteResolver::start(
                settings,
                Registration {
                    app_id: options.app_id.clone(),
                    namespace: options.namespace.clone(),
                    address: SocketAddr::new(host_ip, internal_addr.port()).to_string(),
                },
            )
            .await?,
        );

        let app = options.app_port.map(|port| {
            let health = options
                .enable_app_health_check
                .then(|| HealthProbeSettings {
                    path: options.app_health_check_path.clone(),
                    interval: Duration::from_secs(options.app_health_probe_interval),
                    timeout: Duration::from_millis(options.app_health_probe_timeout),
                    threshold: options.app_health_threshold,
                });
            Arc::new(AppChannel::new(
                AppChannelSettings {
                    address: options.app_channel_address.clone(),
                    port,
                    h2c: options.effective_app_protocol() == AppProtocol::H2c,
                    grpc: (options.effective_app_protocol() == AppProtocol::Grpc).then(|| {
                        GrpcAppSettings {
                            max_message_size: usize::try_from(options.max_body_bytes())
                                .unwrap_or(usize::MAX),
                        }
                    }),
                    max_concurrency: options.app_concurrency_limit(),
                    app_api_token: options.app_api_token.clone(),
                    health,
                },
                metrics.clone(),
            ))
        });

        let max_body = options.max_body_bytes();
        let inbound = Arc::new(Inbound::new(app.clone(), metrics.clone(), max_body));
        let invoker = Invoker::new(
            LocalIdentity {
                app_id: options.app_id.clone(),
                namespace: options.namespace.clone(),
                host_ip: host_ip.to_string(),
                hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            },
            resolver.clone(),
            inbound.clone(),
            metrics.clone(),
            InvokerSettings { max_body },
        );
        let invoker = Arc::new(match &identity {
            Some(identity) => invoker.with_mtls(identity.clone()),
            None => invoker,
        });
        let state = Arc::new(ApiState {
            app_id: options.app_id.clone(),
            namespace: options.namespace.clone(),
            live,
            invoker,
            states: states.clone(),
            pubsubs: pubsubs.clone(),
            lifecycle: lifecycle.clone(),
            metrics: metrics.clone(),
            app_connection: app_connection_info(&options),
            extended: RwLock::new(Default::default()),
            max_body,
            api_token: options.api_token.clone(),
            allowed_origins: options
                .allowed_origins
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            streaming: Arc::default(),
            app_subscriptions: Default::default(),
        });

        let grace = options.graceful_shutdown();
        let serve_settings = ServeSettings {
            max_header_bytes: usize::try_from(options.read_buffer_bytes()).unwrap_or(usize::MAX),
            grace,
        };
        let stop = lifecycle.stopping().clone();
        let mut servers = JoinSet::new();
        let http_addrs = http_listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<Vec<_>, _>>()?;
        let edge = Edge::new(state.clone(), api::router(state.clone()));
        for listener in http_listeners {
            servers.spawn(api::http::serve(
                listener,
                edge.clone(),
                serve_settings.clone(),
                stop.clone(),
            ));
        }
        let grpc_addrs = grpc_listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<Vec<_>, _>>()?;
        // Proxied gRPC calls (any other service) leave through one pooled client.
        let upstream = Arc::new(match &identity {
            Some(identity) => Upstream::with_identity(identity.clone(), max_body),
            None => Upstream::new(max_body),
        });
        let app_proxy = AppProxy::new(
            options
                .app_port
                .map(|port| format!("{}:{port}", options.app_channel_address)),
            options.app_api_token.as_deref(),
            upstream.clone(),
            metrics.clone(),
        )
        // Proxied calls are gRPC whatever the app's protocol: operations are gRPC methods.
        .with_access_control(
            Arc::new(AccessControl::new(&access_control, AppKind::Grpc)),
            security_metrics.clone(),
        );
        // Services other than Dapr's own go to the peer named by `dapr-app-id` (gRPC proxying).
        let grpc_proxy = GrpcProxy::new(
            state.invoker.clone(),
            app_proxy.clone(),
            upstream,
            metrics.clone(),
        );
        let grpc_router =
            api::grpc::router(state.clone(), grpc_proxy).context("building the gRPC API")?;
        for listener in grpc_listeners {
            servers.spawn(api::grpc::serve(
                listener,
                state.clone(),
                grpc_router.clone(),
                grpc_metrics.clone(),
                api::grpc::GrpcSettings { grace },
                stop.clone(),
            ));
        }
        let public_addr = match public {
            Some(listener) => {
                let addr = listener.local_addr()?;
                let edge = Edge::new(state.clone(), api::public_router(state.clone()));
                servers.spawn(api::http::serve(
                    listener,
                    edge,
                    serve_settings.clone(),
                    stop.clone(),
                ));
                Some(addr)
            }
            None => None,
        };
        let max_message = usize::try_from(max_body)
            .unwrap_or(usize::MAX)
            .saturating_add(1 << 20);
        let app_kind = match options.effective_app_protocol() {
            AppProtocol::Grpc | AppProtocol::Grpcs => AppKind::Grpc,
            _ => AppKind::Http,
        };
        let inbound_server = InboundServer::new(inbound).with_access_control(
            Arc::new(AccessControl::new(&access_control, app_kind)),
            security_metrics.clone(),
        );
        let internal_service = ServiceInvocationServer::new(inbound_server)
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        let internal_router = tonic::service::Routes::new(internal_service)
            .into_axum_router()
            .fallback_service(app_proxy.clone());
        match identity.as_ref() {
            Some(id) => {
                let incoming = crate::identity::transport::incoming(
                    internal,
                    id.server_config(),
                    security_metrics.clone(),
                    stop.clone(),
                );
                servers.spawn(h2c::serve_tls(
                    incoming,
                    internal_router,
                    stop.clone(),
                    grace,
                ));
            }
            None => {
                servers.spawn(h2c::serve(internal, internal_router, stop.clone(), grace));
            }
        }
        let metrics_addr = match metrics_listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                let registry = Arc::new(registry);
                let stop = stop.clone();
                servers.spawn(async move {
                    if let Err(err) =
                        metrics::serve(listener, registry, stop.cancelled_owned()).await
                    {
                        tracing::error!(%err, "metrics server failed");
                    }
                });
                Some(addr)
            }
            None => None,
        };
        match &identity {
            None => lifecycle.mark_outbound_ready(),
            // As daprd, nothing is ready before the first workload certificate.
            Some(identity) => {
                let identity = identity.clone();
                let lifecycle = lifecycle.clone();
                tokio::spawn(async move {
                    identity.wait_ready().await;
                    lifecycle.mark_outbound_ready();
                });
            }
        }
        tracing::info!(app_id = %options.app_id, http = ?http_addrs, grpc = ?grpc_addrs, internal = %internal_addr, "sidecar started");

        // Started once the app is reachable, stopped first on shutdown so in-flight deliveries
        // settle (ack or nack) while the app can still answer.
        let subscriber: Arc<tokio::sync::Mutex<Option<RunningSubscriber>>> = Arc::default();
        let mut background = JoinSet::new();
        {
            let lifecycle = lifecycle.clone();
            let app = app.clone();
            let pubsubs = pubsubs.clone();
            let subscriber = subscriber.clone();
            let app_id = options.app_id.clone();
            let component_metrics = component_metrics.clone();
            let discover = !options
                .disable_init_endpoints
                .iter()
                .any(|e| e == "subscribe");
            let identity = identity.clone();
            let api_state = state.clone();
            background.spawn(async move {
                if let Some(identity) = identity {
                    identity.wait_ready().await;
                }
                let Some(app) = app else {
                    lifecycle.mark_runtime_ready();
                    return;
                };
                if !app.wait_until_reachable(lifecycle.stopping()).await {
                    return;
                }
                tracing::info!("app is reachable");
                tokio::spawn(app.clone().probe_health(lifecycle.stopping().clone()));
                lifecycle.mark_runtime_ready();
                if pubsubs.is_empty() {
                    return;
                }
                let mut slot = subscriber.lock().await;
                if lifecycle.stopping().is_cancelled() {
                    return;
                }
                let ctx = SubscriberContext {
                    app_id,
                    pubsubs,
                    postman: match GrpcPostman::new(app.clone()) {
                        Some(grpc) => Arc::new(grpc) as Arc<dyn Postman>,
                        None => Arc::new(HttpPostman::new(app.clone())),
                    },
                    metrics: component_metrics,
                };
                match Subscriber::start(ctx, &app, &declarative, discover).await {
                    Ok(running) => {
                        api_state
                            .app_subscriptions
                            .store(Arc::new(running.subscriptions().cloned().collect()));
                        *slot = Some(running);
                    }
                    Err(err) => tracing::error!(%err, "starting subscriptions failed"),
                }
                drop(slot);
                if app.settings().health.is_some() {
                    pause_while_unhealthy(
                        subscriber,
                        app.health().watch(),
                        lifecycle.stopping().clone(),
                    )
                    .await;
                }
            });
        }

        let done = {
            let lifecycle = lifecycle.clone();
            let pubsubs = pubsubs.clone();
            tokio::spawn(async move {
                lifecycle.stopping().cancelled().await;
                let kind = lifecycle.stop_kind();
                if kind == StopKind::Graceful {
                    // Waits for a start in progress, then lets in-flight deliveries settle.
                    if let Some(running) = subscriber.lock().await.take() {
                        running.stop().await;
                    }
                }
                background.abort_all();
                if kind == StopKind::Graceful {
                    // Each server stops accepting at once and drains within the grace period;
                    // the bound here only guards against a server that never returns.
                    let drained = tokio::time::timeout(grace + Duration::from_secs(1), async {
                        while servers.join_next().await.is_some() {}
                    })
                    .await;
                    if drained.is_err() {
                        tracing::warn!("servers did not stop within the grace period");
                    }
                }
                servers.abort_all();
                states.close().await;
                pubsubs.close().await;
                if let Err(err) = resolver.deregister().await {
                    tracing::warn!(%err, "could not deregister from name resolution");
                }
                tracing::info!(?kind, "sidecar stopped");
                kind
            })
        };

        Ok(Self {
            http_addrs,
            grpc_addr: grpc_addrs.first().copied(),
            grpc_addrs,
            internal_addr,
            metrics_addr,
            public_addr,
            pubsubs,
            lifecycle,
            done,
        })
    }

    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    /// Waits until the sidecar was asked to stop and has drained.
    pub async fn wait(self) -> StopKind {
        self.done.await.unwrap_or(StopKind::Forced)
    }

    /// Asks for a graceful stop and waits for it.
    pub async fn stop(self) -> StopKind {
        self.lifecycle.stop(StopKind::Graceful);
        self.wait().await
    }
}

/// The namespace for the `namespace` key prefix strategy. daprd reads `NAMESPACE` itself there
/// (unset means "use the app id"), unlike elsewhere where an unset namespace is `default`.
fn key_prefix_namespace() -> Option<String> {
    std::env::var("NAMESPACE").ok().filter(|ns| !ns.is_empty())
}

/// Starts the workload identity when `--enable-mtls` is set; otherwise says that traffic between
/// sidecars is plaintext.
fn start_identity(
    options: &Options,
    metrics: &Arc<SecurityMetrics>,
    lifecycle: &Lifecycle,
) -> anyhow::Result<Option<Arc<Identity>>> {
    if !options.enable_mtls {
        tracing::info!(
            "mTLS is disabled (no --enable-mtls): traffic between sidecars is plaintext"
        );
        return Ok(None);
    }
    let trust = match (&options.trust_anchors, options.trust_anchors_file.as_str()) {
        (Some(pem), _) => TrustSource::Pem(pem.clone()),
        (None, "") => return Err(crate::identity::IdentityError::NoTrustAnchors.into()),
        (None, path) => TrustSource::File(path.into()),
    };
    let identity = Identity::start(
        IdentitySettings {
            id: options
                .sentry_local_identity
                .clone()
                .unwrap_or_else(|| options.app_id.clone()),
            namespace: options.namespace.clone(),
            sentry_address: options.sentry_address.clone(),
            control_plane_trust_domain: options.control_plane_trust_domain.clone(),
            control_plane_namespace: options.control_plane_namespace.clone(),
            trust,
            token_file: options.sentry_token_file.clone(),
            kubernetes: options.mode == "kubernetes",
            jwt_audiences: options.sentry_request_jwt_audiences.clone(),
            tuning: options.identity_tuning,
        },
        metrics.clone(),
        lifecycle.stopping().clone(),
    )
    .context("starting the workload identity")?;
    tracing::info!(sentry = %options.sentry_address, "mTLS is enabled: requesting a workload certificate");
    Ok(Some(identity))
}

/// Where the internal server binds: plaintext invocation is kept on loopback in standalone mode
/// unless the user chose an address; with mTLS it binds all interfaces, as daprd does.
fn internal_listen_ip(options: &Options, mtls: bool) -> anyhow::Result<IpAddr> {
    let default = if options.mode == "standalone" && !mtls {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    parse_ip_or(&options.dapr_internal_grpc_listen_address, default)
}

/// The address registered for peers: `DAPR_HOST_IP`, else the bound address when specific, else
/// the machine's outbound interface address.
fn advertised_host(options: &Options, bound: IpAddr) -> IpAddr {
    if let Some(ip) = options.host_ip.as_deref().and_then(|s| s.parse().ok()) {
        return ip;
    }
    if !bound.is_unspecified() {
        return bound;
    }
    ports::outbound_interface_ip().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn parse_ip_or(value: &str, default: IpAddr) -> anyhow::Result<IpAddr> {
    match value.trim() {
        "" => Ok(default),
        "localhost" => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        s => s
            .parse()
            .with_context(|| format!("{s:?} is not an IP address")),
    }
}

fn app_connection_info(options: &Options) -> AppConnectionInfo {
    let protocol = options.effective_app_protocol();
    let is_http = matches!(
        protocol,
        AppProtocol::Http | AppProtocol::Https | AppProtocol::H2c
    );
    AppConnectionInfo {
        port: options.app_port.unwrap_or(0),
        protocol: protocol.as_str().to_owned(),
        channel_address: options.app_channel_address.clone(),
        max_concurrency: options.app_concurrency_limit().unwrap_or(0),
        health: options.enable_app_health_check.then(|| {
            api::AppHealthInfo::new(
                if is_http {
                    options.app_health_check_path.clone()
                } else {
                    String::new()
                },
                Duration::from_secs(options.app_health_probe_interval),
                Duration::from_millis(options.app_health_probe_timeout),
                options.app_health_threshold,
            )
        }),
    }
}
