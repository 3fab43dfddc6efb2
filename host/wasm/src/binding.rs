//! A filter bound to one configuration, and the instances that serve it.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::active::ActiveFilter;
use crate::bindings::nantian::filter::types;
use crate::counters::CounterScope;
use crate::engine::EngineInner;
use crate::epoch::TickerHold;
use crate::error::{FilterError, WasmError};
use crate::header_ops::DeclaredHeaderOps;
use crate::instance::FilterInstance;
use crate::module::FilterModule;
use crate::state::BindingContext;

/// A module plus one configuration, as a route's filter list names it.
#[derive(Debug, Clone, Default)]
pub struct BindingSpec {
    /// For logs and metrics ("RequestHeaderModifier", a WasmPlugin name).
    pub display_name: String,
    /// Passed verbatim to the filter through `host.config`.
    pub config: Vec<u8>,
    /// CPU budget of one call; `None` takes the engine's default.
    pub timeout: Option<Duration>,
    /// Linear-memory cap of one instance; `None` takes the engine's default.
    pub max_memory: Option<u64>,
    /// Where the filter's counters live; `None`: in this host's memory, private to this
    /// binding and gone with it.
    pub counters: Option<CounterScope>,
}

/// The phases a filter takes part in. Calls for other phases return `Continue` without
/// entering the filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    pub request_headers: bool,
    pub request_body: bool,
    pub response_headers: bool,
    pub response_body: bool,
}

/// What a filter says about itself from `init`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterInfo {
    pub phases: Phases,
    /// True: a fresh instance per request. False: instances are reused.
    pub per_request_isolation: bool,
}

impl From<&types::FilterInfo> for FilterInfo {
    fn from(info: &types::FilterInfo) -> Self {
        let has = |phase| info.phases.contains(phase);
        FilterInfo {
            phases: Phases {
                request_headers: has(types::Phases::REQUEST_HEADERS),
                request_body: has(types::Phases::REQUEST_BODY),
                response_headers: has(types::Phases::RESPONSE_HEADERS),
                response_body: has(types::Phases::RESPONSE_BODY),
            },
            per_request_isolation: info.per_request_isolation,
        }
    }
}

impl Phases {
    /// Whether any phase is set.
    pub fn any(self) -> bool {
        self.request_headers || self.request_body || self.response_headers || self.response_body
    }
}

/// A bound filter. `start` checks out an instance for one request.
pub struct FilterBinding {
    module: Arc<FilterModule>,
    context: Arc<BindingContext>,
    info: FilterInfo,
    /// Applied by the host itself; see [`FilterBinding::header_ops`].
    header_ops: DeclaredHeaderOps,
    pub(crate) deadline_ticks: u64,
    max_memory: usize,
    /// Idle instances of a stateless filter, ready for the next request.
    idle: ArrayQueue<FilterInstance>,
    engine: Arc<EngineInner>,
    /// Guest code runs only inside bindings: the epoch ticks while one is alive.
    _ticking: TickerHold,
}

/// Idle instances kept per binding: enough for every worker thread to find one.
fn idle_capacity() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get() * 2)
        .max(2)
}

impl FilterBinding {
    pub(crate) fn new(
        engine: &Arc<EngineInner>,
        module: &Arc<FilterModule>,
        spec: BindingSpec,
    ) -> Result<Self, WasmError> {
        let requested_memory = spec.max_memory.unwrap_or(engine.config.default_max_memory);
        if requested_memory > engine.memory_ceiling {
            tracing::warn!(
                filter = %spec.display_name,
                module = module.name(),
                requested_memory,
                ceiling = engine.memory_ceiling,
                "filter memory limit capped to the engine's ceiling"
            );
        }
        let max_memory = requested_memory.min(engine.memory_ceiling);
        let timeout = spec.timeout.unwrap_or(engine.config.default_timeout);
        let counters = engine
            .counters
            .for_binding(spec.counters.as_ref(), engine.next_binding_id())
            .map_err(|message| WasmError::Counters {
                binding: spec.display_name.clone(),
                message,
            })?;
        let context = Arc::new(BindingContext {
            display_name: spec.display_name,
            module: module.name().to_owned(),
            config: spec.config,
            counters,
        });
        let deadline_ticks = engine.deadline_ticks(timeout);
        // Before `init` runs: its deadline needs the epoch to move.
        let ticking = engine.ticker.hold();
        let max_memory = usize::try_from(max_memory).unwrap_or(usize::MAX);
        let (instance, init) = FilterInstance::create(
            &module.pre,
            &context,
            max_memory,
            deadline_ticks,
            engine.config.epoch_tick,
        )
        .map_err(|source| WasmError::Init {
            binding: context.display_name.clone(),
            module: module.name().to_owned(),
            source,
        })?;
        let declared = init.map_err(WasmError::Config)?;
        let info = FilterInfo::from(&declared);
        let header_ops =
            DeclaredHeaderOps::parse(declared.request_header_ops, declared.response_header_ops)
                .map_err(WasmError::Config)?;
        let binding = FilterBinding {
            module: module.clone(),
            context,
            info,
            header_ops,
            deadline_ticks,
            max_memory,
            idle: ArrayQueue::new(idle_capacity()),
            engine: engine.clone(),
            _ticking: ticking,
        };
        binding.release(instance);
        Ok(binding)
    }

