//! A body with the frame already taken from its front put back: what a look at a body
//! took (is all of it here? is it small enough to hold for a retry?), then the rest.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::upstream::{BoxError, ProxyBody};

pub struct PrefixedBody {
    first: Option<Result<Frame<Bytes>, BoxError>>,
    rest: ProxyBody,
}

impl PrefixedBody {
    pub fn new(first: Result<Frame<Bytes>, BoxError>, rest: ProxyBody) -> Self {
        PrefixedBody {
            first: Some(first),
            rest,
        }
    }
}

impl Body for PrefixedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let first = match &self.first {
            Some(Ok(frame)) => frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        };
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::filter_chain::full_body;

    #[tokio::test]
    async fn the_first_frame_comes_back_first_and_the_size_counts_it() {
        let body = PrefixedBody::new(
            Ok(Frame::data(Bytes::from_static(b"hello "))),
            full_body(Bytes::from_static(b"world")),
        );
        assert_eq!(body.size_hint().exact(), Some(11));
        assert!(!body.is_end_stream());
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all, "hello world");
    }
}
