//! Redis servers for the tests: our own `redis-server` children, the machine's shared one, and
//! cleanup of a test's keys.

use std::net::TcpStream as StdTcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::Commands;

use crate::support;

/// A `redis-server` child on a loopback port, killed on drop. Never persists anything.
pub struct RedisServer {
    pub port: u16,
    /// TLS only (`--port 0 --tls-port N`) with this certificate directory.
    tls: Option<TlsFiles>,
    child: Option<Child>,
}

/// A self-signed certificate (`cert.pem`, `key.pem`) that is also the CA the server trusts
/// for client certificates, so one file pair serves server and client side.
pub struct TlsFiles {
    pub dir: tempfile::TempDir,
}

impl TlsFiles {
    /// Made with the `openssl` command line tool (Debian package `openssl`).
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl on PATH (Debian package openssl)");
        assert!(status.success(), "openssl req failed");
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read pem")
    }
}

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// TLS-only server; clients must present a certificate signed by `files`' certificate.
    pub async fn start_tls(files: TlsFiles) -> Self {
        Self::start_with(Some(files)).await
    }

    /// Tries a few ports: one picked free can still be taken before redis-server binds it.
    async fn start_with(tls: Option<TlsFiles>) -> Self {
        let mut server = Self {
            port: 0,
            tls,
            child: None,
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.try_start().await.is_ok() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Starts the server again on the same port and waits until it serves.
    pub async fn restart(&mut self) {
        if let Err(why) = self.try_start().await {
            panic!(
                "redis-server did not come back on port {}: {why}",
                self.port
            );
        }
    }

    async fn try_start(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        match &self.tls {
            None => cmd.args(["--port", &port]),
            Some(files) => cmd
                .args(["--port", "0", "--tls-port", &port])
                .args(["--tls-auth-clients", "yes"])
                .args(pem_args(files.dir.path())),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (Debian package redis-server)");
        self.child = Some(child);
        let addr = self.addr();
        let deadline = Instant::now() + support::DEADLINE;
        loop {
            // A server that exits at once could not bind its port.
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("redis-server exited with {status}"));
                }
            }
            if serves(&addr, self.tls.is_none()).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err("no answer before the deadline".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain server answers PING. A TLS server wants a client certificate, so accepting TCP is
/// enough there; the store's own startup then proves the handshake.
async fn serves(addr: &str, plain: bool) -> bool {
    if !plain {
        return tokio::net::TcpStream::connect(addr).await.is_ok();
    }
    let Ok(client) = redis::Client::open(format!("redis://{addr}/")) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<()>(&mut conn)
        .await
        .is_ok()
}

/// A loopback port below Linux's ephemeral range (32768 and up), so no outgoing connection
/// takes it as its source port while a test restarts the server on it.
fn free_port() -> u16 {
    loop {
        let port = rand::random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn pem_args(dir: &Path) -> Vec<String> {
    let file = |name: &str| dir.join(name).display().to_string();
    vec![
        "--tls-cert-file".into(),
        file("cert.pem"),
        "--tls-key-file".into(),
        file("key.pem"),
        "--tls-ca-cert-file".into(),
        file("cert.pem"),
    ]
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The machine's Redis when it answers on 6379 (`None` = start our own).
pub fn shared_redis() -> Option<String> {
    let addr = "127.0.0.1:6379";
    let sock = addr.parse().ok()?;
    StdTcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    let mut conn = redis::Client::open(format!("redis://{addr}/"))
        .ok()?
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    redis::cmd("PING").query::<()>(&mut conn).ok()?;
    Some(addr.to_owned())
}

/// Deletes every key under a test's prefix when the test ends, passed or failed, and nothing
/// else: the shared Redis may hold other people's data.
pub struct Cleanup {
    pub addr: String,
    pub prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(format!("redis://{}/", self.addr)) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let keys: Vec<String> = conn
            .scan_match::<_, String>(format!("{}*", self.prefix))
            .map(|iter| iter.filter_map(Result::ok).collect())
            .unwrap_or_default();
        for key in keys {
            let _: redis::RedisResult<()> = conn.del(&key);
        }
    }
}
