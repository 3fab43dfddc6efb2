//! The Redis store against a real `redis-server` (see `tests/src/redis.rs`).

use std::sync::Arc;

use super::breaker::OPEN_FOR;
use super::pool::IO_TIMEOUT;
use super::*;

// Shared with the end-to-end tests; only some of its helpers are used here.
#[allow(dead_code)]
#[path = "../../../../../tests/src/redis.rs"]
mod redis_server;

use redis_server::RedisServer;

fn rate(limit: u64, period_millis: u64, burst: u64) -> Rate {
    Rate::new(limit, period_millis, burst).unwrap()
}

fn take(cost: i64) -> Take {
    Take { cost, force: false }
}

/// A raw connection for looking at what the scripts left.
fn inspect(server: &RedisServer) -> Connection {
    Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

#[test]
fn concurrent_takes_from_two_hosts_allow_exactly_the_limit() {
    let Some(server) = RedisServer::start_or_skip("concurrent_takes") else {
        return;
    };
    // Two stores are two hosts: separate pools, one bucket.
    let hosts = [
        Arc::new(RedisCounters::open(&server.url()).unwrap()),
        Arc::new(RedisCounters::open(&server.url()).unwrap()),
    ];
    let keys = ScopeKeys::new("policy");
    let rate = rate(50, 3_600_000, 0);
    let allowed: usize = std::thread::scope(|threads| {
        let workers: Vec<_> = (0..8)
            .map(|i| {
                let (host, keys) = (&hosts[i % 2], &keys);
                threads.spawn(move || {
                    (0..20)
                        .filter(|_| host.take(keys, "tenant", rate, take(1)).unwrap().allowed)
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(allowed, 50);
    let last = hosts[0].take(&keys, "tenant", rate, take(1)).unwrap();
    assert!(!last.allowed);
    assert_eq!(last.remaining, 0);
    // One unit per 72 s.
    assert!(
        (71_000..=72_000).contains(&last.retry_after_millis),
        "{last:?}"
    );
}

#[test]
fn takes_match_the_bucket_arithmetic() {
    let Some(server) = RedisServer::start_or_skip("takes_match") else {
        return;
    };
    let store = RedisCounters::open(&server.url()).unwrap();
    let keys = ScopeKeys::new("s");
    // 10 an hour, 5 more in a burst: a unit per 6 minutes, nothing refills during the test.
    let rate = rate(10, 3_600_000, 5);
    let state = store.take(&keys, "k", rate, take(3)).unwrap();
    assert!(state.allowed);
    assert_eq!(state.remaining, 12);
    assert!(
        (1_079_000..=1_080_000).contains(&state.reset_millis),
        "{state:?}"
    );
    let refused = store.take(&keys, "k", rate, take(13)).unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 12);
    assert!(
        (359_000..=360_000).contains(&refused.retry_after_millis),
        "{refused:?}"
    );
    // More than the bucket holds: never without force; retry after at least a period.
    let above_capacity = store.take(&keys, "k", rate, take(16)).unwrap();
    assert!(!above_capacity.allowed);
    assert_eq!(above_capacity.retry_after_millis, 3_600_000);
    let forced = Take {
        cost: 20,
        force: true,
    };
    assert_eq!(store.take(&keys, "k", rate, forced).unwrap().remaining, -8);
    let mut raw = inspect(&server);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(keys.bucket("k"))
        .query(&mut raw)
        .unwrap();
    assert!(
        (8_279_000..=8_280_001).contains(&ttl),
        "expires when full: {ttl}"
    );
    // Given back in full, the bucket needs no key.
    let refund = store.take(&keys, "k", rate, take(-100)).unwrap();
    assert_eq!(refund.remaining, 15);
    assert_eq!(refund.reset_millis, 0);
    let exists: bool = redis::cmd("EXISTS")
        .arg(keys.bucket("k"))
        .query(&mut raw)
        .unwrap();
    assert!(!exists);
}

#[test]
fn windows_follow_the_server_clock_aligned_to_the_epoch() {
    let Some(server) = RedisServer::start_or_skip("windows") else {
        return;
    };
    let store = RedisCounters::open(&server.url()).unwrap();
    let keys = ScopeKeys::new("s");
    const DAY: u64 = 86_400_000;
    assert_eq!(store.add(&keys, "k", 2, DAY), Ok(2));
    assert_eq!(store.add(&keys, "k", 3, DAY), Ok(5));
    assert_eq!(store.get(&keys, "k", DAY), Ok(5));
    // Other window lengths, other keys.
    assert_eq!(store.get(&keys, "k", 60_000), Ok(0));
    assert_eq!(store.add(&keys, "k", -1, 60_000), Ok(-1));
    // The day window's key is today's (UTC) and expires at midnight UTC.
    let mut raw = inspect(&server);
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query(&mut raw).unwrap();
    let now_millis = seconds * 1000 + micros / 1000;
    let today = now_millis / DAY;
    let key = format!("{}:{today}", keys.window("k", DAY));
    let total: i64 = redis::cmd("GET").arg(&key).query(&mut raw).unwrap();
    assert_eq!(total, 5);
    let expires_at: i64 = redis::cmd("PEXPIRETIME").arg(&key).query(&mut raw).unwrap();
    assert_eq!(expires_at as u64, (today + 1) * DAY);
}

#[test]
fn scopes_do_not_share_keys() {
    let Some(server) = RedisServer::start_or_skip("scopes") else {
        return;
    };
    let store = RedisCounters::open(&server.url()).unwrap();
    // Without escaping, scope "a:b" with key "k" and scope "a" with key "b:k" would meet.
    let (ab, a) = (ScopeKeys::new("a:b"), ScopeKeys::new("a"));
    store.add(&ab, "k", 7, 60_000).unwrap();
    assert_eq!(store.get(&a, "b:k", 60_000), Ok(0));
    let rate = rate(1, 3_600_000, 0);
    assert!(store.take(&ab, "k", rate, take(1)).unwrap().allowed);
    assert!(store.take(&a, "b:k", rate, take(1)).unwrap().allowed);
    assert!(
        store
            .take(&ScopeKeys::new("other"), "k", rate, take(1))
            .unwrap()
            .allowed
    );
    assert!(!store.take(&ab, "k", rate, take(1)).unwrap().allowed);
}

#[test]
fn an_outage_fails_fast_and_the_store_recovers() {
    let Some(mut server) = RedisServer::start_or_skip("outage") else {
        return;
    };
    let store = RedisCounters::open(&server.url()).unwrap();
    let keys = ScopeKeys::new("s");
    assert_eq!(store.add(&keys, "k", 1, 60_000), Ok(1));

    server.stop();
    // The error names the server. How long failing calls take is the benchmarks'
    // business, not a test's.
    let error = store.add(&keys, "k", 1, 60_000).unwrap_err();
    assert!(error.0.contains(&server.url()), "{error}");
    // The breaker is open: no connection is even tried.
    for _ in 0..100 {
        let error = store.add(&keys, "k", 1, 60_000).unwrap_err();
        assert!(error.0.contains("not retried yet"), "{error}");
    }

    // Back (empty: no persistence), and used again once the breaker lets a call through.
    server.restart().unwrap();
    std::thread::sleep(OPEN_FOR);
    assert_eq!(store.add(&keys, "k", 1, 60_000), Ok(1));
    assert_eq!(store.add(&keys, "k", 1, 60_000), Ok(2));
}

#[test]
fn a_hung_server_times_out_and_its_late_replies_are_not_misread() {
    let Some(server) = RedisServer::start_or_skip("hung") else {
        return;
    };
    let store = RedisCounters::open(&server.url()).unwrap();
    let keys = ScopeKeys::new("s");
    assert_eq!(store.add(&keys, "a", 10, 60_000), Ok(10));

    server.pause().unwrap();
    // The read times out (the error says so) instead of hanging.
    let error = store.add(&keys, "a", 1, 60_000).unwrap_err();
    assert!(
        error
            .0
            .contains(&format!("no answer within {IO_TIMEOUT:?}")),
        "{error}"
    );
    server.resume().unwrap();
    std::thread::sleep(OPEN_FOR);
    // The add that timed out may have been applied late, but its reply is not taken for
    // this call's (the pool closes a connection after a timeout; redis-rs would also skip
    // the late reply on a kept one).
    assert_eq!(store.get(&keys, "b", 60_000), Ok(0));
    let a = store.get(&keys, "a", 60_000).unwrap();
    assert!(a == 10 || a == 11, "{a}");
}

#[test]
fn rediss_checks_the_certificate_and_cannot_be_told_not_to() {
    let Some(server) = RedisServer::start_tls_or_skip("rediss") else {
        return;
    };
    let url = server.tls_url().unwrap();
    // The handshake happens (rustls, ring) and fails on the test's self-signed
    // certificate, which is not in the system's roots.
    let store = RedisCounters::open(&url).unwrap();
    let error = store.add(&ScopeKeys::new("s"), "k", 1, 60_000).unwrap_err();
    assert!(error.0.to_lowercase().contains("certificate"), "{error}");
    let error = RedisCounters::open(&format!("{url}#insecure"))
        .err()
        .unwrap();
    assert!(error.contains("always verified"), "{error}");
}
