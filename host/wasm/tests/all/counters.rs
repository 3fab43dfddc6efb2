//! Counter scopes through a real filter: the fault filter's `x-fault: count` adds 1 to its
//! counter `hits` (one-minute windows) and reports the total, or the error, in
//! `x-fault-count`. Redis runs as a real `redis-server` (`tests/src/redis.rs`).

use std::sync::Arc;
use std::time::Duration;

use nantian_wasm::{BindingSpec, CounterScope, FilterBinding, WasmEngine, WasmError};

use crate::redis_server::RedisServer;
use crate::support::*;

fn bind_scoped(engine: &WasmEngine, counters: CounterScope) -> Arc<FilterBinding> {
    let spec = BindingSpec {
        counters: Some(counters),
        ..spec("{}")
    };
    engine.bind(&module(engine, FAULT), spec).expect("bind")
}

/// One request through the filter, and what it said in `x-fault-count`.
fn count(binding: &Arc<FilterBinding>) -> String {
    let mut req = request("/", &[("x-fault", "count")]);
    binding
        .start()
        .unwrap()
        .on_request_headers(&mut req)
        .expect("the call succeeds whatever the counter store does");
    header(&req.headers, "x-fault-count").unwrap().to_owned()
}

#[test]
fn a_scope_is_shared_by_its_bindings_and_outlives_them() {
    let engine = engine();
    let first = bind_scoped(&engine, CounterScope::local("policy-a"));
    let second = bind_scoped(&engine, CounterScope::local("policy-a"));
    let other = bind_scoped(&engine, CounterScope::local("policy-b"));
    assert_eq!(count(&first), "1");
    assert_eq!(count(&second), "2");
    assert_eq!(count(&other), "1");
    // A configuration change re-creates the binding; the scope's counts carry on.
    drop((first, second));
    let rebound = bind_scoped(&engine, CounterScope::local("policy-a"));
    assert_eq!(count(&rebound), "3");
}

#[test]
fn two_hosts_share_counters_through_redis() {
    let Some(server) = RedisServer::start_or_skip("two_hosts_share_counters_through_redis") else {
        return;
    };
    let (host_a, host_b) = (engine(), engine());
    let on_a = bind_scoped(&host_a, CounterScope::redis("policy", server.url()));
    let on_b = bind_scoped(&host_b, CounterScope::redis("policy", server.url()));
    let elsewhere = bind_scoped(&host_b, CounterScope::redis("other-policy", server.url()));
    assert_eq!(count(&on_a), "1");
    assert_eq!(count(&on_b), "2");
    assert_eq!(count(&on_a), "3");
    assert_eq!(count(&elsewhere), "1");
    // Local counters of the same scope name are another store.
    let local = bind_scoped(&host_a, CounterScope::local("policy"));
    assert_eq!(count(&local), "1");
}

#[test]
fn an_unreachable_redis_is_the_filters_error_not_a_failed_call() {
    let Some(mut server) = RedisServer::start_or_skip("unreachable_redis") else {
        return;
    };
    let engine = engine();
    let binding = bind_scoped(&engine, CounterScope::redis("policy", server.url()));
    assert_eq!(count(&binding), "1");
    server.stop();
    let said = count(&binding);
    assert!(
        said.starts_with("counter store unavailable: redis redis://127.0.0.1:"),
        "{said}"
    );
}

#[test]
fn waiting_on_a_hung_redis_does_not_use_up_the_time_budget() {
    let Some(server) = RedisServer::start_or_skip("hung_redis") else {
        return;
    };
    let engine = engine();
    // 20 ms of CPU a call; the Redis read timeout is 200 ms.
    let spec = BindingSpec {
        timeout: Some(Duration::from_millis(20)),
        counters: Some(CounterScope::redis("policy", server.url())),
        ..spec("{}")
    };
    let binding = engine.bind(&module(&engine, FAULT), spec).unwrap();
    assert_eq!(count(&binding), "1");
    server.pause().unwrap();
    // The call waited out Redis's 200 ms read timeout, ten times its CPU budget, and came
    // back with the store's error rather than a trap for running out of time.
    let said = count(&binding);
    assert!(said.contains("no answer within 200ms"), "{said}");
    server.resume().unwrap();
}

#[test]
fn an_unusable_counter_scope_fails_the_binding() {
    let engine = engine();
    let bind = |counters: CounterScope| {
        let spec = BindingSpec {
            counters: Some(counters),
            ..spec("{}")
        };
        engine.bind(&module(&engine, FAULT), spec).unwrap_err()
    };
    let error = bind(CounterScope::redis(
        "policy",
        "redis://user:secret@host:notaport",
    ));
    assert!(matches!(error, WasmError::Counters { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("invalid Redis URL"), "{message}");
    assert!(!message.contains("secret"), "{message}");
    let error = bind(CounterScope::local(""));
    assert!(
        error.to_string().contains("scope must not be empty"),
        "{error}"
    );
}
