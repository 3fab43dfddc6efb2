//! Listeners and connections: every listener speaks HTTP/1.1 and h2c (prior knowledge)
//! on the same port through hyper-util's auto builder, with upgrades for WebSocket.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::handler::{Context, Site, handle};
use super::request_log::RequestLog;

/// How a listener treats HTTP/1 requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerMode {
    /// HTTP/1.1 and h2c on one port (the conformance server's `3000`, plus h2c).
    Mixed,
    /// HTTP/2 only: HTTP/1 requests get `400 Expected h2c request` (the conformance
    /// server's `3001`), so a gateway that should speak h2c to the backend is caught.
    H2cOnly,
}

/// One address to listen on.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSpec {
    pub addr: SocketAddr,
    pub mode: ListenerMode,
}

/// Bound listeners, ready to serve.
pub struct EchoServer {
    listeners: Vec<(TcpListener, ListenerMode, Arc<Site>)>,
}

impl EchoServer {
    /// Binds every listener (port 0 picks a free port; see [`EchoServer::local_addrs`]).
    pub async fn bind(
        specs: &[ListenerSpec],
        context: Context,
        request_log: RequestLog,
    ) -> io::Result<Self> {
        let mut listeners = Vec::with_capacity(specs.len());
        for spec in specs {
            let listener = TcpListener::bind(spec.addr).await?;
            let site = Arc::new(Site {
                context: context.clone(),
                http_port: listener.local_addr()?.port().to_string(),
                h2c_only: spec.mode == ListenerMode::H2cOnly,
                request_log,
            });
            listeners.push((listener, spec.mode, site));
        }
        Ok(Self { listeners })
    }

    /// The bound addresses, in the order of the specs.
    pub fn local_addrs(&self) -> io::Result<Vec<ListenerSpec>> {
        self.listeners
            .iter()
            .map(|(listener, mode, _)| {
                Ok(ListenerSpec {
                    addr: listener.local_addr()?,
                    mode: *mode,
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
        for (listener, _, site) in self.listeners {
            accept_loops.spawn(accept_loop(
                listener,
                site,
                builder.clone(),
                stop_rx.clone(),
            ));
        }
        shutdown.await;
        // Connections watch `stop_rx` and end when the sender is dropped.
        drop(stop_tx);
        accept_loops.shutdown().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    site: Arc<Site>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stop: watch::Receiver<()>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
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
        let site = site.clone();
        let builder = builder.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, site.clone(), peer));
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::select! {
                // Per-connection errors (resets, malformed requests) are the client's
                // business; the server has nothing to add.
                _ = connection => {}
                _ = stop.changed() => {}
            }
        });
    }
}
