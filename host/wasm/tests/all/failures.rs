//! A misbehaving filter fails its own call, never the host, and the next request works.

use std::time::Duration;

use nantian_wasm::{BindingSpec, EngineConfig, FilterError, HeadersAction, WasmError};

use crate::support::*;

#[test]
fn trap_fails_the_call_and_the_next_request_gets_a_fresh_instance() {
    let engine = engine();
    let binding = bind(&engine, FAULT, "{}");
    let mut active = binding.start().unwrap();
    let mut req = request("/", &[("x-fault", "trap")]);
    let err = active.on_request_headers(&mut req).unwrap_err();
    assert_eq!(err.kind(), "trap");
    assert!(
        err.to_string().contains("fault filter asked to trap"),
        "{err}"
    );
    // The request came back intact, and this request's instance is gone.
    assert_eq!(header(&req.headers, "x-fault"), Some("trap"));
    assert!(matches!(
        active.on_request_headers(&mut request("/", &[])),
        Err(FilterError::Trap(_))
    ));
    drop(active);

    let mut req = request("/", &[]);
    let mut active = binding.start().unwrap();
    assert_eq!(
        active.on_request_headers(&mut req).unwrap(),
        HeadersAction::Continue
    );
    assert_eq!(header(&req.headers, "x-fault-filter"), Some("ok"));
    assert_eq!(
        header(&req.headers, "x-fault-calls"),
        Some("1"),
        "a fresh instance"
    );
}

#[test]
fn runaway_loop_times_out() {
    let engine = engine();
    let spec = BindingSpec {
        timeout: Some(Duration::from_millis(20)),
        ..spec("{}")
    };
    let binding = engine.bind(&module(&engine, FAULT), spec).unwrap();
    let mut req = request("/", &[("x-fault", "spin")]);
    let err = binding
        .start()
        .unwrap()
        .on_request_headers(&mut req)
        .unwrap_err();
    assert_eq!(err, FilterError::Timeout);
    assert_eq!(err.kind(), "timeout");
    // And the binding still serves requests.
    let mut req = request("/", &[]);
    binding
        .start()
        .unwrap()
        .on_request_headers(&mut req)
        .unwrap();
    assert_eq!(header(&req.headers, "x-fault-filter"), Some("ok"));
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let engine = engine();
    let spec = BindingSpec {
        max_memory: Some(8 << 20),
        ..spec("{}")
    };
    let binding = engine.bind(&module(&engine, FAULT), spec).unwrap();
    let mut req = request("/", &[("x-fault", "oom")]);
    let err = binding
        .start()
        .unwrap()
        .on_request_headers(&mut req)
        .unwrap_err();
    assert_eq!(err, FilterError::MemoryExceeded);
    let mut req = request("/", &[]);
    binding
        .start()
        .unwrap()
        .on_request_headers(&mut req)
        .unwrap();
    assert_eq!(header(&req.headers, "x-fault-filter"), Some("ok"));
}

#[test]
fn memory_limit_is_capped_to_the_engine_ceiling() {
    let engine = engine_with(EngineConfig {
        max_instances: 8,
        max_memory_ceiling: 8 << 20,
        default_max_memory: 4 << 20,
        ..Default::default()
    });
    let spec = BindingSpec {
        max_memory: Some(1 << 30),
        ..spec("{}")
    };
    let binding = engine.bind(&module(&engine, FAULT), spec).unwrap();
    let mut req = request("/", &[("x-fault", "oom")]);
    let err = binding
        .start()
        .unwrap()
        .on_request_headers(&mut req)
        .unwrap_err();
    assert_eq!(err, FilterError::MemoryExceeded);
}

#[test]
fn invalid_header_from_the_guest_traps_with_a_message() {
    let engine = engine();
    let binding = bind(&engine, FAULT, "{}");
    let mut req = request("/", &[("x-fault", "bad-header")]);
    let err = binding
        .start()
        .unwrap()
        .on_request_headers(&mut req)
        .unwrap_err();
    match err {
        FilterError::Trap(message) => assert!(message.contains("invalid header name"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(req.headers.get("bad name").is_none());
}

#[test]
fn config_rejected_by_init_is_a_config_error() {
    let engine = engine();
    let fault = module(&engine, FAULT);
    match engine.bind(&fault, spec(r#"{"fail-init":"no thanks"}"#)) {
        Err(WasmError::Config(message)) => assert_eq!(message, "fail-init: no thanks"),
        other => panic!("expected a config error, got {other:?}"),
    }
    let modifier = module(&engine, HEADER_MODIFIER);
    match engine.bind(
        &modifier,
        spec(r#"{"request":{"set":[{"name":"a b","value":"v"}]}}"#),
    ) {
        Err(WasmError::Config(message)) => {
            assert!(message.contains("invalid header name"), "{message}")
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn an_invalid_declared_header_op_is_a_config_error() {
    let engine = engine();
    match engine.bind(&module(&engine, FAULT), spec(r#"{"declare":"bad name"}"#)) {
        Err(WasmError::Config(message)) => assert_eq!(
            message,
            r#"declared request header op: invalid header name "bad name""#
        ),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn exhausted_pool_is_reported_and_recovers() {
    let engine = engine_with(EngineConfig {
        max_instances: 2,
        ..Default::default()
    });
    let binding = bind(&engine, FAULT, r#"{"isolation":"per-request"}"#);
    let first = binding.start().unwrap();
    let second = binding.start().unwrap();
    let err = binding.start().err().expect("no slot left");
    assert_eq!(err, FilterError::PoolExhausted);
    assert_eq!(err.kind(), "pool_exhausted");
    drop(first);
    let third = binding.start().unwrap();
    drop((second, third));
}
