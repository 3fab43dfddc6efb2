//! Runs `nantian:filter` WebAssembly components (see `wit/filter.wit` and `wit/README.md`)
//! for the data plane.
//!
//! - [`WasmEngine`]: one wasmtime engine (pooling allocator, epoch-based timeouts) and a
//!   cache of compiled modules keyed by SHA-256, in memory and as `.cwasm` files on disk.
//! - [`FilterBinding`]: a module bound to one configuration, validated by the filter's
//!   `init`; it hands out instances per request, reused for stateless filters and fresh
//!   for filters that ask for per-request isolation.
//! - [`ActiveFilter`]: the instance serving one request. Each call moves the request or
//!   response `http` parts into the store for the duration of the call, so a filter
//!   reads and changes only the headers it asks for.
//! - [`CounterScope`]: where a binding's counters (`counter-add`, `rate-take`) live: its
//!   own, a named scope in this host's memory, or a Redis server shared by every host.
//!
//! A filter that traps, runs past its time budget or grows past its memory cap fails
//! only its own call ([`FilterError`]); its instance is discarded and the next request
//! gets a fresh one. Nothing a guest does panics the host.
#![deny(unsafe_code)]

mod active;
mod attributes;
mod binding;
#[allow(missing_docs, clippy::all)]
mod bindings;
mod built;
mod counters;
mod engine;
mod epoch;
mod error;
mod header_ops;
mod host_http;
mod host_services;
mod instance;
mod module;
mod state;
mod wasi;

pub use active::{ActiveFilter, BodyAction, HeadersAction, LocalResponse};
pub use attributes::Attributes;
pub use binding::{BindingSpec, FilterBinding, FilterInfo, Phases};
pub use built::{built_filter, filter_dir};
pub use counters::CounterScope;
pub use engine::{EngineConfig, WasmEngine};
pub use error::{FilterError, WasmError};
pub use header_ops::{DeclaredHeaderOps, HeaderOp};
pub use module::{FilterModule, ModuleOrigin};
