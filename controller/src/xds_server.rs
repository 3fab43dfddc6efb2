//! Delta-xDS server: streams each host its own Gateway's resources.
//!
//! Every Gateway has a [`GatewaySnapshot`] published through a `watch` channel. A host
//! stream sends the difference between what the host holds and the newest snapshot, waits
//! for the ACK/NACK of that nonce, then waits for the next snapshot. A NACK leaves the
//! host's state unchanged on both sides (the host keeps its last good config), and is
//! recorded so the admin API can report it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::Stream;
use nantian_proto::xds::delta_discovery_server::{DeltaDiscovery, DeltaDiscoveryServer};
use nantian_proto::xds::{DeltaRequest, DeltaResponse, Resource};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::snapshot::{GatewayKey, GatewaySnapshot};

/// What the admin API reports about one connected (or once connected) host.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostState {
    pub node_id: String,
    pub gateway: String,
    pub connected: bool,
    pub acked_version: Option<String>,
    pub last_nack: Option<String>,
    pub last_nack_version: Option<String>,
}

/// Snapshots per Gateway plus the state of every host stream.
#[derive(Clone, Default)]
pub struct SnapshotCache {
    inner: Arc<Mutex<CacheInner>>,
}

#[derive(Default)]
struct CacheInner {
    gateways: HashMap<GatewayKey, watch::Sender<Arc<GatewaySnapshot>>>,
    /// Gateways no longer in the config whose hosts are still connected (and being
    /// stopped). Readiness does not wait for them.
    retired: HashSet<GatewayKey>,
    hosts: BTreeMap<String, HostState>,
}

impl SnapshotCache {
    /// Publishes the newest snapshot of every Gateway; Gateways missing from `snapshots`
    /// get an empty one (their hosts are being stopped, and must stop serving meanwhile).
    pub fn publish(&self, snapshots: Vec<GatewaySnapshot>) {
        let mut inner = self.inner.lock().unwrap();
        let mut seen = Vec::with_capacity(snapshots.len());
        for snapshot in snapshots {
            let key = snapshot.gateway.clone();
            inner.retired.remove(&key);
            seen.push(key.clone());
            let snapshot = Arc::new(snapshot);
            match inner.gateways.get(&key) {
                Some(tx) => {
                    tx.send_if_modified(|current| {
                        let changed = current.version != snapshot.version;
                        if changed {
                            *current = snapshot.clone();
                        }
                        changed
                    });
                }
                None => {
                    inner.gateways.insert(key, watch::channel(snapshot).0);
                }
            }
        }
        let CacheInner {
            gateways, retired, ..
        } = &mut *inner;
        gateways.retain(|key, tx| {
            seen.contains(key) || {
                let _ = tx.send(Arc::new(GatewaySnapshot::empty(key.clone())));
                retired.insert(key.clone());
                tx.receiver_count() > 0
            }
        });
        retired.retain(|key| gateways.contains_key(key));
    }

    /// True once every Gateway in the config has a connected host that ACKed its newest
    /// snapshot.
    pub fn all_acked(&self) -> bool {
        let inner = self.inner.lock().unwrap();
        let current = inner
            .gateways
            .iter()
            .filter(|(key, _)| !inner.retired.contains(*key));
        current.into_iter().all(|(key, tx)| {
            let version = tx.borrow().version.clone();
            inner.hosts.values().any(|h| {
                h.connected
                    && h.gateway == key.to_string()
                    && h.acked_version.as_deref() == Some(version.as_str())
            })
        })
    }

    pub fn hosts(&self) -> Vec<HostState> {
        self.inner.lock().unwrap().hosts.values().cloned().collect()
    }

    fn subscribe(&self, key: &GatewayKey) -> watch::Receiver<Arc<GatewaySnapshot>> {
        let mut inner = self.inner.lock().unwrap();
        inner
            .gateways
            .entry(key.clone())
            .or_insert_with(|| watch::channel(Arc::new(GatewaySnapshot::empty(key.clone()))).0)
            .subscribe()
    }

    fn update_host(&self, node_id: &str, f: impl FnOnce(&mut HostState)) {
        if let Some(h) = self.inner.lock().unwrap().hosts.get_mut(node_id) {
            f(h)
        }
    }

