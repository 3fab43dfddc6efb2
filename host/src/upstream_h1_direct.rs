//! HTTP/1.1 requests whose body is already in memory, written and answered from the
//! request's own task.
//!
//! Most proxied requests (GET, HEAD, DELETE, …) carry no body and are not upgrades, and
//! many others carry a small body that is all there when they are sent (an AI request,
//! read whole to route it). For them, going through hyper's client dispatcher costs a
//! task switch, a channel push and pop and a oneshot per request (about 3 µs of the
//! proxy's ~7 µs of user CPU here), and each response body chunk another task switch and
//! channel. This module writes the request on a pooled connection and parses the
//! response with `httparse` right in the caller's task; the response body is read by
//! whoever polls it. Requests with a streaming body or an `Upgrade` keep using hyper
//! (`upstream_h1`), which handles full-duplex streaming and protocol switches.
//!
//! Response framing follows RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; chunked
//! when it is the final transfer coding; else `Content-Length`; else until close. A
//! connection goes back to the pool only after a complete response that did not ask to
//! close it, with no stray bytes behind it.
//!
//! The same goes over TLS: the connection's stream is an [`UpstreamIo`], and only where
//! the cleartext path uses the socket's readiness directly does TLS take its own branch.

use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use crate::upstream::{BoxError, ProxyBody};
use crate::upstream_h1::EndpointIdle;
use crate::upstream_io::UpstreamIo;

/// The largest response head accepted, as hyper's default.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
const READ_CHUNK: usize = 8 * 1024;
/// Bodies up to this size that arrive with their head are copied out of the read buffer.
const SMALL_BODY_COPY: usize = 4 * 1024;
/// The largest request body sent this way (copied behind the head, in one write).
pub const MAX_REQUEST_BODY: u64 = 64 * 1024;
/// A request head buffer larger than this is not kept for the next request.
const KEPT_HEAD_CAPACITY: usize = 8 * 1024;

/// A keep-alive connection used by this module, with what was read past the last
/// response (nothing, when it is idle).
pub struct DirectConn {
    io: UpstreamIo,
    buf: BytesMut,
    /// The request head being written, kept to be reused by the next one.
    head: Vec<u8>,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum DirectError {
    /// A reused connection turned out closed before any answer: the request may be sent
    /// again on another one.
    Stale(BoxError),
    Failed(BoxError),
}

impl DirectConn {
    /// A connection just opened (and, over TLS, through its handshake).
    pub fn new(io: UpstreamIo) -> Self {
        DirectConn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            head: Vec::new(),
        }
    }

