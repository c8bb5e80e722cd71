//! `outrigger-control` end to end: the CA served over TLS, signing real CSRs, persisting its
//! keys, refusing what it must, rotating roots live, and reporting health and metrics. The
//! rotation steps run through the real binary, as an operator would run them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outrigger::control::ca::{CA_FILE, ISSUER_KEY_FILE};
use outrigger::control::client::{connect, spiffe_ids, SpiffeServerVerifier};
use outrigger::control::options::Cli;
use outrigger::control::spiffe::SpiffeId;
use outrigger::control::ControlPlane;
use outrigger::proto::sentry::ca_client::CaClient;
use outrigger::proto::sentry::sign_certificate_request::TokenValidator;
use outrigger::proto::sentry::{SignCertificateRequest, SignCertificateResponse};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SignatureAlgorithm};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::transport::Channel;
use tonic::Code;
use x509_parser::prelude::{FromDer as _, X509Certificate};

const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Some`, or panics after `DEADLINE` naming `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn sentry_id() -> SpiffeId {
    SpiffeId::new("localhost", "default", "dapr-sentry")
}

/// Options as the binary would parse them, on free ports.
fn options(ca_dir: &Path, extra: &[&str]) -> outrigger::control::Options {
    let dir = ca_dir.display().to_string();
    let mut args = vec![
        "outrigger-control",
        "--port",
        "0",
        "--healthz-port",
        "0",
        "--metrics-port",
        "0",
        "--ca-poll-interval",
        "50ms",
        "--ca-dir",
        &dir,
    ];
    args.extend_from_slice(extra);
    Cli::parse_args(args).expect("flags").run
}

async fn start(ca_dir: &Path, extra: &[&str]) -> ControlPlane {
    ControlPlane::start(options(ca_dir, extra))
        .await
        .expect("control plane starts")
}

fn bundle(ca_dir: &Path) -> Vec<u8> {
    std::fs::read(ca_dir.join(CA_FILE)).expect("ca.crt")
}

async fn client(control: &ControlPlane, roots_pem: &[u8]) -> CaClient<Channel> {
    connect(control.grpc_addr(), roots_pem, sentry_id())
        .await
        .expect("TLS connection to the CA with its SPIFFE ID")
}

fn csr(alg: &'static SignatureAlgorithm) -> Vec<u8> {
    let key = KeyPair::generate_for(alg).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
        .into_bytes()
}

fn request(app_id: &str, namespace: &str, csr: Vec<u8>) -> SignCertificateRequest {
    SignCertificateRequest {
        id: app_id.to_owned(),
        namespace: namespace.to_owned(),
        certificate_signing_request: csr.into(),
        ..SignCertificateRequest::default()
    }
}

async fn sign(
    client: &mut CaClient<Channel>,
    req: SignCertificateRequest,
) -> Result<SignCertificateResponse, tonic::Status> {
    client.sign_certificate(req).await.map(|r| r.into_inner())
}

fn certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

fn response_roots(res: &SignCertificateResponse) -> Vec<CertificateDer<'static>> {
    res.trust_chain_certificates
        .iter()
        .flat_map(|pem| certs(pem))
        .collect()
}

/// Verifies `chain` (leaf first) against `roots` for both TLS usages, as peers will.
fn chains_to(chain: &[CertificateDer<'static>], roots: &[CertificateDer<'static>]) -> bool {
    let anchors: Vec<_> = roots
        .iter()
        .map(|r| webpki::anchor_from_trusted_cert(r).unwrap().to_owned())
        .collect();
    let leaf = webpki::EndEntityCert::try_from(&chain[0]).unwrap();
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    [
        webpki::KeyUsage::server_auth(),
        webpki::KeyUsage::client_auth(),
    ]
    .into_iter()
    .all(|usage| {
        leaf.verify_for_usage(
            algs,
            &anchors,
            &chain[1..],
            UnixTime::now(),
            usage,
            None,
            None,
        )
        .is_ok()
    })
}

/// The serving certificate the CA presents on a fresh handshake.
async fn served_leaf(control: &ControlPlane, roots_pem: &[u8]) -> Vec<u8> {
    let verifier = Arc::new(SpiffeServerVerifier::new(roots_pem, sentry_id()).unwrap());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(verifier)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(control.grpc_addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("handshake with the CA");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out)
}

