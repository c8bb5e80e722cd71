//! W3C trace context for published events: the CloudEvent carries the traceparent of the span
//! daprd would have open for the publish, a child of the request's own context.

/// The `traceparent`/`tracestate` a request came with (as received; validated here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// A traceparent for one published event: the incoming trace id and flags with a new span
    /// id, or a new sampled trace when the request carried no valid traceparent.
    pub fn child_traceparent(&self) -> String {
        let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
        match self.traceparent.as_deref().and_then(parse) {
            Some((trace_id, flags)) => format!("00-{trace_id}-{span}-{flags}"),
            None => format!("00-{}-{span}-01", uuid::Uuid::new_v4().simple()),
        }
    }

    /// The tracestate to copy, only alongside a valid traceparent (as W3C requires).
    pub fn tracestate(&self) -> &str {
        match (
            self.traceparent.as_deref().and_then(parse),
            &self.tracestate,
        ) {
            (Some(_), Some(state)) => state,
            _ => "",
        }
    }
}

/// `(trace-id, flags)` of a valid version-00 traceparent.
fn parse(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = version == "00"
        && parts.next().is_none()
        && hex(trace_id, 32)
        && hex(span_id, 16)
        && hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0')
        && span_id.bytes().any(|b| b != b'0');
    valid.then_some((trace_id, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn child_keeps_trace_id_and_flags() {
        let ctx = TraceContext {
            traceparent: Some(PARENT.into()),
            tracestate: Some("k=v".into()),
        };
        let child = ctx.child_traceparent();
        assert!(child.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
        assert!(child.ends_with("-01"));
        assert_ne!(child, PARENT);
        assert!(parse(&child).is_some());
        assert_eq!(ctx.tracestate(), "k=v");
    }

    #[test]
    fn invalid_or_missing_parent_starts_a_trace() {
        for parent in [None, Some("garbage"), Some("00-0000-11-01")] {
            let ctx = TraceContext {
                traceparent: parent.map(str::to_owned),
                tracestate: Some("k=v".into()),
            };
            let new = ctx.child_traceparent();
            assert!(parse(&new).is_some(), "{new}");
            assert_eq!(ctx.tracestate(), "");
        }
    }
}
