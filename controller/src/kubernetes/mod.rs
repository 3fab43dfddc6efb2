//! Kubernetes provider: the same translator and xDS server as standalone mode, fed by
//! watches on an API server, writing status back, and running the data plane as
//! Deployments.
//!
//! One loop: wait for a change (debounced), translate the whole cluster view, publish
//! each Gateway's snapshot (the xDS server sends hosts only what changed), then, on the
//! leader only, provision data planes and write statuses.

pub mod events;
pub mod kinds;
pub mod leader;
pub mod provision;
pub mod status_writer;
pub mod watch;
pub mod xds_tls;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use kube::Client;
use nantian_proto::config::FilterModule;
use tokio::sync::watch as signal;
use tracing::info;

use self::events::StatusEvents;
use self::leader::LeaderElection;
use self::provision::{ProvisionConfig, Provisioner};
use self::status_writer::StatusWriter;
use self::watch::ClusterView;
use crate::model::{HostDeployment, MetaExt, Resources};
use crate::snapshot::GatewaySnapshot;
use crate::standalone::SharedStatus;
use crate::translate::{self, Addressing, ProvisionedGateway, TranslateOptions};
use crate::xds_server::SnapshotCache;

/// A change starts a translation once the cluster has been quiet this long...
const SETTLE: Duration = Duration::from_millis(20);
/// ...or this long after the first change, whichever is first (a steady stream of
/// changes, e.g. EndpointSlices churning, must not postpone translation forever).
const MAX_DELAY: Duration = Duration::from_millis(200);
/// Statuses and data planes are re-checked this often even without changes (a status
/// someone else overwrote, a provisioned object deleted by hand), by default.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(60);

pub struct KubernetesProvider {
    pub client: Client,
    pub controller_name: String,
    /// Where the controller runs; the leader-election Lease lives here.
    pub namespace: String,
    /// This replica's name in the Lease (its pod name).
    pub identity: String,
    pub lease_name: String,
    /// What hosts bind: 0.0.0.0 in pods.
    pub bind_address: IpAddr,
    /// None: data planes are run by someone else (`--no-provision`).
    pub provision: Option<ProvisionConfig>,
    pub modules: BTreeMap<String, FilterModule>,
    pub cache: SnapshotCache,
    pub status: SharedStatus,
    /// How often statuses and data planes are re-checked without changes.
    pub resync: Duration,
}

impl KubernetesProvider {
    /// Runs until `stop` turns true; then hands leadership over.
    pub async fn run(self, stop: signal::Receiver<bool>) -> anyhow::Result<()> {
        let view = ClusterView::default();
        view.start(&self.client);
        let election = LeaderElection::new(
            self.client.clone(),
            &self.namespace,
            &self.lease_name,
            &self.identity,
        );
        let mut leading = election.leading();
        let election = tokio::spawn(election.run(stop.clone()));
        let events = StatusEvents::new(self.client.clone(), &self.controller_name, &self.identity);
        let mut writer =
            StatusWriter::new(self.client.clone(), &self.controller_name).with_events(events);
        let mut provisioner = self
            .provision
            .clone()
            .map(|config| Provisioner::new(self.client.clone(), &self.controller_name, config));
        let mut changes = view.subscribe();
        let mut stop_rx = stop.clone();

        info!(namespace = %self.namespace, identity = %self.identity, "waiting for the first list of every watched kind");
        loop {
            if view.cluster.lock().unwrap().synced() {
                break;
            }
            tokio::select! {
                r = changes.changed() => r?,
                _ = stop_rx.changed() => return Ok(()),
            }
        }
        let mut was_leading = false;
        loop {
            let resources = view.cluster.lock().unwrap().resources.clone();
            changes.borrow_and_update();
            let translation = self.translate(&resources);
            let is_leading = *leading.borrow();
            // Said before acting on it: whoever sees a status this replica wrote as the
            // leader must also see it leading.
            self.status.write().unwrap().leading = Some(is_leading);
            if is_leading && !was_leading {
                // Another replica may have written and provisioned meanwhile: what this
                // one remembers writing proves nothing now.
                writer.recheck_all();
                if let Some(provisioner) = provisioner.as_mut() {
                    provisioner.recheck_all();
                }
            }
            was_leading = is_leading;
            if is_leading {
                if let Some(provisioner) = provisioner.as_mut() {
                    let ours = our_gateways(&resources, &self.controller_name);
                    provisioner.sync(&ours).await;
                }
                let wrote = writer.write(&translation.statuses).await;
                if wrote > 0 {
                    info!(objects = wrote, "status written");
                }
            }
            {
                let mut board = self.status.write().unwrap();
                board.translation = Some(translation);
                board.translations += 1;
                board.leading = Some(*leading.borrow());
            }
            // Wait for the next change, leadership change, resync or stop.
            tokio::select! {
                r = changes.changed() => { r?; settle(&mut changes).await; }
                r = leading.changed() => { r?; }
                _ = tokio::time::sleep(self.resync) => {
                    writer.recheck_all();
                    if let Some(provisioner) = provisioner.as_mut() {
                        provisioner.recheck_all();
                    }
                }
                _ = stop_rx.changed() => break,
            }
        }
        let _ = election.await;
        Ok(())
    }

