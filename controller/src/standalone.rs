//! Standalone provider: the same Kubernetes YAML, read from a directory instead of an API
//! server. Every change to the directory re-runs load → translate → publish.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{info, warn};

use nantian_proto::config::{FilterModule, filter_module};

use crate::load::{DirLoader, LoadError};
use crate::model::Resources;
use crate::snapshot::{GatewayKey, GatewaySnapshot};
use crate::status;
use crate::supervisor::{Desired, Supervisor};
use crate::translate::{self, TranslateOptions, Translation};
use crate::xds_server::SnapshotCache;

pub const CONTROLLER_NAME: &str = "gateway.nantian.dev/controller";

/// The built-in filters a standalone controller ships, by filter name → file name.
pub const BUILTIN_FILTERS: &[(&str, &str)] = &[
    (translate::CORS, "cors.wasm"),
    (translate::HEADER_MODIFIER, "header-modifier.wasm"),
];

/// What the admin API serves: the newest statuses and load errors.
#[derive(Default)]
pub struct StatusBoard {
    pub translation: Option<Translation>,
    pub errors: Vec<LoadError>,
    /// How many times the directory was translated: once at start, then once per change.
    pub translations: u64,
}

pub type SharedStatus = Arc<RwLock<StatusBoard>>;

/// Hands out loopback addresses from 127.0.10.0/24, stable for a Gateway for the life of
/// the controller, and derived from its name so a restart gives the same answer.
#[derive(Default)]
pub struct AddressAllocator {
    assigned: BTreeMap<GatewayKey, IpAddr>,
}

impl AddressAllocator {
    /// Assigns addresses to `gateways`, never handing out one of `reserved` (the static
    /// `spec.addresses` of other Gateways).
    pub fn assign(
        &mut self,
        gateways: &[GatewayKey],
        reserved: &[IpAddr],
    ) -> BTreeMap<(String, String), IpAddr> {
        self.assigned
            .retain(|k, ip| gateways.contains(k) && !reserved.contains(ip));
        for key in gateways {
            if self.assigned.contains_key(key) {
                continue;
            }
            let hash = Sha256::digest(key.to_string().as_bytes());
            let start = hash[0] as u16 % 254;
            let free = (0..254u16)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 10, ((start + i) % 254 + 1) as u8)))
                .find(|ip| !reserved.contains(ip) && !self.assigned.values().any(|a| a == ip));
            if let Some(ip) = free {
                self.assigned.insert(key.clone(), ip);
            }
        }
        self.assigned
            .iter()
            .map(|(k, ip)| ((k.namespace.clone(), k.name.clone()), *ip))
            .collect()
    }
}

/// Reads the built-in filter components and describes them as FilterModules.
pub fn builtin_modules(filter_dir: &Path) -> anyhow::Result<BTreeMap<String, FilterModule>> {
    let mut modules = BTreeMap::new();
    for (filter, file) in BUILTIN_FILTERS {
        let path = filter_dir.join(file);
        let bytes = std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!(
                "built-in filter {filter}: cannot read {}: {e} (run `cargo xtask build`)",
                path.display()
            )
        })?;
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = std::fs::canonicalize(&path)?;
        modules.insert(
            filter.to_string(),
            FilterModule {
                name: format!("module/{filter}@{}", &sha[..12]),
                sha256: sha,
                source: Some(filter_module::Source::Path(path.display().to_string())),
            },
        );
    }
    Ok(modules)
}

