//! Tests of [`Cached`] with a counting inner resolver.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::{AppTarget, Cached, PeerAddress, ResolveError, Resolver};

/// Answers `<app_id>:<n>` where n counts the calls; "missing" is never found.
#[derive(Default)]
struct Counting {
    calls: Arc<AtomicUsize>,
}

impl Resolver for Counting {
    fn resolve<'a>(
        &'a self,
        target: &'a AppTarget,
    ) -> BoxFuture<'a, Result<PeerAddress, ResolveError>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            match target.app_id.as_str() {
                "missing" => Err(ResolveError::NotFound(target.to_string())),
                "broken" => Err(ResolveError::Backend("down".into())),
                id => Ok(PeerAddress::from(format!("{id}:{n}"))),
            }
        })
    }
}

fn target(app_id: &str) -> AppTarget {
    AppTarget {
        app_id: app_id.into(),
        namespace: String::new(),
    }
}

#[tokio::test]
async fn reuses_answer_until_forgotten() {
    let cached = Cached::with_ttl(Counting::default(), Duration::from_secs(3600));
    let calls = cached.inner().calls.clone();
    let beta = target("beta");

    assert_eq!(&*cached.resolve(&beta).await.unwrap(), "beta:1");
    assert_eq!(&*cached.resolve(&beta).await.unwrap(), "beta:1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Another target is its own entry.
    assert_eq!(&*cached.resolve(&target("gamma")).await.unwrap(), "gamma:2");

    cached.forget(&beta);
    assert_eq!(&*cached.resolve(&beta).await.unwrap(), "beta:3");
    assert_eq!(&*cached.resolve(&beta).await.unwrap(), "beta:3");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn namespaces_are_separate_entries() {
    let cached = Cached::with_ttl(Counting::default(), Duration::from_secs(3600));
    let mut other = target("beta");
    other.namespace = "prod".into();
    assert_eq!(&*cached.resolve(&target("beta")).await.unwrap(), "beta:1");
    assert_eq!(&*cached.resolve(&other).await.unwrap(), "beta:2");
}

#[tokio::test]
async fn misses_and_errors_are_not_cached() {
    let cached = Cached::with_ttl(Counting::default(), Duration::from_secs(3600));
    let calls = cached.inner().calls.clone();
    for _ in 0..2 {
        assert!(matches!(
            cached.resolve(&target("missing")).await,
            Err(ResolveError::NotFound(_))
        ));
        assert!(matches!(
            cached.resolve(&target("broken")).await,
            Err(ResolveError::Backend(_))
        ));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn expired_answers_are_asked_again() {
    let cached = Cached::with_ttl(Counting::default(), Duration::from_millis(20));
    let beta = target("beta");
    assert_eq!(&*cached.resolve(&beta).await.unwrap(), "beta:1");
    // Poll rather than sleep a fixed time: the entry must expire within the deadline.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = cached.resolve(&beta).await.unwrap();
        if &*answer != "beta:1" {
            break;
        }
        assert!(Instant::now() < deadline, "cached answer never expired");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn zero_ttl_disables_caching() {
    let cached = Cached::with_ttl(Counting::default(), Duration::ZERO);
    assert_eq!(&*cached.resolve(&target("beta")).await.unwrap(), "beta:1");
    assert_eq!(&*cached.resolve(&target("beta")).await.unwrap(), "beta:2");
}
