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

/// Adds `delta` to `key` in the current fixed window of length `window` and returns the
/// window's new total. Keys are private to this filter binding.
pub fn counter_add(key: &str, delta: i64, window: Duration) -> i64 {
    raw::counter_add(key, delta, window_millis(window))
}

/// The current window's total for `key`, unchanged.
pub fn counter_get(key: &str, window: Duration) -> i64 {
    raw::counter_get(key, window_millis(window))
}

fn window_millis(window: Duration) -> u64 {
    u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
}
