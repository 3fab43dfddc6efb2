//! UDPRoutes: datagrams to a UDP listener are relayed to an endpoint of the backend its
//! route picks, and the endpoint's replies back to the client.
//!
//! Datagrams from one client address form a flow (a session): the first one picks the
//! endpoint from the snapshot of that moment, on a fresh upstream socket connected to it,
//! and the flow's later datagrams follow it there, so a backend sees one peer per client.
//! A flow idle for [`FLOW_IDLE`] is forgotten; config changes apply to new flows, the
//! way TCP connections keep the backend they started with. A datagram no route takes is
//! dropped, as is one the upstream socket cannot send.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::router::Lookup;
use crate::server::Shared;
use crate::snapshot::Snapshot;

/// A flow nobody sent or answered on for this long is closed.
pub const FLOW_IDLE: Duration = Duration::from_secs(60);
/// How often idle flows are looked for.
const SWEEP: Duration = Duration::from_secs(5);
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// One client's flow.
struct Flow {
    upstream: Arc<UdpSocket>,
    /// Milliseconds since the listener started, at the last datagram either way.
    last_seen: Arc<AtomicU64>,
    /// Set when the upstream socket failed (e.g. the endpoint refused): the next
    /// datagram starts a new flow.
    broken: Arc<AtomicBool>,
    replies: JoinHandle<()>,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

/// Relays datagrams on `socket` (bound to `bind`) until told to stop; its flows end with
/// it.
pub async fn serve(
    socket: UdpSocket,
    bind: SocketAddr,
    mut stop: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    let socket = Arc::new(socket);
    let started = Instant::now();
    let now = move || millis_since(started);
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut sweep = tokio::time::interval(SWEEP);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = sweep.tick() => {
                let idle = u64::try_from(FLOW_IDLE.as_millis()).unwrap_or(u64::MAX);
                let now = now();
                flows.retain(|_, f| {
                    !f.broken.load(Ordering::Relaxed)
                        && now.saturating_sub(f.last_seen.load(Ordering::Relaxed)) < idle
                });
            }
            received = socket.recv_from(&mut buf) => {
                let (n, client) = match received {
                    Ok(received) => received,
                    Err(e) => {
                        debug!(%bind, "UDP receive failed: {e}");
                        continue;
                    }
                };
                if flows.get(&client).is_some_and(|f| f.broken.load(Ordering::Relaxed)) {
                    flows.remove(&client);
                }
                let flow = match flows.entry(client) {
                    Entry::Occupied(open) => open.into_mut(),
                    Entry::Vacant(new) => {
                        let Some(endpoint) = route(&shared.snapshot.load(), bind) else {
                            debug!(%bind, %client, "no UDPRoute: datagram dropped");
                            continue;
                        };
                        match open_flow(&socket, client, endpoint, started).await {
                            Ok(flow) => new.insert(flow),
                            Err(e) => {
                                debug!(%bind, %client, %endpoint, "cannot open a UDP flow: {e}");
                                continue;
                            }
                        }
                    }
                };
                flow.last_seen.store(now(), Ordering::Relaxed);
                if let Err(e) = flow.upstream.send(&buf[..n]).await {
                    debug!(%bind, %client, "UDP send upstream failed: {e}");
                    flow.broken.store(true, Ordering::Relaxed);
                }
            }
        }
    }
    debug!(%bind, flows = flows.len(), "UDP listener stopped");
}

fn millis_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The endpoint a new flow on `bind` goes to, by the listener's route.
fn route(snapshot: &Snapshot, bind: SocketAddr) -> Option<SocketAddr> {
    let table = snapshot.udp_binds.get(&bind)?;
    let Lookup::Matched(_, candidate) = table.lookup_host("") else {
        return None;
    };
    let rule = &snapshot.rules[candidate.route];
    let upstream = rule.backends.pick()?.upstream.as_ref()?;
    upstream.pick_endpoint()?.as_str().parse().ok()
}

/// A socket connected to `endpoint` for `client`'s datagrams, with the task that sends
/// the endpoint's replies back through `listener`.
async fn open_flow(
    listener: &Arc<UdpSocket>,
    client: SocketAddr,
    endpoint: SocketAddr,
    started: Instant,
) -> std::io::Result<Flow> {
    let local: SocketAddr = if endpoint.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let upstream = Arc::new(UdpSocket::bind(local).await?);
    upstream.connect(endpoint).await?;
    let last_seen = Arc::new(AtomicU64::new(millis_since(started)));
    let broken = Arc::new(AtomicBool::new(false));
    let replies = tokio::spawn(relay_replies(
        upstream.clone(),
        listener.clone(),
        client,
        Activity {
            started,
            last_seen: last_seen.clone(),
            broken: broken.clone(),
        },
    ));
    Ok(Flow {
        upstream,
        last_seen,
        broken,
        replies,
    })
}

/// What a flow's reply task reports back: when it last relayed, and that it failed.
struct Activity {
    started: Instant,
    last_seen: Arc<AtomicU64>,
    broken: Arc<AtomicBool>,
}

/// Sends every datagram the endpoint answers to `client`, until the upstream socket
/// fails (the flow is then marked broken).
async fn relay_replies(
    upstream: Arc<UdpSocket>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    activity: Activity,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match upstream.recv(&mut buf).await {
            Ok(n) => {
                activity
                    .last_seen
                    .store(millis_since(activity.started), Ordering::Relaxed);
                if let Err(e) = listener.send_to(&buf[..n], client).await {
                    debug!(%client, "UDP send to the client failed: {e}");
                }
            }
            Err(e) => {
                debug!(%client, "UDP flow ended: {e}");
                activity.broken.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}
