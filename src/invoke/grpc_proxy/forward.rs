//! The one place where proxied gRPC calls leave the sidecar: a pooled HTTP/2 client (one
//! multiplexed connection per peer sidecar or app) that re-targets a request and streams it both
//! ways. It also holds the call to its `grpc-timeout`, as daprd's proxy does through its
//! context deadline, so an expired deadline is answered `DEADLINE_EXCEEDED` and the upstream
//! stream is reset.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, Request, Response, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{Instant, Sleep};

use super::limit::{LimitedBody, MessageScanner, TooLarge, Trip};
use super::tls::{PeerId, TlsClients};
use crate::identity::Identity;

pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Why a call could not be handed to its upstream, before any answer came back.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("invalid upstream address {0:?}")]
    Address(String),
    #[error("failed to connect to {address}: {source}")]
    Connect {
        address: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("error forwarding to {address}: {source}")]
    Request {
        address: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("context deadline exceeded")]
    Deadline,
    #[error(transparent)]
    TooLarge(TooLarge),
}

impl ForwardError {
    /// The gRPC status daprd's proxy (a grpc-go client) reports for the same failure.
    pub fn status(&self) -> tonic::Status {
        match self {
            Self::Address(_) => tonic::Status::internal(self.to_string()),
            Self::Connect { .. } | Self::Request { .. } => {
                tonic::Status::unavailable(self.to_string())
            }
            Self::Deadline => tonic::Status::deadline_exceeded(self.to_string()),
            Self::TooLarge(refused) => refused.status(),
        }
    }

    /// The upstream could not be reached at all (a stale address is the usual cause).
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }
}

/// The HTTP/2 client shared by every proxied call: h2c to the local app and, without mTLS, to
/// peers; with mTLS, peers are dialed over TLS and must prove the callee's identity.
pub struct Upstream {
    client: Client<HttpConnector, LimitedBody>,
    tls: Option<TlsClients>,
    /// `--max-body-size`: the largest message of a proxied call, either way.
    max_message: u64,
}

impl Upstream {
    pub fn new(max_message: u64) -> Self {
        let mut connector = HttpConnector::new();
        // Without it every small gRPC message waits on Nagle + delayed ACK (~1 ms per hop).
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Self {
            client: client_builder().build(connector),
            tls: None,
            max_message,
        }
    }

    /// Peers are reached over mTLS with this workload identity.
    pub fn with_identity(identity: Arc<Identity>, max_message: u64) -> Self {
        Self {
            tls: Some(TlsClients::new(identity)),
            ..Self::new(max_message)
        }
    }

    /// Sends `req` to `address` (`host:port`), keeping its path, metadata and streaming body.
    /// `peer` names the sidecar expected there (`None` for the local app): with mTLS it must
    /// prove that identity.
    /// The response body streams back with its trailers; dropping it resets the upstream
    /// stream, which is how a caller's cancellation reaches the callee.
    pub async fn forward(
        &self,
        address: &str,
        peer: Option<&PeerId>,
        req: Request<Body>,
    ) -> Result<Response<ForwardBody>, ForwardError> {
        let deadline = deadline(req.headers());
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        parts.uri = Uri::builder()
            .scheme("http")
            .authority(address)
            .path_and_query(path)
            .build()
            .map_err(|_| ForwardError::Address(address.to_owned()))?;
        parts.version = Version::HTTP_2;
        let trip = Arc::new(Trip::default());
        let body = LimitedBody::new(body, self.max_message, trip.clone());
        let req = Request::from_parts(parts, body);
        let sent = match (&self.tls, peer) {
            (Some(tls), Some(peer)) => tls.client(peer).request(req),
            _ => self.client.request(req),
        };
        // A refused request message ends the wait at once, whether or not the upstream noticed.
        let sent = async {
            tokio::select! {
                result = sent => Ok(result),
                refused = std::future::poll_fn(|cx| trip.poll_refused(cx)) => Err(refused),
            }
        };
        let result = match deadline {
            Some(at) => tokio::time::timeout_at(at, sent)
                .await
                .map_err(|_| ForwardError::Deadline)?,
            None => sent.await,
        }
        .map_err(ForwardError::TooLarge)?;
        let response = result.map_err(|source| {
            if let Some(refused) = trip.get() {
                ForwardError::TooLarge(refused)
            } else if source.is_connect() {
                ForwardError::Connect {
                    address: address.to_owned(),
                    source,
                }
            } else {
                ForwardError::Request {
                    address: address.to_owned(),
                    source,
                }
            }
        })?;
        Ok(response.map(|body| ForwardBody {
            inner: Some(body),
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            scanner: MessageScanner::new(self.max_message),
            trip,
        }))
    }
}

/// The settings every upstream client shares.
pub(super) fn client_builder() -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .http2_only(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_while_idle(true)
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new());
    builder
}

/// When the call must be over, from its `grpc-timeout` (gRPC over HTTP/2: up to 8 digits and a
/// unit among H M S m u n).
fn deadline(headers: &HeaderMap) -> Option<Instant> {
    headers
        .get(GRPC_TIMEOUT)
        .and_then(parse_timeout)
        .map(|timeout| Instant::now() + timeout)
}

pub fn parse_timeout(value: &HeaderValue) -> Option<Duration> {
    let value = value.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The upstream's response body, cut short with a status trailer (dropping the inner body resets
/// the upstream stream) when the call's deadline passes mid-stream (`DEADLINE_EXCEEDED`) or a
/// message either way is over the limit (`RESOURCE_EXHAUSTED`).
pub struct ForwardBody {
    inner: Option<Incoming>,
    deadline: Option<Pin<Box<Sleep>>>,
    scanner: MessageScanner,
    trip: Arc<Trip>,
}

impl ForwardBody {
    /// Ends the response with `status` in its trailers.
    fn cut(&mut self, status: &tonic::Status) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.inner = None;
        let mut trailers = HeaderMap::new();
        // Status headers are always valid ASCII; a failure only loses the message.
        let _ = status.add_header(&mut trailers);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }
}

impl HttpBody for ForwardBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(refused) = this.trip.poll_refused(cx) {
            return this.cut(&refused.status());
        }
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(Err(refused)) = frame.data_ref().map(|d| this.scanner.scan(d)) {
                    return this.cut(&refused.status());
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(err))) => {
                if let Some(refused) = this.trip.get() {
                    return this.cut(&refused.status());
                }
                return Poll::Ready(Some(Err(err)));
            }
            Poll::Ready(None) => {
                this.inner = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if let Some(sleep) = this.deadline.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                return this.cut(&ForwardError::Deadline.status());
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_every_unit() {
        let parse = |s: &'static str| parse_timeout(&HeaderValue::from_static(s));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
    }

    #[test]
    fn malformed_timeouts_are_ignored() {
        for bad in ["", "S", "10", "123456789S", "10x", "-1S", "1.5S"] {
            assert_eq!(parse_timeout(&HeaderValue::from_static(bad)), None, "{bad}");
        }
    }
}
