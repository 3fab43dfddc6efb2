//! What a filter's `Store` holds: the binding it serves, its memory limiter and, during a
//! call, the request/response the call is about.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use crate::counters::Counters;
use crate::wasi::GuestStdio;

/// Per-binding facts the host imports need: shared by all instances of the binding.
pub(crate) struct BindingContext {
    pub display_name: String,
    pub module: String,
    pub config: Vec<u8>,
    /// Where `counter-add`, `counter-get` and `rate-take` keep their counts.
    pub counters: Counters,
}

/// Store data of one filter instance.
pub(crate) struct StoreState {
    pub binding: Arc<BindingContext>,
    pub limiter: MemoryGuard,
    /// The request of the current call, moved in by `ActiveFilter` for the duration of the
    /// call (and an empty placeholder between calls), so the `request` resource reads and
    /// mutates it in place.
    pub request: http::request::Parts,
    /// The response of the current call, likewise.
    pub response: http::response::Parts,
    /// The last message the guest logged at error level during the current call: the
    /// SDK's panic hook logs there, so a trap can say why the filter panicked.
    pub guest_error: Option<String>,
    /// Guest stdout/stderr output not yet logged.
    pub stdio: GuestStdio,
    /// Time the current call spent waiting on the counter store and not yet added to its
    /// deadline: the time budget is for the filter's own work (see `instance.rs`).
    pub io_wait: Duration,
}

impl StoreState {
    pub fn new(binding: Arc<BindingContext>, max_memory: usize) -> Self {
        StoreState {
            binding,
            limiter: MemoryGuard::new(max_memory),
            request: empty_request(),
            response: empty_response(),
            guest_error: None,
            stdio: GuestStdio::default(),
            io_wait: Duration::ZERO,
        }
    }
}

/// Placeholders that allocate nothing: `HeaderMap::new`, `Extensions::new` and the default
/// `Uri` are all allocation-free.
pub(crate) fn empty_request() -> http::request::Parts {
    http::Request::new(()).into_parts().0
}

pub(crate) fn empty_response() -> http::response::Parts {
    http::Response::new(()).into_parts().0
}

/// [`StoreLimits`] with growth failures turned into traps, remembering whether the memory
/// limit is what stopped the guest (a trap alone cannot tell an OOM from a bug).
pub(crate) struct MemoryGuard {
    limits: StoreLimits,
    pub exceeded: bool,
}

impl MemoryGuard {
    fn new(max_memory: usize) -> Self {
        MemoryGuard {
            limits: StoreLimitsBuilder::new()
                .memory_size(max_memory)
                .trap_on_grow_failure(true)
                .build(),
            exceeded: false,
        }
    }
}

impl ResourceLimiter for MemoryGuard {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let verdict = self.limits.memory_growing(current, desired, maximum);
        if !matches!(verdict, Ok(true)) {
            self.exceeded = true;
        }
        verdict
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.exceeded = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_limit_traps_and_is_remembered() {
        let mut guard = MemoryGuard::new(1 << 20);
        assert!(guard.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!guard.exceeded);
        assert!(guard.memory_growing(1 << 20, 2 << 20, None).is_err());
        assert!(guard.exceeded);
    }
}
