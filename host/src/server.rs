//! Accepts connections on one socket and serves HTTP on them: HTTP/1.1 and h2c with prior
//! knowledge on the same plain port. HTTP/1.1 requests without a body or with a small one
//! of known length are served by `server_h1_direct` until the first request that is not
//! (a streamed body, an upgrade, …); from then on (and for HTTP/2
//! from the start) hyper-util's auto server has the connection and sniffs the preface.
//!
//! Each request loads the current snapshot once, picks a listener and route on it, and is
//! handed to `proxy`. Requests that match nothing are answered here (404, or 400 when the
//! Host is missing or ambiguous). Idle connections, and connections that never finish a
//! request head, are closed by a coarse per-connection watchdog (`idle`).

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::header::HOST;
use http::{Request, Response, StatusCode, Version};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::config::Scheme;
use crate::filter_chain::status_response;
use crate::forwarding::ClientIp;
use crate::grpc_reply::{is_grpc, to_grpc};
use crate::hostname::normalize_request_host;
use crate::idle::{Activity, IDLE_TICK, ServedBody, Verdict, Watchdog};
use crate::metrics::Metrics;
use crate::prefixed_io::PrefixedIo;
use crate::proxy::{ProxyRequest, forward};
use crate::router::{Lookup, RequestView};
use crate::server_h1_direct::{self, Handler, Outcome, RequestBody};
use crate::side_wake::SideWake;
use crate::snapshot::Snapshot;
use crate::stream_route::{self, StreamSocket};
use crate::tls::SniResolver;
use crate::upstream::{BoxError, ProxyBody};

/// What every connection shares: the current snapshot and the metrics.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    pub ready: AtomicBool,
}

type ConnBuilder = auto::Builder<TokioExecutor>;

