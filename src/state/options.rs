//! The request options daprd passes to stores as strings (`concurrency`, `consistency`,
//! `ttlInSeconds`), parsed once here so every store gets typed values and every API the same
//! error for a bad one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Concurrency, Consistency, StateError, Ttl};

/// The item metadata key daprd reads a TTL from (and the component metadata key for a
/// store-wide default).
pub(crate) const TTL_KEY: &str = "ttlInSeconds";

/// The response metadata key (HTTP header `metadata.ttlExpireTime`) for an item's expiry.
pub(crate) const TTL_EXPIRE_TIME_KEY: &str = "ttlExpireTime";

/// `first-write` | `last-write`; empty means the store default (last-write). Anything else is
/// refused, as components-contrib's `CheckRequestOptions` does.
pub(crate) fn concurrency(value: &str) -> Result<Concurrency, StateError> {
    match value {
        "" | "last-write" => Ok(Concurrency::LastWrite),
        "first-write" => Ok(Concurrency::FirstWrite),
        other => Err(StateError::InvalidRequest(format!(
            "concurrency option {other} not supported"
        ))),
    }
}

/// `eventual` | `strong`; empty means eventual. Anything else is refused on writes.
pub(crate) fn consistency(value: &str) -> Result<Consistency, StateError> {
    match value {
        "" | "eventual" => Ok(Consistency::Eventual),
        "strong" => Ok(Consistency::Strong),
        other => Err(StateError::InvalidRequest(format!(
            "consistency option {other} not supported"
        ))),
    }
}

/// Reads ignore an unknown consistency: daprd's stores do not check it on `Get`, so apps that
/// send one to daprd must keep working.
pub(crate) fn read_consistency(value: &str) -> Consistency {
    consistency(value).unwrap_or_default()
}

/// `ttlInSeconds` as daprd's `utils.ParseTTL` reads it: absent or empty is `None` (store
/// default); an integer from -1 to 2^31-1 is accepted, where -1 and 0 mean "never expire".
pub(crate) fn ttl(value: Option<&str>) -> Result<Option<Ttl>, StateError> {
    let Some(text) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let seconds: i64 = text.parse().map_err(|e| {
        StateError::InvalidRequest(format!(
            "incorrect value for metadata '{TTL_KEY}': {text:?}: {e}"
        ))
    })?;
    match seconds {
        -1..=0 => Ok(Some(Ttl::Never)),
        1..=0x7fff_ffff => Ok(Some(Ttl::Expire(Duration::from_secs(
            seconds.unsigned_abs(),
        )))),
        _ => Err(StateError::InvalidRequest(format!(
            "incorrect value for metadata '{TTL_KEY}': {seconds} is out of range (-1 to 2147483647)"
        ))),
    }
}

/// daprd reports expiry as Go's `time.RFC3339` in UTC: whole seconds, `Z` suffix.
pub(crate) fn expire_time(at: SystemTime) -> String {
    let whole = at
        .duration_since(UNIX_EPOCH)
        .map(|d| UNIX_EPOCH + Duration::from_secs(d.as_secs()))
        .unwrap_or(UNIX_EPOCH);
    let mut out = String::with_capacity(20);
    // Writing into a String cannot fail.
    let _ = crate::telemetry::logging::write_rfc3339_nanos(&mut out, whole);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_follows_parse_ttl() {
        assert_eq!(ttl(None).unwrap(), None);
        assert_eq!(ttl(Some("")).unwrap(), None);
        assert_eq!(ttl(Some("-1")).unwrap(), Some(Ttl::Never));
        assert_eq!(ttl(Some("0")).unwrap(), Some(Ttl::Never));
        assert_eq!(
            ttl(Some("30")).unwrap(),
            Some(Ttl::Expire(Duration::from_secs(30)))
        );
        for bad in ["-2", "abc", "1.5", "2147483648"] {
            assert!(ttl(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_accept_daprd_spellings_only() {
        assert_eq!(concurrency("").unwrap(), Concurrency::LastWrite);
        assert_eq!(concurrency("first-write").unwrap(), Concurrency::FirstWrite);
        assert!(concurrency("First-Write").is_err());
        assert_eq!(consistency("strong").unwrap(), Consistency::Strong);
        assert!(consistency("linearizable").is_err());
        assert_eq!(read_consistency("linearizable"), Consistency::Eventual);
    }

    #[test]
    fn expire_time_is_whole_seconds_utc() {
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 999_000_000);
        assert_eq!(expire_time(at), "2023-11-14T22:13:20Z");
    }
}