#[tokio::test]
async fn signs_ed25519_and_p256_csrs_over_tls_with_sentrys_identity() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(dir.path(), &["--workload-cert-ttl", "1h"]).await;
    let roots_pem = bundle(dir.path());
    let roots = certs(&roots_pem);
    assert_eq!(roots.len(), 1);
    let mut ca = client(&control, &roots_pem).await;

    for alg in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P256_SHA256] {
        let started = time::OffsetDateTime::now_utc().unix_timestamp();
        let res = sign(&mut ca, request("orders", "default", csr(alg)))
            .await
            .expect("signed");
        let chain = certs(&res.workload_certificate);
        assert_eq!(chain.len(), 2, "leaf + issuer");
        assert!(chains_to(&chain, &roots));
        assert_eq!(response_roots(&res), roots);
        assert_eq!(
            spiffe_ids(&chain[0]),
            vec![SpiffeId::new("public", "default", "orders")]
        );
        let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
        assert!(!leaf.is_ca());
        let ku = leaf.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature());
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let not_before = leaf.validity().not_before.timestamp();
        let not_after = leaf.validity().not_after.timestamp();
        assert!((not_before - (started - 15 * 60)).abs() <= 2, "15m skew");
        assert!((not_after - (started + 3600)).abs() <= 2, "1h TTL");
        assert_eq!(res.valid_until.unwrap().seconds, not_after);
    }

    // The requested trust domain is honoured by the insecure validator.
    let mut req = request("orders", "prod", csr(&rcgen::PKCS_ED25519));
    req.trust_domain = "example.org".to_owned();
    let res = sign(&mut ca, req).await.unwrap();
    assert_eq!(
        spiffe_ids(&certs(&res.workload_certificate)[0]),
        vec![SpiffeId::new("example.org", "prod", "orders")]
    );

    // A client expecting another identity refuses the CA's certificate.
    let wrong = connect(
        control.grpc_addr(),
        &roots_pem,
        SpiffeId::new("localhost", "default", "someone-else"),
    )
    .await;
    assert!(wrong.is_err(), "SPIFFE ID mismatch must fail the handshake");
    control.shutdown().await;
}

#[tokio::test]
async fn ca_is_persisted_with_private_keys_0600_and_reloaded() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let control = start(&ca_dir, &[]).await;
    let first = bundle(&ca_dir);
    let first_issuer = control.ca().issuer_chain().to_vec();
    control.shutdown().await;

    let mode = std::fs::metadata(ca_dir.join(ISSUER_KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "issuer.key is 0600");

    let control = start(&ca_dir, &[]).await;
    assert_eq!(bundle(&ca_dir), first, "same root after a restart");
    assert_eq!(control.ca().issuer_chain(), first_issuer.as_slice());
    let mut ca = client(&control, &first).await;
    let res = sign(
        &mut ca,
        request("orders", "default", csr(&rcgen::PKCS_ED25519)),
    )
    .await
    .unwrap();
    assert!(chains_to(&certs(&res.workload_certificate), &certs(&first)));
    control.shutdown().await;
}

#[tokio::test]
async fn join_token_grants_only_its_identities() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "s3cret default/orders\n").unwrap();
    let ca_dir = dir.path().join("ca");
    let token_flag = tokens.display().to_string();
    let control = start(&ca_dir, &["--token-file", &token_flag]).await;
    let mut ca = client(&control, &bundle(&ca_dir)).await;

    let with = |app: &str, token: &str, validator: TokenValidator| {
        let mut req = request(app, "default", csr(&rcgen::PKCS_ED25519));
        req.token = token.to_owned();
        req.token_validator = validator as i32;
        req
    };
    sign(&mut ca, with("orders", "s3cret", TokenValidator::Jwks))
        .await
        .expect("granted identity");
    sign(&mut ca, with("orders", "s3cret", TokenValidator::Unknown))
        .await
        .expect("the join token is the default validator");
    let denied = sign(&mut ca, with("payments", "s3cret", TokenValidator::Jwks))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let bad_token = sign(&mut ca, with("orders", "guess", TokenValidator::Jwks))
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), Code::PermissionDenied);
    let insecure = sign(&mut ca, with("payments", "", TokenValidator::Insecure))
        .await
        .unwrap_err();
    assert_eq!(
        insecure.code(),
        Code::InvalidArgument,
        "INSECURE is off with a token file"
    );
    control.shutdown().await;
}

