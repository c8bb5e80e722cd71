//! TLS (`enableTLS`) with rustls: certificate checks are on unless `insecureSkipTLSVerify`, and
//! `clientCert`/`clientKey` give mutual TLS.

use outrigger::state::redis::RedisStore;
use outrigger::state::StateStore;

use super::server::{RedisServer, TlsFiles};
use super::{component, get, set};

#[tokio::test]
async fn talks_tls_with_a_client_certificate() {
    let server = RedisServer::start_tls(TlsFiles::generate()).await;
    let files = server.tls_files().expect("tls server");
    let (cert, key) = (files.read("cert.pem"), files.read("key.pem"));
    let addr = server.addr();
    // The test certificate is self-signed, so only the insecure mode can accept it.
    let store = RedisStore::open(&component(&[
        ("redisHost", &addr),
        ("enableTLS", "true"),
        ("insecureSkipTLSVerify", "true"),
        ("clientCert", &cert),
        ("clientKey", &key),
    ]))
    .await
    .expect("open over TLS");
    store.set(set("tls-key", "\"secret\"")).await.unwrap();
    let item = store.get(get("tls-key")).await.unwrap().expect("written");
    assert_eq!(item.value, "\"secret\"");
}

#[tokio::test]
async fn refuses_what_tls_must_refuse() {
    let server = RedisServer::start_tls(TlsFiles::generate()).await;
    let files = server.tls_files().expect("tls server");
    let (cert, key) = (files.read("cert.pem"), files.read("key.pem"));
    let addr = server.addr();
    for (why, metadata) in [
        (
            "an untrusted server certificate",
            vec![
                ("redisHost", addr.as_str()),
                ("enableTLS", "true"),
                ("clientCert", cert.as_str()),
                ("clientKey", key.as_str()),
                ("dialTimeout", "2s"),
            ],
        ),
        (
            "no client certificate for a server that requires one",
            vec![
                ("redisHost", addr.as_str()),
                ("enableTLS", "true"),
                ("insecureSkipTLSVerify", "true"),
                ("dialTimeout", "2s"),
            ],
        ),
        (
            "plain text to a TLS port",
            vec![("redisHost", addr.as_str()), ("dialTimeout", "2s")],
        ),
    ] {
        let err = RedisStore::open(&component(&metadata))
            .await
            .err()
            .unwrap_or_else(|| panic!("{why}: open must fail"));
        assert!(
            err.to_string().contains("error connecting to redis"),
            "{why}: {err}"
        );
    }
}
