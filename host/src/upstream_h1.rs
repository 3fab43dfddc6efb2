//! HTTP/1.1 keep-alive connections to upstream endpoints.
//!
//! A per-backend pool of hyper client connections, keyed by endpoint. It does what the
//! proxy needs and no more: a checkout is an uncontended lock and a `Vec::pop` on the
//! endpoint's own idle list (snapshots hold it, so no lookup); a connection
//! goes back when its response body has been read to the end, from inside that body (no
//! task per request to wait for it); a request that a reused connection dropped before
//! sending a byte is retried on another one, as the backend may have closed it while it
//! sat idle.
//!
//! Over TLS it is the same: a pooled connection is a TLS connection whose handshake is
//! done, and the pool belongs to one TLS configuration (new settings, new pool).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, Uri};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::prefixed_body::PrefixedBody;
use crate::upstream::{BoxError, ProxyBody, UpstreamError};
use crate::upstream_h1_direct::{self as direct, DirectConn, DirectError};
use crate::upstream_io::{self, UpstreamIo};
use crate::upstream_tls::UpstreamTls;

/// Idle connections kept per endpoint; more are closed when they come back.
const MAX_IDLE_PER_ENDPOINT: usize = 1024;

pub struct Http1Pool {
    shared: Arc<PoolShared>,
}

struct PoolShared {
    /// Every endpoint a snapshot has used, so its idle connections outlive snapshots. The
    /// request path never looks here: snapshots hold their endpoints' [`EndpointIdle`].
    endpoints: Mutex<HashMap<Authority, Arc<EndpointIdle>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// `None`: cleartext.
    tls: Option<Arc<UpstreamTls>>,
    /// Whether the task closing connections idle for longer than `idle_timeout` runs.
    sweeping: std::sync::atomic::AtomicBool,
}

/// The idle connections to one endpoint: hyper's, for requests with a body or an
/// upgrade, and the direct path's (`upstream_h1_direct`) for the rest.
pub struct EndpointIdle {
    authority: Authority,
    idle: Mutex<Vec<Idle>>,
    direct: Mutex<Vec<IdleDirect>>,
}

struct IdleDirect {
    conn: DirectConn,
    /// Stamped by the first sweep that finds the connection idle, not when it is put
    /// back: a clock read per request saved, for an idle timeout kept up to one sweep
    /// period (half the timeout) late.
    since: Option<Instant>,
}

struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

/// A connection taken for one request.
struct Checkout {
    sender: SendRequest<ProxyBody>,
    reused: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EndpointIdle {
    /// The most recently used idle connection that can take a request now. Connections
    /// idle for too long are left to the sweeper: reusing one a little late is harmless,
    /// and it keeps the clock off the request path.
    fn take(&self) -> Option<SendRequest<ProxyBody>> {
        let mut list = lock(&self.idle);
        let mut busy = Vec::new();
        let mut found = None;
        while let Some(entry) = list.pop() {
            if entry.sender.is_closed() {
                continue;
            }
            if entry.sender.is_ready() {
                found = Some(entry.sender);
                break;
            }
            // Still finishing its previous exchange: keep it for a later checkout.
            busy.push(entry);
        }
        list.extend(busy.into_iter().rev());
        found
    }

    /// The most recently used direct connection that still looks usable.
    fn take_direct(&self) -> Option<DirectConn> {
        let mut list = lock(&self.direct);
        while let Some(mut entry) = list.pop() {
            if entry.conn.looks_usable() {
                return Some(entry.conn);
            }
        }
        None
    }

    pub(crate) fn put_back_direct(&self, conn: DirectConn) {
        let mut list = lock(&self.direct);
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(IdleDirect { conn, since: None });
        }
    }