#[tokio::test]
async fn bad_csrs_and_app_ids_are_refused_with_sentrys_codes() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(dir.path(), &[]).await;
    let mut ca = client(&control, &bundle(dir.path())).await;

    let garbage = sign(&mut ca, request("orders", "default", b"garbage".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument);

    // A CSR whose signature does not match its key.
    let good = String::from_utf8(csr(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
    let der =
        rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(good.as_bytes()).unwrap();
    let mut bytes = der.as_ref().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    use base64::Engine as _;
    let tampered = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    let tampered = sign(&mut ca, request("orders", "default", tampered.into_bytes()))
        .await
        .unwrap_err();
    assert_eq!(tampered.code(), Code::InvalidArgument, "{tampered:?}");

    let long = "a".repeat(65);
    for (app, ns) in [
        ("a.b", "default"),
        ("", "default"),
        (long.as_str(), "default"),
        ("orders", ""),
    ] {
        let err = sign(&mut ca, request(app, ns, csr(&rcgen::PKCS_ED25519)))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::PermissionDenied,
            "{app:?}/{ns:?}: {err:?}"
        );
    }
    let no_csr = sign(&mut ca, request("orders", "default", Vec::new()))
        .await
        .unwrap_err();
    assert_eq!(no_csr.code(), Code::PermissionDenied);
    control.shutdown().await;
}

async fn sign_ok(mut ca: CaClient<Channel>) -> SignCertificateResponse {
    sign(
        &mut ca,
        request("orders", "default", csr(&rcgen::PKCS_ED25519)),
    )
    .await
    .expect("signed")
}

fn run_ca_step(step: &str, ca_dir: &Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_outrigger-control"))
        .args(["ca", step, "--ca-dir"])
        .arg(ca_dir)
        .output()
        .expect("run outrigger-control");
    assert!(
        out.status.success(),
        "ca {step}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn root_rotation_steps_are_picked_up_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir: PathBuf = dir.path().join("ca");
    let control = start(&ca_dir, &[]).await;
    let old_pem = bundle(&ca_dir);
    let old_root = certs(&old_pem);
    let ca = client(&control, &old_pem).await;

    run_ca_step("add-root", &ca_dir);
    let both = eventually("the bundle with both roots", || {
        let ca = ca.clone();
        async move {
            let res = sign_ok(ca).await;
            (response_roots(&res).len() == 2).then_some(res)
        }
    })
    .await;
    let roots = response_roots(&both);
    assert_eq!(roots[0], old_root[0]);
    let new_root = vec![roots[1].clone()];
    assert!(
        chains_to(&certs(&both.workload_certificate), &old_root),
        "issuance stays on the old root until use-root"
    );

    run_ca_step("use-root", &ca_dir);
    let moved = eventually("leaves chaining to the new root", || {
        let ca = ca.clone();
        let new_root = new_root.clone();
        async move {
            let res = sign_ok(ca).await;
            chains_to(&certs(&res.workload_certificate), &new_root).then_some(res)
        }
    })
    .await;
    assert_eq!(
        response_roots(&moved).len(),
        2,
        "both roots until drop-root"
    );
    assert!(!chains_to(&certs(&moved.workload_certificate), &old_root));
    // The CA's own serving certificate follows the issuer: a client trusting only the new root
    // can connect.
    let new_root_pem: String = new_root
        .iter()
        .map(|der| {
            use base64::Engine as _;
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                base64::engine::general_purpose::STANDARD.encode(der)
            )
        })
        .collect();
    let new_only = eventually("the serving certificate under the new root", || {
        let addr = control.grpc_addr();
        let pem = new_root_pem.clone();
        async move { connect(addr, pem.as_bytes(), sentry_id()).await.ok() }
    })
    .await;

    run_ca_step("drop-root", &ca_dir);
    eventually("the bundle with only the new root", || {
        let ca = new_only.clone();
        let new_root = new_root.clone();
        async move {
            let res = sign_ok(ca).await;
            (response_roots(&res) == new_root).then_some(())
        }
    })
    .await;
    assert_eq!(certs(&bundle(&ca_dir)), new_root);
    control.shutdown().await;
}

#[tokio::test]
async fn serving_certificate_is_renewed_at_half_life() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(
        dir.path(),
        &["--workload-cert-ttl", "2s", "--allowed-clock-skew", "0s"],
    )
    .await;
    let roots_pem = bundle(dir.path());
    let first = served_leaf(&control, &roots_pem).await;
    let renewed = eventually("a renewed serving certificate", || {
        let roots_pem = roots_pem.clone();
        let control = &control;
        let first = first.clone();
        async move {
            let leaf = served_leaf(control, &roots_pem).await;
            (leaf != first).then_some(leaf)
        }
    })
    .await;
    assert_eq!(spiffe_ids(&renewed), vec![sentry_id()]);
    control.shutdown().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let control = start(dir.path(), &[]).await;
    assert_eq!(http_get(control.healthz_addr(), "/healthz").await.0, 200);
    assert_eq!(http_get(control.healthz_addr(), "/readyz").await.0, 200);

    let mut ca = client(&control, &bundle(dir.path())).await;
    sign(
        &mut ca,
        request("orders", "default", csr(&rcgen::PKCS_ED25519)),
    )
    .await
    .unwrap();
    sign(&mut ca, request("orders", "default", b"nope".to_vec()))
        .await
        .unwrap_err();

    let (status, body) = http_get(control.metrics_addr(), "/").await;
    assert_eq!(status, 200);
    for line in [
        "dapr_sentry_cert_sign_request_received_total 2",
        "dapr_sentry_cert_sign_success_total 1",
        "dapr_sentry_cert_sign_failure_total{reason=\"invalid_csr\"} 1",
    ] {
        assert!(body.contains(line), "missing {line:?} in\n{body}");
    }
    let expiry = control.ca().issuer_not_after().unix_timestamp();
    assert!(
        body.contains(&format!("dapr_sentry_issuercert_expiry_timestamp {expiry}")),
        "{body}"
    );
    assert!(body.contains("dapr_sentry_rootcert_expiry_timestamp "));
    control.shutdown().await;
}