/// Our Gateways: those that need an allocated address, and the static addresses the others
/// asked for in `spec.addresses`.
fn served_gateways(res: &Resources) -> (Vec<GatewayKey>, Vec<IpAddr>) {
    let ours = |class: &str| {
        res.gateway_classes
            .get(&(String::new(), class.to_string()))
            .is_some_and(|c| c.spec.controller_name == CONTROLLER_NAME)
    };
    let mut dynamic = Vec::new();
    let mut fixed = Vec::new();
    for ((ns, name), gw) in &res.gateways {
        if !ours(&gw.spec.gateway_class_name) {
            continue;
        }
        let static_ip = gw
            .spec
            .addresses
            .iter()
            .flatten()
            .filter(|a| a.r#type.as_deref().unwrap_or("IPAddress") == "IPAddress")
            .find_map(|a| a.value.as_deref().and_then(|v| v.parse::<IpAddr>().ok()));
        match static_ip {
            Some(ip) => fixed.push(ip),
            None => dynamic.push(GatewayKey::new(ns, name)),
        }
    }
    (dynamic, fixed)
}

pub struct Standalone {
    pub config_dir: PathBuf,
    pub modules: BTreeMap<String, FilterModule>,
    pub cache: SnapshotCache,
    pub supervisor: Supervisor,
    pub status: SharedStatus,
}

impl Standalone {
    /// Translates the directory now, then again after every change, until the process ends.
    pub async fn run(self) -> anyhow::Result<()> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Reading the directory to translate it reports access events: reacting
                // to those would re-translate in a loop.
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(&self.config_dir, RecursiveMode::NonRecursive)?;

        let mut allocator = AddressAllocator::default();
        let mut loader = DirLoader::default();
        loop {
            self.sync(&mut allocator, &mut loader);
            if rx.recv().await.is_none() {
                return Ok(());
            }
            // Editors write files in several steps; settle briefly before reading. A step
            // that lands after this still triggers its own translation.
            tokio::time::sleep(Duration::from_millis(5)).await;
            while rx.try_recv().is_ok() {}
        }
    }

    fn sync(&self, allocator: &mut AddressAllocator, loader: &mut DirLoader) {
        let started = std::time::Instant::now();
        let (resources, errors) = loader.load(&self.config_dir);
        let loaded = started.elapsed();
        for e in &errors {
            warn!("{e}");
        }
        let (dynamic, fixed) = served_gateways(&resources);
        let opts = TranslateOptions {
            controller_name: CONTROLLER_NAME.to_string(),
            addresses: allocator.assign(&dynamic, &fixed),
            filter_modules: self.modules.clone(),
        };
        let mut translation = translate::translate(&resources, &opts);
        {
            let board = self.status.read().unwrap();
            let previous = board.translation.as_ref().map(|t| t.statuses.as_slice());
            stamp_statuses(&mut translation, previous.unwrap_or_default());
        }
        let snapshots: Vec<GatewaySnapshot> = translation
            .gateways
            .iter()
            .map(GatewaySnapshot::from_ir)
            .collect();
        let desired: Desired = translation
            .gateways
            .iter()
            .map(|g| (GatewayKey::new(&g.namespace, &g.name), g.address))
            .collect();
        info!(
            gateways = snapshots.len(),
            statuses = translation.statuses.len(),
            errors = errors.len(),
            load_ms = loaded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "translated {}",
            self.config_dir.display()
        );
        self.cache.publish(snapshots);
        self.supervisor.reconcile(desired);
        let mut board = self.status.write().unwrap();
        board.translation = Some(translation);
        board.errors = errors;
        board.translations += 1;
    }
}

/// Gives every condition a `lastTransitionTime`: the previous one when the same object
/// already had that condition with the same status, else now.
fn stamp_statuses(translation: &mut Translation, previous: &[translate::ObjectStatus]) {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now());
    let now = now.to_string();
    for object in &mut translation.statuses {
        if let Some(before) = previous.iter().find(|p| {
            p.kind == object.kind && p.namespace == object.namespace && p.name == object.name
        }) {
            status::carry_transition_times(&before.status, &mut object.status);
        }
        status::stamp_transition_times(&mut object.status, &now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_stable_and_distinct() {
        let a = GatewayKey::new("ns", "a");
        let b = GatewayKey::new("ns", "b");
        let mut alloc = AddressAllocator::default();
        let first = alloc.assign(std::slice::from_ref(&a), &[]);
        let both = alloc.assign(&[a.clone(), b.clone()], &[]);
        let key_a = ("ns".to_string(), "a".to_string());
        let key_b = ("ns".to_string(), "b".to_string());
        assert_eq!(first[&key_a], both[&key_a]);
        assert_ne!(both[&key_a], both[&key_b]);
        let mut fresh = AddressAllocator::default();
        assert_eq!(
            fresh.assign(&[b.clone(), a.clone()], &[])[&key_a],
            both[&key_a]
        );
        // A static address taken by another Gateway moves the allocated one away.
        let taken = both[&key_a];
        let moved = fresh.assign(&[a, b], &[taken]);
        assert_ne!(moved[&key_a], taken);
    }
}
