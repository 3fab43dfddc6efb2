//! Merges the data frames of a body that are already at hand into one frame.
//!
//! Body-phase filters are called once per frame. A streaming upstream (server-sent events
//! from an LLM provider) writes one chunk per event, and hyper yields one frame per chunk
//! even when a single socket read brought dozens of them: that was one Wasm call, one
//! parse and one client write per event. Reading ahead while frames are ready costs one
//! copy and keeps the stream live: nothing waits for data that has not arrived yet.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use crate::upstream::BoxError;

/// Data merged into one frame at most: a filter call's input stays bounded.
pub const MAX_COALESCED_BYTES: usize = 64 * 1024;

pub struct CoalescedBody<B> {
    inner: B,
    /// What the read-ahead found after the data it merged (trailers, the end, an error),
    /// handed out by the next poll.
    held: Option<Option<Result<Frame<Bytes>, BoxError>>>,
}

impl<B> CoalescedBody<B> {
    pub fn new(inner: B) -> Self {
        CoalescedBody { inner, held: None }
    }
}

impl<B> Body for CoalescedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(held) = this.held.take() {
            return Poll::Ready(held);
        }
        let first = match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(frame) => return Poll::Ready(Some(Ok(frame))),
            },
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        // Copied only when a second frame is ready: a lone frame passes through as is.
        let mut merged: Option<BytesMut> = None;
        let mut length = first.len();
        while length < MAX_COALESCED_BYTES {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        length += data.len();
                        merged
                            .get_or_insert_with(|| {
                                let mut merged = BytesMut::with_capacity(length);
                                merged.extend_from_slice(&first);
                                merged
                            })
                            .extend_from_slice(&data);
                    }
                    Err(frame) => {
                        this.held = Some(Some(Ok(frame)));
                        break;
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    this.held = Some(Some(Err(e.into())));
                    break;
                }
                Poll::Ready(None) => {
                    this.held = Some(None);
                    break;
                }
                // The waker is registered: whatever comes next wakes the reader as usual.
                Poll::Pending => break,
            }
        }
        let data = merged.map_or(first, BytesMut::freeze);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        match &self.held {
            Some(None) => true,
            Some(Some(_)) => false,
            None => self.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        // Held frames carry no data: what is left is what the inner body has left.
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use http::HeaderMap;
    use http_body_util::BodyExt;

    use super::*;

    /// Frames as a scripted reader would see them: `None` is a moment with nothing ready.
    struct Script {
        steps: VecDeque<Option<Frame<Bytes>>>,
    }

    impl Body for Script {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.steps.pop_front() {
                Some(Some(frame)) => Poll::Ready(Some(Ok(frame))),
                Some(None) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                None => Poll::Ready(None),
            }
        }

        fn is_end_stream(&self) -> bool {
            self.steps.is_empty()
        }
    }

    fn data(text: &str) -> Option<Frame<Bytes>> {
        Some(Frame::data(Bytes::copy_from_slice(text.as_bytes())))
    }

    /// The frames the coalesced body yields, as text ("T" for trailers).
    async fn frames(steps: Vec<Option<Frame<Bytes>>>) -> Vec<String> {
        let mut body = CoalescedBody::new(Script {
            steps: steps.into(),
        });
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            out.push(match frame.into_data() {
                Ok(data) => String::from_utf8(data.to_vec()).unwrap(),
                Err(_) => "T".to_owned(),
            });
        }
        assert!(body.is_end_stream());
        out
    }

    #[tokio::test]
    async fn frames_ready_together_become_one() {
        let out = frames(vec![data("a"), data("b"), data("c"), None, data("d")]).await;
        assert_eq!(out, ["abc", "d"]);
    }

    #[tokio::test]
    async fn nothing_waits_for_data_that_has_not_arrived() {
        let out = frames(vec![data("a"), None, data("b"), None, None, data("c")]).await;
        assert_eq!(out, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn trailers_and_the_end_follow_the_merged_data() {
        let trailers = Some(Frame::trailers(HeaderMap::new()));
        let out = frames(vec![data("a"), data("b"), trailers]).await;
        assert_eq!(out, ["ab", "T"]);
        let out = frames(vec![data("a"), data("b")]).await;
        assert_eq!(out, ["ab"]);
    }

    #[tokio::test]
    async fn merged_frames_stay_bounded() {
        let big = "x".repeat(MAX_COALESCED_BYTES / 2);
        let out = frames(vec![data(&big), data(&big), data("tail")]).await;
        assert_eq!(out.len(), 2, "the cap ends the first frame");
        assert_eq!(out[0].len(), MAX_COALESCED_BYTES);
        assert_eq!(out[1], "tail");
    }
}
