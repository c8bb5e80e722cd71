//! A test-only certificate authority serving Dapr Sentry's API
//! (`dapr.proto.sentry.v1.CA/SignCertificate`) over TLS. It is a real CA doing real signing with
//! rcgen: it parses and verifies each CSR, issues a short-lived workload certificate with the
//! SPIFFE ID for the requested app id and namespace, and proves Sentry's own SPIFFE ID on its
//! serving certificate. It is not the product's control plane (`outrigger-control`); it exists so
//! the sidecar's identity code can be tested on its own. It also issues client certificates for
//! tests that speak to an internal port directly, and can move issuance to a new root.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use outrigger::identity::transport;
use outrigger::proto::sentry::ca_server::{Ca, CaServer};
use outrigger::proto::sentry::{SignCertificateRequest, SignCertificateResponse};
use outrigger::telemetry::metrics::SecurityMetrics;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Sentry's SPIFFE ID with daprd's default control-plane trust domain and namespace.
pub const SENTRY_ID: &str = "spiffe://localhost/ns/default/dapr-sentry";

/// A root the CA can issue from.
pub struct Root {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Root {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("root key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("test root {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key).expect("self-signed root");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `spiffe_id` with `key`'s public key, valid for `ttl` from now.
    fn issue(
        &self,
        mut params: CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
        spiffe_id: &str,
        ttl: Duration,
        server_only: bool,
    ) -> rcgen::Certificate {
        let now = time::OffsetDateTime::now_utc();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(
            spiffe_id.try_into().expect("SPIFFE ID is IA5"),
        )];
        params.not_before = now - time::Duration::seconds(1);
        params.not_after = now + ttl;
        params.serial_number = Some(random_serial());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if server_only {
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        } else {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        };
        params.is_ca = IsCa::NoCa;
        params.use_authority_key_identifier_extension = true;
        params
            .signed_by(public_key, &self.issuer)
            .expect("sign certificate")
    }

