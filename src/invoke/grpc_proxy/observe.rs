//! Records a proxied call's final gRPC status in the service invocation metrics once it is
//! known: in the headers of a trailers-only answer, else in the trailers at the end of the
//! stream, without holding the body back.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::telemetry::metrics::SidecarMetrics;

const GRPC_STATUS: &str = "grpc-status";

/// Which side of the call this sidecar is on, which decides the metric.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    /// `res_recv_total{type="streaming"}`, labelled with the callee.
    Caller,
    /// `res_sent_total`, labelled with the caller.
    Callee,
}

/// Where the status goes: recorded once, whichever way the call ends.
pub struct Report {
    pub metrics: Arc<SidecarMetrics>,
    pub peer: String,
    pub side: Side,
}

impl Report {
    /// A call that ended before any upstream answer: counted with `status`, which becomes the
    /// trailers-only answer.
    pub fn refuse(self, status: tonic::Status) -> http::Response<axum::body::Body> {
        self.send(status.code());
        super::status_response(status)
    }

    pub fn send(self, code: tonic::Code) {
        let code = code as i32;
        match self.side {
            Side::Caller => self
                .metrics
                .invocation_streaming_response_received(&self.peer, code),
            Side::Callee => self.metrics.invocation_response_sent(&self.peer, code),
        }
    }
}

fn code_in(headers: &HeaderMap) -> Option<tonic::Code> {
    headers
        .get(GRPC_STATUS)
        .map(|v| tonic::Code::from_bytes(v.as_bytes()))
}

/// Wraps `response` so its status is reported when it is known.
pub fn observe<B>(response: Response<B>, report: Report) -> Response<Body>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    if let Some(code) = code_in(response.headers()) {
        report.send(code);
        return response.map(Body::new);
    }
    response.map(|inner| {
        Body::new(Observed {
            inner,
            report: Some(report),
        })
    })
}

struct Observed<B> {
    inner: B,
    report: Option<Report>,
}

impl<B> Observed<B> {
    fn finish(&mut self, code: tonic::Code) {
        if let Some(report) = self.report.take() {
            report.send(code);
        }
    }
}

impl<B> HttpBody for Observed<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(code) = frame.trailers_ref().and_then(code_in) {
                    this.finish(code);
                }
            }
            Some(Err(_)) => this.finish(tonic::Code::Unavailable),
            None => this.finish(tonic::Code::Unknown),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Observed<B> {
    fn drop(&mut self) {
        // Dropped before its status arrived: the caller went away.
        self.finish(tonic::Code::Cancelled);
    }
}
