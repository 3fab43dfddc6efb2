//! Counters in a Redis server, shared by every host using it. Each operation is one Lua
//! script (EVALSHA, loaded on a miss), so it is atomic however many hosts race on a key,
//! and reads the server's clock (`TIME`), so hosts with skewed clocks agree on windows and
//! refills. Redis Cluster is not supported: the window scripts add the window index to
//! the key they are given.

mod blocking;
mod breaker;
mod keys;
mod pool;
#[cfg(test)]
mod tests;

use std::time::Instant;

use redis::{Client, Connection, RedisResult, Script};

use self::blocking::run_blocking;
use self::breaker::{Breaker, Change};
use self::pool::Pool;
use super::CounterError;
use super::bucket::{Rate, RateState, Take};
use super::scope::redact_password;

pub(crate) use self::keys::ScopeKeys;

/// One Redis server, shared by every binding of an engine that names it.
pub(crate) struct RedisCounters {
    /// The URL without its password, for logs and errors.
    name: String,
    pool: Pool,
    breaker: Breaker,
    scripts: Scripts,
}

struct Scripts {
    add: Script,
    get: Script,
    take: Script,
}

impl RedisCounters {
    /// Checks the URL; connects only when first used, so binding never waits on the
    /// network.
    pub fn open(url: &str) -> Result<Self, String> {
        let name = redact_password(url);
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("redis" | "rediss")) {
            return Err(format!(
                "invalid Redis URL {name}: must start with redis:// or rediss://"
            ));
        }
        if url.contains('#') {
            // redis-rs reads `#insecure` as "skip the certificate check"; this build never
            // does (and knows no other fragment).
            return Err(format!(
                "invalid Redis URL {name}: no #fragment allowed (TLS certificates are always \
                 verified)"
            ));
        }
        let client = Client::open(url).map_err(|e| format!("invalid Redis URL {name}: {e}"))?;
        Ok(RedisCounters {
            name,
            pool: Pool::new(client),
            breaker: Breaker::new(),
            scripts: Scripts {
                add: Script::new(include_str!("add.lua")),
                get: Script::new(include_str!("get.lua")),
                take: Script::new(include_str!("take.lua")),
            },
        })
    }

    pub fn add(
        &self,
        keys: &ScopeKeys,
        key: &str,
        delta: i64,
        window_millis: u64,
    ) -> Result<i64, CounterError> {
        let counter = keys.window(key, window_millis);
        self.call(|connection| {
            self.scripts
                .add
                .key(&counter)
                .arg(delta)
                .arg(window_millis.max(1))
                .invoke(connection)
        })
    }

    pub fn get(
        &self,
        keys: &ScopeKeys,
        key: &str,
        window_millis: u64,
    ) -> Result<i64, CounterError> {
        let counter = keys.window(key, window_millis);
        let total: Option<i64> = self.call(|connection| {
            self.scripts
                .get
                .key(&counter)
                .arg(window_millis.max(1))
                .invoke(connection)
        })?;
        Ok(total.unwrap_or(0))
    }

    pub fn take(
        &self,
        keys: &ScopeKeys,
        key: &str,
        rate: Rate,
        take: Take,
    ) -> Result<RateState, CounterError> {
        let bucket = keys.bucket(key);
        let (allowed, remaining, reset, retry): (i64, i64, u64, u64) = self.call(|connection| {
            self.scripts
                .take
                .key(&bucket)
                .arg(take.cost)
                .arg(rate.limit())
                .arg(rate.period_millis())
                .arg(rate.burst())
                .arg(if take.force { "1" } else { "0" })
                .invoke(connection)
        })?;
        Ok(RateState {
            allowed: allowed == 1,
            remaining,
            reset_millis: reset,
            retry_after_millis: retry,
        })
    }

    /// One round trip through the breaker. Failures become the guest's error, and the
    /// log says when an outage starts and ends (not per call).
    fn call<T>(&self, op: impl Fn(&mut Connection) -> RedisResult<T>) -> Result<T, CounterError> {
        if let Err(cause) = self.breaker.admit(Instant::now()) {
            return Err(CounterError(format!(
                "redis {}: not retried yet after: {cause}",
                self.name
            )));
        }
        match run_blocking(|| self.pool.round_trip(&op)) {
            Ok(value) => {
                if self.breaker.succeeded() == Change::Recovered {
                    tracing::info!(redis = %self.name, "counter store reachable again");
                }
                Ok(value)
            }
            Err(e) => {
                let cause = describe(&e);
                match self.breaker.failed(Instant::now(), &cause) {
                    Change::OutageStarted => tracing::warn!(
                        redis = %self.name,
                        error = %cause,
                        "counter store failing: counter calls fail fast, retried every {:?}",
                        breaker::OPEN_FOR
                    ),
                    _ => {
                        tracing::debug!(redis = %self.name, error = %cause, "counter store still failing")
                    }
                }
                Err(CounterError(format!("redis {}: {cause}", self.name)))
            }
        }
    }
}

/// The cause of a failed round trip, for the guest and the log. A read timeout is an
/// `EAGAIN` on Linux, which says nothing about waiting.
fn describe(error: &redis::RedisError) -> String {
    if error.is_timeout() {
        format!("no answer within {:?}: {error}", pool::IO_TIMEOUT)
    } else {
        error.to_string()
    }
}
