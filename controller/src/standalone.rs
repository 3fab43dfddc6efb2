//! Standalone provider: the same Kubernetes YAML, read from a directory instead of an API
//! server. Every change to the directory re-runs load → translate → publish.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{info, warn};

use nantian_proto::config::{FilterModule, filter_module};

use crate::address_pool::{self, AddressAllocator, AddressPool};
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
    (translate::AI_ADAPTER, "ai-adapter.wasm"),
    (translate::CORS, "cors.wasm"),
    (translate::HEADER_MODIFIER, "header-modifier.wasm"),
    (translate::PII_MASK, "pii-mask.wasm"),
    (translate::TOKEN_LIMIT, "token-limit.wasm"),
];

/// Built-in filters the controller starts without when their file is missing (a filter
/// directory built before they existed): the routes that need one are then not accepted,
/// and their status says which module is missing.
const OPTIONAL_BUILTIN_FILTERS: &[&str] = &[
    translate::AI_ADAPTER,
    translate::PII_MASK,
    translate::TOKEN_LIMIT,
];

/// What the admin API serves: the newest statuses and load errors.
#[derive(Default)]
pub struct StatusBoard {
    pub translation: Option<Translation>,
    pub errors: Vec<LoadError>,
    /// How many times the directory was translated: once at start, then once per change.
    pub translations: u64,
    /// Kubernetes: whether this replica holds the leader-election Lease (and so writes
    /// status and provisions). None in standalone mode.
    pub leading: Option<bool>,
}

pub type SharedStatus = Arc<RwLock<StatusBoard>>;

/// Reads the built-in filter components and describes them as FilterModules the hosts
/// read from the same paths (standalone: hosts run on this machine).
pub fn builtin_modules(filter_dir: &Path) -> anyhow::Result<BTreeMap<String, FilterModule>> {
    read_builtin_modules(filter_dir, false)
}

/// The built-in filter components carried inline in the snapshot: hosts in other pods
/// can't read this controller's files.
pub fn builtin_modules_inline(filter_dir: &Path) -> anyhow::Result<BTreeMap<String, FilterModule>> {
    read_builtin_modules(filter_dir, true)
}

fn read_builtin_modules(
    filter_dir: &Path,
    inline: bool,
) -> anyhow::Result<BTreeMap<String, FilterModule>> {
    let mut modules = BTreeMap::new();
    for (filter, file) in BUILTIN_FILTERS {
        let path = filter_dir.join(file);
        if OPTIONAL_BUILTIN_FILTERS.contains(filter) && !path.exists() {
            warn!(
                "built-in filter {filter}: {} is missing; routes that need it will not be accepted",
                path.display()
            );
            continue;
        }
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
        let source = if inline {
            filter_module::Source::Inline(bytes)
        } else {
            filter_module::Source::Path(std::fs::canonicalize(&path)?.display().to_string())
        };
        modules.insert(
            filter.to_string(),
            FilterModule {
                name: format!("module/{filter}@{}", &sha[..12]),
                sha256: sha,
                source: Some(source),
            },
        );
    }
    Ok(modules)
}

/// What the address allocator and the probe need to know about our Gateways.
#[derive(Default)]
struct AddressNeeds {
    /// How many addresses each Gateway wants allocated: one per `IPAddress` entry without
    /// a value, or one when it has no `spec.addresses`.
    wanted: BTreeMap<GatewayKey, usize>,
    /// The static IP addresses our Gateways ask for.
    fixed: Vec<IpAddr>,
}

