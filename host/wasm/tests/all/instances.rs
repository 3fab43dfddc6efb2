//! Instance reuse for stateless filters, fresh instances for isolated ones.

use std::sync::Arc;

use nantian_wasm::{ActiveFilter, EngineConfig, FilterBinding};

use crate::support::*;

fn calls_seen(binding: &Arc<FilterBinding>) -> String {
    let mut req = request("/", &[]);
    binding
        .start()
        .unwrap()
        .on_request_headers(&mut req)
        .unwrap();
    header(&req.headers, "x-fault-calls").unwrap().to_owned()
}

#[test]
fn stateless_filters_reuse_their_instance() {
    let engine = engine();
    let binding = bind(&engine, FAULT, "{}");
    assert!(!binding.info().per_request_isolation);
    assert_eq!(calls_seen(&binding), "1");
    assert_eq!(calls_seen(&binding), "2");
    assert_eq!(calls_seen(&binding), "3");
}

#[test]
fn isolated_filters_get_a_fresh_instance_per_request() {
    let engine = engine();
    let binding = bind(&engine, FAULT, r#"{"isolation":"per-request"}"#);
    assert!(binding.info().per_request_isolation);
    assert_eq!(calls_seen(&binding), "1");
    assert_eq!(calls_seen(&binding), "1");
}

#[test]
fn reused_instances_are_recycled_after_their_quota() {
    let engine = engine_with(EngineConfig {
        max_instances: 8,
        recycle_after_calls: 2,
        ..Default::default()
    });
    let binding = bind(&engine, FAULT, "{}");
    assert_eq!(calls_seen(&binding), "1");
    assert_eq!(calls_seen(&binding), "2");
    assert_eq!(calls_seen(&binding), "1");
}

#[test]
fn one_instance_serves_all_phases_of_a_request() {
    let engine = engine();
    let binding = bind(&engine, FAULT, r#"{"isolation":"per-request"}"#);
    let mut active = binding.start().unwrap();
    let mut req = request("/", &[]);
    active.on_request_headers(&mut req).unwrap();
    active.on_request_headers(&mut req).unwrap();
    assert_eq!(header(&req.headers, "x-fault-calls"), Some("2"));
}

#[test]
fn concurrent_requests_share_the_pool_safely() {
    fn assert_send<T: Send>() {}
    fn assert_shareable<T: Send + Sync>() {}
    assert_send::<ActiveFilter>();
    assert_shareable::<nantian_wasm::WasmEngine>();
    assert_shareable::<FilterBinding>();
    assert_shareable::<nantian_wasm::FilterModule>();

    let engine = engine();
    let binding = bind(&engine, FAULT, "{}");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let binding = binding.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let mut req = request("/", &[]);
                    binding
                        .start()
                        .unwrap()
                        .on_request_headers(&mut req)
                        .unwrap();
                    assert_eq!(header(&req.headers, "x-fault-filter"), Some("ok"));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}
