//! Listeners and connections: every listener speaks HTTP/1.1 and h2c (prior knowledge)
//! on the same port through hyper-util's auto builder, with upgrades for WebSocket; an
//! HTTPS listener does the same inside TLS (HTTP/2 by ALPN).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::grpc;
use super::handler::{Connection, Context, Site, handle};
use super::request_log::RequestLog;
use super::tls;

/// How long a client may take over its TLS handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a listener treats HTTP/1 requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerMode {
    /// HTTP/1.1 and h2c on one port (the conformance server's `3000`, plus h2c).
    Mixed,
    /// HTTP/2 only: HTTP/1 requests get `400 Expected h2c request` (the conformance
    /// server's `3001`), so a gateway that should speak h2c to the backend is caught.
    H2cOnly,
    /// HTTPS: TLS, then what [`ListenerMode::Mixed`] serves (the conformance server's
    /// `8443`, which it opens when given a certificate). Needs [`EchoServer::bind`]'s `tls`.
    Https,
}

/// One address to listen on.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSpec {
    pub addr: SocketAddr,
    pub mode: ListenerMode,
}

/// One bound listener: its socket, what it speaks, and the TLS it wraps connections in.
struct Bound {
    listener: TcpListener,
    mode: ListenerMode,
    site: Arc<Site>,
    tls: Option<TlsAcceptor>,
}

/// Bound listeners, ready to serve.
pub struct EchoServer {
    listeners: Vec<Bound>,
}

impl EchoServer {
    /// Binds every listener (port 0 picks a free port; see [`EchoServer::local_addrs`]).
    /// `tls` (see [`tls::server_config`]) serves the [`ListenerMode::Https`] ones, which
    /// cannot do without it.
    pub async fn bind(
        specs: &[ListenerSpec],
        context: Context,
        request_log: RequestLog,
        tls: Option<Arc<ServerConfig>>,
    ) -> io::Result<Self> {
        let mut listeners = Vec::with_capacity(specs.len());
        for spec in specs {
            let tls = match (spec.mode, &tls) {
                (ListenerMode::Https, Some(config)) => Some(TlsAcceptor::from(config.clone())),
                (ListenerMode::Https, None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("HTTPS listener {} has no certificate", spec.addr),
                    ));
                }
                _ => None,
            };
            let listener = TcpListener::bind(spec.addr).await?;
            let site = Arc::new(Site {
                context: context.clone(),
                http_port: listener.local_addr()?.port().to_string(),
                h2c_only: spec.mode == ListenerMode::H2cOnly,
                request_log,
            });
            listeners.push(Bound {
                listener,
                mode: spec.mode,
                site,
                tls,
            });
        }
        Ok(Self { listeners })
    }

    /// The bound addresses, in the order of the specs.
    pub fn local_addrs(&self) -> io::Result<Vec<ListenerSpec>> {
        self.listeners
            .iter()
            .map(|bound| {
                Ok(ListenerSpec {
                    addr: bound.listener.local_addr()?,
                    mode: bound.mode,
                })
            })
            .collect()
    }

    /// Serves until `shutdown` completes, then stops accepting and drops every open
    /// connection.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30));
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);

        let (stop_tx, stop_rx) = watch::channel(());
        let mut accept_loops = JoinSet::new();
        for bound in self.listeners {
            accept_loops.spawn(accept_loop(bound, builder.clone(), stop_rx.clone()));
        }
        shutdown.await;
        // Connections watch `stop_rx` and end when the sender is dropped.
        drop(stop_tx);
        accept_loops.shutdown().await;
    }
}

async fn accept_loop(
    bound: Bound,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stop: watch::Receiver<()>,
) {
    loop {
        let (stream, peer) = match bound.listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Typically EMFILE: back off instead of spinning.
                eprintln!("accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Responses are written in one piece; don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let site = bound.site.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        let tls = bound.tls.clone();
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                let connection = Connection { peer, tls: None };
                serve_connection(stream, connection, site, &builder, stop).await;
                return;
            };
            // A failed handshake (a cleartext client, a client certificate of another CA)
            // just closes the connection, as Go's server does after logging it.
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            let connection = Connection {
                peer,
                tls: Some(Arc::new(tls::assertions(stream.get_ref().1))),
            };
            serve_connection(stream, connection, site, &builder, stop).await;
        });
    }
}

/// Serves the requests of one connection until it ends or the server stops.
async fn serve_connection<S>(
    stream: S,
    connection: Connection,
    site: Arc<Site>,
    builder: &auto::Builder<TokioExecutor>,
    mut stop: watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = Arc::new(connection);
    let service = service_fn(move |req: Request<Incoming>| {
        let site = site.clone();
        let connection = connection.clone();
        async move {
            // gRPC calls go to the GrpcEcho service, everything else to the HTTP echo.
            if grpc::is_grpc(&req) && req.version() == Version::HTTP_2 {
                let resp = grpc::serve(req, &site.context, &connection).await;
                return Ok::<_, Infallible>(resp.map(Either::Right));
            }
            let Ok(resp) = handle(req, site, connection).await;
            Ok(resp.map(Either::Left))
        }
    });
    let serving = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::select! {
        // Per-connection errors (resets, malformed requests) are the client's business;
        // the server has nothing to add.
        _ = serving => {}
        _ = stop.changed() => {}
    }
}
