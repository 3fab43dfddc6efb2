//! `nantian:filter/host`: configuration, logging, clocks and counters for every filter.
//! The counters themselves are in `counters/`.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::bindings::nantian::filter::{host, types};
use crate::counters::{CounterError, Rate, RateState, Take};
use crate::error::GuestMisuse;
use crate::state::StoreState;

type Result<T> = wasmtime::Result<T>;

/// Longest guest log message kept; a filter cannot flood the log with one call.
const MAX_LOG_MESSAGE: usize = 4096;

pub(crate) fn now_millis() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// Nanoseconds on a monotonic clock whose origin is the first call in this process.
pub(crate) fn monotonic_nanos() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn truncate(message: &str) -> &str {
    if message.len() <= MAX_LOG_MESSAGE {
        return message;
    }
    let mut end = MAX_LOG_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl types::Host for StoreState {}

impl host::Host for StoreState {
    fn config(&mut self) -> Result<Vec<u8>> {
        Ok(self.binding.config.clone())
    }

    fn log(&mut self, level: types::LogLevel, message: String) -> Result<()> {
        let message = truncate(&message);
        let filter = self.binding.display_name.as_str();
        let module = self.binding.module.as_str();
        match level {
            types::LogLevel::Trace => tracing::trace!(filter, module, "{message}"),
            types::LogLevel::Debug => tracing::debug!(filter, module, "{message}"),
            types::LogLevel::Info => tracing::info!(filter, module, "{message}"),
            types::LogLevel::Warn => tracing::warn!(filter, module, "{message}"),
            types::LogLevel::Error => {
                tracing::error!(filter, module, "{message}");
                self.guest_error = Some(message.to_owned());
            }
        }
        Ok(())
    }

    fn now_millis(&mut self) -> Result<u64> {
        Ok(now_millis())
    }

    fn monotonic_nanos(&mut self) -> Result<u64> {
        Ok(monotonic_nanos())
    }

    fn counter_add(
        &mut self,
        key: String,
        delta: i64,
        window_millis: u64,
    ) -> Result<std::result::Result<i64, String>> {
        Ok(self.counter_call(|counters| counters.add(&key, delta, window_millis)))
    }

    fn counter_get(
        &mut self,
        key: String,
        window_millis: u64,
    ) -> Result<std::result::Result<i64, String>> {
        Ok(self.counter_call(|counters| counters.get(&key, window_millis)))
    }

    fn rate_take(
        &mut self,
        key: String,
        cost: i64,
        limit: u64,
        period_millis: u64,
        burst: u64,
        force: bool,
    ) -> Result<std::result::Result<host::RateState, String>> {
        let rate = Rate::new(limit, period_millis, burst)
            .map_err(|message| wasmtime::Error::new(GuestMisuse(message)))?;
        let take = Take { cost, force };
        let state = self.counter_call(|counters| counters.take(&key, rate, take));
        Ok(state.map(|state: RateState| host::RateState {
            allowed: state.allowed,
            remaining: state.remaining,
            reset_millis: state.reset_millis,
            retry_after_millis: state.retry_after_millis,
        }))
    }
}

impl StoreState {
    /// Runs a counter operation, adding the time it took to the call's I/O wait (which the
    /// deadline gives back: a Redis round trip is not the filter's CPU time).
    fn counter_call<T>(
        &mut self,
        op: impl FnOnce(&crate::counters::Counters) -> std::result::Result<T, CounterError>,
    ) -> std::result::Result<T, String> {
        let started = Instant::now();
        let result = op(&self.binding.counters);
        self.io_wait += started.elapsed();
        result.map_err(|CounterError(message)| message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        let long = "é".repeat(MAX_LOG_MESSAGE);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_LOG_MESSAGE);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate("short"), "short");
    }
}
