//! The answer's body on its way to the client, watched for the AI metrics: the time to
//! its first byte, the gaps between streamed chunks, and — once it has ended — the token
//! usage the ai-adapter left in the request's attributes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use nantian_wasm::Attributes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::time::Instant;

use crate::filter_body::{SharedRun, lock};
use crate::upstream::{BoxError, ProxyBody};

/// The attributes the ai-adapter sets when the answer has ended (see wit/README.md).
pub const INPUT_TOKENS: &str = "ai.input_tokens";
pub const OUTPUT_TOKENS: &str = "ai.output_tokens";

/// Where one answer's observations go.
pub struct Observer {
    pub started: Instant,
    /// Only successful answers are timed: an error's first byte is no first token.
    pub timed: bool,
    pub first_token: Histogram,
    pub inter_token: Histogram,
    pub input_tokens: Counter,
    pub output_tokens: Counter,
    pub shared: Arc<Mutex<SharedRun>>,
}

pub struct ObservedBody {
    inner: ProxyBody,
    observer: Observer,
    last_chunk: Option<Instant>,
    counted: bool,
}

impl ObservedBody {
    pub fn new(inner: ProxyBody, observer: Observer) -> Self {
        ObservedBody {
            inner,
            observer,
            last_chunk: None,
            counted: false,
        }
    }

    fn chunk_sent(&mut self) {
        if !self.observer.timed {
            return;
        }
        let now = Instant::now();
        match self.last_chunk {
            None => self
                .observer
                .first_token
                .observe((now - self.observer.started).as_secs_f64()),
            Some(last) => self
                .observer
                .inter_token
                .observe((now - last).as_secs_f64()),
        }
        self.last_chunk = Some(now);
    }

    /// Adds the usage the filters reported, once, when the body has ended.
    fn count_tokens(&mut self) {
        if std::mem::replace(&mut self.counted, true) {
            return;
        }
        let guard = lock(&self.observer.shared);
        let Some(attributes) = guard.request.extensions.get::<Attributes>() else {
            return;
        };
        if let Some(n) = attributes.get_u64(INPUT_TOKENS) {
            self.observer.input_tokens.inc_by(n);
        }
        if let Some(n) = attributes.get_u64(OUTPUT_TOKENS) {
            self.observer.output_tokens.inc_by(n);
        }
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) if f.data_ref().is_some_and(|d| !d.is_empty()) => this.chunk_sent(),
            Some(Ok(_)) => this.count_tokens(), // trailers: the end
            None => this.count_tokens(),
            Some(Err(_)) => {}
        }
        if this.inner.is_end_stream() {
            this.count_tokens();
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