fn conn_builder() -> ConnBuilder {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No per-request header timer: the connection watchdog in `idle` covers slow heads.
    builder.http1().header_read_timeout(None).writev(false);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Accepts until told to stop; connections already accepted are left to finish.
pub async fn accept_loop(
    listener: TcpListener,
    bind: SocketAddr,
    mut stop: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    let builder = Arc::new(conn_builder());
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Responses are written whole by hyper; don't let Nagle delay them.
                    let _ = stream.set_nodelay(true);
                    let conn = Connection {
                        bind,
                        peer,
                        client_ip: ClientIp::new(peer.ip()),
                        shared: shared.clone(),
                        tls: None,
                    };
                    tokio::spawn(conn.accept(builder.clone(), stream, stop.clone()));
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    warn!(%bind, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    debug!(%bind, "stopped accepting");
}

struct Connection {
    bind: SocketAddr,
    peer: SocketAddr,
    client_ip: ClientIp,
    shared: Arc<Shared>,
    /// Set on HTTPS sockets once the handshake is done.
    tls: Option<TlsSession>,
}

/// What the TLS handshake of a connection settled.
struct TlsSession {
    sni: Option<Box<str>>,
    resolver: Arc<SniResolver>,
}

/// A client has this long to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Connection {
    /// Serves plain HTTP, or TLS first when the socket has HTTPS listeners in the current
    /// snapshot (with the certificates of that snapshot), or TLSRoute / TCPRoute streams
    /// when it has TLS or TCP listeners.
    async fn accept(
        mut self,
        builder: Arc<ConnBuilder>,
        stream: TcpStream,
        stop: watch::Receiver<bool>,
    ) {
        let (stream_socket, tls) = {
            let snapshot = self.shared.snapshot.load();
            (
                snapshot.streams.get(&self.bind).map(StreamSocket::is_tcp),
                snapshot.tls.get(&self.bind).cloned(),
            )
        };
        if let Some(tcp) = stream_socket {
            // Boxed: HTTP connections should not carry the size of this future.
            let serve = stream_route::serve(self.shared, self.bind, self.peer, stream, tcp);
            return Box::pin(serve).await;
        }
        let Some(tls) = tls else {
            return self.serve(builder, stream, stop, true).await;
        };
        let acceptor = TlsAcceptor::from(tls.config);
        let stream =
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    debug!(peer = %self.peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    debug!(peer = %self.peer, "TLS handshake timed out");
                    return;
                }
            };
        // Over TLS the client picked its protocol in the handshake: HTTP/2 goes to hyper.
        let direct = stream.get_ref().1.alpn_protocol() != Some(b"h2");
        self.tls = Some(TlsSession {
            sni: stream.get_ref().1.server_name().map(Into::into),
            resolver: tls.resolver,
        });
        self.serve(builder, stream, stop, direct).await
    }

    /// Serves the connection: plain HTTP/1.1 requests on the direct path, everything
    /// from the first other request on (and HTTP/2 from the start) with hyper.
    async fn serve<I>(
        self,
        builder: Arc<ConnBuilder>,
        mut stream: I,
        stop: watch::Receiver<bool>,
        direct: bool,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let conn = Arc::new(self);
        let activity = Arc::new(Activity::default());
        let mut side = SideEvents::new(peer, stop);
        let mut read = BytesMut::new();
        if direct {
            let shutdown = AtomicBool::new(false);
            let serving =
                server_h1_direct::serve(&*conn, &activity, &mut stream, &mut read, &shutdown);
            let outcome = side
                .supervise(pin!(serving), &activity, |_| {
                    shutdown.store(true, Ordering::Relaxed)
                })
                .await;
            if outcome != Some(Outcome::Handoff) {
                return;
            }
        }
        let counted = activity.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let conn = conn.clone();
            let in_flight = counted.start();
            async move {
                let response = conn.respond(req).await;
                Ok::<_, Infallible>(response.map(|body| ServedBody::new(body, in_flight)))
            }
        });
        let io = TokioIo::new(PrefixedIo::new(read.freeze(), stream));
        let serving = builder.serve_connection_with_upgrades(io, service);
        let result = side
            .supervise(pin!(serving), &activity, |serving| {
                serving.graceful_shutdown()
            })
            .await;
        if let Some(Err(e)) = result {
            debug!(%peer, "connection ended with an error: {e}");
        }
    }

    async fn respond<B>(&self, req: Request<B>) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let snapshot = self.shared.snapshot.load_full();
        let grpc = is_grpc(req.headers());
        let unrouted = |status: StatusCode, why: &'static str| {
            self.shared.metrics.unrouted().request_done(status.as_u16());
            let resp = status_response(status, why);
            if grpc { to_grpc(resp, false) } else { resp }
        };
        let Some(table) = snapshot.binds.get(&self.bind) else {
            return unrouted(StatusCode::NOT_FOUND, "no listener\n");
        };
        let Some(authority) = request_authority(&req) else {
            return unrouted(StatusCode::BAD_REQUEST, "missing or invalid Host\n");
        };
        let host = normalize_request_host(authority);
        if let Some(TlsSession {
            sni: Some(sni),
            resolver,
        }) = &self.tls
            && resolver.misdirected(sni, &host)
        {
            // The certificate of this connection was chosen for another listener.
            return unrouted(StatusCode::MISDIRECTED_REQUEST, "misdirected request\n");
        }
        let view = RequestView {
            host: &host,
            method: req.method(),
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
        };
        let (listener, candidate) = match table.lookup(&view) {
            Lookup::Matched(listener, candidate) => (listener, candidate),
            Lookup::NoRoute(_) | Lookup::NoListener => {
                return unrouted(StatusCode::NOT_FOUND, "no route\n");
            }
        };
        let rule = &snapshot.rules[candidate.route];
        let request = ProxyRequest {
            rule,
            candidate,
            listener_port: listener.port,
            client: self.peer,
            client_ip: &self.client_ip,
            scheme: if self.tls.is_some() {
                Scheme::Https
            } else {
                Scheme::Http
            },
        };
        let response = forward(request, req).await;
        rule.metrics.request_done(response.status().as_u16());
        if grpc {
            to_grpc(response, rule.grpc)
        } else {
            response
        }
    }
}

