//! Responses: whole bodies, and streams sent chunk by chunk with the `hold` and `slow`
//! behaviours (see [`super::reply::Behaviour`]).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::sync::{mpsc, watch};

use super::reply::Behaviour;

/// Every response body of the mock. An error aborts the response (a held stream never
/// released).
pub type Body = BoxBody<Bytes, io::Error>;

/// The pause between chunks of a `slow` model's stream.
pub const SLOW_CHUNK_DELAY: Duration = Duration::from_millis(50);
/// How long a `hold` stream waits for `POST /_mock/release` before it is cut off (without
/// its end, so the client sees a broken stream rather than a test hanging forever).
pub const HOLD_LIMIT: Duration = Duration::from_secs(60);

/// A whole body.
pub fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON body (`application/json`).
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    full(status, "application/json", value.to_string())
}

/// A stream response, as a plan: its chunks in order, and the one carrying the first
/// delta (after which a `hold` stream waits).
#[derive(Debug, Clone, Default)]
pub struct StreamPlan {
    pub chunks: Vec<Bytes>,
    pub first_delta: usize,
}

impl StreamPlan {
    pub fn push(&mut self, chunk: impl Into<Bytes>) {
        self.chunks.push(chunk.into());
    }

    /// Marks the chunk pushed last as the first delta (only the first mark counts).
    pub fn mark_first_delta(&mut self, marked: &mut bool) {
        if !*marked {
            self.first_delta = self.chunks.len().saturating_sub(1);
            *marked = true;
        }
    }
}

/// Releases held streams: `POST /_mock/release` bumps a generation that every stream held
/// at the time (or about to be: it read the generation before sending its first delta)
/// waits to see change.
#[derive(Debug)]
pub struct Release {
    generation: watch::Sender<u64>,
    held: AtomicUsize,
}

impl Default for Release {
    fn default() -> Self {
        Self {
            generation: watch::Sender::new(0),
            held: AtomicUsize::new(0),
        }
    }
}

impl Release {
    /// Releases every held stream; returns how many were waiting.
    pub fn release(&self) -> usize {
        let held = self.held();
        self.generation.send_modify(|generation| *generation += 1);
        held
    }

    /// Streams waiting for a release now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

/// Counts a stream as held while alive.
struct HeldGuard<'a>(&'a AtomicUsize);

impl<'a> HeldGuard<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sends `plan` as a 200 streaming response of `content_type`, one body frame per chunk,
/// as `behaviour` paces it. Must be called within the Tokio runtime.
pub fn stream(
    plan: StreamPlan,
    behaviour: Behaviour,
    content_type: &'static str,
    release: Arc<Release>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::spawn(async move {
        let mut generation = release.generation.subscribe();
        let seen = *generation.borrow_and_update();
        for (i, chunk) in plan.chunks.into_iter().enumerate() {
            if i > 0 && behaviour.slow {
                tokio::time::sleep(SLOW_CHUNK_DELAY).await;
            }
            if tx.send(Ok(chunk)).await.is_err() {
                return; // The client went away.
            }
            if behaviour.hold && i == plan.first_delta {
                let _held = HeldGuard::new(&release.held);
                let released = tokio::time::timeout(
                    HOLD_LIMIT,
                    generation.wait_for(|generation| *generation > seen),
                )
                .await
                .is_ok_and(|changed| changed.is_ok());
                if !released {
                    let _ = tx
                        .send(Err(io::Error::other("held stream was never released")))
                        .await;
                    return;
                }
            }
        }
    });
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item.map(Frame::data), rx))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// One server-sent event without an `event:` line (OpenAI): `data: <json>\n\n`.
pub fn sse_data(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// One server-sent event with its name (Anthropic): `event: <name>\ndata: <json>\n\n`.
pub fn sse_event(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// One NDJSON line (Ollama): `<json>\n`.
pub fn ndjson(value: &serde_json::Value) -> Bytes {
    Bytes::from(format!("{value}\n"))
}