    /// Whether an idle connection still looks usable: the peer has neither closed it nor
    /// sent anything unasked. Uses the readiness Tokio already knows: no system call
    /// unless the socket was reported readable.
    pub fn looks_usable(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match &mut self.io {
            UpstreamIo::Plain(tcp) => {
                matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            // TLS records may well arrive unasked (session tickets, a close_notify): a
            // read that finds no application data yet is the sign of a usable one. The
            // waker is a no-op as nobody waits on an idle connection; a real read later
            // registers its own.
            UpstreamIo::Tls(tls) => {
                let mut probe = ReadBuf::new(&mut probe);
                let mut cx = Context::from_waker(Waker::noop());
                Pin::new(&mut **tls)
                    .poll_read(&mut cx, &mut probe)
                    .is_pending()
            }
        }
    }
}

/// Whether a request can take the direct path, given that its body (if it has one) is
/// all in memory: not a tunnel, not a protocol switch.
pub fn eligible<B: Body>(req: &Request<B>) -> bool {
    req.method() != Method::CONNECT && !req.headers().contains_key(http::header::UPGRADE)
}

/// Sends `req` (already in origin form with its `Host`) with `body`, and reads the
/// response head. The connection goes back to `endpoint`'s idle list once the response
/// is complete.
pub async fn exchange(
    mut conn: DirectConn,
    reused: bool,
    req: &http::request::Parts,
    body: Option<&Bytes>,
    endpoint: &Arc<EndpointIdle>,
) -> Result<Response<ProxyBody>, DirectError> {
    encode_request(req, body, &mut conn.head);
    // The flush is free in cleartext and pushes the TLS record out.
    let written = match conn.io.write_all(&conn.head).await {
        Ok(()) => conn.io.flush().await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        return Err(stale_or_failed(reused, e.into()));
    }
    if conn.head.capacity() > KEPT_HEAD_CAPACITY {
        // A rare huge head: don't keep its memory on an idle connection.
        conn.head = Vec::new();
    }
    let (response, consumed, copied) = loop {
        match parse_response(&conn.buf) {
            Ok(Some((response, consumed, _))) if response.status().is_informational() => {
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(DirectError::Failed(
                        "upstream switched protocols unasked".into(),
                    ));
                }
                // 100 Continue, 103 Early Hints, …: not forwarded, the final answer follows.
                conn.buf.advance(consumed);
            }
            Ok(Some(parsed)) => break parsed,
            Ok(None) if conn.buf.len() >= MAX_HEAD_BYTES => {
                return Err(DirectError::Failed(
                    "upstream response head too large".into(),
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(DirectError::Failed(e)),
        }
        conn.buf.reserve(READ_CHUNK);
        match conn.io.read_buf(&mut conn.buf).await {
            Ok(0) => {
                let nothing_yet = conn.buf.is_empty();
                let retry = reused && nothing_yet && is_idempotent(&req.method);
                return Err(stale_or_failed(
                    retry,
                    "upstream closed the connection before answering".into(),
                ));
            }
            Ok(_) => {}
            Err(e) => {
                let retry = reused && conn.buf.is_empty() && is_idempotent(&req.method);
                return Err(stale_or_failed(retry, e.into()));
            }
        }
    };
    conn.buf.advance(consumed);
    let (mut head, ()) = response.into_parts();
    let framing = match framing(&req.method, head.status, &head.headers) {
        Ok(framing) => framing,
        Err(e) => return Err(DirectError::Failed(e)),
    };
    let keep_alive = keeps_alive(head.version, &head.headers) && framing != Framing::UntilClose;
    if framing == Framing::Chunked {
        // Decoded here; the client side frames the body its own way.
        head.headers.remove(TRANSFER_ENCODING);
    }
    let body = match framing {
        Framing::Empty => {
            give_back(conn, keep_alive, endpoint);
            ProxyBody::default()
        }
        Framing::Length(n) if conn.buf.len() as u64 >= n => {
            // The whole body arrived with the head (the common small answer): hand it
            // over as one piece and free the connection at once.
            let n = usize::try_from(n).expect("fits: no more than is buffered");
            // Small bodies are copied so the read buffer stays ours and is reused;
            // splitting it off would cost a fresh buffer for the next read.
            let bytes = if copied.len() >= consumed + n {
                // Copied along with the head.
                conn.buf.advance(n);
                copied.slice(consumed..consumed + n)
            } else {
                conn.buf.split_to(n).freeze()
            };
            give_back(conn, keep_alive, endpoint);
            crate::filter_chain::full_body(bytes)
        }
        framing => http_body_util::BodyExt::boxed_unsync(DirectBody {
            conn: Some(conn),
            state: match framing {
                Framing::Length(n) => State::Length(n),
                Framing::Chunked => State::ChunkSize,
                _ => State::UntilClose,
            },
            keep_alive,
            endpoint: endpoint.clone(),
        }),
    };
    Ok(Response::from_parts(head, body))
}

fn stale_or_failed(retry: bool, e: BoxError) -> DirectError {
    if retry {
        DirectError::Stale(e)
    } else {
        DirectError::Failed(e)
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn give_back(conn: DirectConn, keep_alive: bool, endpoint: &EndpointIdle) {
    // Bytes past the response mean the peer is out of step: don't reuse.
    if keep_alive && conn.buf.is_empty() {
        endpoint.put_back_direct(conn);
    }
}

/// `METHOD target HTTP/1.1`, then the headers as they are (hop-by-hop ones were removed
/// by `forwarding`, `Host` set by the pool), then the body, into `out` (cleared first).
/// A body (even an empty one) is framed by its length, whatever framing the client used;
/// without one, the head is sent as it is.
fn encode_request(req: &http::request::Parts, body: Option<&Bytes>, out: &mut Vec<u8>) {
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let framed = body.is_some();
    let body = body.map_or(&[][..], |b| &b[..]);
    let mut size = req.method.as_str().len() + target.len() + 16 + body.len() + 40;
    for (name, value) in &req.headers {
        size += name.as_str().len() + value.len() + 4;
    }
    out.clear();
    out.reserve(size);
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &req.headers {
        if framed && (name == CONTENT_LENGTH || name == TRANSFER_ENCODING) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framed {
        // Writing into a `Vec` cannot fail.
        let _ = write!(out, "content-length: {}\r\n", body.len());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// A complete response head at the start of `buf`, its length, and the copy of `buf` its
/// header values share: the head, and when little follows it (a small body that came
/// with it), everything buffered, so that body needs no copy of its own. `None` if more
/// bytes are needed.
type ParsedHead = (Response<()>, usize, Bytes);

fn parse_response(buf: &BytesMut) -> Result<Option<ParsedHead>, BoxError> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Uninitialised: zeroing 128 headers for every response costs more than parsing.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let parsing = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut headers,
    );
    let consumed = match parsing {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("invalid upstream response: {e}").into()),
    };
    let status = StatusCode::from_u16(parsed.code.unwrap_or(0))
        .map_err(|_| "invalid upstream status code")?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // One copy; every value is a slice of it.
    let copied = if buf.len() - consumed <= SMALL_BODY_COPY {
        buf.len()
    } else {
        consumed
    };
    let head = Bytes::copy_from_slice(&buf[..copied]);
    let base = buf.as_ptr() as usize;
    let mut map = HeaderMap::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| format!("invalid upstream header name {:?}", header.name))?;
        let start = header.value.as_ptr() as usize - base;
        let value = HeaderValue::from_maybe_shared(head.slice(start..start + header.value.len()))
            .map_err(|_| format!("invalid upstream value for header {name}"))?;
        map.append(name, value);
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = map;
    Ok(Some((response, consumed, head)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

fn framing(method: &Method, status: StatusCode, headers: &HeaderMap) -> Result<Framing, BoxError> {
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        let last = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty());
        return Ok(match last {
            Some(coding) if coding.eq_ignore_ascii_case("chunked") => Framing::Chunked,
            _ => Framing::UntilClose,
        });
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.to_str().unwrap_or("x").split(',') {
            let n: u64 = part
                .trim()
                .parse()
                .map_err(|_| "invalid upstream Content-Length")?;
            if length.is_some_and(|seen| seen != n) {
                return Err("conflicting upstream Content-Length values".into());
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let has = |token: &str| {
        headers.get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    match version {
        Version::HTTP_11 => !has("close"),
        _ => has("keep-alive"),
    }
}

enum State {
    Length(u64),
    UntilClose,
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailers,
    Done,
}

/// A response body still on the wire.
struct DirectBody {
    /// `None` once done (back in the pool or closed).
    conn: Option<DirectConn>,
    state: State,
    keep_alive: bool,
    endpoint: Arc<EndpointIdle>,
}

type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

impl DirectBody {
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take() {
            give_back(conn, self.keep_alive, &self.endpoint);
        }
    }

    /// Reads more into the buffer; `Ok(false)` at end of stream.
    fn poll_fill(conn: &mut DirectConn, cx: &mut Context<'_>) -> Poll<Result<bool, BoxError>> {
        conn.buf.reserve(READ_CHUNK);
        let tcp = match &mut conn.io {
            UpstreamIo::Plain(tcp) => tcp,
            UpstreamIo::Tls(tls) => {
                // A read future polled once: it reads nothing more when it is pending.
                let read = std::pin::pin!(tls.read_buf(&mut conn.buf));
                return read
                    .poll(cx)
                    .map(|read| read.map(|n| n > 0).map_err(Into::into));
            }
        };
        loop {
            match tcp.try_read_buf(&mut conn.buf) {
                Ok(0) => return Poll::Ready(Ok(false)),
                Ok(_) => return Poll::Ready(Ok(true)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(tcp.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    /// Decodes what is buffered: `Some` when there is a frame or an end to report.
    fn decode(&mut self) -> Result<Option<Option<Frame<Bytes>>>, BoxError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Some(None));
        };
        let buf = &mut conn.buf;
        loop {
            match self.state {
                State::Done => return Ok(Some(None)),
                State::Length(0) => {
                    self.finish();
                    return Ok(Some(None));
                }
                State::Length(remaining) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = remaining.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.state = State::Length(remaining - n);
                    if remaining == n {
                        self.finish();
                    }
                    return Ok(Some(Some(Frame::data(data))));
                }
                State::UntilClose => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(Some(Frame::data(buf.split().freeze()))));
                }
                State::ChunkSize => {
                    let Some(line_end) = find_crlf(buf) else {
                        return if buf.len() > 4096 {
                            Err("upstream chunk size line too long".into())
                        } else {
                            Ok(None)
                        };
                    };
                    let line = &buf[..line_end];
                    let digits = line.split(|b| *b == b';').next().unwrap_or(b"");
                    let size = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                        .ok_or("invalid upstream chunk size")?;
                    buf.advance(line_end + 2);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkData(remaining) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = remaining.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.state = if remaining == n {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(remaining - n)
                    };
                    return Ok(Some(Some(Frame::data(data))));
                }
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("upstream chunk not followed by CRLF".into());
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.finish();
                        return Ok(Some(None));
                    }
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let (consumed, trailers) = match httparse::parse_headers(buf, &mut headers) {
                        Ok(httparse::Status::Complete((n, parsed))) => (n, trailer_map(parsed)),
                        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => {
                            return Ok(None);
                        }
                        _ => return Err("invalid upstream trailers".into()),
                    };
                    buf.advance(consumed);
                    self.finish();
                    return Ok(Some(Some(Frame::trailers(trailers))));
                }
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn trailer_map(parsed: &[httparse::Header<'_>]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(parsed.len());
    for header in parsed {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) {
            map.append(name, value);
        }
    }
    map
}

impl Body for DirectBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = &mut *self;
        loop {
            match this.decode() {
                Ok(Some(frame)) => return Poll::Ready(frame.map(Ok)),
                Ok(None) => {}
                Err(e) => {
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let conn = this
                .conn
                .as_mut()
                .expect("decode reports the end without one");
            match ready!(Self::poll_fill(conn, cx)) {
                Ok(true) => {}
                Ok(false) if matches!(this.state, State::UntilClose) => {
                    // The end of a close-delimited body; the connection goes with it.
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(None);
                }
                Ok(false) => {
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(
                        "upstream closed the connection in the middle of the body".into(),
                    )));
                }
                Err(e) => {
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::upstream::UpstreamError;
    use crate::upstream_h1::Http1Pool;
    use crate::upstream_test_backend::request_len;

    /// A backend answering every request head with `answer`, in those pieces.
    async fn scripted(answer: &'static [&'static [u8]], close: bool) -> (String, Arc<AtomicUsize>) {
        let pieces = |_: &[u8]| answer.iter().map(|p| p.to_vec()).collect();
        crate::upstream_test_backend::backend(pieces, close).await
    }

    fn request(method: Method) -> Request<ProxyBody> {
        let mut req = Request::new(ProxyBody::default());
        *req.method_mut() = method;
        *req.uri_mut() = "/x".parse().unwrap();
        req
    }

    struct Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        trailers: Option<HeaderMap>,
    }

    async fn exchange_on(
        pool: &Http1Pool,
        addr: &str,
        method: Method,
    ) -> Result<Answer, UpstreamError> {
        let endpoint = pool.endpoint(&addr.parse().unwrap());
        let resp = pool.send(&endpoint, request(method)).await?;
        let (head, body) = resp.into_parts();
        let collected = body.collect().await.expect("body");
        let trailers = collected.trailers().cloned();
        Ok(Answer {
            status: head.status,
            headers: head.headers,
            body: collected.to_bytes(),
            trailers,
        })
    }

    fn pool() -> Http1Pool {
        Http1Pool::new(
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(90),
            None,
        )
    }

    #[tokio::test]
    async fn a_length_delimited_body_arriving_in_pieces_is_read_whole_and_the_connection_reused() {
        let (addr, connections) = scripted(
            &[
                b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nx-a: 1\r\n\r\n",
                b"hello",
                b" world",
            ],
            false,
        )
        .await;
        let pool = pool();
        for _ in 0..3 {
            let answer = exchange_on(&pool, &addr, Method::GET).await.unwrap();
            assert_eq!(answer.status, 200);
            assert_eq!(answer.body, "hello world");
            assert_eq!(answer.headers["x-a"], "1");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn chunked_bodies_are_decoded_with_their_trailers() {
        let (addr, connections) = scripted(
            &[
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhel",
                b"lo\r\n6\r\n world\r\n",
                b"0\r\nx-checksum: abc\r\n\r\n",
            ],
            false,
        )
        .await;
        let pool = pool();
        for _ in 0..2 {
            let answer = exchange_on(&pool, &addr, Method::GET).await.unwrap();
            assert_eq!(answer.body, "hello world");
            assert!(!answer.headers.contains_key(TRANSFER_ENCODING));
            assert_eq!(answer.trailers.unwrap()["x-checksum"], "abc");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_without_length_runs_to_close_and_the_connection_is_not_reused() {
        let (addr, connections) =
            scripted(&[b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"the end"], true).await;
        let pool = pool();
        for _ in 0..2 {
            let answer = exchange_on(&pool, &addr, Method::GET).await.unwrap();
            assert_eq!(answer.body, "until the end");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn head_204_and_304_answers_have_no_body() {
        let (addr, connections) =
            scripted(&[b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"], false).await;
        let pool = pool();
        for _ in 0..2 {
            let answer = exchange_on(&pool, &addr, Method::HEAD).await.unwrap();
            assert_eq!(answer.headers[CONTENT_LENGTH], "10");
            assert!(answer.body.is_empty());
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        for status in ["204 No Content", "304 Not Modified"] {
            let head: &'static str =
                Box::leak(format!("HTTP/1.1 {status}\r\nx-s: 1\r\n\r\n").into_boxed_str());
            let pieces: &'static [&'static [u8]] = Box::leak(Box::new([head.as_bytes()]));
            let (addr, _) = scripted(pieces, false).await;
            let answer = exchange_on(&pool, &addr, Method::GET).await.unwrap();
            assert!(answer.body.is_empty(), "{status}");
        }
    }

    #[tokio::test]
    async fn interim_answers_are_skipped() {
        let (addr, _) = scripted(
            &[
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n",
                b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
            ],
            false,
        )
        .await;
        let answer = exchange_on(&pool(), &addr, Method::GET).await.unwrap();
        assert_eq!(answer.status, 201);
        assert_eq!(answer.body, "ok");
    }

    #[tokio::test]
    async fn connection_close_and_http_1_0_answers_are_not_reused() {
        let (addr, connections) = scripted(
            &[b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\na"],
            false,
        )
        .await;
        let pool = pool();
        for _ in 0..2 {
            exchange_on(&pool, &addr, Method::GET).await.unwrap();
        }
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        let (addr, connections) =
            scripted(&[b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\na"], false).await;
        for _ in 0..2 {
            exchange_on(&pool, &addr, Method::GET).await.unwrap();
        }
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn malformed_answers_are_request_errors() {
        const NOT_HTTP: &[&[u8]] = &[b"NOT HTTP\r\n\r\n"];
        const TWO_LENGTHS: &[&[u8]] =
            &[b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"];
        const BAD_LENGTH: &[&[u8]] = &[b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"];
        for answer in [NOT_HTTP, TWO_LENGTHS, BAD_LENGTH] {
            let (addr, _) = scripted(answer, false).await;
            let err = exchange_on(&pool(), &addr, Method::GET)
                .await
                .err()
                .unwrap();
            assert!(matches!(err, UpstreamError::Request { .. }), "{err}");
        }
        let (addr, _) = scripted(
            &[b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"],
            false,
        )
        .await;
        let pool = pool();
        let endpoint = pool.endpoint(&addr.parse().unwrap());
        let resp = pool.send(&endpoint, request(Method::GET)).await.unwrap();
        assert!(resp.into_body().collect().await.is_err(), "bad chunk size");
    }

    #[tokio::test]
    async fn tunnels_and_upgrades_are_not_eligible() {
        let mut upgrade = Request::new(ProxyBody::default());
        upgrade
            .headers_mut()
            .insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!eligible(&upgrade));
        let mut connect = Request::new(ProxyBody::default());
        *connect.method_mut() = Method::CONNECT;
        assert!(!eligible(&connect));
        assert!(eligible(&Request::new(ProxyBody::default())));
    }

    /// A backend that records each whole request it reads (head and body, framed by
    /// length or chunked) and answers `ok` to each.
    async fn recording_backend() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some((_, len)) = request_len(&buf) {
                            let request: Vec<u8> = buf.drain(..len).collect();
                            recorded
                                .lock()
                                .unwrap()
                                .push(String::from_utf8(request).unwrap());
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            socket.write_all(ok).await.unwrap();
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn a_body_in_memory_goes_behind_its_head_framed_by_its_length() {
        let (addr, seen) = recording_backend().await;
        let pool = pool();
        let endpoint = pool.endpoint(&addr.parse().unwrap());
        let mut req = request(Method::POST);
        *req.body_mut() = crate::filter_chain::full_body(Bytes::from_static(b"hello"));
        // Whatever framing the client used, the body's own length replaces it.
        req.headers_mut()
            .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let resp = pool.send(&endpoint, req).await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
        let host = format!("host: {addr}\r\n");
        assert_eq!(
            *seen.lock().unwrap(),
            [format!(
                "POST /x HTTP/1.1\r\n{host}content-length: 5\r\n\r\nhello"
            )]
        );
    }

    #[tokio::test]
    async fn a_body_still_arriving_is_streamed_by_hyper_from_its_first_frame() {
        let (addr, seen) = recording_backend().await;
        let pool = pool();
        let endpoint = pool.endpoint(&addr.parse().unwrap());
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        // One frame is there; the rest is not yet.
        tx.send(Ok(Frame::data(Bytes::from_static(b"hel"))))
            .await
            .unwrap();
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut req = request(Method::POST);
        *req.body_mut() = http_body_util::StreamBody::new(stream).boxed_unsync();
        let sending = tokio::spawn({
            let endpoint = endpoint.clone();
            async move { pool.send(&endpoint, req).await.map(drop) }
        });
        tokio::task::yield_now().await;
        tx.send(Ok(Frame::data(Bytes::from_static(b"lo"))))
            .await
            .unwrap();
        drop(tx);
        sending.await.unwrap().unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(
            seen[0].ends_with("transfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn a_response_still_being_read_keeps_its_connection() {
        // The backend sends each head at once and its body only when told to.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (counted, released) = (connections.clone(), release.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                let released = released.clone();
                tokio::spawn(async move {
                    let mut chunk = [0u8; 4096];
                    while socket.read(&mut chunk).await.is_ok_and(|n| n > 0) {
                        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
                        socket.write_all(head).await.unwrap();
                        released.acquire().await.unwrap().forget();
                        socket.write_all(b"hello").await.unwrap();
                    }
                });
            }
        });
        let pool = pool();
        let endpoint = pool.endpoint(&addr.parse().unwrap());
        let first = pool.send(&endpoint, request(Method::GET)).await.unwrap();
        let second = pool.send(&endpoint, request(Method::GET)).await.unwrap();
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        release.add_permits(2);
        for resp in [first, second] {
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "hello");
        }
    }
}
