//! Connections that are byte streams, not HTTP: TLSRoutes on TLS listeners and TCPRoutes
//! on TCP listeners. Each connection is carried to an endpoint of the backend its route
//! picks (weighted), both ways, until both sides are done.
//!
//! - TLS: routed by the server name of the ClientHello, then forwarded untouched (listener
//!   `tls.mode` Passthrough: the backend does the handshake) or after the gateway ended
//!   TLS with the listener's certificate (Terminate: the backend gets the plaintext). A
//!   connection without a server name, one nothing matches, or one whose route has no
//!   backend to reach is closed before any byte is sent: clients see the connection end
//!   (EOF), not a TLS alert, as the Gateway API's conformance tests expect of a rejected
//!   TLS connection.
//! - TCP: every connection of the listener goes to its route (the oldest, when several
//!   attached); nothing is read before the backend is connected.
//!
//! Routes are chosen the way HTTP requests choose theirs, by the socket's route table:
//! with the server name as the host (the listener whose hostname matches it most
//! specifically, then the route hostname that does), or with no host for TCP (whose
//! listeners have no hostname).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, copy_bidirectional};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::client_hello::{self, Hello};
use crate::config::{ListenerSpec, StreamMode};
use crate::prefixed_io::PrefixedIo;
use crate::router::Lookup;
use crate::server::Shared;
use crate::snapshot::Snapshot;

/// A client has this long to send its ClientHello and finish a terminated handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One socket whose listeners carry byte streams (all TLS or all TCP: validation sees to
/// it).
#[derive(Debug, Default)]
pub struct StreamSocket {
    tcp: bool,
    /// TLS: the listeners (by name) in Terminate mode; the others pass through.
    terminate: HashSet<Arc<str>>,
}

/// The stream sockets of a snapshot.
pub fn sockets(listeners: &[ListenerSpec]) -> HashMap<SocketAddr, StreamSocket> {
    let mut out: HashMap<SocketAddr, StreamSocket> = HashMap::new();
    for l in listeners {
        // UDP listeners have sockets of their own (`udp_route`).
        let Some(mode) = l.stream.filter(|m| *m != StreamMode::Udp) else {
            continue;
        };
        for bind in &l.binds {
            let socket = out.entry(*bind).or_default();
            match mode {
                StreamMode::Tcp => socket.tcp = true,
                StreamMode::TlsTerminate => {
                    socket.terminate.insert(l.name.clone());
                }
                StreamMode::TlsPassthrough | StreamMode::Udp => {}
            }
        }
    }
    out
}

/// Where one connection goes.
struct Destination {
    endpoint: String,
    terminate: bool,
}

impl StreamSocket {
    /// A TCP socket (else a TLS one).
    pub fn is_tcp(&self) -> bool {
        self.tcp
    }
}

/// Serves one accepted connection of a stream socket (`tcp`: of TCP listeners, else of
/// TLS ones) to its end.
pub async fn serve(
    shared: Arc<Shared>,
    bind: SocketAddr,
    peer: SocketAddr,
    client: TcpStream,
    tcp: bool,
) {
    if tcp {
        serve_tcp(shared, bind, peer, client).await
    } else {
        serve_tls(shared, bind, peer, client).await
    }
}

async fn serve_tcp(shared: Arc<Shared>, bind: SocketAddr, peer: SocketAddr, client: TcpStream) {
    let destination = route(&shared.snapshot.load(), bind, "");
    let Some(destination) = destination else {
        debug!(%peer, "no TCPRoute on this listener");
        return;
    };
    if let Some(upstream) = connect(&destination, peer).await {
        relay(client, upstream, peer).await;
    }
}

async fn serve_tls(shared: Arc<Shared>, bind: SocketAddr, peer: SocketAddr, mut client: TcpStream) {
    let hello = match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_hello(&mut client)).await {
        Ok(Ok(hello)) => hello,
        Ok(Err(why)) => {
            debug!(%peer, "TLSRoute connection closed before routing: {why}");
            return;
        }
        Err(_) => {
            debug!(%peer, "no ClientHello in time");
            return;
        }
    };
    let (read, server_name) = hello;
    let snapshot = shared.snapshot.load_full();
    let Some(destination) = server_name
        .as_deref()
        .and_then(|name| route(&snapshot, bind, name))
    else {
        debug!(%peer, server_name = ?server_name, "no TLSRoute for this server name");
        return;
    };
    let Some(upstream) = connect(&destination, peer).await else {
        return;
    };
    if !destination.terminate {
        return relay(PrefixedIo::new(read, client), upstream, peer).await;
    }
    let Some(tls) = snapshot.tls.get(&bind) else {
        return;
    };
    let acceptor = TlsAcceptor::from(tls.config.clone());
    drop(snapshot);
    let handshake = acceptor.accept(PrefixedIo::new(read, client));
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(decrypted)) => relay(decrypted, upstream, peer).await,
        Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
        Err(_) => debug!(%peer, "TLS handshake timed out"),
    }
}

/// Reads until the ClientHello is complete: the bytes read and the server name.
async fn read_hello(client: &mut TcpStream) -> Result<(Bytes, Option<String>), String> {
    let mut buf = BytesMut::with_capacity(2048);
    loop {
        if client.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("the client closed".into());
        }
        match client_hello::parse(&buf) {
            Hello::Partial => continue,
            Hello::Complete { server_name } => return Ok((buf.freeze(), server_name)),
            Hello::Invalid(why) => return Err(why.into()),
        }
    }
}

/// The endpoint for a connection to `bind` naming `host` (the TLS server name; empty for
/// TCP), by the routes of the socket's listeners.
fn route(snapshot: &Snapshot, bind: SocketAddr, host: &str) -> Option<Destination> {
    let socket = snapshot.streams.get(&bind)?;
    let table = snapshot.binds.get(&bind)?;
    let Lookup::Matched(listener, candidate) = table.lookup_host(host) else {
        return None;
    };
    let rule = &snapshot.rules[candidate.route];
    let upstream = rule.backends.pick()?.upstream.as_ref()?;
    let endpoint = upstream.pick_endpoint()?.to_string();
    Some(Destination {
        endpoint,
        terminate: socket.terminate.contains(&listener.name),
    })
}

async fn connect(destination: &Destination, peer: SocketAddr) -> Option<TcpStream> {
    let endpoint = destination.endpoint.as_str();
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint)).await {
        Ok(Ok(upstream)) => {
            let _ = upstream.set_nodelay(true);
            Some(upstream)
        }
        Ok(Err(e)) => {
            debug!(%peer, endpoint, "cannot connect: {e}");
            None
        }
        Err(_) => {
            debug!(%peer, endpoint, "connect timed out");
            None
        }
    }
}

/// Copies both ways until both sides are done.
async fn relay<C>(mut client: C, mut upstream: TcpStream, peer: SocketAddr)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    match copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => debug!(%peer, up, down, "stream connection done"),
        Err(e) => debug!(%peer, "stream connection ended: {e}"),
    }
}
