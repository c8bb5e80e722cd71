//! daprd's port rules for the internal server, and the address peers reach us at.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::MetadataExt;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// First port of daprd's "stable random" range for the internal server.
const STABLE_PORT_BASE: u16 = 47300;

/// Binds the internal server: the given port, or (empty or 0, as daprd) a port derived from the
/// app id, working directory, user and host, so a restarted sidecar comes back on the same port;
/// any free port when that one is taken.
pub async fn bind_internal(
    ip: IpAddr,
    port: Option<u16>,
    app_id: &str,
) -> anyhow::Result<TcpListener> {
    if let Some(port) = port.filter(|p| *p != 0) {
        return TcpListener::bind((ip, port))
            .await
            .with_context(|| format!("binding the internal port {port}"));
    }
    let stable = stable_port(app_id);
    match TcpListener::bind((ip, stable)).await {
        Ok(listener) => Ok(listener),
        Err(_) => TcpListener::bind((ip, 0))
            .await
            .context("binding the internal port"),
    }
}

/// daprd's `GetStablePort`: the first 11 bits of SHA-256("appid|cwd|uid|hostname").
pub fn stable_port(app_id: &str) -> u16 {
    let cwd = std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The owner of /proc/self is this process's user, which is what os.Getuid() returns.
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let digest = Sha256::digest(format!("{app_id}|{cwd}|{uid}|{host}").as_bytes());
    let rnd = u16::from(digest[0]) + (u16::from(digest[1] >> 5) << 8);
    STABLE_PORT_BASE + rnd
}

/// The address of the interface that routes off this machine. A UDP "connect" only picks a
/// route: no packet is sent.
pub fn outbound_interface_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0))).ok()?;
    socket.connect(SocketAddr::from(([192, 0, 2, 1], 9))).ok()?;
    socket
        .local_addr()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_port_is_stable_and_in_range() {
        let a = stable_port("orders");
        assert_eq!(a, stable_port("orders"));
        assert!((STABLE_PORT_BASE..STABLE_PORT_BASE + 2048).contains(&a));
    }
}