#[tokio::test]
async fn binary_serves_and_answers_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, healthz, metrics) = (free(), free(), free());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_outrigger-control"))
        .arg("-ca-dir")
        .arg(&ca_dir)
        .args(["-port", &port.to_string()])
        .args(["-healthz-port", &healthz.to_string()])
        .args(["-metrics-port", &metrics.to_string()])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn outrigger-control");
    let healthz_addr = std::net::SocketAddr::from(([127, 0, 0, 1], healthz));
    eventually("/readyz", || async move {
        let stream = TcpStream::connect(healthz_addr).await.ok()?;
        drop(stream);
        (http_get(healthz_addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut ca = connect(addr, &bundle(&ca_dir), sentry_id()).await.unwrap();
    let mut req = request("orders", "default", csr(&rcgen::PKCS_ED25519));
    req.token_validator = TokenValidator::Insecure as i32;
    sign(&mut ca, req).await.expect("signed by the binary");
    child.kill().await.unwrap();
}

/// Runs `openssl` with `args` in `dir` (the Debian `openssl` package; .ci/run installs it).
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA brought by the operator, made with OpenSSL as Dapr's docs make one: EC keys in SEC1
/// (`EC PRIVATE KEY`) PEM, a root and an issuer in `ca.crt` / `issuer.crt` / `issuer.key`.
#[tokio::test]
async fn an_operator_ca_with_sec1_ec_keys_is_loaded_and_signs() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    std::fs::write(
        work.join("ext.cnf"),
        "[req]\ndistinguished_name=dn\n[dn]\n\
         [root]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         [issuer]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    let genkey = |out| {
        [
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            out,
        ]
    };
    openssl(work, &genkey("root.key"));
    openssl(
        work,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "root.key",
            "-subj",
            "/O=operator/CN=root",
            "-days",
            "2",
            "-config",
            "ext.cnf",
            "-extensions",
            "root",
            "-out",
            "ca.crt",
        ],
    );
    openssl(work, &genkey("issuer.key"));
    openssl(
        work,
        &[
            "req",
            "-new",
            "-key",
            "issuer.key",
            "-subj",
            "/O=operator/CN=issuer",
            "-config",
            "ext.cnf",
            "-out",
            "issuer.csr",
        ],
    );
    openssl(
        work,
        &[
            "x509",
            "-req",
            "-in",
            "issuer.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "issuer",
            "-out",
            "issuer.crt",
        ],
    );
    let key = std::fs::read_to_string(work.join("issuer.key")).unwrap();
    assert!(key.contains("BEGIN EC PRIVATE KEY"), "{key}");
    let ca_dir = work.join("ca");
    std::fs::create_dir(&ca_dir).unwrap();
    for file in ["ca.crt", "issuer.crt", "issuer.key"] {
        std::fs::copy(work.join(file), ca_dir.join(file)).unwrap();
    }

    let control = start(&ca_dir, &[]).await;
    let roots = bundle(&ca_dir);
    assert_eq!(
        roots,
        std::fs::read(work.join("ca.crt")).unwrap(),
        "the operator's root is used as it is, not replaced"
    );
    let mut ca = client(&control, &roots).await;
    let res = sign(
        &mut ca,
        request("orders", "default", csr(&rcgen::PKCS_ECDSA_P256_SHA256)),
    )
    .await
    .expect("signed by the operator's issuer");
    assert!(chains_to(&certs(&res.workload_certificate), &certs(&roots)));
    control.shutdown().await;
}

/// One signing key of a JWK set: its private half signs test tokens, its public half is the JWK.
struct Signer {
    key: KeyPair,
    kid: &'static str,
}

impl Signer {
    fn new(kid: &'static str) -> Self {
        Self {
            key: KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            kid,
        }
    }

    fn jwk(&self) -> serde_json::Value {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        // The uncompressed point: 0x04, then x and y.
        let point = self.key.public_key_raw();
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        })
    }

    fn token(&self, sub: &str, aud: &str, expires_in: i64) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.to_owned());
        let claims =
            serde_json::json!({ "sub": sub, "aud": [aud], "iat": now, "exp": now + expires_in });
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.key.serialize_der());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }
}

