//! The limits and the counters behind them: admitting a request (taking its cost from
//! every limit, or from none) and settling its tokens once the response is known.
//!
//! - `requestsPerMinute` and `tokensPerMinute` are token buckets (`rate-take`): they
//!   refill continuously, and `burst` deepens the tokens bucket.
//! - `tokensPerHour` and `tokensPerDay` are fixed windows aligned to the Unix epoch
//!   (`counter-add`): the cost is added, and taken back if the total passes the limit.
//!
//! Counters are named `<rpm|tpm|tph|tpd>:<key hash>`.

use std::time::Duration;

use nantian_filter_sdk::host::{self, CounterError, RateState};
use serde::{Deserialize, Serialize};

/// One kind of limit, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RequestsPerMinute,
    TokensPerMinute,
    TokensPerHour,
    TokensPerDay,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::RequestsPerMinute,
        Kind::TokensPerMinute,
        Kind::TokensPerHour,
        Kind::TokensPerDay,
    ];

    /// The limit's name in the configuration (`limits.<field>`).
    pub fn field(self) -> &'static str {
        match self {
            Kind::RequestsPerMinute => "requestsPerMinute",
            Kind::TokensPerMinute => "tokensPerMinute",
            Kind::TokensPerHour => "tokensPerHour",
            Kind::TokensPerDay => "tokensPerDay",
        }
    }

    /// The name the host counts refusals by (`ai.rate_limited`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::RequestsPerMinute => "requests_per_minute",
            Kind::TokensPerMinute => "tokens_per_minute",
            Kind::TokensPerHour => "tokens_per_hour",
            Kind::TokensPerDay => "tokens_per_day",
        }
    }

    /// In words, for messages.
    pub fn words(self) -> &'static str {
        match self {
            Kind::RequestsPerMinute => "requests per minute",
            Kind::TokensPerMinute => "tokens per minute",
            Kind::TokensPerHour => "tokens per hour",
            Kind::TokensPerDay => "tokens per day",
        }
    }

    pub fn counts_tokens(self) -> bool {
        self != Kind::RequestsPerMinute
    }

    fn counter(self, key_hash: &str) -> String {
        let prefix = match self {
            Kind::RequestsPerMinute => "rpm",
            Kind::TokensPerMinute => "tpm",
            Kind::TokensPerHour => "tph",
            Kind::TokensPerDay => "tpd",
        };
        format!("{prefix}:{key_hash}")
    }

    fn period(self) -> Duration {
        Duration::from_secs(match self {
            Kind::RequestsPerMinute | Kind::TokensPerMinute => 60,
            Kind::TokensPerHour => 3600,
            Kind::TokensPerDay => 86_400,
        })
    }

    fn is_bucket(self) -> bool {
        matches!(self, Kind::RequestsPerMinute | Kind::TokensPerMinute)
    }
}

/// A configured limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub kind: Kind,
    pub max: u64,
}

impl Limit {
    /// Extra bucket depth: `burst` for tokens per minute, none for the others.
    fn burst(self, burst: u64) -> u64 {
        if self.kind == Kind::TokensPerMinute {
            burst
        } else {
            0
        }
    }

    fn cost(self, estimate: u64) -> u64 {
        if self.kind.counts_tokens() {
            estimate
        } else {
            1
        }
    }
}

/// A token bucket, as `rate-take` names it.
#[derive(Debug, Clone, Copy)]
pub struct Bucket<'a> {
    pub key: &'a str,
    pub limit: u64,
    pub period: Duration,
    pub burst: u64,
}

/// The host services the limits use; a model of them in the tests.
pub trait Counters {
    fn rate_take(
        &mut self,
        bucket: Bucket<'_>,
        cost: i64,
        force: bool,
    ) -> Result<RateState, CounterError>;
    fn counter_add(&mut self, key: &str, delta: i64, window: Duration)
    -> Result<i64, CounterError>;
    fn now_millis(&self) -> u64;
    fn warn(&mut self, message: &str);
}

/// The gateway's counters.
pub struct HostCounters;

impl Counters for HostCounters {
    fn rate_take(
        &mut self,
        b: Bucket<'_>,
        cost: i64,
        force: bool,
    ) -> Result<RateState, CounterError> {
        host::rate_take(b.key, cost, b.limit, b.period, b.burst, force)
    }

    fn counter_add(
        &mut self,
        key: &str,
        delta: i64,
        window: Duration,
    ) -> Result<i64, CounterError> {
        host::counter_add(key, delta, window)
    }

    fn now_millis(&self) -> u64 {
        host::now_millis()
    }

    fn warn(&mut self, message: &str) {
        host::warn(message);
    }
}

/// A limit's state, as the `x-ratelimit-*` headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub limit: u64,
    /// Negative when a bucket is in debt.
    pub remaining: i64,
    /// Until the bucket is full again, or the window ends.
    pub reset_millis: u64,
}

/// What the headers report: the requests limit, and the token limit with the least left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Quota>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Quota>,
}

