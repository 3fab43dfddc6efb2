//! HTTPRoute `retry`: one request, tried again at the backend after a failure without a
//! response (refused or reset connection, backendRequest timeout) or a response whose
//! status the rule lists.
//!
//! A retry resends the request body, so the body is held in memory first, up to
//! [`HOLD_LIMIT`]. A larger body (or one announced larger by `Content-Length`) streams to
//! the backend once, without retries: holding it would make every retried route a way to
//! pin unbounded memory. All attempts and the waits between them stay within the rule's
//! request timeout; each attempt gets the backendRequest timeout of its own.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Request, Response, request};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use rand::Rng;
use tokio::time::Instant;
use tracing::debug;

use crate::config::{RetrySpec, Timeouts};
use crate::metrics::RouteMetrics;
use crate::prefixed_body::PrefixedBody;
use crate::proxy::{SendError, copy_request_head, send_within};
use crate::timeout::backend_deadline;
use crate::upstream::{BoxError, ProxyBody, Upstream, UpstreamError};

/// The largest request body held for a resend.
pub const HOLD_LIMIT: usize = 64 * 1024;

/// Later retries wait longer, up to this many times the configured backoff.
const MAX_BACKOFF_FACTOR: u32 = 8;

/// Sends `parts` + `body` to `upstream`, retrying as `spec` says. The first attempt goes
/// to `first` (the request's pick, a session's endpoint included); each retry asks the
/// backend's load balancer again, so a dead endpoint is left behind. The result is the
/// last attempt's: a response (possibly with a retried status, once attempts run out) or
/// the reason none came.
#[allow(clippy::too_many_arguments)]
pub async fn send_with_retries(
    upstream: &Upstream,
    first: Option<usize>,
    parts: request::Parts,
    body: ProxyBody,
    spec: &RetrySpec,
    timeouts: &Timeouts,
    request_deadline: Option<Instant>,
    metrics: &RouteMetrics,
) -> Result<Response<ProxyBody>, SendError> {
    let held = match hold(&parts.headers, body, request_deadline).await {
        Held::Whole(held) => held,
        Held::TooLarge(body) => {
            let deadline = backend_deadline(timeouts, request_deadline);
            return send_within(upstream, first, Request::from_parts(parts, body), deadline).await;
        }
        Held::Failed(e) => return Err(SendError::ClientBody(e)),
        Held::TimedOut => return Err(SendError::TimedOut),
    };
    let mut retries = 0;
    let mut endpoint = first;
    loop {
        let req = Request::from_parts(copy_request_head(&parts), held.body());
        let deadline = backend_deadline(timeouts, request_deadline);
        let result = send_within(upstream, endpoint, req, deadline).await;
        if !worth_retrying(&result, spec, request_deadline) || retries == spec.attempts {
            return result;
        }
        retries += 1;
        let wait = backoff(spec.backoff, retries);
        if request_deadline.is_some_and(|d| Instant::now() + wait >= d) {
            // No time left for another attempt: what the last one got is the answer.
            return result;
        }
        debug!(backend = %upstream.name, retry = retries, ?wait, "retrying upstream request");
        metrics.retried();
        drop(result);
        tokio::time::sleep(wait).await;
        endpoint = upstream.balance(None);
    }
}

fn worth_retrying(
    result: &Result<Response<ProxyBody>, SendError>,
    spec: &RetrySpec,
    request_deadline: Option<Instant>,
) -> bool {
    match result {
        Ok(resp) => spec.codes.binary_search(&resp.status().as_u16()).is_ok(),
        // The backendRequest timeout ends one attempt; the request timeout ends them all.
        Err(SendError::TimedOut) => request_deadline.is_none_or(|d| Instant::now() < d),
        Err(SendError::Upstream(e)) => retryable(e),
        Err(SendError::ClientBody(_)) => false,
    }
}

/// Failures another attempt may get past. No endpoints and failed TLS verification are
/// configuration, not luck.
fn retryable(e: &UpstreamError) -> bool {
    match e {
        UpstreamError::Connect { .. } | UpstreamError::Request { .. } => true,
        UpstreamError::NoEndpoints(_) | UpstreamError::Tls { .. } => false,
    }
}

/// The wait before retry `n` (1-based): the configured backoff doubled per retry, capped,
/// plus up to a quarter of it as jitter so that clients failing together spread out.
/// Never less than the configured backoff, as the spec requires.
fn backoff(base: Duration, n: u32) -> Duration {
    if base.is_zero() {
        return base;
    }
    let factor = 1u32
        .checked_shl(n.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(MAX_BACKOFF_FACTOR);
    let wait = base * factor;
    let jitter_ms = (wait.as_millis() / 4) as u64;
    let jitter = match jitter_ms {
        0 => Duration::ZERO,
        max => Duration::from_millis(rand::rng().random_range(0..=max)),
    };
    wait + jitter
}

/// A request body read whole, to be sent as many times as needed.
pub struct HeldBody {
    data: Bytes,
    trailers: Option<HeaderMap>,
}

impl HeldBody {
    /// A fresh body with the held bytes (a cheap clone of them).
    fn body(&self) -> ProxyBody {
        if self.data.is_empty() && self.trailers.is_none() {
            return ProxyBody::default();
        }
        Replay {
            data: Some(self.data.clone()).filter(|d| !d.is_empty()),
            trailers: self.trailers.clone(),
        }
        .boxed_unsync()
    }
}

enum Held {
    Whole(HeldBody),
    /// Over the limit: what was read, then the rest, to stream once.
    TooLarge(ProxyBody),
    Failed(BoxError),
    TimedOut,
}

async fn hold(headers: &HeaderMap, body: ProxyBody, deadline: Option<Instant>) -> Held {
    if body.is_end_stream() {
        return Held::Whole(HeldBody {
            data: Bytes::new(),
            trailers: None,
        });
    }
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > HOLD_LIMIT as u64) {
        return Held::TooLarge(body);
    }
    let read = read_up_to(body, HOLD_LIMIT);
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, read)
            .await
            .unwrap_or(Held::TimedOut),
        None => read.await,
    }
}

