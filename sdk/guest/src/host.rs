//! Services the gateway gives every filter: configuration, logging, clocks, counters.

use std::time::Duration;

use crate::LogLevel;
use crate::bindings::nantian::filter::host as raw;

/// This binding's configuration bytes, as written in the route (JSON for built-in filters).
pub fn config() -> Vec<u8> {
    raw::config()
}

/// Writes to the gateway's log, tagged with the filter binding's name.
pub fn log(level: LogLevel, message: &str) {
    raw::log(level, message);
}

/// Logs at `trace` level.
pub fn trace(message: &str) {
    log(LogLevel::Trace, message);
}

/// Logs at `debug` level.
pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

/// Logs at `info` level.
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// Logs at `warn` level.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// Logs at `error` level.
pub fn error(message: &str) {
    log(LogLevel::Error, message);
}

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    raw::now_millis()
}

/// A monotonic clock in nanoseconds from an arbitrary origin; use differences only.
pub fn monotonic_nanos() -> u64 {
    raw::monotonic_nanos()
}

/// The counter store could not be reached (a shared store such as Redis is down or slow).
/// The filter decides what that means: a limiter usually admits the request (fails open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterError(pub String);

impl std::fmt::Display for CounterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "counter store unavailable: {}", self.0)
    }
}

impl std::error::Error for CounterError {}

/// Adds `delta` to `key` in the current fixed window of length `window` (aligned to the
/// Unix epoch: a one-day window is a UTC day) and returns the window's new total. Keys are
/// private to this filter binding, or to its counter scope when it has one.
pub fn counter_add(key: &str, delta: i64, window: Duration) -> Result<i64, CounterError> {
    raw::counter_add(key, delta, window_millis(window)).map_err(CounterError)
}

/// The current window's total for `key`, unchanged.
pub fn counter_get(key: &str, window: Duration) -> Result<i64, CounterError> {
    raw::counter_get(key, window_millis(window)).map_err(CounterError)
}

/// A token bucket's state after [`rate_take`].
pub use raw::RateState;

/// Takes `cost` units from the token bucket `key`, which holds at most `limit + burst`
/// units, starts full and refills `limit` units per `period` continuously. Without `force`
/// the take happens only if the bucket holds `cost` (see [`RateState::allowed`]); with it,
/// always, possibly into debt. A negative `cost` gives units back.
pub fn rate_take(
    key: &str,
    cost: i64,
    limit: u64,
    period: Duration,
    burst: u64,
    force: bool,
) -> Result<RateState, CounterError> {
    raw::rate_take(key, cost, limit, window_millis(period), burst, force).map_err(CounterError)
}

fn window_millis(window: Duration) -> u64 {
    u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
}
