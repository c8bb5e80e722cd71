//! Standalone name resolution through the shared SQLite file, with real sidecar processes.

mod support;

use std::process::{Child, Command, Stdio};

use axum::body::Body;
use http::{Method, StatusCode};
use outrigger::resolve::sqlite::{Registration, SqliteResolver, SqliteSettings};
use outrigger::resolve::{AppTarget, Resolver};
use support::*;

/// A sidecar run as its own process, killed (not stopped) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn count_rows(db: &std::path::Path, app_id: &str) -> i64 {
    try_count_rows(db, app_id).expect("count rows")
}

/// `None` while the database or its table does not exist yet.
fn try_count_rows(db: &std::path::Path, app_id: &str) -> Option<i64> {
    if !db.exists() {
        return None;
    }
    let conn = rusqlite::Connection::open(db).ok()?;
    conn.query_row(
        "SELECT COUNT(*) FROM hosts WHERE app_id = ?",
        [app_id],
        |r| r.get(0),
    )
    .ok()
}

#[tokio::test]
async fn a_killed_sidecar_stops_being_chosen_after_its_ttl() {
    // A short TTL (updateInterval) keeps the test quick; daprd's default is 5s.
    let mesh = Mesh::with_update_interval("2s");
    let caller_app = TestApp::start().await;
    let live_app = TestApp::start().await;
    let alpha = mesh.sidecar("alpha", Some(caller_app.port()), &[]).await;

    // The doomed beta runs as a real process so it can die without deregistering.
    let dead_app = TestApp::start().await;
    let mut args = mesh.args("beta", Some(dead_app.port()));
    args.remove(0);
    // Its own internal port: with the derived stable port, the live beta below could come back on
    // the same address and take over the dead row, and the test would prove nothing.
    args.extend([
        "--dapr-internal-grpc-port".to_owned(),
        unused_port().await.to_string(),
    ]);
    let mut doomed = Process(
        Command::new(env!("CARGO_BIN_EXE_outrigger"))
            .args(&args)
            .env_remove("DAPR_HOST_IP")
            .env_remove("DAPR_API_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn outrigger"),
    );
    let db = mesh.db_path();
    eventually("the doomed beta registers", || {
        let db = db.clone();
        async move { (try_count_rows(&db, "beta") == Some(1)).then_some(()) }
    })
    .await;
    doomed.0.kill().expect("kill -9 the sidecar");
    doomed.0.wait().expect("reap");

    let beta = mesh.sidecar("beta", Some(live_app.port()), &[]).await;
    ready(&beta).await;
    // The dead sidecar's row is still there: only its age may exclude it.
    assert_eq!(count_rows(&db, "beta"), 2);

    let url = format!("{}/v1.0/invoke/beta/method/who", api(&alpha));
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut consecutive = 0;
    while consecutive < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "calls kept reaching the dead sidecar"
        );
        let ok = send(Method::GET, &url, &[], Body::empty())
            .await
            .is_ok_and(|r| r.status == StatusCode::OK);
        consecutive = if ok { consecutive + 1 } else { 0 };
        if !ok {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        count_rows(&db, "beta"),
        2,
        "the stale row is ignored, not required to be deleted"
    );

    // Past the TTL by the database's own clock, resolution never picks the dead row (the calls
    // above could also succeed by retrying another instance).
    eventually("the dead row ages past the TTL", || {
        let db = db.clone();
        async move {
            let conn = rusqlite::Connection::open(&db).ok()?;
            let stale: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM hosts WHERE app_id = 'beta' AND unixepoch(CURRENT_TIMESTAMP) - last_update >= 2",
                    [],
                    |r| r.get(0),
                )
                .ok()?;
            (stale == 1).then_some(())
        }
    })
    .await;
    let mut settings = std::collections::BTreeMap::new();
    settings.insert("connectionString".to_owned(), db.display().to_string());
    settings.insert("updateInterval".to_owned(), "2s".to_owned());
    settings.insert("timeout".to_owned(), "1s".to_owned());
    let probe = SqliteResolver::start(
        SqliteSettings::from_configuration(&settings).unwrap(),
        Registration {
            app_id: "probe".into(),
            namespace: "default".into(),
            address: "127.0.0.1:1".into(),
        },
    )
    .await
    .unwrap();
    let target = AppTarget {
        app_id: "beta".into(),
        namespace: "default".into(),
    };
    for _ in 0..50 {
        let addr = probe.resolve(&target).await.unwrap();
        assert_eq!(&*addr, beta.internal_addr.to_string());
    }
    probe.deregister().await.unwrap();
    alpha.stop().await;
    beta.stop().await;
}

#[tokio::test]
async fn stopping_deregisters() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let beta = mesh.sidecar("beta", Some(app.port()), &[]).await;
    assert_eq!(count_rows(&mesh.db_path(), "beta"), 1);
    beta.stop().await;
    assert_eq!(count_rows(&mesh.db_path(), "beta"), 0);
}

#[tokio::test]
async fn sigterm_drains_deregisters_and_exits_zero() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let mut args = mesh.args("beta", Some(app.port()));
    args.remove(0);
    let mut child = Process(
        Command::new(env!("CARGO_BIN_EXE_outrigger"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn outrigger"),
    );
    let db = mesh.db_path();
    eventually("beta registers", || {
        let db = db.clone();
        async move { (try_count_rows(&db, "beta") == Some(1)).then_some(()) }
    })
    .await;
    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .unwrap()
        .expect("wait for exit");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(count_rows(&db, "beta"), 0);
}
