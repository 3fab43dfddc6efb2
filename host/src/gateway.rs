//! The data plane's [`ConfigSink`]: turns a snapshot of xDS resources into a new
//! immutable [`Snapshot`] and swaps it in, or rejects it with per-resource reasons and
//! changes nothing.
//!
//! Everything is built before the swap: decoded config, Wasm modules and bindings, upstream
//! pools, route tables, sockets. What did not change is reused — modules are cached by
//! SHA-256 in the engine, bound filters by (module, display name, config, limits) so their
//! instance pools survive unrelated changes, connection pools by backend name while the
//! protocol and TLS settings stay the same, and sockets by address:port (and transport).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use nantian_proto::xds::ErrorDetail;
use nantian_wasm::{BindingSpec, CounterScope, FilterBinding, FilterModule, WasmEngine};
use tokio::net::{TcpListener, UdpSocket};
use tracing::info;

use crate::balancer::InflightCounters;
use crate::config::{self, ConfigSet, FilterSpec, ModuleSource, Rejections, WasmFilterSpec};
use crate::filter_chain::WasmStep;
use crate::listener::{BindError, ListenSocket, SocketPlan, Sockets};
use crate::metrics::Metrics;
use crate::server::{Shared, accept_loop};
use crate::session::SessionKey;
use crate::snapshot::{Resolved, Snapshot};
use crate::udp_route;
use crate::upstream::{Upstream, UpstreamClient};
use crate::xds_client::{ConfigSink, ResourceMap};

pub struct Gateway {
    shared: Arc<Shared>,
    engine: WasmEngine,
    /// Seals session-persistence tokens.
    session_key: Arc<SessionKey>,
    sockets: Sockets<TcpListener>,
    udp_sockets: Sockets<UdpSocket>,
    /// Serializes applies and holds what they reuse.
    reuse: tokio::sync::Mutex<Reusable>,
}

/// A bound filter is reusable for an equal key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BindingKey {
    module_sha256: String,
    display_name: Arc<str>,
    config: Vec<u8>,
    timeout: Option<Duration>,
    max_memory: Option<u64>,
    counters: Option<CounterScope>,
}

#[derive(Default)]
struct Reusable {
    /// The current config's modules, kept loaded even when no route uses them so a
    /// later snapshot doesn't compile them again.
    modules: HashMap<String, Arc<FilterModule>>,
    bindings: HashMap<BindingKey, Arc<FilterBinding>>,
    clients: HashMap<Arc<str>, Arc<UpstreamClient>>,
    /// In-flight requests per endpoint address, across snapshots (least request).
    inflight: InflightCounters,
}

impl Gateway {
    pub fn new(engine: WasmEngine, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::with_session_key(engine, metrics, SessionKey::random())
    }

    /// Like [`Gateway::new`], sealing session tokens with `session_key` (one shared by
    /// every host of a Gateway keeps sessions across hosts and restarts).
    pub fn with_session_key(
        engine: WasmEngine,
        metrics: Arc<Metrics>,
        session_key: SessionKey,
    ) -> Arc<Self> {
        Arc::new(Gateway {
            session_key: Arc::new(session_key),
            shared: Arc::new(Shared {
                snapshot: ArcSwap::from_pointee(Snapshot::empty()),
                metrics,
                ready: AtomicBool::new(false),
            }),
            engine,
            sockets: Sockets::default(),
            udp_sockets: Sockets::default(),
            reuse: tokio::sync::Mutex::new(Reusable::default()),
        })
    }

    /// The snapshot requests currently start on.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// True once a snapshot has been applied.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    async fn try_apply(&self, resources: &ResourceMap, version: &str) -> Result<(), Rejections> {
        let config = config::decode(resources)?;
        let mut reuse = self.reuse.lock().await;

        // Compiling and instantiating Wasm blocks for milliseconds to seconds.
        let engine = self.engine.clone();
        let previous = reuse.bindings.clone();
        let filter_metrics = self.shared.metrics.clone();
        let (config, bound) = tokio::task::spawn_blocking(move || {
            let bound = bind_filters(&engine, &config, &previous, &filter_metrics);
            (config, bound)
        })
        .await
        .map_err(|e| {
            let mut rejections = Rejections::default();
            rejections.add("filters", format!("binding the Wasm filters failed: {e}"));
            rejections
        })?;
        let Bound {
            modules,
            bindings,
            steps,
        } = bound?;

