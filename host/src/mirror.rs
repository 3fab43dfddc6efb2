//! Gateway API RequestMirror: a copy of the request goes to another backend, and nothing
//! about that copy can affect the client's exchange.
//!
//! The copy is sent from its own task once the request head is ready to forward; its
//! response is read and thrown away (so the connection returns to the pool). A request
//! body is teed chunk by chunk into a bounded channel: if the mirror falls behind, its copy
//! is abandoned (it ends with an error, so the mirror backend never sees a truncated body
//! as complete) rather than slowing the client down. Which requests are mirrored is
//! deterministic: exactly `numerator` of every `denominator` consecutive requests.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, request};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tracing::debug;

use crate::upstream::{BoxError, ProxyBody, Upstream};

/// Mirrored requests of one filter in flight at once; more are not mirrored.
const MAX_IN_FLIGHT: usize = 1024;
/// Body chunks a mirror may lag behind the client before its copy is abandoned.
const BODY_CHUNKS_AHEAD: usize = 16;
/// A mirrored exchange that takes longer is abandoned.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

/// A RequestMirror filter bound to its backend.
pub struct MirrorStep {
    pub upstream: Arc<Upstream>,
    numerator: u64,
    denominator: u64,
    counter: AtomicU64,
    in_flight: Arc<AtomicUsize>,
}

impl MirrorStep {
    pub fn new(upstream: Arc<Upstream>, numerator: u32, denominator: u32) -> Self {
        MirrorStep {
            upstream,
            numerator: u64::from(numerator),
            denominator: u64::from(denominator.max(1)),
            counter: AtomicU64::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether the next request is mirrored: of every `denominator` consecutive calls,
    /// exactly `numerator` say yes, spread evenly.
    pub fn sample(&self) -> bool {
        if self.numerator >= self.denominator {
            return true;
        }
        if self.numerator == 0 {
            return false;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed) % self.denominator;
        (n * self.numerator) / self.denominator != ((n + 1) * self.numerator) / self.denominator
    }
}

/// Sends copies of a request (head as forwarded) to `mirrors`, and returns the body to
/// forward to the primary backend: `body` itself, or a tee feeding the copies.
pub fn start(mirrors: &[Arc<MirrorStep>], head: &request::Parts, body: ProxyBody) -> ProxyBody {
    let has_body = !body.is_end_stream();
    let mut copies = Vec::new();
    for mirror in mirrors {
        if mirror.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
            mirror.in_flight.fetch_sub(1, Ordering::Relaxed);
            debug!(backend = %mirror.upstream.name, "too many mirrored requests in flight; not mirroring");
            continue;
        }
        let mirror_body = if has_body {
            let (tx, rx) = mpsc::channel(BODY_CHUNKS_AHEAD);
            let abandoned = Arc::new(AtomicBool::new(false));
            copies.push(Copy {
                tx: Some(tx),
                abandoned: abandoned.clone(),
            });
            CopyBody { rx, abandoned }.boxed_unsync()
        } else {
            ProxyBody::default()
        };
        let mut req = Request::new(mirror_body);
        *req.method_mut() = head.method.clone();
        *req.uri_mut() = head.uri.clone();
        *req.version_mut() = head.version;
        *req.headers_mut() = head.headers.clone();
        tokio::spawn(send(mirror.clone(), req));
    }
    if copies.is_empty() {
        body
    } else {
        Tee {
            inner: body,
            copies,
            finished: false,
        }
        .boxed_unsync()
    }
}

async fn send(mirror: Arc<MirrorStep>, req: Request<ProxyBody>) {
    let exchange = async {
        let resp = mirror.upstream.send(req).await?;
        // Read to the end so the connection can be reused.
        resp.into_body().collect().await?;
        Ok::<_, BoxError>(())
    };
    match tokio::time::timeout(MIRROR_TIMEOUT, exchange).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(backend = %mirror.upstream.name, "mirrored request failed: {e}"),
        Err(_) => debug!(backend = %mirror.upstream.name, "mirrored request timed out"),
    }
    mirror.in_flight.fetch_sub(1, Ordering::Relaxed);
}

