//! HTTPRoute timeouts: `request` (from the request's arrival) and `backendRequest` (one
//! exchange with the backend), each until the response is complete. Before the response
//! head the gateway answers 504; after it, the body is cut off at the deadline (the head
//! is already on its way, so all that is left is to end the stream with an error).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::config::Timeouts;
use crate::upstream::{BoxError, ProxyBody};

/// The deadline for one backend exchange starting now: the earlier of the request's
/// deadline and the backend timeout.
pub fn backend_deadline(timeouts: &Timeouts, request_deadline: Option<Instant>) -> Option<Instant> {
    let backend = timeouts.backend_request.map(|t| Instant::now() + t);
    match (request_deadline, backend) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A response body that fails once its deadline passes.
pub struct DeadlineBody {
    inner: ProxyBody,
    sleep: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    pub fn wrap(inner: ProxyBody, deadline: Instant) -> ProxyBody {
        if inner.is_end_stream() {
            return inner;
        }
        http_body_util::BodyExt::boxed_unsync(DeadlineBody {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        })
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(
                "the route's timeout passed while the response body was streaming".into(),
            ))),
            Poll::Pending => Poll::Pending,
        }
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
    use std::time::Duration;

    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_earlier_deadline_wins() {
        let start = Instant::now();
        let timeouts = Timeouts {
            request: None,
            backend_request: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            backend_deadline(&timeouts, None),
            Some(start + Duration::from_secs(2))
        );
        let soon = start + Duration::from_secs(1);
        assert_eq!(backend_deadline(&timeouts, Some(soon)), Some(soon));
        assert_eq!(backend_deadline(&Timeouts::default(), None), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_still_streaming_at_the_deadline_ends_with_an_error() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let body = StreamBody::new(stream).boxed_unsync();
        let mut body = DeadlineBody::wrap(body, Instant::now() + Duration::from_secs(1));
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "a");
        // Nothing more arrives: the deadline ends it.
        assert!(body.frame().await.unwrap().is_err());
        drop(tx);
    }
}