    fn register_host(&self, node_id: &str, gateway: &GatewayKey) {
        self.inner.lock().unwrap().hosts.insert(
            node_id.to_string(),
            HostState {
                node_id: node_id.to_string(),
                gateway: gateway.to_string(),
                connected: true,
                acked_version: None,
                last_nack: None,
                last_nack_version: None,
            },
        );
    }

    pub fn server(&self) -> DeltaDiscoveryServer<XdsService> {
        self.server_with(false)
    }

    /// The server for mutual TLS: a host is served only the Gateway its verified client
    /// certificate names (see `kubernetes::xds_tls`).
    pub fn server_requiring_gateway_certificates(&self) -> DeltaDiscoveryServer<XdsService> {
        self.server_with(true)
    }

    fn server_with(&self, require_certificate: bool) -> DeltaDiscoveryServer<XdsService> {
        DeltaDiscoveryServer::new(XdsService {
            cache: self.clone(),
            require_certificate,
        })
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
    }
}

pub struct XdsService {
    cache: SnapshotCache,
    require_certificate: bool,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DeltaResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DeltaDiscovery for XdsService {
    type DeltaResourcesStream = ResponseStream;

    async fn delta_resources(
        &self,
        request: Request<Streaming<DeltaRequest>>,
    ) -> Result<Response<Self::DeltaResourcesStream>, Status> {
        let peer_certificates = request.peer_certs();
        let mut requests = request.into_inner();
        let first = requests
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty stream"))??;
        let node = first
            .node
            .ok_or_else(|| Status::invalid_argument("the first request must carry a node"))?;
        if node.gateway_name.is_empty() {
            return Err(Status::invalid_argument("node names no gateway"));
        }
        let key = GatewayKey::new(&node.gateway_namespace, &node.gateway_name);
        if self.require_certificate {
            let named = peer_certificates
                .as_ref()
                .and_then(|chain| chain.first())
                .is_some_and(|leaf| {
                    crate::kubernetes::xds_tls::certificate_names_gateway(leaf, &key)
                });
            if !named {
                warn!(gateway = %key, "refused a host whose client certificate does not name its Gateway");
                return Err(Status::permission_denied(format!(
                    "the client certificate does not name Gateway {key}"
                )));
            }
        }
        let node_id = if node.id.is_empty() {
            key.to_string()
        } else {
            node.id.clone()
        };
        info!(node = %node_id, gateway = %key, "host connected");
        self.cache.register_host(&node_id, &key);

        let (tx, rx) = mpsc::channel(2);
        let stream = HostStream {
            cache: self.cache.clone(),
            node_id,
            snapshots: self.cache.subscribe(&key),
            known: first.initial_resource_versions.into_iter().collect(),
            nonce: 0,
        };
        tokio::spawn(stream.run(requests, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One host's stream: what it holds and what it was last sent.
struct HostStream {
    cache: SnapshotCache,
    node_id: String,
    snapshots: watch::Receiver<Arc<GatewaySnapshot>>,
    /// Resource name -> version the host holds (as of its last ACK).
    known: BTreeMap<String, String>,
    nonce: u64,
}

impl HostStream {
    async fn run(
        mut self,
        mut requests: Streaming<DeltaRequest>,
        tx: mpsc::Sender<Result<DeltaResponse, Status>>,
    ) {
        let mut first = true;
        loop {
            let snapshot = self.snapshots.borrow_and_update().clone();
            let delta = delta(&self.known, &snapshot);
            // The first response goes out even when empty: it tells the host its config
            // is complete (e.g. a Gateway with nothing attached yet).
            if first || !delta.resources.is_empty() || !delta.removed_resources.is_empty() {
                first = false;
                self.nonce += 1;
                let nonce = format!("{}-{}", self.nonce, nonce_salt());
                let response = DeltaResponse {
                    nonce: nonce.clone(),
                    ..delta
                };
                if tx.send(Ok(response)).await.is_err() {
                    break;
                }
                match self.await_reply(&mut requests, &nonce).await {
                    Some(Ok(())) => {
                        self.known = snapshot
                            .resources
                            .iter()
                            .map(|(name, r)| (name.clone(), r.version.clone()))
                            .collect();
                        let version = snapshot.version.clone();
                        self.cache.update_host(&self.node_id, |h| {
                            h.acked_version = Some(version);
                        });
                    }
                    Some(Err(message)) => {
                        warn!(node = %self.node_id, version = %snapshot.version, %message, "host NACKed the snapshot");
                        let version = snapshot.version.clone();
                        self.cache.update_host(&self.node_id, |h| {
                            h.last_nack = Some(message);
                            h.last_nack_version = Some(version);
                        });
                    }
                    None => break,
                }
            }
            if self.snapshots.changed().await.is_err() {
                break;
            }
        }
        info!(node = %self.node_id, "host disconnected");
        self.cache
            .update_host(&self.node_id, |h| h.connected = false);
    }

    /// Waits for the reply to `nonce`: Ok on ACK, Err(message) on NACK, None when the
    /// stream ends.
    async fn await_reply(
        &self,
        requests: &mut Streaming<DeltaRequest>,
        nonce: &str,
    ) -> Option<Result<(), String>> {
        while let Some(Ok(req)) = requests.next().await {
            if req.response_nonce != nonce {
                continue; // stale reply to an earlier stream generation
            }
            return Some(match req.error_detail {
                None => Ok(()),
                Some(detail) => {
                    let mut message = detail.message;
                    for r in detail.rejected {
                        message.push_str(&format!("; {}: {}", r.name, r.reason));
                    }
                    Err(message)
                }
            });
        }
        None
    }
}

/// What changed between what a host holds and a snapshot.
fn delta(known: &BTreeMap<String, String>, snapshot: &GatewaySnapshot) -> DeltaResponse {
    let resources: Vec<Resource> = snapshot
        .resources
        .iter()
        .filter(|(name, r)| known.get(*name) != Some(&r.version))
        .map(|(_, r)| r.clone())
        .collect();
    let removed_resources = known
        .keys()
        .filter(|name| !snapshot.resources.contains_key(*name))
        .cloned()
        .collect();
    DeltaResponse {
        system_version_info: snapshot.version.clone(),
        resources,
        removed_resources,
        nonce: String::new(),
    }
}

/// Makes nonces unique across controller restarts, so a host never mistakes an old
/// stream's reply for a new one.
fn nonce_salt() -> u64 {
    static SALT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SALT.get_or_init(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(resources: &[(&str, &str)]) -> GatewaySnapshot {
        GatewaySnapshot::from_resources(
            GatewayKey::new("ns", "gw"),
            resources.iter().map(|(n, v)| Resource {
                name: n.to_string(),
                version: v.to_string(),
                resource: None,
            }),
        )
    }

    #[test]
    fn delta_sends_changed_and_removed_only() {
        let known: BTreeMap<_, _> = [("a", "1"), ("b", "1"), ("c", "1")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let d = delta(&known, &snapshot(&[("a", "1"), ("b", "2"), ("d", "1")]));
        let names: Vec<_> = d.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "d"]);
        assert_eq!(d.removed_resources, ["c"]);
    }

    #[test]
    fn readiness_needs_an_ack_of_the_newest_snapshot() {
        let cache = SnapshotCache::default();
        cache.publish(vec![snapshot(&[("a", "1")])]);
        assert!(!cache.all_acked());
        let key = GatewayKey::new("ns", "gw");
        cache.register_host("h1", &key);
        let version = cache.subscribe(&key).borrow().version.clone();
        cache.update_host("h1", |h| h.acked_version = Some(version));
        assert!(cache.all_acked());
        cache.publish(vec![snapshot(&[("a", "2")])]);
        assert!(!cache.all_acked());
    }

    #[test]
    fn readiness_does_not_wait_for_a_removed_gateway_whose_host_is_stopping() {
        let cache = SnapshotCache::default();
        let key = GatewayKey::new("ns", "gw");
        cache.publish(vec![snapshot(&[("a", "1")])]);
        cache.register_host("h1", &key);
        // The host is still connected (subscribed) when its Gateway leaves the config,
        // and never ACKs the empty snapshot it is sent before it is stopped.
        let stopping = cache.subscribe(&key);
        cache.publish(vec![]);
        assert!(cache.all_acked(), "nothing left to wait for");
        drop(stopping);
        cache.publish(vec![]);
        assert!(cache.inner.lock().unwrap().retired.is_empty());
        // The same Gateway coming back is waited for again.
        cache.publish(vec![snapshot(&[("a", "1")])]);
        assert!(!cache.all_acked());
    }
}
