//! HTTP/1.1 requests without a body, or with a small one of known length, read and
//! answered by the connection's own loop.
//!
//! hyper's HTTP/1 server costs about a microsecond of user CPU per request here: its
//! dispatcher state machine, a fresh 8 KB read buffer per request (its read for a client
//! leaving mid-request lands while the last head still borrows the old one), two reads of
//! the system clock for `Date`, and the encoder's generic framing, and a request body
//! costs a channel between its task and the request's. Most requests (GET and friends: no
//! body, no upgrade; API calls with a small JSON body) need none of that, so this loop
//! parses the head with httparse as hyper does, reads a `Content-Length` body of up to
//! [`MAX_BODY`] whole (as nginx buffers request bodies), hands the router an
//! `http::Request`, and writes the response.
//!
//! The first request it does not take (a larger or chunked body, `Expect`, an upgrade,
//! HEAD, HTTP/1.0, HTTP/2's preface, a head it cannot parse or that is too large) hands
//! the connection, with every byte already read, to hyper for the rest of its life
//! ([`Outcome::Handoff`]), so everything unusual keeps hyper's behaviour and its error
//! answers.
//!
//! As in hyper: pipelined requests are answered in order; a client that closes its side
//! while its request is in flight cancels it (the upstream request is dropped); responses
//! get `Date`, and `Content-Length` when the body's size is known, else chunked framing.
//! A request counts as started once its body is in: until then the connection is idle
//! to the watchdog (`idle`), so a body that stops coming closes it as a stalled head does.

use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame};
use http_body_util::Full;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http_date::append_date;
use crate::idle::Activity;
use crate::upstream::ProxyBody;

/// hyper's default limit; a request with more headers goes to hyper (which answers 431).
const MAX_HEADERS: usize = 100;
/// A head still incomplete at this size goes to hyper, whose limit is larger.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const READ_CHUNK: usize = 8 * 1024;
/// Below this much free space the read buffer grows (or reclaims what was consumed).
const MIN_READ_SPACE: usize = 1024;
/// Response bytes gathered into one write; larger data frames are written as they are.
const COALESCE: usize = 16 * 1024;
/// Response buffers larger than this are not kept between requests.
const KEPT_OUT_CAPACITY: usize = 64 * 1024;

/// The largest request body read here; a request with a larger one goes to hyper, which
/// streams it.
pub const MAX_BODY: usize = 64 * 1024;

/// The request body of the direct path: all of it, read with the head (often empty).
pub type RequestBody = Full<Bytes>;

/// What answers a request: the router and proxy, or a test's stand-in.
pub trait Handler {
    fn handle(&self, req: Request<RequestBody>)
    -> impl Future<Output = Response<ProxyBody>> + Send;
}

/// How the direct loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The connection is finished with (closed by either side, or failed).
    Closed,
    /// The next request is for hyper; what was read of it is in the read buffer.
    Handoff,
}

/// Serves requests from `io` until one is not for this path, the connection closes, or
/// `shutdown` is set (checked between requests: the one in flight is finished first).
/// `buf` holds what was read and not yet served: on [`Outcome::Handoff`], the start of
/// the connection's remaining bytes.
pub async fn serve<H, I>(
    handler: &H,
    activity: &Arc<Activity>,
    io: &mut I,
    buf: &mut BytesMut,
    shutdown: &AtomicBool,
) -> Outcome
where
    H: Handler,
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut fields = Vec::new();
    let mut out = Vec::new();
    loop {
        let head = loop {
            match parse(buf, &mut fields) {
                Parse::Complete(head) => break head,
                Parse::Partial => {}
                Parse::NotDirect => return Outcome::Handoff,
            }
            if shutdown.load(Ordering::Relaxed) {
                // Idle, or stuck in a head: nothing in flight to finish.
                let _ = io.shutdown().await;
                return Outcome::Closed;
            }
            let read = poll_fn(|cx| {
                if shutdown.load(Ordering::Relaxed) {
                    return Poll::Ready(Ok(None));
                }
                poll_read_more(io, buf, cx).map_ok(Some)
            })
            .await;
            match read {
                Ok(Some(0)) | Err(_) => return Outcome::Closed,
                Ok(_) => {}
            }
        };
        let in_flight = activity.start();
        // The head's and the body's bytes stay in the read buffer's memory, shared by the
        // request's values and body; once they are dropped, the buffer reclaims the space.
        let head_bytes = buf.split_to(head.len).freeze();
        let body = buf.split_to(head.body).freeze();
        let request = build_request(head_bytes, &head, &fields, body);
        let Some(request) = request else {
            // Unreachable in practice (httparse and `http` accept the same names and
            // targets); answered as hyper would.
            let response = crate::filter_chain::status_response(
                StatusCode::BAD_REQUEST,
                "invalid request head\n",
            );
            let _ = write_response(io, buf, &mut out, response, true).await;
            let _ = io.shutdown().await;
            return Outcome::Closed;
        };
        let response = {
            let handling = pin!(handler.handle(request));
            match watch_client(io, buf, handling).await {
                Some(response) => response,
                // The client left: its request is dropped, upstream and all.
                None => return Outcome::Closed,
            }
        };
        let close = head.close || shutdown.load(Ordering::Relaxed);
        let keep_alive = matches!(
            write_response(io, buf, &mut out, response, close).await,
            Ok(true)
        );
        drop(in_flight);
        if out.capacity() > KEPT_OUT_CAPACITY {
            out = Vec::new();
        }
        if !keep_alive || shutdown.load(Ordering::Relaxed) {
            let _ = io.shutdown().await;
            return Outcome::Closed;
        }
    }
}

