//! TLSRoute connections: routed by the server name of their ClientHello, then carried as a
//! byte stream to an endpoint of the picked backend, untouched (listener `tls.mode`
//! Passthrough: the backend does the handshake) or after the gateway terminated TLS with
//! the listener's certificate (Terminate: the backend gets the plaintext).
//!
//! The route is chosen the way HTTP requests choose theirs, by the socket's route table
//! with the server name as the host: the listener whose hostname matches it most
//! specifically, then the route hostname that does. A connection without a server name,
//! or one nothing matches, gets the TLS alert `unrecognized_name` and is closed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, copy_bidirectional};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::client_hello::{self, Hello};
use crate::config::{ListenerSpec, TlsRouteMode};
use crate::prefixed_io::PrefixedIo;
use crate::router::{Lookup, RequestView};
use crate::server::Shared;

/// A client has this long to send its ClientHello and finish a terminated handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TLS alert record: fatal (2), unrecognized_name (112).
const ALERT_UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// One socket whose listeners are TLS listeners.
#[derive(Debug, Default)]
pub struct TlsRouteSocket {
    /// The listeners (by name) in Terminate mode; the others pass through.
    terminate: HashSet<Arc<str>>,
}

/// The TLSRoute sockets of a snapshot.
pub fn sockets(listeners: &[ListenerSpec]) -> HashMap<SocketAddr, TlsRouteSocket> {
    let mut out: HashMap<SocketAddr, TlsRouteSocket> = HashMap::new();
    for l in listeners {
        let Some(mode) = l.tls_route else { continue };
        for bind in &l.binds {
            let socket = out.entry(*bind).or_default();
            if mode == TlsRouteMode::Terminate {
                socket.terminate.insert(l.name.clone());
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

/// Serves one accepted connection of a TLSRoute socket to its end.
pub async fn serve(shared: Arc<Shared>, bind: SocketAddr, peer: SocketAddr, mut client: TcpStream) {
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
        let _ = client.write_all(&ALERT_UNRECOGNIZED_NAME).await;
        return;
    };
    let upstream = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect(destination.endpoint.as_str()),
    )
    .await
    {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(e)) => {
            debug!(%peer, endpoint = %destination.endpoint, "cannot connect: {e}");
            return;
        }
        Err(_) => {
            debug!(%peer, endpoint = %destination.endpoint, "connect timed out");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
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

static NO_HEADERS: LazyLock<HeaderMap> = LazyLock::new(HeaderMap::new);

/// The endpoint for `server_name` on `bind`, by the TLSRoutes of the socket's listeners.
fn route(
    snapshot: &crate::snapshot::Snapshot,
    bind: SocketAddr,
    server_name: &str,
) -> Option<Destination> {
    let socket = snapshot.tls_routes.get(&bind)?;
    let table = snapshot.binds.get(&bind)?;
    let view = RequestView {
        host: server_name,
        method: &Method::GET,
        path: "/",
        query: None,
        headers: &NO_HEADERS,
    };
    let Lookup::Matched(listener, candidate) = table.lookup(&view) else {
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

/// Copies both ways until both sides are done.
async fn relay<C>(mut client: C, mut upstream: TcpStream, peer: SocketAddr)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    match copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => debug!(%peer, up, down, "TLSRoute connection done"),
        Err(e) => debug!(%peer, "TLSRoute connection ended: {e}"),
    }
}
