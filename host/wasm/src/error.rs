//! The two error levels of the Wasm boundary: loading/binding a filter (`WasmError`,
//! control plane) and running one call (`FilterError`, request path).

use std::path::PathBuf;

/// Loading a module or binding a filter failed. Messages name the module so that a NACK
/// tells the operator which resource is wrong.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The Wasm engine could not be created (invalid limits, unsupported platform).
    #[error("wasm engine: {0}")]
    Engine(String),
    /// The module's bytes could not be read.
    #[error("filter module {module}: cannot read {}: {source}", path.display())]
    Read {
        module: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes do not have the SHA-256 the resource promised.
    #[error("filter module {module}: sha256 mismatch: expected {expected}, got {actual}")]
    Sha256Mismatch {
        module: String,
        expected: String,
        actual: String,
    },
    /// The bytes are not a valid Wasm component.
    #[error("filter module {module}: cannot compile: {message}")]
    Compile { module: String, message: String },
    /// The component is valid but is not a `nantian:filter` filter (wrong exports or
    /// imports the host cannot satisfy).
    #[error("filter module {module}: not a nantian:filter http-filter component: {message}")]
    Link { module: String, message: String },
    /// The binding's counter scope is unusable (empty, or an invalid Redis URL).
    #[error("filter {binding}: counters: {message}")]
    Counters { binding: String, message: String },
    /// The filter's `init` rejected its configuration; the message is the filter's own.
    #[error("filter configuration rejected: {0}")]
    Config(String),
    /// The filter could not be initialised (it trapped, ran out of time or memory, or no
    /// instance slot was free).
    #[error("filter {binding} (module {module}): initialisation failed: {source}")]
    Init {
        binding: String,
        module: String,
        #[source]
        source: FilterError,
    },
}

/// One filter call failed. The instance that failed is discarded; the next request gets a
/// fresh one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The filter trapped (panic, `unreachable`, invalid host call); the message says why.
    #[error("filter trapped: {0}")]
    Trap(String),
    /// The call ran past the binding's time budget.
    #[error("filter exceeded its time budget")]
    Timeout,
    /// The filter tried to grow its linear memory past the binding's limit.
    #[error("filter exceeded its memory limit")]
    MemoryExceeded,
    /// Every instance slot of the engine is in use.
    #[error("no free wasm instance slot")]
    PoolExhausted,
    /// A fresh instance could not be created or initialised.
    #[error("filter instantiation failed: {0}")]
    Instantiate(String),
}

impl FilterError {
    /// A short stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FilterError::Trap(_) => "trap",
            FilterError::Timeout => "timeout",
            FilterError::MemoryExceeded => "memory_exceeded",
            FilterError::PoolExhausted => "pool_exhausted",
            FilterError::Instantiate(_) => "instantiate",
        }
    }
}

/// A filter used a host API wrongly (e.g. set a header with an invalid name). Returned from
/// host functions, it ends the call with a trap that carries this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct GuestMisuse(pub String);

/// Turns the error of a failed call into a [`FilterError`]. `memory_exceeded` and
/// `guest_error` come from the store: the limiter's verdict and the last error the guest
/// logged (its panic message).
pub(crate) fn classify(
    err: &wasmtime::Error,
    memory_exceeded: bool,
    guest_error: Option<&str>,
) -> FilterError {
    if memory_exceeded {
        return FilterError::MemoryExceeded;
    }
    if err.is::<wasmtime::PoolConcurrencyLimitError>() {
        return FilterError::PoolExhausted;
    }
    if err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return FilterError::Timeout;
    }
    let cause = match err.downcast_ref::<GuestMisuse>() {
        Some(misuse) => misuse.0.clone(),
        None => match err.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => trap.to_string(),
            // The root cause, without the wasm backtrace wasmtime adds as context.
            None => err.root_cause().to_string(),
        },
    };
    match guest_error {
        Some(logged) => FilterError::Trap(format!("{logged} ({cause})")),
        None => FilterError::Trap(cause),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_distinct() {
        let kinds = [
            FilterError::Trap(String::new()).kind(),
            FilterError::Timeout.kind(),
            FilterError::MemoryExceeded.kind(),
            FilterError::PoolExhausted.kind(),
            FilterError::Instantiate(String::new()).kind(),
        ];
        let unique: std::collections::HashSet<_> = kinds.iter().collect();
        assert_eq!(unique.len(), kinds.len());
    }

    #[test]
    fn classifies_by_error_type() {
        let interrupt = wasmtime::Error::new(wasmtime::Trap::Interrupt);
        assert_eq!(classify(&interrupt, false, None), FilterError::Timeout);
        assert_eq!(
            classify(&interrupt, true, None),
            FilterError::MemoryExceeded
        );
        let misuse = wasmtime::Error::new(GuestMisuse("invalid header name \"a b\"".into()));
        assert_eq!(
            classify(&misuse, false, Some("filter panicked")),
            FilterError::Trap("filter panicked (invalid header name \"a b\")".into())
        );
    }
}