    /// Phases and isolation mode, as the filter's `init` declared them.
    pub fn info(&self) -> FilterInfo {
        self.info
    }

    /// The header changes the filter's `init` declared, which [`ActiveFilter`] makes
    /// without entering the guest (before the phase's call, if the filter has one).
    /// Later instances' `init`s are not asked again: the first declaration stands.
    pub fn header_ops(&self) -> &DeclaredHeaderOps {
        &self.header_ops
    }

    /// The phases in which this binding does anything: the guest's phases, plus the
    /// header phases with declared changes.
    pub fn active_phases(&self) -> Phases {
        Phases {
            request_headers: self.info.phases.request_headers
                || !self.header_ops.request.is_empty(),
            response_headers: self.info.phases.response_headers
                || !self.header_ops.response.is_empty(),
            ..self.info.phases
        }
    }

    /// The binding's name for logs and metrics.
    pub fn display_name(&self) -> &str {
        &self.context.display_name
    }

    /// The module this binding runs.
    pub fn module(&self) -> &Arc<FilterModule> {
        &self.module
    }

    /// Checks out an instance for one request: an idle one for stateless filters when
    /// there is one, else a fresh one (~10 µs plus the filter's `init`); none for a filter
    /// without phases, whose declared header changes need no guest. Dropping the
    /// [`ActiveFilter`] returns a healthy reusable instance to the pool.
    pub fn start(self: &Arc<Self>) -> Result<ActiveFilter, FilterError> {
        if !self.info.phases.any() {
            // Declared header changes only: the guest is never entered.
            return Ok(ActiveFilter::without_instance(self.clone()));
        }
        let instance = match self.take_idle() {
            Some(instance) => instance,
            None => self.fresh_instance()?,
        };
        Ok(ActiveFilter::new(self.clone(), instance))
    }

    fn take_idle(&self) -> Option<FilterInstance> {
        if self.info.per_request_isolation {
            return None;
        }
        let instance = self.idle.pop()?;
        self.engine.release_idle(1);
        Some(instance)
    }

    fn fresh_instance(&self) -> Result<FilterInstance, FilterError> {
        let (instance, init) = FilterInstance::create(
            &self.module.pre,
            &self.context,
            self.max_memory,
            self.deadline_ticks,
            self.engine.config.epoch_tick,
        )?;
        // The configuration was accepted at bind time; a filter that now rejects it is
        // not deterministic, and this request cannot use it.
        init.map_err(|message| {
            FilterError::Instantiate(format!("init rejected the configuration: {message}"))
        })?;
        Ok(instance)
    }

    /// Takes back an instance after a request that did not fail. It is kept for reuse
    /// unless the filter wants isolation, the instance has served its quota, or there is
    /// no room (per binding, or in the engine's idle budget).
    pub(crate) fn release(&self, instance: FilterInstance) {
        if self.info.per_request_isolation
            || instance.calls >= self.engine.config.recycle_after_calls
            || !self.engine.reserve_idle()
        {
            return;
        }
        if self.idle.push(instance).is_err() {
            self.engine.release_idle(1);
        }
    }
}

impl Drop for FilterBinding {
    fn drop(&mut self) {
        let idle = u32::try_from(self.idle.len()).unwrap_or(u32::MAX);
        self.engine.release_idle(idle);
    }
}

impl std::fmt::Debug for FilterBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterBinding")
            .field("display_name", &self.context.display_name)
            .field("module", &self.module.name())
            .field("info", &self.info)
            .finish()
    }
}