fn write_jwks(path: &Path, signers: &[&Signer]) {
    let keys: Vec<_> = signers.iter().map(|s| s.jwk()).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::json!({ "keys": keys }).to_string()).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// Sentry's JWKS validator: a JWT signed by a key of the set, minted for the CA (`aud`) with the
/// requested SPIFFE ID as `sub`; the set's file is re-read when it changes.
#[tokio::test]
async fn jwks_validator_takes_only_jwts_for_the_requested_identity() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let first = Signer::new("k1");
    let stranger = Signer::new("k1");
    write_jwks(&jwks, &[&first]);
    let ca_dir = dir.path().join("ca");
    let source = jwks.display().to_string();
    let control = start(&ca_dir, &["--jwks-source", &source]).await;
    let mut ca = client(&control, &bundle(&ca_dir)).await;

    let sentry = sentry_id().to_string();
    let orders = "spiffe://public/ns/default/orders";
    let with = |token: String, validator: TokenValidator| {
        let mut req = request("orders", "default", csr(&rcgen::PKCS_ECDSA_P256_SHA256));
        req.token = token;
        req.token_validator = validator as i32;
        req
    };
    sign(
        &mut ca,
        with(first.token(orders, &sentry, 600), TokenValidator::Jwks),
    )
    .await
    .expect("a token for this identity");
    sign(
        &mut ca,
        with(first.token(orders, &sentry, 600), TokenValidator::Unknown),
    )
    .await
    .expect("JWKS is the default validator");
    let refused = [
        (
            "another identity",
            first.token("spiffe://public/ns/default/payments", &sentry, 600),
        ),
        (
            "another audience",
            first.token(orders, "spiffe://localhost/ns/default/other", 600),
        ),
        (
            "expired beyond the skew",
            first.token(orders, &sentry, -600),
        ),
        (
            "signed by a key not in the set",
            stranger.token(orders, &sentry, 600),
        ),
        ("not a JWT", "s3cret".to_owned()),
        ("no token", String::new()),
    ];
    for (why, token) in refused {
        let err = sign(&mut ca, with(token, TokenValidator::Jwks))
            .await
            .expect_err(why);
        assert_eq!(err.code(), Code::PermissionDenied, "{why}: {err:?}");
    }
    let insecure = sign(&mut ca, with(String::new(), TokenValidator::Insecure))
        .await
        .unwrap_err();
    assert_eq!(insecure.code(), Code::InvalidArgument, "INSECURE is off");

    // Rotating the signing key is an edit of the file, no restart.
    write_jwks(&jwks, &[&stranger]);
    sign(
        &mut ca,
        with(stranger.token(orders, &sentry, 600), TokenValidator::Jwks),
    )
    .await
    .expect("the new key is trusted");
    let err = sign(
        &mut ca,
        with(first.token(orders, &sentry, 600), TokenValidator::Jwks),
    )
    .await
    .expect_err("the removed key is not");
    assert_eq!(err.code(), Code::PermissionDenied);
    control.shutdown().await;
}

