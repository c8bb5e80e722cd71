//! Child processes and what /proc says about them: a guard that always stops what we started,
//! free loopback ports, a blocking readiness probe, and memory/CPU readings.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// A started child process. Dropping it (also while unwinding from a panic) asks it to stop
/// with SIGTERM, then kills it if it has not exited within two seconds, so a failed run never
/// leaves sidecars or nginx behind.
pub struct Guard {
    pub name: String,
    child: Child,
}

impl Guard {
    pub fn new(name: &str, child: Child) -> Self {
        Self {
            name: name.to_owned(),
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `None` while running; the exit status once it has stopped (a crash during a run).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // SIGTERM lets nginx's master stop its worker too; Child::kill would orphan the worker.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` distinct loopback ports that were free a moment ago. All are held until all are chosen so
/// the OS cannot hand out one twice; releasing them before use races with other programs, which
/// is acceptable for a benchmark on a quiet machine.
pub fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a probe port")?;
        *port = listener.local_addr()?.port();
        held.push(listener);
    }
    Ok(ports)
}

/// One `GET path` over a fresh connection; the status code, or an error if nothing answered.
/// Blocking and dependency-free so it can time process start-up at millisecond resolution.
pub fn http_status(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    // "HTTP/1.1 204"
    let code = std::str::from_utf8(&head[9..12])?.parse()?;
    Ok(code)
}

/// Polls `path` every millisecond until it answers `want`; the time since `since`.
pub fn wait_for(
    guard: &mut Guard,
    addr: SocketAddr,
    path: &str,
    want: u16,
    since: Instant,
    deadline: Duration,
) -> anyhow::Result<Duration> {
    loop {
        if matches!(http_status(addr, path), Ok(code) if code == want) {
            return Ok(since.elapsed());
        }
        if let Some(status) = guard.exited() {
            bail!(
                "{} exited ({status}) before {path} answered {want}",
                guard.name
            );
        }
        if since.elapsed() > deadline {
            bail!(
                "{} did not answer {want} on {path} within {deadline:?}",
                guard.name
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Resident memory now and at its peak, in KiB (`VmRSS`, `VmHWM`); `VmRSS` split into
/// anonymous memory (heap, stacks) and file pages (mostly the sidecar's own binary).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub anon_kib: u64,
    pub file_kib: u64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} missing from {path}"))?;
        let kib = line[name.len()..].trim().trim_end_matches("kB").trim();
        kib.parse()
            .with_context(|| format!("{name} in {path}: {line:?}"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        anon_kib: field("RssAnon:")?,
        file_kib: field("RssFile:")?,
    })
}

/// utime + stime of one process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let after = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected {path}: {text:?}"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime is field 14 of the line, i.e. index 11 here.
    let tick = |i: usize| -> anyhow::Result<u64> {
        let f = fields.get(i).with_context(|| format!("short {path}"))?;
        f.parse()
            .with_context(|| format!("field {i} of {path}: {f:?}"))
    };
    Ok(tick(11)? + tick(12)?)
}

/// Clock ticks per second for /proc/<pid>/stat, and whether it was assumed (100) because
/// `getconf CLK_TCK` could not be run.
pub fn clock_ticks() -> (u64, bool) {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    match out
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
    {
        Some(hz) => (hz, false),
        None => (100, true),
    }
}

/// This process's scheduling policy, e.g. "SCHED_OTHER nice -19" or "SCHED_RR priority 1"
/// (`chrt -r 1`): children inherit it, and it decides how much other work can disturb a run.
pub fn scheduling() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 19 (nice), 40 (rt_priority) and 41 (policy) of proc(5), counted from `state` = 3.
    let nice = fields.get(16)?;
    let priority = fields.get(37)?;
    Some(match *fields.get(38)? {
        "0" => format!("SCHED_OTHER nice {nice}"),
        "1" => format!("SCHED_FIFO priority {priority}"),
        "2" => format!("SCHED_RR priority {priority}"),
        other => format!("policy {other} nice {nice}"),
    })
}

/// Direct children of `pid` (nginx's worker under its master).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| parent(*child) == Some(pid))
        .collect()
}

fn parent(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Finds an executable by name on PATH, then in the sbin folders a non-root PATH may lack.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(Into::into))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The first line a command prints, for the report's environment notes.
pub fn command_line_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    let line = String::from_utf8_lossy(&text)
        .lines()
        .next()?
        .trim()
        .to_owned();
    (!line.is_empty()).then_some(line)
}