        let metrics = &self.shared.metrics;
        let mut clients = HashMap::new();
        let mut upstreams = HashMap::new();
        for backend in &config.backends {
            let client = reuse
                .clients
                .get(&backend.name)
                .filter(|c| c.fits(backend.protocol, backend.tls.as_deref()))
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(UpstreamClient::new(backend.protocol, backend.tls.clone()))
                });
            let upstream = Upstream::new(
                backend.name.clone(),
                client.clone(),
                backend.endpoints.clone(),
                metrics.upstream(backend.name.clone()),
            )
            .with_balancing(
                &backend.balancing,
                self.session_key.clone(),
                &reuse.inflight,
            );
            clients.insert(backend.name.clone(), client);
            upstreams.insert(backend.name.clone(), Arc::new(upstream));
        }

        let plan = plan_sockets(&self.sockets, &config, false)?;
        let udp_plan = plan_sockets(&self.udp_sockets, &config, true)?;

        let snapshot = Snapshot::build(version, config, &Resolved { steps, upstreams }, metrics);
        info!(%version, routes = snapshot.rules.len(), sockets = snapshot.binds.len(), "applying config snapshot");
        self.shared.snapshot.store(Arc::new(snapshot));
        self.sockets.commit(plan, |addr, listener, stop| {
            tokio::spawn(accept_loop(listener, addr, stop, self.shared.clone()));
        });
        self.udp_sockets.commit(udp_plan, |addr, socket, stop| {
            tokio::spawn(udp_route::serve(socket, addr, stop, self.shared.clone()));
        });
        reuse.modules = modules;
        reuse.bindings = bindings;
        reuse.clients = clients;
        reuse.inflight.prune();
        self.shared.ready.store(true, Ordering::Release);
        Ok(())
    }
}

impl ConfigSink for Gateway {
    async fn apply(
        &self,
        resources: &ResourceMap,
        system_version: &str,
    ) -> Result<(), ErrorDetail> {
        let result = self.try_apply(resources, system_version).await;
        self.shared.metrics.xds_update(result.is_ok());
        result.map_err(Rejections::into_error_detail)
    }
}

/// Binds the sockets of `config`'s UDP listeners (`udp`) or of the others that are not
/// open yet; a failure rejects every listener on that address.
fn plan_sockets<S: ListenSocket>(
    sockets: &Sockets<S>,
    config: &ConfigSet,
    udp: bool,
) -> Result<SocketPlan<S>, Rejections> {
    let listeners = || config.listeners.iter().filter(move |l| l.is_udp() == udp);
    let wanted: BTreeSet<_> = listeners().flat_map(|l| l.binds.iter().copied()).collect();
    sockets.plan(&wanted).map_err(|errors: Vec<BindError>| {
        let mut rejections = Rejections::default();
        for e in errors {
            for l in listeners().filter(|l| l.binds.contains(&e.addr)) {
                rejections.add(&l.name, &e);
            }
        }
        rejections
    })
}

struct Bound {
    modules: HashMap<String, Arc<FilterModule>>,
    bindings: HashMap<BindingKey, Arc<FilterBinding>>,
    steps: HashMap<WasmFilterSpec, Arc<WasmStep>>,
}

