//! Test a Nantian filter component the way the gateway runs it: load the built `.wasm`
//! with the real engine, bind it to a configuration, and push `http` requests and
//! responses through it.
//!
//! ```no_run
//! use nantian_filter_testing::FilterUnderTest;
//!
//! let filter = FilterUnderTest::built("nantian-filter-header-modifier").unwrap();
//! let bound = filter.bind(r#"{"request":{"set":[{"name":"x-a","value":"1"}]}}"#).unwrap();
//! let request = http::Request::get("/").body(bytes::Bytes::new()).unwrap();
//! let forwarded = bound.request(request).unwrap().forwarded();
//! assert_eq!(forwarded.headers()["x-a"], "1");
//! ```
#![forbid(unsafe_code)]

mod drive;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nantian_wasm::{EngineConfig, FilterBinding, FilterModule, WasmEngine};
use sha2::{Digest, Sha256};

pub use drive::{Exchange, RequestOutcome, ResponseOutcome, chunks_of};
pub use nantian_wasm::{
    CounterScope, FilterError, FilterInfo, LocalResponse, Phases, WasmError, built_filter,
    filter_dir,
};

/// How a test binds its filter: the engine's [`nantian_wasm::BindingSpec`] less the counter
/// scope, which [`FilterUnderTest::bind_with_counters`] sets. A type of its own, so that
/// the engine's spec can grow without breaking tests that spell out every field.
#[derive(Debug, Clone, Default)]
pub struct BindingSpec {
    /// For logs and metrics.
    pub display_name: String,
    /// Passed verbatim to the filter through `host.config`.
    pub config: Vec<u8>,
    /// CPU budget of one call; `None` takes the engine's default.
    pub timeout: Option<Duration>,
    /// Linear-memory cap of one instance; `None` takes the engine's default.
    pub max_memory: Option<u64>,
}

/// A filter component loaded into its own engine.
pub struct FilterUnderTest {
    engine: WasmEngine,
    module: Arc<FilterModule>,
}

impl FilterUnderTest {
    /// Loads the component at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, WasmError> {
        let path = path.as_ref();
        let engine = WasmEngine::new(EngineConfig {
            max_instances: 32,
            ..Default::default()
        })?;
        let bytes = std::fs::read(path).map_err(|source| WasmError::Read {
            module: path.display().to_string(),
            path: path.to_owned(),
            source,
        })?;
        let sha256: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let module = engine.load_module(&path.display().to_string(), &sha256, &bytes)?;
        Ok(FilterUnderTest { engine, module })
    }

    /// Loads the workspace's built component of the crate `crate_name` (see
    /// [`built_filter`], which panics with the build command when it is missing).
    pub fn built(crate_name: &str) -> Result<Self, WasmError> {
        Self::load(built_filter(crate_name))
    }

    /// Binds the filter to `config`, as a route would. The filter's `init` runs now: a
    /// rejected configuration is [`WasmError::Config`].
    pub fn bind(&self, config: impl AsRef<[u8]>) -> Result<BoundFilter, WasmError> {
        self.bind_with(BindingSpec {
            display_name: "filter-under-test".into(),
            config: config.as_ref().to_vec(),
            ..Default::default()
        })
    }

    /// [`FilterUnderTest::bind`] with explicit limits.
    pub fn bind_with(&self, spec: BindingSpec) -> Result<BoundFilter, WasmError> {
        self.bind_spec(spec, None)
    }

    /// [`FilterUnderTest::bind_with`] with the filter's counters kept under `counters`:
    /// bindings of this component with the same scope share them (as they do on a host),
    /// and with a Redis URL they live in that server.
    pub fn bind_with_counters(
        &self,
        spec: BindingSpec,
        counters: CounterScope,
    ) -> Result<BoundFilter, WasmError> {
        self.bind_spec(spec, Some(counters))
    }

    fn bind_spec(
        &self,
        spec: BindingSpec,
        counters: Option<CounterScope>,
    ) -> Result<BoundFilter, WasmError> {
        let spec = nantian_wasm::BindingSpec {
            display_name: spec.display_name,
            config: spec.config,
            timeout: spec.timeout,
            max_memory: spec.max_memory,
            counters,
        };
        let binding = self.engine.bind(&self.module, spec)?;
        Ok(BoundFilter { binding })
    }
}

/// A filter bound to one configuration. Each method is one request through it, on an
/// instance checked out the way the gateway does (reused or fresh per its isolation).
pub struct BoundFilter {
    binding: Arc<FilterBinding>,
}

impl BoundFilter {
    /// Phases and isolation mode the filter declared.
    pub fn info(&self) -> FilterInfo {
        self.binding.info()
    }

    /// The underlying binding, for driving [`nantian_wasm::ActiveFilter`] by hand.
    pub fn binding(&self) -> &Arc<FilterBinding> {
        &self.binding
    }
}