impl Handler for Connection {
    fn handle(
        &self,
        req: Request<RequestBody>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send {
        self.respond(req)
    }
}

/// A connection's rare events: the stop signal (its socket left the config) and the
/// idle watchdog's ticks, polled only when one of them woke the task (`side_wake`).
struct SideEvents {
    peer: SocketAddr,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    ticks: tokio::time::Interval,
    watchdog: Watchdog,
    wake: SideWake,
    stopping: bool,
}

impl SideEvents {
    fn new(peer: SocketAddr, mut stop: watch::Receiver<bool>) -> Self {
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + IDLE_TICK, IDLE_TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        SideEvents {
            peer,
            stop: Box::pin(async move {
                // Changed, or the sender is gone: either way the socket is being closed.
                let _ = stop.changed().await;
            }),
            ticks,
            watchdog: Watchdog::default(),
            wake: SideWake::default(),
            stopping: false,
        }
    }

    /// Drives `serving` to its end, asking it to shut down gracefully (`shut_down`) when
    /// the socket is stopped or the connection went idle. `None` when the watchdog
    /// dropped a connection that stayed idle after that.
    async fn supervise<F: Future>(
        &mut self,
        mut serving: Pin<&mut F>,
        activity: &Activity,
        mut shut_down: impl FnMut(Pin<&mut F>),
    ) -> Option<F::Output> {
        if self.stopping {
            shut_down(serving.as_mut());
        }
        poll_fn(|cx| {
            loop {
                if let Poll::Ready(done) = serving.as_mut().poll(cx) {
                    return Poll::Ready(Some(done));
                }
                if self.stopping {
                    // Only the connection itself matters now.
                    return Poll::Pending;
                }
                let Some(waker) = self.wake.due(cx.waker()) else {
                    return Poll::Pending;
                };
                let mut side_cx = Context::from_waker(waker);
                if self.stop.as_mut().poll(&mut side_cx).is_ready() {
                    // The socket was removed from config: finish what's in flight, then close.
                    self.stopping = true;
                    shut_down(serving.as_mut());
                    continue;
                }
                let mut shutting = false;
                while self.ticks.poll_tick(&mut side_cx).is_ready() {
                    match self.watchdog.tick(activity) {
                        Verdict::Keep => {}
                        Verdict::Shutdown => {
                            debug!(peer = %self.peer, "closing an idle connection");
                            shut_down(serving.as_mut());
                            shutting = true;
                        }
                        Verdict::Drop => {
                            debug!(peer = %self.peer, "dropping a connection that stayed idle after shutdown");
                            return Poll::Ready(None);
                        }
                    }
                }
                if !shutting {
                    return Poll::Pending;
                }
                // The connection acts on a graceful shutdown when polled.
            }
        })
        .await
    }
}

/// The authority a request is for: the URI's (HTTP/2 `:authority`, absolute-form HTTP/1)
/// or the single `Host` header. `None` when it is missing (HTTP/1.1 and later), repeated
/// or not text; HTTP/1.0 may omit it.
fn request_authority<B>(req: &Request<B>) -> Option<&str> {
    if let Some(authority) = req.uri().authority() {
        return Some(authority.as_str());
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.to_str().ok(),
        (None, _) if req.version() <= Version::HTTP_10 => Some(""),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header(HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn authority_comes_from_the_uri_or_a_single_host_header() {
        assert_eq!(
            request_authority(&req(Version::HTTP_11, "/", &["a.com:80"])),
            Some("a.com:80")
        );
        assert_eq!(
            request_authority(&req(Version::HTTP_2, "http://b.com/x", &[])),
            Some("b.com")
        );
        assert_eq!(
            request_authority(&req(Version::HTTP_11, "http://b.com/x", &["a.com"])),
            Some("b.com")
        );
        assert_eq!(request_authority(&req(Version::HTTP_11, "/", &[])), None);
        assert_eq!(
            request_authority(&req(Version::HTTP_11, "/", &["a.com", "b.com"])),
            None
        );
        assert_eq!(
            request_authority(&req(Version::HTTP_10, "/", &[])),
            Some("")
        );
    }
}