/// The JWK set from an issuer's URL (as OIDC providers publish it): fetched at start, fetched
/// again once older than the refresh interval, and kept when the issuer is briefly away.
#[tokio::test]
async fn jwks_from_a_url_is_refetched_and_survives_the_issuer_going_away() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Issuer {
        /// `None`: the issuer answers 503.
        set: Mutex<Option<String>>,
        fetches: AtomicUsize,
    }
    let issuer = Arc::new(Issuer::default());
    let first = Signer::new("k1");
    let second = Signer::new("k2");
    let publish = |signers: &[&Signer]| {
        let keys: Vec<_> = signers.iter().map(|s| s.jwk()).collect();
        *issuer.set.lock().unwrap() = Some(serde_json::json!({ "keys": keys }).to_string());
    };
    publish(&[&first]);
    let app = axum::Router::new()
        .route(
            "/.well-known/jwks.json",
            axum::routing::get(
                |axum::extract::State(issuer): axum::extract::State<Arc<Issuer>>| async move {
                    issuer.fetches.fetch_add(1, Ordering::SeqCst);
                    match issuer.set.lock().unwrap().clone() {
                        Some(set) => (http::StatusCode::OK, set),
                        None => (http::StatusCode::SERVICE_UNAVAILABLE, String::new()),
                    }
                },
            ),
        )
        .with_state(issuer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    // A zero interval: every request finds the set stale, so each step below is deterministic.
    let control = start(
        &ca_dir,
        &["--jwks-source", &url, "--jwks-min-refresh-interval", "0s"],
    )
    .await;
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1, "fetched at start");
    let mut ca = client(&control, &bundle(&ca_dir)).await;
    let sentry = sentry_id().to_string();
    let orders = "spiffe://public/ns/default/orders";
    let with = |token: String| {
        let mut req = request("orders", "default", csr(&rcgen::PKCS_ED25519));
        req.token = token;
        req.token_validator = TokenValidator::Jwks as i32;
        req
    };
    sign(&mut ca, with(first.token(orders, &sentry, 600)))
        .await
        .expect("signed with a published key");

    publish(&[&second]);
    sign(&mut ca, with(second.token(orders, &sentry, 600)))
        .await
        .expect("the rotated key, after a refetch");
    let err = sign(&mut ca, with(first.token(orders, &sentry, 600)))
        .await
        .expect_err("the retired key");
    assert_eq!(err.code(), Code::PermissionDenied);

    *issuer.set.lock().unwrap() = None;
    let before = issuer.fetches.load(Ordering::SeqCst);
    sign(&mut ca, with(second.token(orders, &sentry, 600)))
        .await
        .expect("the last good set is kept while the issuer fails");
    assert!(issuer.fetches.load(Ordering::SeqCst) > before, "it did ask");
    control.shutdown().await;
}

#[tokio::test]
async fn a_jwks_source_that_is_not_a_set_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let err = ControlPlane::start(options(
        &dir.path().join("ca"),
        &["--jwks-source", "{\"not\": \"a set\"}"],
    ))
    .await
    .expect_err("refused");
    assert!(err.to_string().contains("--jwks-source"), "{err}");
}
