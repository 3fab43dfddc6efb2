//! The Wasm engine: one wasmtime `Engine` with a pooling allocator and an epoch ticker,
//! the linker every filter is instantiated against, and the compiled-module cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::binding::{BindingSpec, FilterBinding};
use crate::bindings::HttpFilter;
use crate::counters::CounterStores;
use crate::epoch::EpochTicker;
use crate::error::WasmError;
use crate::module::{self, FilterModule};
use crate::state::StoreState;

const WASM_PAGE: u64 = 64 << 10;
/// Address space reserved for each pool memory slot: all a 32-bit index can reach. With
/// it (and the guard below) Cranelift emits no bounds check for loads and stores, which
/// otherwise cost every memory access of a filter's code a compare and a select. It is
/// only reserved: a slot's pages exist as far as its memory has grown (at most its
/// binding's cap), and the pool's 2 × `max_instances` slots take some 8 TiB of the
/// 128 TiB of address space a process has.
const MEMORY_RESERVATION: u64 = 4 << 30;
/// Unmapped bytes after each memory's reservation, so that a load's static offset (below
/// this) needs no check either. Wasmtime's default.
const MEMORY_GUARD: u64 = 32 << 20;

/// Limits and knobs of a [`WasmEngine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where precompiled modules (`<sha256>-<engine hash>.cwasm`) are kept across restarts.
    /// `None`: compile every module on load.
    pub cache_dir: Option<PathBuf>,
    /// CPU budget of one filter call when the binding sets none.
    pub default_timeout: Duration,
    /// Linear-memory cap of one instance when the binding sets none.
    pub default_max_memory: u64,
    /// Instances alive at once across all bindings (in-flight requests × filters plus
    /// idle reusable instances). When they are all taken, `start` fails with
    /// `PoolExhausted`.
    pub max_instances: u32,
    /// The largest memory cap a binding may ask for: the size of each pool memory slot.
    /// Bindings asking for more are capped to it.
    pub max_memory_ceiling: u64,
    /// A reused instance is retired after serving this many calls, bounding what a slow
    /// leak in a filter can accumulate.
    pub recycle_after_calls: u32,
    /// Granularity of timeouts.
    pub epoch_tick: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cache_dir: None,
            default_timeout: Duration::from_millis(50),
            default_max_memory: 16 << 20,
            max_instances: 1000,
            max_memory_ceiling: 64 << 20,
            recycle_after_calls: 10_000,
            // Each tick wakes a thread (~15 µs of CPU on a VM): 200 a second while any
            // filter is bound, for timeouts accurate to 5 ms.
            epoch_tick: Duration::from_millis(5),
        }
    }
}

/// Runs `nantian:filter` components. Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct WasmEngine {
    inner: Arc<EngineInner>,
}

/// State shared by the engine, its modules and its bindings.
pub(crate) struct EngineInner {
    pub engine: Engine,
    /// The nantian imports, defined once; each module adds its WASI subset to a clone.
    pub linker: Linker<StoreState>,
    pub config: EngineConfig,
    /// Size of a pool memory slot; every binding's memory cap is at most this.
    pub memory_ceiling: u64,
    /// Short hash of the engine's code-generation settings, part of `.cwasm` file names.
    pub compat_hash: String,
    pub modules: Mutex<HashMap<String, Weak<FilterModule>>>,
    pub counters: CounterStores,
    next_binding_id: AtomicU64,
    idle_instances: AtomicU32,
    idle_budget: u32,
    /// Advances the epoch while any binding is alive (see `epoch`).
    pub ticker: EpochTicker,
}

impl EngineInner {
    pub fn next_binding_id(&self) -> u64 {
        self.next_binding_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Claims room for one more idle (pooled, unused) instance. Idle instances hold pool
    /// slots, so at most half the pool may sit idle; the rest is kept for requests.
    pub fn reserve_idle(&self) -> bool {
        self.idle_instances
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |idle| {
                (idle < self.idle_budget).then_some(idle + 1)
            })
            .is_ok()
    }

    pub fn release_idle(&self, count: u32) {
        self.idle_instances.fetch_sub(count, Ordering::AcqRel);
    }

    /// Epoch ticks for a time budget: rounded up, plus one because the current tick may
    /// be about to end.
    pub fn deadline_ticks(&self, timeout: Duration) -> u64 {
        let tick = self.config.epoch_tick.as_nanos().max(1);
        let ticks = timeout.as_nanos().div_ceil(tick) + 1;
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }
}

fn wasmtime_config(memory_ceiling: u64, max_instances: u32) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    // A Rust filter component has a handful of core instances, one memory and a couple of
    // tables; the totals leave room for filters built with other toolchains.
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances.saturating_mul(8))
        .total_memories(max_instances.saturating_mul(2))
        .total_tables(max_instances.saturating_mul(4))
        .max_memory_size(usize::try_from(memory_ceiling).unwrap_or(usize::MAX))
        // Reset reused slots with memset instead of madvise, and only their dirty pages.
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .epoch_interruption(true)
        .memory_reservation(MEMORY_RESERVATION.max(memory_ceiling))
        .memory_guard_size(MEMORY_GUARD)
        .memory_may_move(false);
    // `perf` cannot name JIT code on its own: with NANTIAN_WASM_PERFMAP set, wasmtime writes
    // /tmp/perf-<pid>.map so that guest functions show up by name in `perf report`.
    if std::env::var_os("NANTIAN_WASM_PERFMAP").is_some_and(|v| !v.is_empty() && v != "0") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