/// Loads every module and binds every distinct Wasm filter of the config, reusing the
/// bindings of `previous` whose key is unchanged. Failures name the module or the routes
/// using the filter.
fn bind_filters(
    engine: &WasmEngine,
    config: &ConfigSet,
    previous: &HashMap<BindingKey, Arc<FilterBinding>>,
    metrics: &Metrics,
) -> Result<Bound, Rejections> {
    let mut rejections = Rejections::default();
    let mut modules: HashMap<String, Arc<FilterModule>> = HashMap::new();
    for m in &config.modules {
        let loaded = match &m.source {
            ModuleSource::Path(path) => engine.load_module_file(&m.name, &m.sha256, path),
            ModuleSource::Inline(bytes) => engine.load_module(&m.name, &m.sha256, bytes),
        };
        match loaded {
            Ok(module) => {
                modules.insert(m.name.clone(), module);
            }
            Err(e) => rejections.add(&m.name, e),
        }
    }
    if !rejections.is_empty() {
        return Err(rejections);
    }

    let mut users: HashMap<&WasmFilterSpec, Vec<&str>> = HashMap::new();
    for route in &config.routes {
        let ai_backends = route.ai.iter().flat_map(|ai| &ai.backends);
        let lists = std::iter::once(&route.filters)
            .chain(route.backends.iter().map(|b| &b.filters))
            .chain(ai_backends.map(|b| &b.filters));
        for filter in lists.flatten() {
            if let FilterSpec::Wasm(spec) = filter {
                users.entry(spec).or_default().push(&route.name);
            }
        }
    }

    let mut bindings = HashMap::new();
    let mut steps = HashMap::new();
    for (spec, routes) in users {
        let module = &modules[spec.module.as_str()];
        let key = BindingKey {
            module_sha256: module.sha256().to_string(),
            display_name: spec.display_name.clone(),
            config: spec.config.clone(),
            timeout: spec.timeout,
            max_memory: spec.max_memory,
            counters: spec.counters.clone(),
        };
        let binding = match bindings.get(&key).or_else(|| previous.get(&key)) {
            Some(b) => Arc::clone(b),
            None => {
                let bound = engine.bind(
                    module,
                    BindingSpec {
                        display_name: spec.display_name.to_string(),
                        config: spec.config.clone(),
                        timeout: spec.timeout,
                        max_memory: spec.max_memory,
                        counters: spec.counters.clone(),
                    },
                );
                match bound {
                    Ok(b) => b,
                    Err(e) => {
                        for route in routes {
                            rejections.add(route, format!("filter {}: {e}", spec.display_name));
                        }
                        continue;
                    }
                }
            }
        };
        let step = WasmStep {
            name: spec.display_name.clone(),
            phases: binding.active_phases(),
            guest_phases: binding.info().phases,
            binding: binding.clone(),
            fail_open: spec.fail_open,
            metrics: metrics.filter(spec.display_name.clone()),
        };
        bindings.insert(key, binding);
        steps.insert(spec.clone(), Arc::new(step));
    }
    if rejections.is_empty() {
        Ok(Bound {
            modules,
            bindings,
            steps,
        })
    } else {
        Err(rejections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds_client::Resource;
    use nantian_proto::ConfigResource;
    use nantian_proto::config as pb;

    fn backends(protocol: &str, endpoint_port: u32) -> ResourceMap {
        let backend = pb::Backend {
            name: "backend/ns/svc:80".into(),
            protocol: protocol.into(),
            endpoints: vec![pb::Endpoint {
                address: "10.0.0.1".into(),
                port: endpoint_port,
            }],
            tls: None,
            load_balancing: None,
        };
        ResourceMap::from([(
            backend.name.clone(),
            Resource {
                version: endpoint_port.to_string(),
                body: backend.to_any(),
            },
        )])
    }

    fn with_tls(mut resources: ResourceMap, hostname: &str, ca_pem: &str) -> ResourceMap {
        for resource in resources.values_mut() {
            let mut backend: pb::Backend = prost::Message::decode(&*resource.body.value).unwrap();
            backend.tls = Some(pb::BackendTls {
                hostname: hostname.into(),
                ca_certificates_pem: vec![ca_pem.into()],
                ..Default::default()
            });
            resource.body = backend.to_any();
        }
        resources
    }

    async fn client_of(gateway: &Gateway) -> Arc<UpstreamClient> {
        gateway.reuse.lock().await.clients["backend/ns/svc:80"].clone()
    }

    #[tokio::test]
    async fn connection_pools_are_kept_by_backend_name_while_the_protocol_is_unchanged() {
        let engine = WasmEngine::new(nantian_wasm::EngineConfig {
            max_instances: 2,
            ..Default::default()
        })
        .unwrap();
        let gateway = Gateway::new(engine, Arc::new(Metrics::new()));
        assert!(!gateway.is_ready());
        gateway.apply(&backends("http", 8080), "1").await.unwrap();
        assert!(gateway.is_ready());
        let first = client_of(&gateway).await;

        gateway.apply(&backends("http", 9090), "2").await.unwrap();
        assert!(
            Arc::ptr_eq(&first, &client_of(&gateway).await),
            "new endpoints, same pool"
        );

        gateway.apply(&backends("h2c", 9090), "3").await.unwrap();
        let h2c = client_of(&gateway).await;
        assert!(
            !Arc::ptr_eq(&first, &h2c),
            "a protocol change needs a new pool"
        );
        assert_eq!(h2c.protocol(), crate::config::UpstreamProtocol::H2c);
        assert_eq!(gateway.snapshot().version, "3");
    }

    #[tokio::test]
    async fn connection_pools_are_kept_only_while_the_tls_settings_are_unchanged() {
        let engine = WasmEngine::new(nantian_wasm::EngineConfig {
            max_instances: 2,
            ..Default::default()
        })
        .unwrap();
        let gateway = Gateway::new(engine, Arc::new(Metrics::new()));
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()])
            .unwrap()
            .cert
            .pem();
        let other_ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()])
            .unwrap()
            .cert
            .pem();
        gateway.apply(&backends("http", 8080), "1").await.unwrap();
        let cleartext = client_of(&gateway).await;

        let tls = with_tls(backends("http", 8080), "a.test", &ca);
        gateway.apply(&tls, "2").await.unwrap();
        let first = client_of(&gateway).await;
        assert!(!Arc::ptr_eq(&cleartext, &first), "cleartext to TLS");

        gateway
            .apply(&with_tls(backends("http", 9090), "a.test", &ca), "3")
            .await
            .unwrap();
        assert!(
            Arc::ptr_eq(&first, &client_of(&gateway).await),
            "new endpoints, same TLS settings: same pool"
        );
        for (changed, version) in [
            (with_tls(backends("http", 9090), "b.test", &ca), "4"),
            (with_tls(backends("http", 9090), "b.test", &other_ca), "5"),
        ] {
            let before = client_of(&gateway).await;
            gateway.apply(&changed, version).await.unwrap();
            assert!(
                !Arc::ptr_eq(&before, &client_of(&gateway).await),
                "version {version}: new TLS settings need a new pool"
            );
        }
        gateway.apply(&backends("http", 9090), "6").await.unwrap();
        let back = client_of(&gateway).await;
        assert!(!Arc::ptr_eq(&first, &back), "TLS to cleartext");
    }
}
