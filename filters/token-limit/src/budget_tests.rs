//! The limits against a model of the host's counters: token buckets refilling with a
//! clock the test moves, epoch-aligned fixed windows, and a store that can fail.

use std::collections::HashMap;

use super::*;

const HOUR: u64 = 3_600_000;

/// The host's counters as `wit/filter.wit` describes them.
#[derive(Default)]
struct Model {
    now: u64,
    /// Bucket key → (units held, when last refilled).
    buckets: HashMap<String, (f64, u64)>,
    /// (key, window length, window index) → total.
    windows: HashMap<(String, u64, u64), i64>,
    /// The calls (counted from 1) that fail.
    failing: Vec<usize>,
    calls: usize,
    warnings: Vec<String>,
}

impl Model {
    fn at(now: u64) -> Self {
        Model {
            now,
            ..Model::default()
        }
    }

    fn call(&mut self) -> Result<(), CounterError> {
        self.calls += 1;
        if self.failing.contains(&self.calls) {
            return Err(CounterError("redis: connection refused".into()));
        }
        Ok(())
    }

    fn window(&self, key: &str, window: u64) -> i64 {
        let index = self.now / window;
        let key = (key.to_owned(), window, index);
        self.windows.get(&key).copied().unwrap_or(0)
    }

    /// Units a bucket holds now (full if never used).
    fn bucket(&self, key: &str, limit: u64, burst: u64) -> f64 {
        let Some(&(held, last)) = self.buckets.get(key) else {
            return (limit + burst) as f64;
        };
        let refill = (self.now - last) as f64 * limit as f64 / 60_000.0;
        (held + refill).min((limit + burst) as f64)
    }
}

impl Counters for Model {
    fn rate_take(
        &mut self,
        bucket: Bucket<'_>,
        cost: i64,
        force: bool,
    ) -> Result<RateState, CounterError> {
        self.call()?;
        let Bucket {
            key,
            limit,
            period,
            burst,
        } = bucket;
        assert_eq!(period, Duration::from_secs(60));
        let capacity = (limit + burst) as f64;
        let mut held = self.bucket(key, limit, burst);
        let allowed = force || held >= cost as f64;
        let rate = limit as f64 / 60_000.0;
        let retry_after_millis = if allowed {
            0
        } else {
            ((cost as f64 - held) / rate).ceil() as u64
        };
        if allowed {
            held = (held - cost as f64).min(capacity);
        }
        self.buckets.insert(key.to_owned(), (held, self.now));
        Ok(RateState {
            allowed,
            remaining: held.floor() as i64,
            reset_millis: ((capacity - held) / rate).ceil() as u64,
            retry_after_millis,
        })
    }

    fn counter_add(
        &mut self,
        key: &str,
        delta: i64,
        window: Duration,
    ) -> Result<i64, CounterError> {
        self.call()?;
        let window = millis(window);
        let entry = (key.to_owned(), window, self.now / window);
        let total = self.windows.entry(entry).or_default();
        *total += delta;
        Ok(*total)
    }

    fn now_millis(&self) -> u64 {
        self.now
    }

    fn warn(&mut self, message: &str) {
        self.warnings.push(message.to_owned());
    }
}

fn limits(pairs: &[(Kind, u64)]) -> Vec<Limit> {
    pairs
        .iter()
        .map(|&(kind, max)| Limit { kind, max })
        .collect()
}

fn counter(kind: Kind) -> String {
    kind.counter("k")
}

