//! `--max-body-size` for proxied calls. daprd hands its proxy's gRPC server and client the same
//! limit (grpc-go's `MaxRecvMsgSize` / `MaxCallRecvMsgSize`), so every message of a proxied call,
//! in either direction, is bounded. Payloads stay opaque: only the 5-byte prefix of gRPC's
//! length-prefixed framing is read as the bytes stream past, and an oversized message is refused
//! at its prefix, before any of it is forwarded.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::{Body as HttpBody, Frame, SizeHint};

/// The gRPC message prefix: a compression flag and a big-endian `u32` length.
const PREFIX: usize = 5;

/// A message longer than the limit, reported with grpc-go's words so clients see what daprd's
/// proxy would have told them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("grpc: received message larger than max ({len} vs. {max})")]
pub struct TooLarge {
    pub len: u64,
    pub max: u64,
}

impl TooLarge {
    pub fn status(&self) -> tonic::Status {
        tonic::Status::resource_exhausted(self.to_string())
    }
}

/// Follows message boundaries through a stream of arbitrarily split chunks.
#[derive(Debug, Clone)]
pub struct MessageScanner {
    max: u64,
    state: Scan,
}

#[derive(Debug, Clone, Copy)]
enum Scan {
    /// `have` bytes of the next prefix seen so far; `len` holds the length bytes among them.
    Prefix { have: usize, len: u32 },
    /// Inside a message's payload, `left` bytes to go.
    Payload { left: u64 },
}

impl MessageScanner {
    pub fn new(max: u64) -> Self {
        Self {
            max,
            state: Scan::Prefix { have: 0, len: 0 },
        }
    }

    /// Advances over `chunk`; fails on the first prefix announcing more than the limit.
    pub fn scan(&mut self, mut chunk: &[u8]) -> Result<(), TooLarge> {
        while !chunk.is_empty() {
            match &mut self.state {
                Scan::Payload { left } => {
                    let step = chunk
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    chunk = &chunk[step..];
                    *left -= step as u64;
                    if *left == 0 {
                        self.state = Scan::Prefix { have: 0, len: 0 };
                    }
                }
                Scan::Prefix { have, len } => {
                    let step = chunk.len().min(PREFIX - *have);
                    for &byte in &chunk[..step] {
                        // Byte 0 is the compression flag; bytes 1..5 the length.
                        if *have > 0 {
                            *len = (*len << 8) | u32::from(byte);
                        }
                        *have += 1;
                    }
                    chunk = &chunk[step..];
                    if *have == PREFIX {
                        let len = u64::from(*len);
                        if len > self.max {
                            return Err(TooLarge { len, max: self.max });
                        }
                        self.state = if len == 0 {
                            Scan::Prefix { have: 0, len: 0 }
                        } else {
                            Scan::Payload { left: len }
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

/// Set when the request direction of a call refuses a message, so the response direction can
/// answer the caller with the reason instead of a bare reset.
#[derive(Debug, Default)]
pub struct Trip {
    refused: OnceLock<TooLarge>,
    waker: AtomicWaker,
}

impl Trip {
    fn set(&self, refused: TooLarge) {
        let _ = self.refused.set(refused);
        self.waker.wake();
    }

    pub fn get(&self) -> Option<TooLarge> {
        self.refused.get().copied()
    }

    /// Ready once the request direction refused a message; one task waits at a time (first the
    /// forwarding call, then the response body).
    pub fn poll_refused(&self, cx: &mut Context<'_>) -> Poll<TooLarge> {
        self.waker.register(cx.waker());
        match self.get() {
            Some(refused) => Poll::Ready(refused),
            None => Poll::Pending,
        }
    }
}

/// A proxied call's request body on its way upstream: ends in an error (which resets the
/// upstream stream) at the prefix of a message over the limit.
pub struct LimitedBody {
    inner: Body,
    scanner: MessageScanner,
    trip: Arc<Trip>,
}

impl LimitedBody {
    pub fn new(inner: Body, max: u64, trip: Arc<Trip>) -> Self {
        Self {
            inner,
            scanner: MessageScanner::new(max),
            trip,
        }
    }
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()) {
            if let Err(refused) = this.scanner.scan(data) {
                this.trip.set(refused);
                return Poll::Ready(Some(Err(axum::Error::new(refused))));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut out = vec![0u8];
        out.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
        out.extend(std::iter::repeat_n(7u8, len));
        out
    }

    #[test]
    fn messages_within_the_limit_pass_however_they_are_split() {
        let stream: Vec<u8> = [message(10), message(0), message(100), message(3)].concat();
        for split in 1..stream.len() {
            let mut scanner = MessageScanner::new(100);
            for chunk in stream.chunks(split) {
                scanner.scan(chunk).expect("within the limit");
            }
        }
    }

    #[test]
    fn an_oversized_message_is_refused_at_its_prefix() {
        let stream: Vec<u8> = [message(10), message(101)].concat();
        for split in 1..stream.len() {
            let mut scanner = MessageScanner::new(100);
            let mut consumed = 0;
            let refused = stream.chunks(split).find_map(|chunk| {
                consumed += chunk.len();
                scanner.scan(chunk).err()
            });
            assert_eq!(
                refused,
                Some(TooLarge { len: 101, max: 100 }),
                "split {split}"
            );
            // Nothing past the prefix had to be read to know.
            assert!(consumed < 15 + 5 + split, "split {split}");
        }
    }

    #[test]
    fn the_refusal_reads_like_grpc_go() {
        let status = TooLarge { len: 5, max: 4 }.status();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "grpc: received message larger than max (5 vs. 4)"
        );
    }
}
