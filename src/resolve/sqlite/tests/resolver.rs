//! Registration, liveness and lookup across sidecars sharing one file.

use std::time::Duration;

use super::*;

#[tokio::test]
async fn two_sidecars_resolve_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nr.db");
    let alpha = start(SqliteSettings::new(&path), "alpha", 50010).await;
    let beta = start(SqliteSettings::new(&path), "beta", 50020).await;

    assert_eq!(
        lookup(&alpha, "beta", "default").await.as_deref(),
        Some("127.0.0.1:50020")
    );
    assert_eq!(
        lookup(&beta, "alpha", "default").await.as_deref(),
        Some("127.0.0.1:50010")
    );
    assert_eq!(
        lookup(&beta, "alpha", "").await.as_deref(),
        Some("127.0.0.1:50010")
    );
    assert_eq!(lookup(&alpha, "gamma", "default").await, None);

    alpha.deregister().await.unwrap();
    beta.deregister().await.unwrap();
}

#[tokio::test]
async fn stale_rows_are_never_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nr.db");
    let alpha = start(SqliteSettings::new(&path), "alpha", 50010).await;
    let conn = raw(&path);
    let insert = "INSERT INTO hosts (registration_id, address, app_id, namespace, last_update)
                  VALUES (?1, ?2, 'gamma', '', unixepoch(CURRENT_TIMESTAMP) - ?3)";
    // Exactly updateInterval (5 s) old is already dead, as in daprd.
    conn.execute(insert, ("old-1", "10.0.0.1:1", 5)).unwrap();
    conn.execute(insert, ("old-2", "10.0.0.2:1", 3600)).unwrap();
    for _ in 0..20 {
        assert_eq!(lookup(&alpha, "gamma", "").await, None);
    }

    conn.execute(insert, ("live", "10.0.0.3:1", 0)).unwrap();
    for _ in 0..30 {
        assert_eq!(
            lookup(&alpha, "gamma", "").await.as_deref(),
            Some("10.0.0.3:1")
        );
    }
}

#[tokio::test]
async fn live_instances_are_picked_at_random() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nr.db");
    let alpha = start(SqliteSettings::new(&path), "alpha", 50010).await;
    let conn = raw(&path);
    for (id, address) in [("a", "10.0.0.1:1"), ("b", "10.0.0.2:1")] {
        conn.execute(
            "INSERT INTO hosts VALUES (?1, ?2, 'gamma', '', unixepoch(CURRENT_TIMESTAMP))",
            (id, address),
        )
        .unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        seen.extend(lookup(&alpha, "gamma", "").await);
    }
    assert_eq!(seen.len(), 2, "both instances should be chosen: {seen:?}");
}

#[tokio::test]
async fn namespaces_filter_our_rows_but_not_daprds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nr.db");
    let alpha = start(SqliteSettings::new(&path), "alpha", 50010).await;
    let conn = raw(&path);
    let insert = "INSERT INTO hosts VALUES (?1, ?2, ?3, ?4, unixepoch(CURRENT_TIMESTAMP))";
    conn.execute(insert, ("o", "10.0.0.1:1", "ours", "prod"))
        .unwrap();
    // daprd always registers namespace "" (components-contrib issue 3179).
    conn.execute(insert, ("d", "10.0.0.2:1", "daprd", ""))
        .unwrap();

    assert_eq!(
        lookup(&alpha, "ours", "prod").await.as_deref(),
        Some("10.0.0.1:1")
    );
    assert_eq!(
        lookup(&alpha, "ours", "").await.as_deref(),
        Some("10.0.0.1:1")
    );
    assert_eq!(lookup(&alpha, "ours", "dev").await, None);
    assert_eq!(
        lookup(&alpha, "daprd", "dev").await.as_deref(),
        Some("10.0.0.2:1")
    );
    assert_eq!(
        lookup(&alpha, "daprd", "").await.as_deref(),
        Some("10.0.0.2:1")
    );
}