impl Quotas {
    fn record(&mut self, kind: Kind, quota: Quota) {
        if !kind.counts_tokens() {
            self.requests = Some(quota);
        } else if self.tokens.is_none_or(|q| quota.remaining < q.remaining) {
            self.tokens = Some(quota);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted(Quotas),
    Refused(Refusal),
    /// The counter store failed: the request goes on unlimited (fails open).
    Unavailable(CounterError),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub limit: Limit,
    /// The request's cost to this limit.
    pub requested: u64,
    /// `None`: waiting cannot help, the request is larger than the limit.
    pub retry_after_millis: Option<u64>,
    /// The limits checked, the refusing one among them (as the token quota if it is one).
    pub quotas: Quotas,
}

/// Takes a request's cost (1 request, `estimate` tokens) from every limit in order. When
/// one refuses, or the store fails, what the earlier ones took is given back.
pub fn admit(
    counters: &mut impl Counters,
    limits: &[Limit],
    burst: u64,
    key_hash: &str,
    estimate: u64,
) -> Admission {
    let too_large = limits
        .iter()
        .find(|l| l.kind.counts_tokens() && estimate > l.max + l.burst(burst));
    if let Some(&limit) = too_large {
        return Admission::Refused(Refusal {
            limit,
            requested: estimate,
            retry_after_millis: None,
            quotas: Quotas::default(),
        });
    }
    let mut quotas = Quotas::default();
    for (n, &limit) in limits.iter().enumerate() {
        let taken = &limits[..n];
        let cost = limit.cost(estimate);
        match apply(counters, limit, burst, key_hash, signed(cost), false) {
            Ok(applied) if applied.allowed => quotas.record(limit.kind, applied.quota),
            Ok(applied) => {
                give_back(counters, taken, burst, key_hash, estimate, &mut quotas);
                if limit.kind.counts_tokens() {
                    quotas.tokens = Some(applied.quota);
                } else {
                    quotas.requests = Some(applied.quota);
                }
                return Admission::Refused(Refusal {
                    limit,
                    requested: cost,
                    retry_after_millis: Some(applied.retry_after_millis),
                    quotas,
                });
            }
            Err(error) => {
                give_back(counters, taken, burst, key_hash, estimate, &mut quotas);
                return Admission::Unavailable(error);
            }
        }
    }
    Admission::Admitted(quotas)
}

/// Adds `delta` tokens (the actual use less what was reserved at `admitted_at`) to every
/// token limit, buckets going into debt if need be. A refund (`delta < 0`) is not made to
/// a fixed window that ended since: it would lend the new window tokens the old one spent.
pub fn settle(
    counters: &mut impl Counters,
    limits: &[Limit],
    burst: u64,
    key_hash: &str,
    delta: i64,
    admitted_at: u64,
) {
    if delta == 0 {
        return;
    }
    let now = counters.now_millis();
    for &limit in limits.iter().filter(|l| l.kind.counts_tokens()) {
        let period = millis(limit.kind.period());
        if delta < 0 && !limit.kind.is_bucket() && now / period != admitted_at / period {
            continue;
        }
        if let Err(e) = apply(counters, limit, burst, key_hash, delta, true) {
            counters.warn(&format!(
                "token-limit: {} not charged {delta} tokens: {e}",
                limit.kind.name()
            ));
        }
    }
}

/// What applying a cost to a limit did.
struct Applied {
    allowed: bool,
    quota: Quota,
    /// When refused: until the cost fits.
    retry_after_millis: u64,
}

/// Applies `cost` to a limit's counter for a key: only if it fits, or with `force`
/// whatever the counter holds (a bucket may go into debt).
fn apply(
    counters: &mut impl Counters,
    limit: Limit,
    burst: u64,
    key_hash: &str,
    cost: i64,
    force: bool,
) -> Result<Applied, CounterError> {
    let counter = limit.kind.counter(key_hash);
    let period = limit.kind.period();
    if limit.kind.is_bucket() {
        let bucket = Bucket {
            key: &counter,
            limit: limit.max,
            period,
            burst: limit.burst(burst),
        };
        let state = counters.rate_take(bucket, cost, force)?;
        return Ok(Applied {
            allowed: state.allowed,
            quota: Quota {
                limit: limit.max,
                remaining: state.remaining,
                reset_millis: state.reset_millis,
            },
            retry_after_millis: state.retry_after_millis,
        });
    }
    let mut total = counters.counter_add(&counter, cost, period)?;
    let allowed = force || total <= signed(limit.max);
    if !allowed {
        total = counters.counter_add(&counter, -cost, period)?;
    }
    let period = millis(period);
    let reset_millis = period - counters.now_millis() % period;
    Ok(Applied {
        allowed,
        quota: Quota {
            limit: limit.max,
            remaining: signed(limit.max).saturating_sub(total),
            reset_millis,
        },
        retry_after_millis: if allowed { 0 } else { reset_millis },
    })
}

/// Gives back what `taken` took for a request, recording their new state.
fn give_back(
    counters: &mut impl Counters,
    taken: &[Limit],
    burst: u64,
    key_hash: &str,
    estimate: u64,
    quotas: &mut Quotas,
) {
    *quotas = Quotas::default();
    for &limit in taken {
        let delta = -signed(limit.cost(estimate));
        match apply(counters, limit, burst, key_hash, delta, true) {
            Ok(applied) => quotas.record(limit.kind, applied.quota),
            Err(e) => counters.warn(&format!(
                "token-limit: {} could not be given back {}: {e}",
                limit.kind.name(),
                -delta
            )),
        }
    }
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn millis(period: Duration) -> u64 {
    u64::try_from(period.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