struct Copy {
    /// `None` once abandoned.
    tx: Option<mpsc::Sender<Bytes>>,
    abandoned: Arc<AtomicBool>,
}

impl Copy {
    fn abandon(&mut self) {
        self.abandoned.store(true, Ordering::Release);
        self.tx = None;
    }
}

/// The client's request body, copying every data chunk to the mirrors as it passes.
struct Tee {
    inner: ProxyBody,
    copies: Vec<Copy>,
    finished: bool,
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    for copy in &mut this.copies {
                        let full = copy
                            .tx
                            .as_ref()
                            .is_some_and(|tx| tx.try_send(data.clone()).is_err());
                        if full {
                            copy.abandon();
                        }
                    }
                }
            }
            Poll::Ready(None) => {
                this.finished = true;
                // Dropping the senders ends the copies cleanly.
                this.copies.iter_mut().for_each(|c| c.tx = None);
            }
            Poll::Ready(Some(Err(_))) => this.copies.iter_mut().for_each(Copy::abandon),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        if !self.finished {
            // The client's body never completed: neither may the copies.
            self.copies.iter_mut().for_each(Copy::abandon);
        }
    }
}

/// A mirror's copy of the request body.
struct CopyBody {
    rx: mpsc::Receiver<Bytes>,
    abandoned: Arc<AtomicBool>,
}

impl Body for CopyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Poll::Ready(None) if self.abandoned.load(Ordering::Acquire) => Poll::Ready(Some(Err(
                "the mirrored copy of the request body was abandoned".into(),
            ))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(numerator: u32, denominator: u32) -> MirrorStep {
        let upstream = Arc::new(Upstream::new(
            Arc::from("backend/ns/mirror:80"),
            Arc::new(crate::upstream::UpstreamClient::new(
                crate::config::UpstreamProtocol::Http1,
                None,
            )),
            Vec::new(),
            prometheus_client::metrics::histogram::Histogram::new([1.0]),
        ));
        MirrorStep::new(upstream, numerator, denominator)
    }

    #[tokio::test]
    async fn exactly_the_share_of_consecutive_requests_is_mirrored() {
        for (numerator, denominator) in [(20, 100), (25, 50), (35, 100), (1, 3), (0, 100)] {
            let s = step(numerator, denominator);
            for window in 0..3 {
                let mirrored = (0..denominator).filter(|_| s.sample()).count();
                assert_eq!(
                    mirrored, numerator as usize,
                    "{numerator}/{denominator} #{window}"
                );
            }
        }
        let all = step(1, 1);
        assert!((0..10).all(|_| all.sample()));
        // Any 500 consecutive requests at 20 %: exactly 100.
        let s = step(20, 100);
        (0..7).for_each(|_| {
            s.sample();
        });
        assert_eq!((0..500).filter(|_| s.sample()).count(), 100);
    }

    #[tokio::test]
    async fn copies_see_the_body_and_an_abandoned_copy_ends_with_an_error() {
        let body = http_body_util::Full::new(Bytes::from_static(b"payload"))
            .map_err(|never| match never {})
            .boxed_unsync();
        let (tx, rx) = mpsc::channel(BODY_CHUNKS_AHEAD);
        let abandoned = Arc::new(AtomicBool::new(false));
        let tee = Tee {
            inner: body,
            copies: vec![Copy {
                tx: Some(tx),
                abandoned: abandoned.clone(),
            }],
            finished: false,
        };
        let primary = tee.collect().await.unwrap().to_bytes();
        assert_eq!(primary, "payload");
        let copy = CopyBody {
            rx,
            abandoned: abandoned.clone(),
        };
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "payload");

        // A client body dropped half way: the copy must not look complete.
        let (tx, rx) = mpsc::channel(BODY_CHUNKS_AHEAD);
        let abandoned = Arc::new(AtomicBool::new(false));
        drop(Tee {
            inner: ProxyBody::default(),
            copies: vec![Copy {
                tx: Some(tx),
                abandoned: abandoned.clone(),
            }],
            finished: false,
        });
        assert!(CopyBody { rx, abandoned }.collect().await.is_err());
    }
}