/// A request head at the start of the read buffer, as offsets into it.
#[derive(Debug)]
struct Head {
    len: usize,
    /// The body's length (`Content-Length`); its bytes follow the head in the buffer.
    body: usize,
    method: Range<usize>,
    target: Range<usize>,
    /// The client asked to close after this request (`Connection: close`).
    close: bool,
}

#[derive(Debug)]
enum Parse {
    Complete(Head),
    Partial,
    NotDirect,
}

/// Parses the head at the start of `buf`, recording each header's name and value as
/// offsets in `fields`, and decides whether this path serves it. `Complete` only once
/// the body is in `buf` too.
fn parse(buf: &[u8], fields: &mut Vec<(Range<usize>, Range<usize>)>) -> Parse {
    if buf.is_empty() {
        return Parse::Partial;
    }
    // Uninitialised: zeroing 100 headers for every request costs more than parsing.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => return Parse::Partial,
        Ok(httparse::Status::Partial) | Err(_) => return Parse::NotDirect,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parse::NotDirect;
    };
    if method == "HEAD" || method == "CONNECT" {
        return Parse::NotDirect;
    }
    let base = buf.as_ptr() as usize;
    let offsets = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    fields.clear();
    let mut close = false;
    let mut body = None;
    for header in req.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            // A repeated length, or one that is not plain digits, is hyper's to refuse.
            match content_length(header.value) {
                Some(n) if body.is_none() && n <= MAX_BODY => body = Some(n),
                _ => return Parse::NotDirect,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Parse::NotDirect;
        } else if name.eq_ignore_ascii_case("connection") && has_token(header.value, "close") {
            close = true;
        }
        fields.push((offsets(name.as_bytes()), offsets(header.value)));
    }
    let body = body.unwrap_or(0);
    if buf.len() - len < body {
        return Parse::Partial;
    }
    Parse::Complete(Head {
        len,
        body,
        method: offsets(method.as_bytes()),
        target: offsets(target.as_bytes()),
        close,
    })
}

/// A `Content-Length` value: ASCII digits only (RFC 9110 §8.6), at most what a `usize`
/// holds.
fn content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The request of a parsed head (`bytes`, the head itself) and its `body`; its target and
/// header values are slices of the head.
fn build_request(
    bytes: Bytes,
    head: &Head,
    fields: &[(Range<usize>, Range<usize>)],
    body: Bytes,
) -> Option<Request<RequestBody>> {
    let method = Method::from_bytes(&bytes[head.method.clone()]).ok()?;
    let uri = Uri::from_maybe_shared(bytes.slice(head.target.clone())).ok()?;
    // Room for what forwarding adds (`X-Forwarded-For`, `-Proto`), so the map does not grow.
    let mut headers = HeaderMap::with_capacity(fields.len() + 2);
    for (name, value) in fields {
        let name = HeaderName::from_bytes(&bytes[name.clone()]).ok()?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(value.clone())).ok()?;
        headers.append(name, value);
    }
    let mut request = Request::new(RequestBody::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Some(request)
}

/// Reads what the client sent into `buf`, growing it only when little room is left.
fn poll_read_more<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < MIN_READ_SPACE {
        // Reclaims the consumed front of the buffer when it can.
        buf.reserve(READ_CHUNK);
    }
    pin!(io.read_buf(buf)).poll(cx)
}

/// Runs `work` while reading ahead from the client: pipelined requests are kept in `buf`,
/// and `None` means the client closed (or broke) the connection before `work` finished.
async fn watch_client<I, F>(
    io: &mut I,
    buf: &mut BytesMut,
    mut work: Pin<&mut F>,
) -> Option<F::Output>
where
    I: AsyncRead + Unpin,
    F: Future,
{
    poll_fn(|cx| {
        if let Poll::Ready(done) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(done));
        }
        // Enough read ahead: stop reading until this request is answered.
        while buf.len() < MAX_HEAD_BYTES {
            match poll_read_more(io, buf, cx) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => break,
            }
        }
        Poll::Pending
    })
    .await
}