fn refused(admission: Admission) -> Refusal {
    match admission {
        Admission::Refused(refusal) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn admitted(admission: Admission) -> Quotas {
    match admission {
        Admission::Admitted(quotas) => quotas,
        other => panic!("expected an admission, got {other:?}"),
    }
}

#[test]
fn requests_per_minute_admits_up_to_the_limit_then_says_when_to_retry() {
    let mut model = Model::at(1_000_000);
    let rpm = limits(&[(Kind::RequestsPerMinute, 3)]);
    for remaining in [2, 1, 0] {
        let quotas = admitted(admit(&mut model, &rpm, 0, "k", 500));
        let requests = quotas.requests.unwrap();
        assert_eq!((requests.limit, requests.remaining), (3, remaining));
        assert_eq!(quotas.tokens, None);
    }
    let refusal = refused(admit(&mut model, &rpm, 0, "k", 500));
    assert_eq!(refusal.limit, rpm[0]);
    assert_eq!(refusal.requested, 1);
    // One request refills in 20 s.
    assert_eq!(refusal.retry_after_millis, Some(20_000));
    assert_eq!(refusal.quotas.requests.unwrap().remaining, 0);
    model.now += 20_000;
    admitted(admit(&mut model, &rpm, 0, "k", 500));
}

#[test]
fn tokens_per_minute_takes_the_estimate_and_burst_deepens_it() {
    let tpm = limits(&[(Kind::TokensPerMinute, 100)]);
    let mut model = Model::at(0);
    let quotas = admitted(admit(&mut model, &tpm, 0, "k", 40));
    assert_eq!(quotas.tokens.unwrap().remaining, 60);
    admitted(admit(&mut model, &tpm, 0, "k", 40));
    let refusal = refused(admit(&mut model, &tpm, 0, "k", 40));
    assert_eq!(refusal.requested, 40);
    // 20 tokens short at 100 a minute: 12 s.
    assert_eq!(refusal.retry_after_millis, Some(12_000));
    assert_eq!(refusal.quotas.tokens.unwrap().remaining, 20);

    let mut model = Model::at(0);
    for _ in 0..3 {
        admitted(admit(&mut model, &tpm, 50, "k", 40));
    }
    refused(admit(&mut model, &tpm, 50, "k", 40));
}

#[test]
fn a_request_larger_than_a_limit_is_refused_without_spending_anything() {
    let all = limits(&[
        (Kind::RequestsPerMinute, 10),
        (Kind::TokensPerMinute, 100),
        (Kind::TokensPerDay, 1000),
    ]);
    let mut model = Model::at(0);
    let refusal = refused(admit(&mut model, &all, 0, "k", 101));
    assert_eq!(refusal.limit, all[1]);
    assert_eq!(refusal.requested, 101);
    assert_eq!(refusal.retry_after_millis, None);
    assert_eq!(model.calls, 0);
    // The burst makes room for it.
    admitted(admit(&mut model, &all, 1, "k", 101));
    let day = limits(&[(Kind::TokensPerDay, 1000)]);
    assert_eq!(refused(admit(&mut model, &day, 0, "k", 1001)).limit, day[0]);
}

#[test]
fn a_fixed_window_refuses_past_its_limit_until_it_ends_and_gives_back_earlier_takes() {
    let all = limits(&[
        (Kind::RequestsPerMinute, 10),
        (Kind::TokensPerMinute, 1000),
        (Kind::TokensPerHour, 100),
    ]);
    let mut model = Model::at(5 * HOUR + 1000);
    let quotas = admitted(admit(&mut model, &all, 0, "k", 70));
    // The token limit with the least left is reported.
    assert_eq!(
        quotas.tokens.unwrap(),
        Quota {
            limit: 100,
            remaining: 30,
            reset_millis: HOUR - 1000
        }
    );
    let refusal = refused(admit(&mut model, &all, 0, "k", 40));
    assert_eq!(refusal.limit, all[2]);
    assert_eq!(refusal.retry_after_millis, Some(HOUR - 1000));
    assert_eq!(refusal.quotas.tokens.unwrap().remaining, 30);
    // The refused request took nothing: the hour holds the first request only, and the
    // minute buckets have what the first request left them.
    assert_eq!(model.window(&counter(Kind::TokensPerHour), HOUR), 70);
    assert_eq!(model.bucket(&counter(Kind::RequestsPerMinute), 10, 0), 9.0);
    assert_eq!(
        model.bucket(&counter(Kind::TokensPerMinute), 1000, 0),
        930.0
    );
    assert_eq!(refusal.quotas.requests.unwrap().remaining, 9);
    // A request that fits is admitted; the next hour starts afresh.
    admitted(admit(&mut model, &all, 0, "k", 30));
    refused(admit(&mut model, &all, 0, "k", 1));
    model.now = 6 * HOUR;
    admitted(admit(&mut model, &all, 0, "k", 100));
}

#[test]
fn keys_have_their_own_counters() {
    let rpm = limits(&[(Kind::RequestsPerMinute, 1)]);
    let mut model = Model::at(0);
    admitted(admit(&mut model, &rpm, 0, "a", 0));
    refused(admit(&mut model, &rpm, 0, "a", 0));
    admitted(admit(&mut model, &rpm, 0, "b", 0));
}

#[test]
fn a_failing_store_admits_and_gives_back_what_was_taken() {
    let all = limits(&[
        (Kind::RequestsPerMinute, 10),
        (Kind::TokensPerMinute, 1000),
        (Kind::TokensPerDay, 5000),
    ]);
    // The day window fails; the minute buckets get their takes back.
    let mut model = Model {
        failing: vec![3],
        ..Model::at(0)
    };
    let admission = admit(&mut model, &all, 0, "k", 100);
    assert_eq!(
        admission,
        Admission::Unavailable(CounterError("redis: connection refused".into()))
    );
    assert!(model.warnings.is_empty(), "{:?}", model.warnings);
    let quotas = admitted(admit(&mut model, &all, 0, "k", 100));
    assert_eq!(quotas.requests.unwrap().remaining, 9);
    assert_eq!(
        model.bucket(&counter(Kind::TokensPerMinute), 1000, 0),
        900.0
    );
    // Give-backs that fail are logged.
    let mut model = Model {
        failing: vec![3, 4, 5],
        ..Model::at(0)
    };
    assert!(matches!(
        admit(&mut model, &all, 0, "k", 100),
        Admission::Unavailable(_)
    ));
    assert_eq!(model.warnings.len(), 2, "{:?}", model.warnings);
    assert!(model.warnings[0].contains("requests_per_minute could not be given back 1"));
}

#[test]
fn settling_charges_the_difference_and_refunds() {
    let all = limits(&[
        (Kind::RequestsPerMinute, 10),
        (Kind::TokensPerMinute, 1000),
        (Kind::TokensPerHour, 5000),
        (Kind::TokensPerDay, 50_000),
    ]);
    let mut model = Model::at(HOUR + 10);
    admitted(admit(&mut model, &all, 0, "k", 100));
    // The response used 1500: 1400 more, the minute bucket goes into debt.
    settle(&mut model, &all, 0, "k", 1400, HOUR + 10);
    assert_eq!(
        model.bucket(&counter(Kind::TokensPerMinute), 1000, 0),
        -500.0
    );
    assert_eq!(model.window(&counter(Kind::TokensPerHour), HOUR), 1500);
    assert_eq!(model.window(&counter(Kind::TokensPerDay), 24 * HOUR), 1500);
    // Requests are not charged again.
    assert_eq!(model.bucket(&counter(Kind::RequestsPerMinute), 10, 0), 9.0);
    // In debt, even a request estimated at nothing waits.
    refused(admit(&mut model, &all, 0, "k", 0));
    // A refund gives the reservation back.
    settle(&mut model, &all, 0, "k", -1500, HOUR + 10);
    assert_eq!(model.window(&counter(Kind::TokensPerHour), HOUR), 0);
    assert_eq!(
        model.bucket(&counter(Kind::TokensPerMinute), 1000, 0),
        1000.0
    );
    assert!(model.warnings.is_empty());
}

#[test]
fn refunds_skip_fixed_windows_that_ended_since_admission() {
    let all = limits(&[(Kind::TokensPerMinute, 1000), (Kind::TokensPerHour, 5000)]);
    let mut model = Model::at(HOUR - 5);
    admitted(admit(&mut model, &all, 0, "k", 300));
    model.now = HOUR + 5;
    admitted(admit(&mut model, &all, 0, "k", 200));
    settle(&mut model, &all, 0, "k", -300, HOUR - 5);
    // The new hour keeps the second request's 200; the bucket got the 300 back (and
    // refilled a sixth of a token in the 10 ms between the requests).
    assert_eq!(model.window(&counter(Kind::TokensPerHour), HOUR), 200);
    let bucket = model.bucket(&counter(Kind::TokensPerMinute), 1000, 0);
    assert_eq!(bucket.floor(), 800.0);
    // Extra use is charged to the window it happens in.
    settle(&mut model, &all, 0, "k", 50, HOUR - 5);
    assert_eq!(model.window(&counter(Kind::TokensPerHour), HOUR), 250);
}

#[test]
fn counters_are_named_by_limit_and_key_hash() {
    assert_eq!(Kind::TokensPerMinute.counter("ab12"), "tpm:ab12");
    assert_eq!(
        Kind::ALL.map(|k| k.counter("h")),
        ["rpm:h", "tpm:h", "tph:h", "tpd:h"]
    );
}
