//! One conformance suite every state store must pass, whatever its backend. Each store's test
//! calls [`run`] with a fresh key prefix so runs never see each other's data.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use outrigger::state::{
    Concurrency, Consistency, DeleteRequest, GetRequest, Operation, SetRequest, StateError,
    StateStore, Ttl,
};

fn get(key: &str) -> GetRequest {
    GetRequest {
        key: key.to_owned(),
        consistency: Consistency::Strong,
        metadata: HashMap::new(),
    }
}

fn set(key: &str, value: impl Into<Bytes>) -> SetRequest {
    SetRequest {
        key: key.to_owned(),
        value: value.into(),
        etag: None,
        concurrency: Concurrency::LastWrite,
        consistency: Consistency::Strong,
        ttl: None,
        metadata: HashMap::new(),
    }
}

fn delete(key: &str) -> DeleteRequest {
    DeleteRequest {
        key: key.to_owned(),
        etag: None,
        concurrency: Concurrency::LastWrite,
        consistency: Consistency::Strong,
        metadata: HashMap::new(),
    }
}

async fn etag_of(store: &dyn StateStore, key: &str) -> String {
    store
        .get(get(key))
        .await
        .unwrap()
        .expect("item exists")
        .etag
        .expect("store issues etags")
}

/// Runs every check against `store`, using keys that start with `prefix`.
pub async fn run(store: Arc<dyn StateStore>, prefix: &str) {
    let k = |name: &str| format!("{prefix}||{name}");
    crud(&*store, &k("crud")).await;
    etags(&*store, &k("etag")).await;
    first_write(&*store, &k("first")).await;
    ttl(&*store, &k("ttl")).await;
    transactions(&*store, &k("tx-a"), &k("tx-b")).await;
    values(&*store, &k("big"), &k("bin"), &k("ünïcødé/キー")).await;
    race(store.clone(), &k("race")).await;
}

