//! The sockets the gateway listens on, one per address:port and transport (TCP for every
//! protocol but UDP), kept in step with config.
//!
//! Applying a snapshot is two steps: [`Sockets::plan`] binds the sockets the new config
//! adds (a failure rejects the snapshot and changes nothing: the new sockets are simply
//! dropped), then, once the snapshot is swapped in, [`Sockets::commit`] starts accepting on
//! them and stops accepting on removed ones. Sockets present in both configs are untouched,
//! so their connections never notice a config change. Connections of a removed socket
//! finish their in-flight requests and then close.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::sync::watch;

const BACKLOG: u32 = 1024;

/// A socket the gateway listens on: a TCP listener or a UDP socket.
pub trait ListenSocket: Sized {
    fn bind(addr: SocketAddr) -> io::Result<Self>;
}

impl ListenSocket for TcpListener {
    fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // Lets a restarted host rebind while old connections sit in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    }
}

impl ListenSocket for UdpSocket {
    fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        UdpSocket::from_std(socket)
    }
}

/// Open sockets of one transport and how to stop each one.
pub struct Sockets<S> {
    /// Only touched while applying config (serialized by the gateway), never per request.
    open: Mutex<HashMap<SocketAddr, watch::Sender<bool>>>,
    kind: PhantomData<fn() -> S>,
}

impl<S> Default for Sockets<S> {
    fn default() -> Self {
        Sockets {
            open: Mutex::default(),
            kind: PhantomData,
        }
    }
}

/// New sockets bound for a snapshot, and the addresses it no longer wants.
pub struct SocketPlan<S> {
    pub added: Vec<(SocketAddr, S)>,
    pub removed: Vec<SocketAddr>,
}

/// Why a socket could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

impl<S: ListenSocket> Sockets<S> {
    /// Binds every wanted address not open yet. On failure nothing changes.
    pub fn plan(&self, wanted: &BTreeSet<SocketAddr>) -> Result<SocketPlan<S>, Vec<BindError>> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut added = Vec::new();
        let mut errors = Vec::new();
        for addr in wanted.iter().filter(|a| !open.contains_key(a)) {
            match S::bind(*addr) {
                Ok(listener) => added.push((*addr, listener)),
                Err(source) => errors.push(BindError {
                    addr: *addr,
                    source,
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let removed = open
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        Ok(SocketPlan { added, removed })
    }

    /// Starts `serve` on every new socket (with the receiver that tells it to stop) and
    /// signals the removed ones to stop.
    pub fn commit(
        &self,
        plan: SocketPlan<S>,
        mut serve: impl FnMut(SocketAddr, S, watch::Receiver<bool>),
    ) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for addr in plan.removed {
            if let Some(stop) = open.remove(&addr) {
                tracing::info!(%addr, "listener removed; stopping accepts, draining connections");
                let _ = stop.send(true);
            }
        }
        for (addr, listener) in plan.added {
            let (stop, stopped) = watch::channel(false);
            tracing::info!(%addr, "listening");
            serve(addr, listener, stopped);
            open.insert(addr, stop);
        }
    }

    pub fn open_addresses(&self) -> BTreeSet<SocketAddr> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_addr() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[tokio::test]
    async fn plan_binds_only_new_addresses_and_commit_stops_removed_ones() {
        let sockets = Sockets::<TcpListener>::default();
        let (a, b) = (free_addr(), free_addr());
        let plan = sockets.plan(&BTreeSet::from([a])).unwrap();
        assert_eq!(plan.added.len(), 1);
        let mut receivers = Vec::new();
        sockets.commit(plan, |_, listener, stop| receivers.push((listener, stop)));
        assert_eq!(sockets.open_addresses(), BTreeSet::from([a]));

        let plan = sockets.plan(&BTreeSet::from([b])).unwrap();
        assert_eq!(
            plan.added.iter().map(|(addr, _)| *addr).collect::<Vec<_>>(),
            [b]
        );
        assert_eq!(plan.removed, [a]);
        sockets.commit(plan, |_, listener, stop| receivers.push((listener, stop)));
        assert!(
            *receivers[0].1.borrow(),
            "the removed socket was told to stop"
        );
        assert!(!*receivers[1].1.borrow());
        assert_eq!(sockets.open_addresses(), BTreeSet::from([b]));
    }

    #[tokio::test]
    async fn udp_sockets_are_planned_apart_from_tcp_ones() {
        // A TCP listener holds the port; a UDP socket on it is another socket.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let sockets = Sockets::<UdpSocket>::default();
        let plan = sockets.plan(&BTreeSet::from([addr])).unwrap();
        assert_eq!(plan.added.len(), 1);
        let mut bound = Vec::new();
        sockets.commit(plan, |_, socket, stop| bound.push((socket, stop)));
        assert_eq!(sockets.open_addresses(), BTreeSet::from([addr]));
        // The same UDP address again is taken.
        let again = Sockets::<UdpSocket>::default();
        let errors = again
            .plan(&BTreeSet::from([addr]))
            .err()
            .expect("UDP address in use");
        assert_eq!(errors[0].addr, addr);
    }

    #[tokio::test]
    async fn a_taken_address_fails_the_plan_and_changes_nothing() {
        let sockets = Sockets::<TcpListener>::default();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let other = free_addr();
        let errors = sockets
            .plan(&BTreeSet::from([addr, other]))
            .err()
            .expect("address in use");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].addr, addr);
        assert!(sockets.open_addresses().is_empty());
    }
}