    fn put_back(&self, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut list = lock(&self.idle);
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

impl PoolShared {
    /// Closes connections idle for longer than the idle timeout, and forgets endpoints
    /// no snapshot uses any more once they have no connections left.
    fn sweep(&self) {
        let now = Instant::now();
        let mut endpoints = lock(&self.endpoints);
        endpoints.retain(|_, endpoint| {
            let mut list = lock(&endpoint.idle);
            list.retain(|entry| {
                !entry.sender.is_closed() && entry.since.elapsed() <= self.idle_timeout
            });
            let mut direct = lock(&endpoint.direct);
            direct.retain_mut(|entry| {
                let since = *entry.since.get_or_insert(now);
                entry.conn.looks_usable() && now.duration_since(since) <= self.idle_timeout
            });
            !list.is_empty() || !direct.is_empty() || Arc::strong_count(endpoint) > 1
        });
    }
}

impl Http1Pool {
    pub fn new(
        connect_timeout: Duration,
        idle_timeout: Duration,
        tls: Option<Arc<UpstreamTls>>,
    ) -> Self {
        Http1Pool {
            shared: Arc::new(PoolShared {
                endpoints: Mutex::new(HashMap::new()),
                connect_timeout,
                idle_timeout,
                tls,
                sweeping: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The idle list of `authority`, shared by every snapshot that sends there.
    pub fn endpoint(&self, authority: &Authority) -> Arc<EndpointIdle> {
        lock(&self.shared.endpoints)
            .entry(authority.clone())
            .or_insert_with(|| {
                Arc::new(EndpointIdle {
                    authority: authority.clone(),
                    idle: Mutex::new(Vec::new()),
                    direct: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    /// Sends a request whose headers are prepared for forwarding to `endpoint`.
    pub async fn send(
        &self,
        endpoint: &Arc<EndpointIdle>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        to_origin_form(&mut req, &endpoint.authority);
        if direct::eligible(&req) {
            if req.body().is_end_stream() {
                // The (empty) body is not needed, and not `Sync`: keep only the head.
                let (head, _) = req.into_parts();
                return self.send_direct(endpoint, &head, None).await;
            }
            match take_ready_body(req) {
                BodyNow::Ready(head, body) => {
                    return self.send_direct(endpoint, &head, Some(body)).await;
                }
                BodyNow::Streaming(streaming) => req = streaming,
            }
        }
        // Boxed: streaming bodies and upgrades are the rarer case, and inline this future
        // would grow the direct path's.
        let pooled = Box::pin(self.send_pooled(endpoint, req));
        pooled.await
    }

    /// A request on a hyper client connection (bodies, upgrades).
    async fn send_pooled(
        &self,
        endpoint: &Arc<EndpointIdle>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        loop {
            let Checkout { mut sender, reused } = self.checkout(endpoint).await?;
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(track(endpoint, sender, resp)),
                Err(mut e) => match e.take_message() {
                    // Nothing was sent on a connection that had been idle: try another.
                    Some(unsent) if reused => {
                        debug!(endpoint = %endpoint.authority, "idle upstream connection was closed, retrying: {}", e.error());
                        req = unsent;
                    }
                    _ => {
                        return Err(UpstreamError::Request {
                            endpoint: endpoint.authority.clone(),
                            source: e.into_error().into(),
                        });
                    }
                },
            }
        }
    }

    /// A request whose body is in memory (`None`: it has none) on a direct connection;
    /// one that a reused connection dropped before answering is sent again on another.
    async fn send_direct(
        &self,
        endpoint: &Arc<EndpointIdle>,
        req: &http::request::Parts,
        body: Option<Bytes>,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        loop {
            let (conn, reused) = match endpoint.take_direct() {
                Some(conn) => (conn, true),
                None => {
                    let io = upstream_io::connect(
                        &endpoint.authority,
                        self.shared.tls.as_deref(),
                        self.shared.connect_timeout,
                    )
                    .await?;
                    self.start_sweeping();
                    (DirectConn::new(io), false)
                }
            };
            match direct::exchange(conn, reused, req, body.as_ref(), endpoint).await {
                Ok(resp) => return Ok(resp),
                Err(DirectError::Stale(e)) => {
                    debug!(endpoint = %endpoint.authority, "idle upstream connection was closed, retrying: {e}");
                }
                Err(DirectError::Failed(source)) => {
                    return Err(UpstreamError::Request {
                        endpoint: endpoint.authority.clone(),
                        source,
                    });
                }
            }
        }
    }

    async fn checkout(&self, endpoint: &EndpointIdle) -> Result<Checkout, UpstreamError> {
        if let Some(sender) = endpoint.take() {
            return Ok(Checkout {
                sender,
                reused: true,
            });
        }
        let tls = self.shared.tls.is_some();
        let setup_error = |source: BoxError| UpstreamError::setup(&endpoint.authority, tls, source);
        let io = upstream_io::connect(
            &endpoint.authority,
            self.shared.tls.as_deref(),
            self.shared.connect_timeout,
        )
        .await?;
        // Each stream type gets its own connection task: no dispatch per read or write.
        let mut sender = match io {
            UpstreamIo::Plain(tcp) => handshake(tcp, &endpoint.authority).await,
            UpstreamIo::Tls(tls) => handshake(tls, &endpoint.authority).await,
        }
        .map_err(setup_error)?;
        self.start_sweeping();
        sender.ready().await.map_err(|e| setup_error(e.into()))?;
        Ok(Checkout {
            sender,
            reused: false,
        })
    }

    /// Starts (once) the task that closes connections left idle too long. It holds the
    /// pool weakly and ends with it.
    fn start_sweeping(&self) {
        use std::sync::atomic::Ordering;
        if self.shared.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<PoolShared> = Arc::downgrade(&self.shared);
        let period = self.shared.idle_timeout.max(Duration::from_millis(100)) / 2;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                shared.sweep();
            }
        });
    }
}

/// A hyper client connection on a fresh stream, driven by a task of its own.
async fn handshake<T>(io: T, endpoint: &Authority) -> Result<SendRequest<ProxyBody>, BoxError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::Builder::new().handshake(TokioIo::new(io)).await?;
    let name = endpoint.clone();
    tokio::spawn(async move {
        // With upgrades: a proxied WebSocket handshake takes the connection over.
        if let Err(e) = connection.with_upgrades().await {
            debug!(endpoint = %name, "upstream connection ended: {e}");
        }
    });
    Ok(sender)
}

/// The response, with its connection going back to the pool once the body is done.
fn track(
    endpoint: &Arc<EndpointIdle>,
    sender: SendRequest<ProxyBody>,
    resp: Response<Incoming>,
) -> Response<ProxyBody> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let (head, body) = resp.into_parts();
    // A protocol switch takes the connection away from HTTP.
    let slot = (!switching).then(|| ReturnSlot {
        endpoint: endpoint.clone(),
        sender,
    });
    let mut body = PooledBody { inner: body, slot };
    if body.inner.is_end_stream() {
        body.give_back();
    }
    Response::from_parts(head, http_body_util::BodyExt::boxed_unsync(body))
}

/// HTTP/1.1 with an origin-form target (authority-form for CONNECT), and `Host` from the
/// endpoint when the request has none (an HTTP/1.0 client may send none).
fn to_origin_form(req: &mut Request<ProxyBody>, endpoint: &Authority) {
    *req.version_mut() = Version::HTTP_11;
    if !req.headers().contains_key(HOST) {
        let host = match endpoint.port_u16() {
            Some(80) | None => endpoint.host(),
            Some(_) => endpoint.as_str(),
        };
        if let Ok(value) = HeaderValue::from_str(host) {
            req.headers_mut().insert(HOST, value);
        }
    }
    *req.uri_mut() = if req.method() == Method::CONNECT {
        Uri::from(endpoint.clone())
    } else {
        match req.uri().path_and_query() {
            Some(path) if path.as_str() != "/" => Uri::from(path.clone()),
            _ => Uri::default(),
        }
    };
}

struct ReturnSlot {
    endpoint: Arc<EndpointIdle>,
    sender: SendRequest<ProxyBody>,
}

/// An upstream response body that returns its connection to the pool when it ends. A
/// body dropped before its end takes the connection with it (hyper closes it).
struct PooledBody {
    inner: Incoming,
    slot: Option<ReturnSlot>,
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some(ReturnSlot { endpoint, sender }) = self.slot.take() {
            endpoint.put_back(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.give_back(),
            // An error leaves the connection unusable: let it go.
            Poll::Ready(Some(Err(_))) => this.slot = None,
            _ => {}
        }
        polled.map(|frame| frame.map(|result| result.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request's body, if all of it could be had at once.
enum BodyNow {
    Ready(http::request::Parts, Bytes),
    /// Still arriving (or large): the request, its body as it was.
    Streaming(Request<ProxyBody>),
}

/// The body of `req` when it is small and all of it is there without waiting (it is in
/// memory: the AI path's, read whole to route it; a small one that came with its head);
/// else the request, with its body as it was (a frame taken to look is put back in front).
fn take_ready_body(req: Request<ProxyBody>) -> BodyNow {
    let small = req
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= direct::MAX_REQUEST_BODY);
    if !small {
        return BodyNow::Streaming(req);
    }
    let (head, mut body) = req.into_parts();
    // Nobody waits on this look: a body that is not ready is left to hyper, which polls
    // it again with its own waker.
    let mut cx = Context::from_waker(Waker::noop());
    let first = match Pin::new(&mut body).poll_frame(&mut cx) {
        Poll::Pending => return BodyNow::Streaming(Request::from_parts(head, body)),
        Poll::Ready(None) => return BodyNow::Ready(head, Bytes::new()),
        Poll::Ready(Some(Ok(frame))) if body.is_end_stream() => match frame.into_data() {
            Ok(data) => return BodyNow::Ready(head, data),
            Err(frame) => Ok(frame),
        },
        Poll::Ready(Some(first)) => first,
    };
    let body = PrefixedBody::new(first, body);
    BodyNow::Streaming(Request::from_parts(
        head,
        http_body_util::BodyExt::boxed_unsync(body),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Full};

    use super::*;

    /// A backend answering every request with `200` and the request head it saw.
    async fn backend(close_after_first: bool) -> (Authority, Arc<AtomicUsize>) {
        let echo_head = |head: &[u8]| {
            let status = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", head.len());
            vec![[status.as_bytes(), head].concat()]
        };
        let (addr, connections) =
            crate::upstream_test_backend::backend(echo_head, close_after_first).await;
        (addr.parse().unwrap(), connections)
    }

    fn pool() -> Http1Pool {
        Http1Pool::new(Duration::from_secs(5), Duration::from_secs(90), None)
    }

    fn request(path: &str, host: Option<&str>) -> Request<ProxyBody> {
        let mut builder = Request::builder().uri(path);
        if let Some(host) = host {
            builder = builder.header(HOST, host);
        }
        builder
            .body(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap()
    }

    async fn head_seen(resp: Response<ProxyBody>) -> String {
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_was_read() {
        let (endpoint, connections) = backend(false).await;
        let pool = pool();
        for _ in 0..3 {
            let resp = pool
                .send(
                    &pool.endpoint(&endpoint),
                    request("/x?y=1", Some("a.example")),
                )
                .await
                .unwrap();
            let head = head_seen(resp).await;
            assert!(head.starts_with("GET /x?y=1 HTTP/1.1\r\n"), "{head}");
            assert!(
                head.to_ascii_lowercase().contains("host: a.example\r\n"),
                "{head}"
            );
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_while_idle_is_replaced() {
        let (endpoint, connections) = backend(true).await;
        let pool = pool();
        let first = pool
            .send(&pool.endpoint(&endpoint), request("/", Some("a")))
            .await
            .unwrap();
        head_seen(first).await;
        // Let the close reach the pooled connection (or not: either way, no error).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = pool
            .send(&pool.endpoint(&endpoint), request("/", Some("a")))
            .await
            .unwrap();
        head_seen(second).await;
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn host_defaults_to_the_endpoint_without_port_80() {
        let (endpoint, _) = backend(false).await;
        let pool = pool();
        let sent = pool
            .send(&pool.endpoint(&endpoint), request("/", None))
            .await;
        let head = head_seen(sent.unwrap()).await;
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("host: {endpoint}\r\n")),
            "{head}"
        );
        let mut req = request("/", None);
        to_origin_form(&mut req, &"10.0.0.1:80".parse().unwrap());
        assert_eq!(req.headers()[HOST], "10.0.0.1");
        assert_eq!(req.uri(), "/");
        assert_eq!(req.version(), Version::HTTP_11);
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint: Authority = format!("127.0.0.1:{port}").parse().unwrap();
        let pool = pool();
        let err = pool
            .send(&pool.endpoint(&endpoint), request("/", Some("a")))
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Connect { .. }), "{err}");
    }
}