/// How the response body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// 1xx, 204, 304: no body whatever the headers say.
    None,
    Length(u64),
    Chunked,
}

/// Writes the response; `Ok(true)` when the connection may serve another request.
async fn write_response<I>(
    io: &mut I,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    response: Response<ProxyBody>,
    close: bool,
) -> io::Result<bool>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let (parts, mut body) = response.into_parts();
    let close = close || has_close(&parts.headers);
    out.clear();
    let framing = encode_head(&parts, body.size_hint().exact(), close, out);
    let mut left = match framing {
        Framing::None => {
            finish(io, out).await?;
            return Ok(!close);
        }
        Framing::Length(n) => Some(n),
        Framing::Chunked => None,
    };
    loop {
        // What the body has ready goes out with what is gathered; the gathered bytes are
        // written before waiting for more (a stream's events reach the client at once).
        let frame = match poll_now(&mut body) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !out.is_empty() {
                    io.write_all(out).await?;
                    out.clear();
                }
                // Free in cleartext; over TLS it pushes out the records written so far.
                io.flush().await?;
                let next = pin!(poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)));
                match watch_client(io, buf, next).await {
                    Some(frame) => frame,
                    None => return Err(io::ErrorKind::ConnectionAborted.into()),
                }
            }
        };
        let data = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if let (Ok(trailers), None) = (frame.into_trailers(), left) {
                        end_chunks(out, Some(&trailers));
                        finish(io, out).await?;
                        return Ok(!close);
                    }
                    // Trailers cannot be sent with a Content-Length: dropped.
                    continue;
                }
            },
            None => break,
            Some(Err(e)) => {
                // The response cannot be completed: what was sent stands, and closing
                // the connection tells the client it was cut short.
                tracing::debug!("response body failed: {e}");
                finish(io, out).await?;
                return Ok(false);
            }
        };
        if data.is_empty() {
            continue;
        }
        match &mut left {
            Some(left) => {
                let n = data.len() as u64;
                if n > *left {
                    tracing::debug!("response body longer than its Content-Length");
                    finish(io, out).await?;
                    return Ok(false);
                }
                *left -= n;
            }
            None => {
                append_number(out, data.len() as u64, 16);
                out.extend_from_slice(b"\r\n");
            }
        }
        if out.len() + data.len() <= COALESCE {
            out.extend_from_slice(&data);
        } else {
            io.write_all(out).await?;
            out.clear();
            io.write_all(&data).await?;
        }
        if left.is_none() {
            out.extend_from_slice(b"\r\n");
        }
    }
    match left {
        None => end_chunks(out, None),
        Some(0) => {}
        Some(_) => {
            tracing::debug!("response body shorter than its Content-Length");
            finish(io, out).await?;
            return Ok(false);
        }
    }
    finish(io, out).await?;
    Ok(!close)
}

/// Writes what is gathered and flushes (over TLS, the records still buffered).
async fn finish<I: AsyncWrite + Unpin>(io: &mut I, out: &[u8]) -> io::Result<()> {
    io.write_all(out).await?;
    io.flush().await
}

/// The body's next frame if it has one ready, without waiting for it.
fn poll_now(body: &mut ProxyBody) -> Poll<Option<Result<Frame<Bytes>, crate::upstream::BoxError>>> {
    Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop()))
}

fn end_chunks(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        append_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn has_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .any(|v| has_token(v.as_bytes(), "close"))
}

/// The status line and headers, with `Date` when the response has none and the framing
/// headers this path decides (the response's own `Content-Length` when valid).
fn encode_head(
    parts: &http::response::Parts,
    exact: Option<u64>,
    close: bool,
    out: &mut Vec<u8>,
) -> Framing {
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let declared = declared_length(&parts.headers);
    let mut has_date = false;
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        if name == CONNECTION && close {
            continue;
        }
        has_date |= name == DATE;
        append_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        append_date(out);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let framing = if status.is_informational() || status == StatusCode::NO_CONTENT {
        Framing::None
    } else if status == StatusCode::NOT_MODIFIED {
        // Its Content-Length describes the resource, not a body.
        if let Some(n) = declared {
            append_length(out, n);
        }
        Framing::None
    } else if let Some(n) = declared.or(exact) {
        append_length(out, n);
        Framing::Length(n)
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    out.extend_from_slice(b"\r\n");
    framing
}

/// The response's `Content-Length` when it has one valid value (repeats agreeing).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let n: u64 = value.to_str().ok()?.trim().parse().ok()?;
        if length.is_some_and(|seen| seen != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

fn append_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    append_number(out, n, 10);
    out.extend_from_slice(b"\r\n");
}

/// `n` in base 10 or 16 (lower case), without allocating.
fn append_number(out: &mut Vec<u8>, mut n: u64, base: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[(n % base) as usize];
        n /= base;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn append_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[path = "server_h1_direct_tests.rs"]
mod tests;