async fn crud(store: &dyn StateStore, key: &str) {
    assert_eq!(
        store.get(get(key)).await.unwrap(),
        None,
        "missing key reads as absent"
    );
    store.set(set(key, r#"{"a":1}"#)).await.unwrap();
    let item = store.get(get(key)).await.unwrap().expect("written item");
    assert_eq!(item.value, r#"{"a":1}"#);
    assert!(item.etag.is_some());
    assert_eq!(item.expires, None);
    store.set(set(key, "\"second\"")).await.unwrap();
    assert_eq!(
        store.get(get(key)).await.unwrap().unwrap().value,
        "\"second\""
    );
    store.delete(delete(key)).await.unwrap();
    assert_eq!(store.get(get(key)).await.unwrap(), None);
    // Deleting what is not there is not an error.
    store.delete(delete(key)).await.unwrap();
}

async fn etags(store: &dyn StateStore, key: &str) {
    // An etag on a missing item never matches.
    let mut req = set(key, "1");
    req.etag = Some(fresh_etag_for(store).await);
    assert!(
        matches!(store.set(req).await, Err(StateError::EtagMismatch(_))),
        "etag on missing item"
    );

    store.set(set(key, "1")).await.unwrap();
    let etag = etag_of(store, key).await;
    let mut ok = set(key, "2");
    ok.etag = Some(etag.clone());
    store.set(ok).await.unwrap();
    let newer = etag_of(store, key).await;
    assert_ne!(newer, etag, "every write issues a new etag");

    let mut stale = set(key, "3");
    stale.etag = Some(etag.clone());
    assert!(matches!(
        store.set(stale).await,
        Err(StateError::EtagMismatch(_))
    ));
    let mut garbage = set(key, "3");
    garbage.etag = Some("not-an-etag-this-store-issued".into());
    assert!(matches!(
        store.set(garbage).await,
        Err(StateError::EtagMismatch(_) | StateError::EtagInvalid(_))
    ));
    assert_eq!(
        store.get(get(key)).await.unwrap().unwrap().value,
        "2",
        "failed writes change nothing"
    );

    let mut del = delete(key);
    del.etag = Some(etag);
    assert!(matches!(
        store.delete(del).await,
        Err(StateError::EtagMismatch(_))
    ));
    let mut del = delete(key);
    del.etag = Some(newer);
    store.delete(del).await.unwrap();
    assert_eq!(store.get(get(key)).await.unwrap(), None);
}

/// An etag in this store's own format that names no write (for the "missing item" rule).
async fn fresh_etag_for(store: &dyn StateStore) -> String {
    let probe = format!("probe-{}", uuid::Uuid::new_v4());
    store.set(set(&probe, "x")).await.unwrap();
    let etag = etag_of(store, &probe).await;
    store.delete(delete(&probe)).await.unwrap();
    etag
}

async fn first_write(store: &dyn StateStore, key: &str) {
    let mut first = set(key, "a");
    first.concurrency = Concurrency::FirstWrite;
    store.set(first.clone()).await.unwrap();
    let mut again = set(key, "b");
    again.concurrency = Concurrency::FirstWrite;
    assert!(
        matches!(store.set(again).await, Err(StateError::EtagMismatch(_))),
        "first-write without etag on existing key"
    );
    let mut with_etag = set(key, "c");
    with_etag.concurrency = Concurrency::FirstWrite;
    with_etag.etag = Some(etag_of(store, key).await);
    store.set(with_etag).await.unwrap();
    // last-write without etag always wins.
    store.set(set(key, "d")).await.unwrap();
    assert_eq!(store.get(get(key)).await.unwrap().unwrap().value, "d");
    store.delete(delete(key)).await.unwrap();
}

async fn ttl(store: &dyn StateStore, key: &str) {
    let mut req = set(key, "soon gone");
    req.ttl = Some(Ttl::Expire(Duration::from_secs(1)));
    let before = SystemTime::now();
    store.set(req).await.unwrap();
    let item = store
        .get(get(key))
        .await
        .unwrap()
        .expect("present before expiry");
    let expires = item.expires.expect("ttlExpireTime reported");
    assert!(
        expires > before && expires <= before + Duration::from_secs(3),
        "{expires:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.get(get(key)).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "item did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut forever = set(key, "stays");
    forever.ttl = Some(Ttl::Never);
    store.set(forever).await.unwrap();
    assert_eq!(store.get(get(key)).await.unwrap().unwrap().expires, None);
    store.delete(delete(key)).await.unwrap();
}

async fn transactions(store: &dyn StateStore, a: &str, b: &str) {
    store.set(set(a, "a0")).await.unwrap();
    store
        .transact(
            vec![
                Operation::Upsert(set(b, "b1")),
                Operation::Delete(delete(a)),
            ],
            HashMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(store.get(get(a)).await.unwrap(), None);
    assert_eq!(store.get(get(b)).await.unwrap().unwrap().value, "b1");

    // One failed etag aborts the whole transaction.
    let stale = {
        let mut r = set(b, "b-stale");
        r.etag = Some(fresh_etag_for(store).await);
        r
    };
    let result = store
        .transact(
            vec![Operation::Upsert(set(a, "a-new")), Operation::Upsert(stale)],
            HashMap::new(),
        )
        .await;
    assert!(result.is_err(), "transaction with a failing etag must fail");
    assert_eq!(
        store.get(get(a)).await.unwrap(),
        None,
        "nothing of a failed transaction applies"
    );
    assert_eq!(store.get(get(b)).await.unwrap().unwrap().value, "b1");
    store.delete(delete(b)).await.unwrap();
}

async fn values(store: &dyn StateStore, big: &str, bin: &str, unicode: &str) {
    let large: Bytes = (0..10 * 1024 * 1024u32)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<_>>()
        .into();
    store.set(set(big, large.clone())).await.unwrap();
    assert_eq!(store.get(get(big)).await.unwrap().unwrap().value, large);
    store.delete(delete(big)).await.unwrap();

    let binary = Bytes::from_static(&[0, 159, 146, 150, 255, 0, 1]);
    store.set(set(bin, binary.clone())).await.unwrap();
    assert_eq!(store.get(get(bin)).await.unwrap().unwrap().value, binary);
    store.delete(delete(bin)).await.unwrap();

    store.set(set(unicode, "\"✓\"")).await.unwrap();
    assert_eq!(
        store.get(get(unicode)).await.unwrap().unwrap().value,
        "\"✓\""
    );
    store.delete(delete(unicode)).await.unwrap();
}

/// 50 concurrent first-write updates carrying the same etag: exactly one wins.
async fn race(store: Arc<dyn StateStore>, key: &str) {
    store.set(set(key, "start")).await.unwrap();
    let etag = etag_of(&*store, key).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        let mut req = set(key, format!("writer {i}"));
        req.concurrency = Concurrency::FirstWrite;
        req.etag = Some(etag.clone());
        tasks.push(tokio::spawn(async move { store.set(req).await }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => won += 1,
            Err(StateError::EtagMismatch(_)) => {}
            Err(other) => panic!("unexpected error in race: {other}"),
        }
    }
    assert_eq!(
        won, 1,
        "exactly one concurrent writer with the same etag succeeds"
    );
    store.delete(delete(key)).await.unwrap();
}
