//! nginx as the reference proxy: the distribution's binary, our own config in a scratch
//! directory, one worker, keep-alive to the upstream app, no access log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::procs::{self, Guard};

pub struct Nginx {
    pub guard: Guard,
    pub addr: SocketAddr,
}

impl Nginx {
    /// The master and its worker(s): CPU is summed over all of them.
    pub fn pids(&self) -> Vec<u32> {
        let master = self.guard.pid();
        let mut pids = vec![master];
        pids.extend(procs::children(master));
        pids
    }
}

/// Starts nginx in front of `upstream`. Not finding nginx is not an error: the row is skipped.
pub fn start(dir: &Path, upstream: SocketAddr) -> anyhow::Result<Option<Nginx>> {
    let Some(bin) = procs::which("nginx") else {
        return Ok(None);
    };
    let [port] = procs::free_ports()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let dir = dir.join("nginx");
    std::fs::create_dir_all(&dir).context("creating nginx's directory")?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(&dir, addr, upstream)).context("writing nginx.conf")?;
    let log = std::fs::File::create(dir.join("stderr.log"))?;
    let started = Instant::now();
    let child = Command::new(&bin)
        // -e: the packaged default error log (/var/log/nginx) may not be writable or wanted.
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut guard = Guard::new("nginx", child);
    // Any answer through to the app proves both nginx and its upstream are up.
    procs::wait_for(&mut guard, addr, "/", 200, started, Duration::from_secs(10))
        .with_context(|| format!("nginx; see {}", dir.join("error.log").display()))?;
    Ok(Some(Nginx { guard, addr }))
}

/// nginx's version line, for the report.
pub fn version() -> Option<String> {
    let bin: PathBuf = procs::which("nginx")?;
    procs::command_line_output(bin.to_str()?, &["-v"])
}

fn config(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let d = dir.display();
    // keepalive_requests is raised on both sides: the defaults (1000) would reconnect every
    // thousand requests, which daprd-style long-lived connections never do.
    format!(
        r#"daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream app {{
        server {upstream};
        keepalive 128;
        keepalive_requests 100000000;
    }}
    server {{
        listen {listen};
        keepalive_requests 100000000;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    )
}
