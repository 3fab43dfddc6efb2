//! Streams bodies through the body phases of Wasm filters, chunk by chunk, without
//! buffering the whole body.
//!
//! The request body and the response of one request may be in flight at the same time
//! (an upstream can answer before it has read the request), so the request's [`FilterRun`]
//! and message heads live in a per-request [`SharedRun`] behind a mutex that is only held
//! for one chunk's filter calls — never across an `.await`, never shared between requests.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, Response, request, response};
use http_body::{Body, Frame, SizeHint};

use crate::coalesced_body::CoalescedBody;
use crate::filter_chain::FilterRun;
use crate::upstream::{BoxError, ProxyBody};

/// What the filters of one request work on after its head was forwarded.
pub struct SharedRun {
    pub run: FilterRun,
    /// The request as forwarded (method, URI, headers; no body).
    pub request: request::Parts,
    /// The response head as sent, once there is one.
    pub response: Option<response::Parts>,
    /// Set when a request-body filter answered (or failed closed): the response to give
    /// instead of the upstream's.
    pub local_response: Option<Response<ProxyBody>>,
}

impl SharedRun {
    pub fn new(run: FilterRun, request: request::Parts) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(SharedRun {
            run,
            request,
            response: None,
            local_response: None,
        }))
    }
}

pub fn lock(shared: &Mutex<SharedRun>) -> MutexGuard<'_, SharedRun> {
    // A poisoned lock means a panic mid-chunk on another task of this same request; the
    // state is still consistent enough to finish or fail this request.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which body phase a [`FilteredBody`] runs.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    Request,
    Response,
}

/// A body whose data frames pass through the filters' body phases. The filters see
/// `end_of_stream` on a final (possibly empty) chunk, before trailers are forwarded.
/// Frames that arrived together are passed in one call ([`CoalescedBody`]).
pub struct FilteredBody<B> {
    inner: CoalescedBody<B>,
    shared: Arc<Mutex<SharedRun>>,
    direction: Direction,
    trailers: Option<HeaderMap>,
    done: bool,
}

impl<B> FilteredBody<B> {
    pub fn new(inner: B, shared: Arc<Mutex<SharedRun>>, direction: Direction) -> Self {
        FilteredBody {
            inner: CoalescedBody::new(inner),
            shared,
            direction,
            trailers: None,
            done: false,
        }
    }

    fn filter(&self, chunk: Bytes, end_of_stream: bool) -> Result<Bytes, BoxError> {
        let mut guard = lock(&self.shared);
        let SharedRun {
            run,
            request,
            response,
            local_response,
        } = &mut *guard;
        match self.direction {
            Direction::Request => {
                run.request_chunk(request, chunk, end_of_stream)
                    .map_err(|answer| {
                        *local_response = Some(*answer);
                        "the request body was stopped by a filter".into()
                    })
            }
            Direction::Response => match response {
                Some(head) => run.response_chunk(request, head, chunk, end_of_stream),
                None => Err("response body filtered before its head".into()),
            },
        }
    }

    /// The last call, with `end_of_stream`; yields what the filters still had to say.
    fn finish(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        self.done = true;
        match self.filter(Bytes::new(), true) {
            Ok(tail) if !tail.is_empty() => Some(Ok(Frame::data(tail))),
            Ok(_) => self.trailers.take().map(|t| Ok(Frame::trailers(t))),
            Err(e) => Some(Err(e)),
        }
    }
}

impl<B> Body for FilteredBody<B>
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
        if this.done {
            return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        loop {
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                None => return Poll::Ready(this.finish()),
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(data) => match this.filter(data, false) {
                    // Held back by a filter: nothing to send for this chunk.
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
                Err(frame) => {
                    // Trailers end the body: the filters get their last call first.
                    this.trailers = frame.into_trailers().ok();
                    return Poll::Ready(this.finish());
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Filters may change the length: never announce one.
        SizeHint::default()
    }
}
