//! Per-call cost, printed rather than asserted (timings depend on the machine):
//! `cargo test --release -p nantian-wasm --test all -- --ignored --nocapture per_call_cost`.

use std::time::{Duration, Instant};

use crate::support::*;

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

fn measure(label: &str, iterations: usize, mut call: impl FnMut()) {
    for _ in 0..iterations / 10 {
        call();
    }
    let samples = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            call();
            start.elapsed()
        })
        .collect();
    let (p50, p99) = percentiles(samples);
    println!("{label}: p50 {p50:?}, p99 {p99:?}");
}

/// `VmSize` of this process in KiB (Linux), to show the pool's address-space reservation.
fn virtual_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmSize:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
#[ignore = "prints timings; run explicitly"]
fn per_call_cost() {
    let before = virtual_kib();
    let default_engine = engine_with(nantian_wasm::EngineConfig::default());
    if let (Some(before), Some(after)) = (before, virtual_kib()) {
        println!(
            "default engine reserves {} GiB of address space",
            (after - before) >> 20
        );
    }
    drop(default_engine);

    let engine = engine();
    let headers: Vec<(String, String)> = (0..10)
        .map(|i| (format!("x-header-{i}"), "some typical value".to_owned()))
        .collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();

    let modifier = bind(
        &engine,
        HEADER_MODIFIER,
        r#"{"request":{"set":[{"name":"x-set","value":"v"}],"add":[{"name":"x-add","value":"a"}],"remove":["x-header-3"]}}"#,
    );
    let template = request("/path?q=1", &headers);
    measure(
        "header-modifier (declared header ops, guest not entered), start+apply+drop",
        20_000,
        || {
            let mut req = template.clone();
            modifier
                .start()
                .unwrap()
                .on_request_headers(&mut req)
                .unwrap();
        },
    );
    measure("request clone alone (baseline)", 20_000, || {
        std::hint::black_box(template.clone());
    });

    let reused = bind(&engine, FAULT, "{}");
    measure(
        "fault filter, reused instance, guest call setting two headers, start+call+drop",
        20_000,
        || {
            let mut req = template.clone();
            reused
                .start()
                .unwrap()
                .on_request_headers(&mut req)
                .unwrap();
        },
    );

    let isolated = bind(&engine, FAULT, r#"{"isolation":"per-request"}"#);
    measure(
        "fault filter, fresh instance per request, start+init+call+drop",
        5_000,
        || {
            let mut req = template.clone();
            isolated
                .start()
                .unwrap()
                .on_request_headers(&mut req)
                .unwrap();
        },
    );
}