#[tokio::test]
async fn dead_sidecar_stops_being_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nr.db");
    let alpha = start(fast(&path), "alpha", 50010).await;
    let beta = start(fast(&path), "beta", 50020).await;
    let conn = raw(&path);
    let alpha_id = alpha.registration_id().to_owned();
    let last_update = |conn: &Connection| -> i64 {
        conn.query_row(
            "SELECT last_update FROM hosts WHERE registration_id = ?1",
            [&alpha_id],
            |row| row.get(0),
        )
        .unwrap()
    };

    // The heartbeat keeps the row fresh...
    let first = last_update(&conn);
    eventually(Duration::from_secs(10), "alpha's heartbeat lands", || {
        std::future::ready(last_update(&conn) > first)
    })
    .await;
    assert!(lookup(&beta, "alpha", "").await.is_some());

    // ...and when alpha "crashes" (heartbeat stops, row stays), it ages out.
    drop(alpha);
    eventually(
        Duration::from_secs(10),
        "alpha is no longer chosen",
        || async { lookup(&beta, "alpha", "").await.is_none() },
    )
    .await;
    assert_eq!(
        row_count(&conn, &alpha_id),
        1,
        "the dead row must not be deleted"
    );
    // beta, still beating, stays resolvable.
    assert!(lookup(&beta, "beta", "").await.is_some());
}

#[tokio::test]
async fn deregister_removes_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nr.db");
    let alpha = start(fast(&path), "alpha", 50010).await;
    let conn = raw(&path);
    assert_eq!(row_count(&conn, alpha.registration_id()), 1);

    alpha.deregister().await.unwrap();
    assert_eq!(row_count(&conn, alpha.registration_id()), 0);
    assert_eq!(lookup(&alpha, "alpha", "").await, None);
    // A second call (e.g. drop after an explicit shutdown) is harmless.
    alpha.deregister().await.unwrap();
}

#[tokio::test]
async fn restarted_sidecar_takes_over_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nr.db");
    let old = start(fast(&path), "alpha", 50010).await;
    let old_id = old.registration_id().to_owned();
    drop(old);
    let new = start(fast(&path), "alpha", 50010).await;
    let conn = raw(&path);
    assert_eq!(row_count(&conn, &old_id), 0);
    assert_eq!(row_count(&conn, new.registration_id()), 1);
}

#[tokio::test]
async fn lost_row_is_registered_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nr.db");
    let alpha = start(fast(&path), "alpha", 50010).await;
    let conn = raw(&path);
    // What daprd's cleanup does to live rows.
    conn.execute("DELETE FROM hosts", []).unwrap();
    eventually(Duration::from_secs(10), "the row is written again", || {
        std::future::ready(row_count(&conn, alpha.registration_id()) == 1)
    })
    .await;
    assert_eq!(
        lookup(&alpha, "alpha", "").await.as_deref(),
        Some("127.0.0.1:50010")
    );
}

#[tokio::test]
async fn cleanup_deletes_only_dead_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nr.db");
    let mut settings = fast(&path);
    settings.cleanup_interval = Duration::from_secs(1);
    let alpha = start(settings, "alpha", 50010).await;
    let conn = raw(&path);
    conn.execute(
        "INSERT INTO hosts VALUES ('dead', '10.0.0.1:1', 'gamma', '',
                                   unixepoch(CURRENT_TIMESTAMP) - 3600)",
        [],
    )
    .unwrap();

    eventually(Duration::from_secs(10), "the dead row is deleted", || {
        std::future::ready(row_count(&conn, "dead") == 0)
    })
    .await;
    assert_eq!(row_count(&conn, alpha.registration_id()), 1);
    let marked: i64 = conn
        .query_row(
            "SELECT count(*) FROM metadata WHERE key = 'nr-last-cleanup'
               AND unixepoch(value) IS NOT NULL",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        marked, 1,
        "nr-last-cleanup holds a timestamp, as daprd writes it"
    );
}

#[tokio::test]
async fn unusable_locations_fail_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("nr.db");
    let err = SqliteResolver::start(SqliteSettings::new(&path), me("alpha", 50010))
        .await
        .err()
        .expect("a missing directory is an error");
    assert!(err.to_string().contains("missing-dir"), "{err}");
}

#[tokio::test]
async fn registration_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let settings = SqliteSettings::new(dir.path().join("nr.db"));
    let mut bad = me("", 1);
    let err = SqliteResolver::start(settings.clone(), bad.clone())
        .await
        .err();
    assert!(matches!(err, Some(ResolveError::Config(_))));
    bad.app_id = "alpha".into();
    bad.address = "no-port".into();
    let err = SqliteResolver::start(settings, bad).await.err();
    assert!(matches!(err, Some(ResolveError::Config(_))));
}
