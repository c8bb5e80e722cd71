//! The running CA: `dapr.proto.sentry.v1.CA` over TLS, `/healthz` + `/readyz`, metrics, and the
//! tasks that keep the CA files and the serving certificate current.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use super::ca::{
    self, parse_csr, sign_workload, CaDir, CaMaterial, CsrError, Origin, SignError, WorkloadPolicy,
};
use super::health;
use super::metrics::ControlMetrics;
use super::options::Options;
use super::serving_cert::{ServingCert, ServingCertError};
use super::spiffe::{SpiffeId, SENTRY_APP_ID};
use super::validator::{
    Claim, JoinTokenValidator, JwksError, JwksValidator, KubernetesValidator, ValidationError,
    ValidatorKind, Validators,
};
use crate::proto::sentry::ca_server::{Ca, CaServer};
use crate::proto::sentry::sign_certificate_request::TokenValidator;
use crate::proto::sentry::{SignCertificateRequest, SignCertificateResponse};

/// A client that connects and never finishes the handshake must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("CA directory: {0}")]
    Ca(#[from] ca::FilesError),
    #[error("serving certificate: {0}")]
    ServingCert(#[from] ServingCertError),
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("connecting to the Kubernetes API server: {0}")]
    Kubernetes(#[from] kube::Error),
    #[error("invalid control-plane identity: trust domain {0:?}")]
    TrustDomain(String),
    #[error("--jwks-source: {0}")]
    Jwks(#[from] JwksError),
}

/// Why one SignCertificate call failed, mapped to Sentry's gRPC codes at the edge.
#[derive(Debug, thiserror::Error)]
enum SignFailure {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error(transparent)]
    Sign(#[from] SignError),
}

impl SignFailure {
    fn reason(&self) -> &'static str {
        match self {
            Self::Validation(e) => e.reason(),
            Self::Csr(_) => "invalid_csr",
            Self::Sign(_) => "sign",
        }
    }

    fn status(&self) -> Status {
        match self {
            Self::Validation(e) if e.is_invalid_argument() => {
                Status::invalid_argument(e.to_string())
            }
            Self::Validation(e) => Status::permission_denied(e.to_string()),
            Self::Csr(e) => Status::invalid_argument(e.to_string()),
            Self::Sign(e) => Status::internal(e.to_string()),
        }
    }
}

/// The `dapr.proto.sentry.v1.CA` service.
struct CaService {
    ca: Arc<ArcSwap<CaMaterial>>,
    validators: Validators,
    policy: WorkloadPolicy,
    metrics: ControlMetrics,
}

fn validator_kind(v: TokenValidator) -> Option<ValidatorKind> {
    match v {
        TokenValidator::Unknown => None,
        TokenValidator::Insecure => Some(ValidatorKind::Insecure),
        TokenValidator::Kubernetes => Some(ValidatorKind::Kubernetes),
        TokenValidator::Jwks => Some(ValidatorKind::Jwks),
    }
}

impl CaService {
    async fn sign(
        &self,
        req: &SignCertificateRequest,
    ) -> Result<SignCertificateResponse, SignFailure> {
        let claim = Claim {
            app_id: &req.id,
            namespace: &req.namespace,
            trust_domain: &req.trust_domain,
            token: &req.token,
            has_csr: !req.certificate_signing_request.is_empty(),
            validator: validator_kind(
                TokenValidator::try_from(req.token_validator).unwrap_or(TokenValidator::Unknown),
            ),
        };
        // As Sentry: the credential first, then the CSR.
        let id = self.validators.validate(&claim).await?;
        let public_key = parse_csr(&req.certificate_signing_request)?;
        let ca = self.ca.load();
        let signed = sign_workload(
            &ca,
            &public_key,
            &id,
            self.policy,
            OffsetDateTime::now_utc(),
        )?;
        tracing::info!(%id, not_after = %signed.not_after, "signed a workload certificate");
        Ok(SignCertificateResponse {
            workload_certificate: signed.chain_pem,
            trust_chain_certificates: ca.roots_pem().to_vec(),
            valid_until: Some(prost_types::Timestamp {
                seconds: signed.not_after.unix_timestamp(),
                nanos: 0,
            }),
            jwt: None,
            per_audience_jwts: Default::default(),
        })
    }
}

#[tonic::async_trait]
impl Ca for CaService {
    async fn sign_certificate(
        &self,
        request: Request<SignCertificateRequest>,
    ) -> Result<Response<SignCertificateResponse>, Status> {
        self.metrics.request();
        let req = request.into_inner();
        match self.sign(&req).await {
            Ok(res) => {
                self.metrics.signed();
                Ok(Response::new(res))
            }
            Err(failure) => {
                self.metrics.failed(failure.reason());
                tracing::warn!(
                    app_id = %req.id,
                    namespace = %req.namespace,
                    error = %failure,
                    "refused to sign a certificate"
                );
                Err(failure.status())
            }
        }
    }
}

/// A TLS connection as tonic's server wants it.
struct TlsConn(tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for TlsConn {
    type ConnectInfo = Option<SocketAddr>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.peer_addr().ok()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Accepts TCP connections and hands finished handshakes to tonic. Handshakes run in their own
/// tasks so one slow client does not hold up the others.
async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<io::Result<TlsConn>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::debug!(%error, "accept failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send(Ok(TlsConn(tls))).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// A running control plane.
pub struct ControlPlane {
    grpc_addr: SocketAddr,
    healthz_addr: SocketAddr,
    metrics_addr: SocketAddr,
    ca: Arc<ArcSwap<CaMaterial>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("grpc_addr", &self.grpc_addr)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Loads (or creates) the CA, binds every port and starts serving. Ready when this returns.
    pub async fn start(options: Options) -> Result<Self, StartError> {
        let now = OffsetDateTime::now_utc();
        let dir = CaDir::new(options.ca_dir());
        let load_dir = dir.clone();
        let (material, origin) = tokio::task::spawn_blocking(move || load_dir.load_or_init(now))
            .await
            .map_err(|e| ca::FilesError::Io {
                action: "loading",
                path: dir.path().to_path_buf(),
                source: io::Error::other(e),
            })??;
        match origin {
            Origin::Generated => {
                tracing::info!(dir = %dir.path().display(), "created a new root and issuer")
            }
            Origin::Loaded => {
                tracing::info!(dir = %dir.path().display(), roots = material.roots().len(), "loaded the CA")
            }
        }
        if !super::spiffe::valid_trust_domain(&options.trust_domain) {
            return Err(StartError::TrustDomain(options.trust_domain));
        }

        let mut registry = Registry::default();
        let metrics = ControlMetrics::new(&mut registry);
        metrics.ca_loaded(material.issuer_not_after(), material.roots_not_after());

        let validators = validators(&options).await?;
        let policy = WorkloadPolicy {
            ttl: options.workload_cert_ttl,
            allowed_clock_skew: options.allowed_clock_skew,
        };
        let own_id = SpiffeId::new(&options.trust_domain, &options.namespace, SENTRY_APP_ID);
        let (serving, renew_at) = ServingCert::new(&material, own_id, policy)?;
        let ca = Arc::new(ArcSwap::from_pointee(material));

        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(serving.clone());
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let grpc = bind(
            "the CA API",
            SocketAddr::new(options.listen_address, options.port),
        )
        .await?;
        let healthz = bind(
            "the health endpoints",
            SocketAddr::new(options.listen_address, options.healthz_port),
        )
        .await?;
        let metrics_listener = bind(
            "the metrics exporter",
            SocketAddr::new(options.listen_address, options.metrics_port),
        )
        .await?;
        let local = |l: &TcpListener, what, addr| {
            l.local_addr()
                .map_err(|source| StartError::Bind { what, addr, source })
        };
        let grpc_addr = local(
            &grpc,
            "the CA API",
            SocketAddr::new(options.listen_address, options.port),
        )?;
        let healthz_addr = local(&healthz, "the health endpoints", grpc_addr)?;
        let metrics_addr = local(&metrics_listener, "the metrics exporter", grpc_addr)?;

        let (stop, stop_rx) = watch::channel(false);
        let (generation, generation_rx) = watch::channel(0u64);
        let ready = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();

        tasks.spawn(ca::watch(
            dir,
            ca.clone(),
            generation,
            options.ca_poll_interval,
            stop_rx.clone(),
        ));
        tasks.spawn(serving.keep_fresh(
            ca.clone(),
            generation_rx,
            renew_at,
            metrics.clone(),
            stop_rx.clone(),
        ));

        let (conn_tx, conn_rx) = mpsc::channel(64);
        tasks.spawn(accept_tls(grpc, acceptor, conn_tx, stop_rx.clone()));
        let service = CaService {
            ca: ca.clone(),
            validators,
            policy,
            metrics,
        };
        let mut grpc_stop = stop_rx.clone();
        tasks.spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(CaServer::new(service))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::ReceiverStream::new(conn_rx),
                    async move {
                        let _ = grpc_stop.changed().await;
                    },
                )
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the CA API stopped");
            }
        });
        let mut health_stop = stop_rx.clone();
        let health_ready = ready.clone();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = health_stop.changed().await;
            };
            if let Err(error) = health::serve(healthz, health_ready, shutdown).await {
                tracing::error!(%error, "the health endpoints stopped");
            }
        });
        let mut metrics_stop = stop_rx;
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = metrics_stop.changed().await;
            };
            if let Err(error) =
                crate::telemetry::metrics::serve(metrics_listener, Arc::new(registry), shutdown)
                    .await
            {
                tracing::error!(%error, "the metrics exporter stopped");
            }
        });

        ready.store(true, Ordering::Release);
        tracing::info!(%grpc_addr, %healthz_addr, %metrics_addr, "outrigger-control is ready");
        Ok(Self {
            grpc_addr,
            healthz_addr,
            metrics_addr,
            ca,
            stop,
            tasks,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn healthz_addr(&self) -> SocketAddr {
        self.healthz_addr
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The CA snapshot in use now.
    pub fn ca(&self) -> Arc<CaMaterial> {
        self.ca.load_full()
    }

    /// Stops every task and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn validators(options: &Options) -> Result<Validators, StartError> {
    let jwks = match &options.jwks_source {
        Some(source) => {
            let audience = SpiffeId::new(&options.trust_domain, &options.namespace, SENTRY_APP_ID);
            Some(
                JwksValidator::new(
                    source,
                    options.jwks_min_refresh_interval,
                    audience.to_string(),
                )
                .await?,
            )
        }
        None => None,
    };
    let join = options.token_file.as_ref().map(JoinTokenValidator::new);
    if options.mode == "kubernetes" {
        let k8s =
            KubernetesValidator::from_environment(options.kubernetes_audiences.clone()).await?;
        tracing::info!(
            "validators: KUBERNETES (default){}",
            if join.is_some() {
                ", JWKS (join tokens)"
            } else {
                ""
            }
        );
        let validators = Validators::kubernetes(k8s, join);
        return Ok(match jwks {
            Some(jwks) => {
                tracing::info!("JWKS requests are checked as JWTs against --jwks-source");
                validators.with_jwks(jwks)
            }
            None => validators,
        });
    }
    if let Some(jwks) = jwks {
        tracing::info!("validators: JWKS (JWTs against --jwks-source; default)");
        return Ok(Validators::jwks(jwks));
    }
    match join {
        Some(join) => {
            tracing::info!(
                "validators: join tokens from --token-file (default, and for JWKS requests)"
            );
            Ok(Validators::join_token(join))
        }
        None => {
            tracing::warn!("validator INSECURE: any caller gets a certificate for any app id it asks for; use --token-file outside development");
            Ok(Validators::insecure())
        }
    }
}