async fn read_up_to(mut body: ProxyBody, limit: usize) -> Held {
    let mut data = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => return Held::Failed(e),
        };
        match frame.into_data() {
            Ok(chunk) => {
                data.extend_from_slice(&chunk);
                if data.len() > limit {
                    let read = PrefixedBody::new(Ok(Frame::data(data.freeze())), body);
                    return Held::TooLarge(read.boxed_unsync());
                }
            }
            Err(frame) => {
                // Trailers end the body.
                return Held::Whole(HeldBody {
                    data: data.freeze(),
                    trailers: frame.into_trailers().ok(),
                });
            }
        }
    }
    Held::Whole(HeldBody {
        data: data.freeze(),
        trailers: None,
    })
}

/// A held body, sent again.
struct Replay {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let len = self.data.as_ref().map_or(0, |d| d.len() as u64);
        SizeHint::with_exact(len)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{Full, StreamBody};

    use super::*;

    fn streamed(chunks: Vec<&'static [u8]>) -> ProxyBody {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c))));
        StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    async fn bytes_of(body: ProxyBody) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_small_body_is_held_and_replays_identically_every_time() {
        let Held::Whole(held) =
            hold(&HeaderMap::new(), streamed(vec![b"hello ", b"world"]), None).await
        else {
            panic!("a 11-byte body must be held");
        };
        for _ in 0..3 {
            let body = held.body();
            assert_eq!(body.size_hint().exact(), Some(11));
            assert_eq!(bytes_of(body).await, "hello world");
        }
    }

    #[tokio::test]
    async fn trailers_are_held_and_replayed() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames = vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"x"))),
            Ok(Frame::trailers(trailers.clone())),
        ];
        let body = StreamBody::new(futures::stream::iter(frames)).boxed_unsync();
        let Held::Whole(held) = hold(&HeaderMap::new(), body, None).await else {
            panic!("must be held");
        };
        let collected = held.body().collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        assert_eq!(collected.to_bytes(), "x");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_streams_once_without_losing_a_byte() {
        let chunk: &'static [u8] = Box::leak(vec![7u8; 40 * 1024].into_boxed_slice());
        let Held::TooLarge(body) =
            hold(&HeaderMap::new(), streamed(vec![chunk, chunk, chunk]), None).await
        else {
            panic!("120 KiB must not be held");
        };
        assert_eq!(bytes_of(body).await.len(), 120 * 1024);
    }

    #[tokio::test]
    async fn an_announced_large_body_is_not_read_at_all() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_LENGTH,
            (HOLD_LIMIT + 1).to_string().parse().unwrap(),
        );
        let body = Full::new(Bytes::from(vec![1u8; HOLD_LIMIT + 1]))
            .map_err(|never| match never {})
            .boxed_unsync();
        assert!(matches!(
            hold(&headers, body, None).await,
            Held::TooLarge(_)
        ));
    }

    #[test]
    fn backoff_never_undercuts_the_minimum_and_grows_to_a_cap() {
        let base = Duration::from_millis(100);
        for n in 1..20 {
            let wait = backoff(base, n);
            let floor = base * (1 << (n - 1).min(3));
            assert!(wait >= floor, "retry {n}: {wait:?} < {floor:?}");
            assert!(wait <= floor + floor / 4, "retry {n}: {wait:?}");
        }
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn only_failures_another_attempt_can_fix_are_retried() {
        let spec = RetrySpec {
            codes: Box::new([500, 503]),
            attempts: 2,
            backoff: Duration::ZERO,
        };
        let status = |code: u16| {
            let mut resp = Response::new(ProxyBody::default());
            *resp.status_mut() = http::StatusCode::from_u16(code).unwrap();
            Ok(resp)
        };
        assert!(worth_retrying(&status(503), &spec, None));
        assert!(!worth_retrying(&status(502), &spec, None));
        assert!(!worth_retrying(&status(200), &spec, None));
        let endpoint: http::uri::Authority = "10.0.0.1:80".parse().unwrap();
        let refused = Err(SendError::Upstream(UpstreamError::Connect {
            endpoint: endpoint.clone(),
            source: "refused".into(),
        }));
        assert!(worth_retrying(&refused, &spec, None));
        let tls = Err(SendError::Upstream(UpstreamError::Tls {
            endpoint,
            source: "bad certificate".into(),
        }));
        assert!(!worth_retrying(&tls, &spec, None));
        let past = Instant::now() - Duration::from_millis(1);
        assert!(worth_retrying(&Err(SendError::TimedOut), &spec, None));
        assert!(!worth_retrying(
            &Err(SendError::TimedOut),
            &spec,
            Some(past)
        ));
    }
}