fn address_needs(res: &Resources) -> AddressNeeds {
    let ours = |class: &str| {
        res.gateway_classes
            .get(&(String::new(), class.to_string()))
            .is_some_and(|c| c.spec.controller_name == CONTROLLER_NAME)
    };
    let mut needs = AddressNeeds::default();
    for ((ns, name), gw) in &res.gateways {
        if !ours(&gw.spec.gateway_class_name) {
            continue;
        }
        let entries = gw.spec.addresses.as_deref().unwrap_or_default();
        // A Gateway with an address type we don't support is not accepted: it gets
        // nothing from the pool.
        if entries
            .iter()
            .any(|a| a.r#type.as_deref().is_some_and(|t| t != "IPAddress"))
        {
            continue;
        }
        let mut empty = 0;
        for value in entries
            .iter()
            .map(|a| a.value.as_deref().unwrap_or_default())
        {
            match value.parse::<IpAddr>() {
                Ok(ip) => needs.fixed.push(ip),
                Err(_) if value.is_empty() => empty += 1,
                Err(_) => {}
            }
        }
        let want = if entries.is_empty() { 1 } else { empty };
        if want > 0 {
            needs.wanted.insert(GatewayKey::new(ns, name), want);
        }
    }
    needs
}

pub struct Standalone {
    pub config_dir: PathBuf,
    /// Where Gateways without a static address get theirs.
    pub address_pool: AddressPool,
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

        let mut allocator = AddressAllocator::new(self.address_pool);
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
        let needs = address_needs(&resources);
        // Probed at every translation: an address added to an interface later becomes
        // usable without a restart.
        let unusable_addresses = needs
            .fixed
            .iter()
            .filter_map(|ip| address_pool::probe(*ip).err().map(|why| (*ip, why)))
            .collect();
        let opts = TranslateOptions {
            controller_name: CONTROLLER_NAME.to_string(),
            addresses: allocator.assign(&needs.wanted, &needs.fixed),
            unusable_addresses,
            filter_modules: self.modules.clone(),
            addressing: translate::Addressing::HostAddresses,
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
        // A host's admin endpoint is on its Gateway's first address; the others it binds
        // from its config.
        let desired: Desired = translation
            .gateways
            .iter()
            .filter_map(|g| {
                Some((
                    GatewayKey::new(&g.namespace, &g.name),
                    *g.addresses.first()?,
                ))
            })
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
pub fn stamp_statuses(translation: &mut Translation, previous: &[translate::ObjectStatus]) {
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

    const GATEWAYS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: ours}
spec: {controllerName: gateway.nantian.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: theirs}
spec: {controllerName: example.com/other}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: none, namespace: ns}
spec: {gatewayClassName: ours, listeners: [{name: http, port: 80, protocol: HTTP}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: mixed, namespace: ns}
spec:
  gatewayClassName: ours
  addresses: [{type: IPAddress}, {value: 127.0.0.9}, {type: IPAddress}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: static, namespace: ns}
spec:
  gatewayClassName: ours
  addresses: [{value: 127.0.0.8}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: hostname, namespace: ns}
spec:
  gatewayClassName: ours
  addresses: [{type: Hostname, value: gw.example.com}, {type: IPAddress}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other, namespace: ns}
spec: {gatewayClassName: theirs, listeners: [{name: http, port: 80, protocol: HTTP}]}
"#;

    #[test]
    fn allocation_follows_entries_without_a_value_and_static_addresses_are_reserved() {
        let mut res = Resources::default();
        let errors = crate::load::load_str("gateways.yaml", GATEWAYS, &mut res);
        assert!(errors.is_empty(), "{errors:?}");
        let needs = address_needs(&res);
        let wanted: Vec<(String, usize)> = needs
            .wanted
            .iter()
            .map(|(k, n)| (k.name.clone(), *n))
            .collect();
        // `static` has its address, `hostname` is not accepted, `other` is not ours.
        assert_eq!(wanted, [("mixed".to_string(), 2), ("none".to_string(), 1)]);
        let mut fixed = needs.fixed.clone();
        fixed.sort();
        assert_eq!(
            fixed,
            ["127.0.0.8", "127.0.0.9"].map(|ip| ip.parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn a_missing_ai_adapter_is_left_out_and_a_missing_required_filter_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cors.wasm"), b"cors").unwrap();
        std::fs::write(dir.path().join("header-modifier.wasm"), b"hm").unwrap();
        let modules = builtin_modules(dir.path()).unwrap();
        let names: Vec<&str> = modules.keys().map(String::as_str).collect();
        assert_eq!(names, [translate::CORS, translate::HEADER_MODIFIER]);

        std::fs::write(dir.path().join("ai-adapter.wasm"), b"ai").unwrap();
        let modules = builtin_modules_inline(dir.path()).unwrap();
        assert!(
            modules[translate::AI_ADAPTER]
                .name
                .starts_with("module/ai-adapter@")
        );

        std::fs::remove_file(dir.path().join("cors.wasm")).unwrap();
        let err = builtin_modules(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cors"), "{err}");
    }
}
