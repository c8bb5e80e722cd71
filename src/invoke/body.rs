//! Bodies as chunk streams and back. Every chunk is a `Bytes` handed on without copying; a frame
//! larger than [`MAX_CHUNK`] is split by reference counting, not by copying.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body as _, Frame};
use tokio::sync::oneshot;

use super::MAX_CHUNK;
use crate::proto::common::StreamPayload;
use crate::proto::internals::{
    InternalInvokeRequest, InternalInvokeRequestStream, InternalInvokeResponseStream,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Splits an oversized frame into chunks of at most [`MAX_CHUNK`] without copying.
#[derive(Debug, Default)]
struct Splitter {
    rest: Option<Bytes>,
}

impl Splitter {
    fn next_piece(&mut self, mut data: Bytes) -> Bytes {
        if data.len() > MAX_CHUNK {
            let head = data.split_to(MAX_CHUNK);
            self.rest = Some(data);
            head
        } else {
            data
        }
    }

    fn take_rest(&mut self) -> Option<Bytes> {
        let data = self.rest.take()?;
        Some(self.next_piece(data))
    }
}

/// What is left of a request when its stream is dropped: enough to send it again when the
/// first attempt never reached the peer, or fell back to the unary RPC.
#[derive(Debug)]
pub struct Leftover {
    /// The head, if it was never sent, or a copy kept for a fallback.
    pub head: Option<InternalInvokeRequest>,
    /// Chunks already sent, kept only while the peer's streaming support is unknown.
    pub replay: Option<Vec<Bytes>>,
    pub rest: Option<Body>,
    /// Some chunk left without being recorded: the request cannot be sent again.
    pub lost: bool,
}

/// The caller side of `CallLocalStream`: the head first, then the body's frames as numbered
/// payloads. A body error is reported on `error_tx` and the stream then stays pending, so the
/// caller cancels the RPC instead of letting the peer see a truncated body as complete.
pub struct RequestChunks {
    head: Option<InternalInvokeRequest>,
    head_copy: Option<InternalInvokeRequest>,
    body: Option<Body>,
    split: Splitter,
    seq: u64,
    replay: Option<Vec<Bytes>>,
    replay_budget: u64,
    lost: bool,
    error_tx: Option<oneshot::Sender<BoxError>>,
    leftover_tx: Option<oneshot::Sender<Leftover>>,
}

impl RequestChunks {
    /// With a non-zero `replay_limit`, up to that many bytes of what is sent are kept, so a peer
    /// that lacks the streaming RPC can be called again with the unary one.
    pub fn new(
        head: InternalInvokeRequest,
        body: Body,
        replay_limit: u64,
    ) -> (
        Self,
        oneshot::Receiver<BoxError>,
        oneshot::Receiver<Leftover>,
    ) {
        let record = replay_limit > 0;
        let (error_tx, error_rx) = oneshot::channel();
        let (leftover_tx, leftover_rx) = oneshot::channel();
        let this = Self {
            head_copy: record.then(|| head.clone()),
            head: Some(head),
            body: Some(body),
            split: Splitter::default(),
            seq: 0,
            replay: record.then(Vec::new),
            replay_budget: replay_limit,
            lost: false,
            error_tx: Some(error_tx),
            leftover_tx: Some(leftover_tx),
        };
        (this, error_rx, leftover_rx)
    }

    fn payload(&mut self, data: Bytes) -> StreamPayload {
        let len = data.len() as u64;
        match &mut self.replay {
            Some(chunks) if len <= self.replay_budget => {
                self.replay_budget -= len;
                chunks.push(data.clone());
            }
            _ => {
                self.replay = None;
                self.lost = true;
            }
        }
        let seq = self.seq;
        self.seq += 1;
        StreamPayload { data, seq }
    }

    /// Polls the body for its next data chunk; `None` at the end (trailers are not forwarded:
    /// HTTP apps behind daprd never see request trailers either).
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(piece) = self.split.take_rest() {
            return Poll::Ready(Some(piece));
        }
        loop {
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => return Poll::Ready(Some(self.split.next_piece(data))),
                    Err(_) => continue,
                },
                Some(Err(err)) => {
                    self.body = None;
                    if let Some(tx) = self.error_tx.take() {
                        let _ = tx.send(err.into());
                    }
                    return Poll::Pending;
                }
                None => {
                    self.body = None;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl Stream for RequestChunks {
    type Item = InternalInvokeRequestStream;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(head) = this.head.take() {
            // Put the first chunk in the first message when it is already here: a small
            // request then costs one message, as with the unary RPC.
            let payload = match this.poll_chunk(cx) {
                Poll::Ready(Some(data)) => Some(this.payload(data)),
                _ => None,
            };
            return Poll::Ready(Some(InternalInvokeRequestStream {
                request: Some(head),
                payload,
            }));
        }
        match ready!(this.poll_chunk(cx)) {
            Some(data) => {
                let payload = this.payload(data);
                Poll::Ready(Some(InternalInvokeRequestStream {
                    request: None,
                    payload: Some(payload),
                }))
            }
            None => Poll::Ready(None),
        }
    }
}

impl Drop for RequestChunks {
    fn drop(&mut self) {
        if let Some(tx) = self.leftover_tx.take() {
            let _ = tx.send(Leftover {
                head: self.head.take().or_else(|| self.head_copy.take()),
                replay: self.replay.take(),
                rest: self.body.take(),
                lost: self.lost || self.split.rest.is_some(),
            });
        }
    }
}

/// A body fed by the payloads of a gRPC stream (either direction), checking daprd's sequence
/// numbering so a lost or reordered chunk is an error, never silent corruption.
pub struct PayloadBody<S> {
    first: Option<StreamPayload>,
    stream: S,
    expected_seq: u64,
    done: bool,
}

/// One message of a stream whose only interesting part after the first is its payload.
pub trait HasPayload {
    fn take_payload(self) -> Option<StreamPayload>;
}

impl HasPayload for InternalInvokeRequestStream {
    fn take_payload(self) -> Option<StreamPayload> {
        self.payload
    }
}

impl HasPayload for InternalInvokeResponseStream {
    fn take_payload(self) -> Option<StreamPayload> {
        self.payload
    }
}

impl<S> PayloadBody<S> {
    pub fn new(first: Option<StreamPayload>, stream: S) -> Self {
        Self {
            first,
            stream,
            expected_seq: 0,
            done: false,
        }
    }
}

impl<S, M> http_body::Body for PayloadBody<S>
where
    S: Stream<Item = Result<M, tonic::Status>> + Unpin,
    M: HasPayload,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let payload = match this.first.take() {
                Some(p) => p,
                None => match ready!(Pin::new(&mut this.stream).poll_next(cx)) {
                    Some(Ok(msg)) => match msg.take_payload() {
                        Some(p) => p,
                        None => continue,
                    },
                    Some(Err(status)) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(Box::new(status))));
                    }
                    None => {
                        this.done = true;
                        return Poll::Ready(None);
                    }
                },
            };
            if payload.seq != this.expected_seq {
                this.done = true;
                let msg = format!(
                    "invalid stream payload sequence: expected {}, got {}",
                    this.expected_seq, payload.seq
                );
                return Poll::Ready(Some(Err(msg.into())));
            }
            this.expected_seq += 1;
            if payload.data.is_empty() {
                continue;
            }
            return Poll::Ready(Some(Ok(Frame::data(payload.data))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// The callee side of `CallLocalStream`'s response: the head, then the app's body as numbered
/// payloads. An app body error ends the stream with an error status, so the caller sees the
/// response as broken rather than complete.
pub fn response_chunks(
    head: InternalInvokeResponseStream,
    body: Body,
) -> impl Stream<Item = Result<InternalInvokeResponseStream, tonic::Status>> + Send + 'static {
    ResponseChunks {
        head: Some(head),
        body: Some(body),
        split: Splitter::default(),
        seq: 0,
        failed: None,
    }
}

struct ResponseChunks {
    head: Option<InternalInvokeResponseStream>,
    /// An error met while looking for a first chunk to send with the head; sent right after.
    failed: Option<tonic::Status>,
    body: Option<Body>,
    split: Splitter,
    seq: u64,
}

impl ResponseChunks {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, tonic::Status>>> {
        if let Some(piece) = self.split.take_rest() {
            return Poll::Ready(Some(Ok(piece)));
        }
        loop {
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => return Poll::Ready(Some(Ok(self.split.next_piece(data)))),
                    Err(_) => continue,
                },
                Some(Err(err)) => {
                    self.body = None;
                    let status =
                        tonic::Status::internal(format!("error reading app response body: {err}"));
                    return Poll::Ready(Some(Err(status)));
                }
                None => {
                    self.body = None;
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn payload(&mut self, data: Bytes) -> StreamPayload {
        let seq = self.seq;
        self.seq += 1;
        StreamPayload { data, seq }
    }
}

impl Stream for ResponseChunks {
    type Item = Result<InternalInvokeResponseStream, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(mut head) = this.head.take() {
            match this.poll_chunk(cx) {
                Poll::Ready(Some(Ok(data))) => head.payload = Some(this.payload(data)),
                Poll::Ready(Some(Err(status))) => this.failed = Some(status),
                Poll::Ready(None) | Poll::Pending => {}
            }
            return Poll::Ready(Some(Ok(head)));
        }
        if let Some(status) = this.failed.take() {
            return Poll::Ready(Some(Err(status)));
        }
        match ready!(this.poll_chunk(cx)) {
            Some(Ok(data)) => {
                let payload = this.payload(data);
                Poll::Ready(Some(Ok(InternalInvokeResponseStream {
                    response: None,
                    payload: Some(payload),
                })))
            }
            Some(Err(status)) => Poll::Ready(Some(Err(status))),
            None => Poll::Ready(None),
        }
    }
}

/// Reads a whole body into one buffer, refusing more than `limit` bytes. Only the unary
/// fallback and the unary RPC need this.
pub async fn collect_limited(body: Body, limit: u64) -> Result<Bytes, CollectError> {
    let limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(CollectError::TooLarge),
        Err(err) => Err(CollectError::Read(err.to_string())),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("body too large")]
    TooLarge,
    #[error("{0}")]
    Read(String),
}