    /// A certificate and key for `spiffe_id`, for clients the tests drive by hand.
    pub fn client_identity(
        &self,
        spiffe_id: &str,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("key");
        let cert = self.issue(
            CertificateParams::default(),
            &key,
            spiffe_id,
            Duration::from_secs(3600),
            false,
        );
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

struct State {
    /// The root new certificates chain to.
    issuing: Mutex<Arc<Root>>,
    ttl: Mutex<Duration>,
    trust_domain: String,
    signed: std::sync::atomic::AtomicUsize,
}

/// The running CA. Dropping it stops serving.
pub struct TestCa {
    pub addr: SocketAddr,
    /// The root the CA started with (also the one serving its own certificate).
    pub root: Arc<Root>,
    state: Arc<State>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestCa {
    /// A CA issuing workload certificates valid for `ttl` in trust domain `public`.
    pub async fn start(ttl: Duration) -> Self {
        let root = Arc::new(Root::new("a"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind CA");
        let state = Arc::new(State {
            issuing: Mutex::new(root.clone()),
            ttl: Mutex::new(ttl),
            trust_domain: "public".into(),
            signed: Default::default(),
        });
        let mut ca = Self {
            addr: listener.local_addr().expect("addr"),
            root,
            state,
            stop: CancellationToken::new(),
            task: None,
        };
        ca.serve(listener);
        ca
    }

    fn serve(&mut self, listener: TcpListener) {
        let key = KeyPair::generate().expect("key");
        let cert = self.root.issue(
            CertificateParams::default(),
            &key,
            SENTRY_ID,
            Duration::from_secs(3600),
            true,
        );
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("CA serving certificate");
        config.alpn_protocols = vec![b"h2".to_vec()];
        let metrics = Arc::new(SecurityMetrics::new(
            &mut prometheus_client::registry::Registry::default(),
            "test-ca",
        ));
        self.stop = CancellationToken::new();
        let incoming = transport::incoming(listener, Arc::new(config), metrics, self.stop.clone());
        let service = CaServer::new(Service(self.state.clone()));
        let stop = self.stop.clone();
        self.task = Some(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
                .expect("CA serves");
        }));
    }

    /// Stops serving; the port is released.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Serves again on the same address, with the same roots.
    pub async fn restart(&mut self) {
        let listener = super::eventually("the CA port to be free again", || async {
            TcpListener::bind(self.addr).await.ok()
        })
        .await;
        self.serve(listener);
    }

    /// Moves issuance and the CA's own serving certificate to `root` (a restart, as a real CA
    /// would do to pick up a new serving certificate).
    pub async fn move_to(&mut self, root: Arc<Root>) {
        self.issue_from(root.clone());
        self.stop().await;
        self.root = root;
        self.restart().await;
    }

    /// The PEM bundle of the starting root (what sidecars trust).
    pub fn anchors(&self) -> String {
        self.root.pem.clone()
    }

    /// New certificates chain to `root` from now on.
    pub fn issue_from(&self, root: Arc<Root>) {
        *self.state.issuing.lock().unwrap() = root;
    }

    /// How many certificates were signed so far.
    pub fn signed(&self) -> usize {
        self.state.signed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Service(Arc<State>);

#[tonic::async_trait]
impl Ca for Service {
    async fn sign_certificate(
        &self,
        request: tonic::Request<SignCertificateRequest>,
    ) -> Result<tonic::Response<SignCertificateResponse>, tonic::Status> {
        let req = request.into_inner();
        if req.id.is_empty() || req.id.contains('.') || req.namespace.is_empty() {
            return Err(tonic::Status::permission_denied("invalid id or namespace"));
        }
        let pem = std::str::from_utf8(&req.certificate_signing_request)
            .map_err(|_| tonic::Status::invalid_argument("CSR is not PEM"))?;
        let csr = CertificateSigningRequestParams::from_pem(pem)
            .map_err(|e| tonic::Status::invalid_argument(format!("invalid CSR: {e}")))?;
        let spiffe_id = format!(
            "spiffe://{}/ns/{}/{}",
            self.0.trust_domain, req.namespace, req.id
        );
        let ttl = *self.0.ttl.lock().unwrap();
        let root = self.0.issuing.lock().unwrap().clone();
        let cert = root.issue(csr.params, &csr.public_key, &spiffe_id, ttl, false);
        self.0
            .signed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let valid_until = SystemTime::now() + ttl;
        Ok(tonic::Response::new(SignCertificateResponse {
            workload_certificate: cert.pem().into_bytes().into(),
            trust_chain_certificates: vec![root.pem.clone().into_bytes().into()],
            valid_until: Some(valid_until.into()),
            jwt: None,
            per_audience_jwts: Default::default(),
        }))
    }
}

/// A name-resolution mesh whose sidecars get their identity from a [`TestCa`] and trust the
/// anchors in a file the test can rewrite.
pub struct MtlsMesh {
    pub mesh: super::Mesh,
    pub ca: TestCa,
    pub anchors_file: std::path::PathBuf,
}

impl MtlsMesh {
    pub async fn new(ttl: Duration) -> Self {
        let mesh = super::Mesh::new();
        let ca = TestCa::start(ttl).await;
        let anchors_file = mesh.dir.path().join("anchors.pem");
        std::fs::write(&anchors_file, ca.anchors()).expect("write anchors");
        Self {
            mesh,
            ca,
            anchors_file,
        }
    }

    pub fn set_anchors(&self, pem: &str) {
        // Written aside and renamed, so the sidecar never reads half a file.
        let tmp = self.anchors_file.with_extension("tmp");
        std::fs::write(&tmp, pem).expect("write anchors");
        std::fs::rename(&tmp, &self.anchors_file).expect("replace anchors");
    }

    pub fn options(
        &self,
        app_id: &str,
        app_port: Option<u16>,
        extra: &[&str],
    ) -> outrigger::sidecar::Options {
        let sentry = self.ca.addr.to_string();
        let anchors = self.anchors_file.display().to_string();
        let mut args = vec![
            "--enable-mtls",
            "--sentry-address",
            &sentry,
            "--trust-anchors-file",
            &anchors,
            "--dapr-internal-grpc-listen-address",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        let mut options = self.mesh.options(app_id, app_port, &args);
        options.trust_anchors = None;
        options.sentry_token_file = None;
        options.sentry_local_identity = None;
        options.identity_tuning = outrigger::identity::IdentityTuning {
            retry_cap: Duration::from_millis(300),
            anchors_poll: Duration::from_millis(100),
        };
        options
    }

    pub async fn sidecar(
        &self,
        app_id: &str,
        app_port: Option<u16>,
        extra: &[&str],
    ) -> outrigger::sidecar::Sidecar {
        outrigger::sidecar::Sidecar::start(self.options(app_id, app_port, extra))
            .await
            .expect("sidecar starts")
    }
}

/// The Prometheus text of a sidecar's metrics endpoint.
pub async fn metrics_text(sidecar: &outrigger::sidecar::Sidecar) -> String {
    let url = format!(
        "http://{}/metrics",
        sidecar.metrics_addr.expect("metrics on")
    );
    let res = super::send(http::Method::GET, &url, &[], axum::body::Body::empty())
        .await
        .expect("metrics answer");
    String::from_utf8_lossy(&res.body).into_owned()
}

/// The value of the first series of `name` whose labels contain every `labels` fragment.
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}