impl WasmEngine {
    /// Creates the engine and starts its epoch thread.
    pub fn new(config: EngineConfig) -> Result<Self, WasmError> {
        let engine_error = |e: &dyn std::fmt::Display| WasmError::Engine(e.to_string());
        let max_instances = config.max_instances.max(1);
        let memory_ceiling = config
            .max_memory_ceiling
            .max(config.default_max_memory)
            .div_ceil(WASM_PAGE)
            .saturating_mul(WASM_PAGE);
        let engine = Engine::new(&wasmtime_config(memory_ceiling, max_instances))
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        HttpFilter::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |state| state)
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        if let Some(dir) = &config.cache_dir
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), "cannot create the wasm module cache: {e}");
        }
        let ticker =
            EpochTicker::start(engine.clone(), config.epoch_tick).map_err(|e| engine_error(&e))?;
        let inner = EngineInner {
            compat_hash: module::compat_hash(&engine),
            engine,
            linker,
            memory_ceiling,
            modules: Mutex::new(HashMap::new()),
            counters: CounterStores::new(),
            next_binding_id: AtomicU64::new(1),
            idle_instances: AtomicU32::new(0),
            idle_budget: max_instances / 2,
            ticker,
            config: EngineConfig {
                max_instances,
                ..config
            },
        };
        Ok(WasmEngine {
            inner: Arc::new(inner),
        })
    }

    /// The configuration in effect (after clamping).
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Loads a filter component. Compiles once per SHA-256: later loads of the same bytes
    /// return the same module while it is alive, and with a `cache_dir` a restarted host
    /// loads the precompiled `.cwasm` instead of compiling. Checks the bytes against
    /// `sha256` (hex) first. Compiling takes tens of milliseconds to seconds: call this
    /// off the request path (e.g. `spawn_blocking`).
    pub fn load_module(
        &self,
        name: &str,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Arc<FilterModule>, WasmError> {
        let actual = module::sha256_hex(bytes);
        if !actual.eq_ignore_ascii_case(sha256) {
            return Err(WasmError::Sha256Mismatch {
                module: name.to_owned(),
                expected: sha256.to_owned(),
                actual,
            });
        }
        if let Some(module) = self.cached(&actual) {
            return Ok(module);
        }
        let module = Arc::new(FilterModule::load(&self.inner, name, &actual, bytes)?);
        let mut modules = self
            .inner
            .modules
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        modules.retain(|_, module| module.strong_count() > 0);
        modules.insert(actual, Arc::downgrade(&module));
        Ok(module)
    }

    /// [`WasmEngine::load_module`] for a component in a file.
    pub fn load_module_file(
        &self,
        name: &str,
        sha256: &str,
        path: &Path,
    ) -> Result<Arc<FilterModule>, WasmError> {
        let bytes = std::fs::read(path).map_err(|source| WasmError::Read {
            module: name.to_owned(),
            path: path.to_owned(),
            source,
        })?;
        self.load_module(name, sha256, &bytes)
    }

    fn cached(&self, sha256: &str) -> Option<Arc<FilterModule>> {
        let modules = self
            .inner
            .modules
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        modules.get(sha256).and_then(Weak::upgrade)
    }

    /// Binds a module to one configuration: creates an instance and calls the filter's
    /// `init`, which validates the configuration. A rejection is
    /// [`WasmError::Config`] with the filter's message.
    pub fn bind(
        &self,
        module: &Arc<FilterModule>,
        spec: BindingSpec,
    ) -> Result<Arc<FilterBinding>, WasmError> {
        FilterBinding::new(&self.inner, module, spec).map(Arc::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_and_adds_a_tick() {
        let engine = WasmEngine::new(EngineConfig {
            max_instances: 4,
            epoch_tick: Duration::from_millis(1),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(engine.inner.deadline_ticks(Duration::from_millis(50)), 51);
        assert_eq!(engine.inner.deadline_ticks(Duration::from_micros(1500)), 3);
        assert_eq!(engine.inner.deadline_ticks(Duration::ZERO), 1);
    }

    #[test]
    fn idle_budget_is_half_the_pool() {
        let engine = WasmEngine::new(EngineConfig {
            max_instances: 4,
            ..Default::default()
        })
        .unwrap();
        assert!(engine.inner.reserve_idle());
        assert!(engine.inner.reserve_idle());
        assert!(!engine.inner.reserve_idle());
        engine.inner.release_idle(1);
        assert!(engine.inner.reserve_idle());
    }

    #[test]
    fn memory_ceiling_covers_the_default_cap() {
        let engine = WasmEngine::new(EngineConfig {
            max_instances: 4,
            default_max_memory: 100 << 20,
            max_memory_ceiling: 1 << 20,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(engine.inner.memory_ceiling, 100 << 20);
    }
}