    fn translate(&self, resources: &Resources) -> translate::Translation {
        let started = Instant::now();
        let ours = our_gateways(resources, &self.controller_name);
        let by_gateway = ours
            .iter()
            .map(|gw| {
                let key = (gw.namespace().to_string(), gw.name().to_string());
                // The Service and Deployment of a Gateway share its provisioned name.
                let provisioned_key = (key.0.clone(), provision::object_name(gw.name()));
                let addresses = resources
                    .services
                    .get(&provisioned_key)
                    .map(provision::service_addresses)
                    .unwrap_or_default();
                let available = self.provision.is_some().then(|| {
                    resources
                        .host_deployments
                        .get(&provisioned_key)
                        .is_some_and(HostDeployment::available)
                });
                let provisioned = ProvisionedGateway {
                    addresses,
                    available,
                };
                (key, provisioned)
            })
            .collect();
        let opts = TranslateOptions {
            controller_name: self.controller_name.clone(),
            addresses: BTreeMap::new(),
            unusable_addresses: BTreeMap::new(),
            filter_modules: self.modules.clone(),
            addressing: Addressing::ServiceAddresses {
                bind: self.bind_address,
                by_gateway,
            },
        };
        let mut translation = translate::translate(resources, &opts);
        {
            let board = self.status.read().unwrap();
            let previous = board.translation.as_ref().map(|t| t.statuses.as_slice());
            crate::standalone::stamp_statuses(&mut translation, previous.unwrap_or_default());
        }
        let snapshots: Vec<GatewaySnapshot> = translation
            .gateways
            .iter()
            .map(GatewaySnapshot::from_ir)
            .collect();
        info!(
            gateways = snapshots.len(),
            statuses = translation.statuses.len(),
            objects = resources.len(),
            ms = started.elapsed().as_millis() as u64,
            "translated the cluster"
        );
        self.cache.publish(snapshots);
        translation
    }
}

/// Waits for the watches to go quiet (see [`SETTLE`], [`MAX_DELAY`]).
async fn settle(changes: &mut signal::Receiver<u64>) {
    let deadline = tokio::time::Instant::now() + MAX_DELAY;
    loop {
        let quiet = tokio::time::sleep(SETTLE);
        tokio::select! {
            _ = quiet => return,
            _ = tokio::time::sleep_until(deadline) => return,
            r = changes.changed() => if r.is_err() { return },
        }
    }
}

/// Gateways whose GatewayClass names our controller.
fn our_gateways<'a>(
    res: &'a Resources,
    controller_name: &str,
) -> Vec<&'a gateway_api::gateways::Gateway> {
    res.gateways
        .values()
        .filter(|gw| {
            res.gateway_classes
                .get(&(String::new(), gw.spec.gateway_class_name.clone()))
                .is_some_and(|c| c.spec.controller_name == controller_name)
        })
        .collect()
}
