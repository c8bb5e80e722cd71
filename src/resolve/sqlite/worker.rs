//! The one thread that owns the SQLite connection; async code sends it jobs.
//!
//! Why a dedicated thread instead of `spawn_blocking` with an `Arc<Mutex<Connection>>`: one
//! connection runs one statement at a time anyway, so under load a Mutex would only park
//! several blocking-pool threads behind each other. A single owner with a FIFO queue keeps the
//! order of writes (a deregistering DELETE runs after any heartbeat already queued), skips jobs
//! whose caller already gave up, and keeps the prepared-statement cache in one place. The
//! thread ends when the last [`Worker`] handle is dropped, closing the connection.

use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::super::ResolveError;
use super::db::{self, DbError};
use super::settings::SqliteSettings;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Opening waits for locks held by other processes (bounded by busy_timeout per attempt);
/// this only bounds a pathological case.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);

/// A handle to the worker thread; cheap to clone.
#[derive(Clone)]
pub(super) struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    /// Starts the thread and opens the database on it (opening blocks on file I/O and locks).
    pub(super) async fn open(settings: &SqliteSettings) -> Result<Self, ResolveError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (opened_tx, opened) = oneshot::channel();
        let path = settings.path.display().to_string();
        let settings = settings.clone();
        std::thread::Builder::new()
            .name("outrigger-nr".into()) // Linux keeps 15 bytes
            .spawn(move || {
                let mut conn = match db::connect(&settings) {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                if opened_tx.send(Ok(())).is_err() {
                    return; // the caller gave up waiting
                }
                while let Ok(job) = queue.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| {
                ResolveError::Backend(format!("cannot start the name-resolution thread: {e}"))
            })?;
        match tokio::time::timeout(OPEN_TIMEOUT, opened).await {
            Ok(Ok(Ok(()))) => Ok(Self { jobs }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(ResolveError::Backend(format!(
                "opening the name-resolution database {path} took over {OPEN_TIMEOUT:?}; \
                 another process may hold it locked"
            ))),
        }
    }

    /// Runs `job` on the connection and waits up to `timeout` for its result. On timeout the
    /// job is skipped if it has not started yet; `what` names the work in the error.
    pub(super) async fn run<T, F>(
        &self,
        what: &'static str,
        timeout: Duration,
        job: F,
    ) -> Result<T, ResolveError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            if !reply.is_closed() {
                let _ = reply.send(job(conn));
            }
        });
        self.jobs.send(job).map_err(|_| stopped())?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(ResolveError::Backend(format!("{what}: {e}"))),
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(ResolveError::Backend(format!(
                "{what}: no answer within {timeout:?}; the database is slow or locked by \
                 another process (raise timeout/busyTimeout if this persists)"
            ))),
        }
    }
}

fn stopped() -> ResolveError {
    // Only a panic inside a job ends the thread while handles exist.
    ResolveError::Backend("the name-resolution database thread stopped unexpectedly".into())
}
