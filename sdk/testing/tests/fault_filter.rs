//! The harness itself, driven with the test-only fault filter (built by
//! `cargo build --profile filter --target wasm32-wasip2 -p nantian-filter-fault`).

use bytes::Bytes;
use nantian_filter_testing::{
    BindingSpec, CounterScope, FilterError, FilterUnderTest, RequestOutcome, ResponseOutcome,
    WasmError, chunks_of,
};

fn fault() -> FilterUnderTest {
    FilterUnderTest::built("nantian-filter-fault").unwrap()
}

fn get(headers: &[(&str, &str)]) -> http::Request<Bytes> {
    let mut builder = http::Request::get("/path");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Bytes::new()).unwrap()
}

#[test]
fn request_is_forwarded_with_mutations() {
    let bound = fault().bind("{}").unwrap();
    let forwarded = bound.request(get(&[])).unwrap().forwarded();
    assert_eq!(forwarded.headers()["x-fault-filter"], "ok");
    assert_eq!(forwarded.uri(), "/path");
}

#[test]
fn local_response_is_an_http_response() {
    let bound = fault().bind("{}").unwrap();
    let response = bound
        .request(get(&[("x-fault", "respond")]))
        .unwrap()
        .responded();
    assert_eq!(response.status(), 418);
    assert_eq!(response.headers()["x-fault-filter"], "responded");
    assert_eq!(response.body(), "short and stout");
}

#[test]
fn request_body_chunks_are_rewritten_and_joined() {
    let bound = fault().bind(r#"{"phase":"request-body"}"#).unwrap();
    let request = http::Request::post("/").body(()).unwrap();
    let outcome = bound
        .request_chunked(request, chunks_of(b"hello world", 4))
        .unwrap();
    assert_eq!(outcome.forwarded().body(), "HELLO WORLD");
}

#[test]
fn response_phases_modify_or_replace_the_response() {
    let headers_filter = fault().bind(r#"{"phase":"response-headers"}"#).unwrap();
    let upstream = http::Response::builder()
        .status(200)
        .body(Bytes::from_static(b"body"))
        .unwrap();
    match headers_filter.response(get(&[]), upstream).unwrap() {
        ResponseOutcome::Forwarded(response) => {
            assert_eq!(response.headers()["x-fault-filter"], "ok");
            assert_eq!(response.body(), "body");
        }
        other => panic!("expected the response to be forwarded, got {other:?}"),
    }

    let body_filter = fault().bind(r#"{"phase":"response-body"}"#).unwrap();
    let upstream = http::Response::builder().status(200).body(()).unwrap();
    let chunks = vec![
        Bytes::from_static(b"data: a\n\n"),
        Bytes::from_static(b"data: b\n\n"),
    ];
    let response = body_filter
        .response_chunked(get(&[]), upstream, chunks)
        .unwrap()
        .into_response();
    assert_eq!(response.body(), "DATA: A\n\nDATA: B\n\n");

    let upstream = http::Response::builder()
        .status(200)
        .body(Bytes::new())
        .unwrap();
    let outcome = body_filter
        .response(get(&[("x-fault", "respond")]), upstream)
        .unwrap();
    assert!(matches!(outcome, ResponseOutcome::Replaced(r) if r.status() == 418));
}

#[test]
fn exchange_runs_both_directions_on_one_instance() {
    let bound = fault()
        .bind(r#"{"phase":"response-headers","isolation":"per-request"}"#)
        .unwrap();
    let upstream = http::Response::builder()
        .status(200)
        .body(Bytes::new())
        .unwrap();
    let exchange = bound.exchange(get(&[]), upstream).unwrap();
    assert_eq!(exchange.forwarded.unwrap().uri(), "/path");
    assert_eq!(exchange.response.headers()["x-fault-calls"], "1");

    let request_filter = fault().bind("{}").unwrap();
    let upstream = http::Response::builder()
        .status(200)
        .body(Bytes::new())
        .unwrap();
    let exchange = request_filter
        .exchange(get(&[("x-fault", "respond")]), upstream)
        .unwrap();
    assert!(exchange.forwarded.is_none());
    assert_eq!(exchange.response.status(), 418);
}

#[test]
fn failures_surface_as_filter_errors() {
    let bound = fault().bind("{}").unwrap();
    assert!(matches!(
        bound.request(get(&[("x-fault", "trap")])),
        Err(FilterError::Trap(_))
    ));
    assert!(matches!(
        bound.request(get(&[])),
        Ok(RequestOutcome::Forwarded(_))
    ));
    assert!(matches!(
        fault().bind(r#"{"fail-init":"x"}"#),
        Err(WasmError::Config(_))
    ));
}

#[test]
fn bindings_with_one_counter_scope_share_counts() {
    let fault = fault();
    let spec = || BindingSpec {
        config: b"{}".to_vec(),
        ..Default::default()
    };
    let first = fault
        .bind_with_counters(spec(), CounterScope::local("policy"))
        .unwrap();
    let second = fault
        .bind_with_counters(spec(), CounterScope::local("policy"))
        .unwrap();
    let private = fault.bind_with(spec()).unwrap();
    let count = |bound: &nantian_filter_testing::BoundFilter| {
        let forwarded = bound
            .request(get(&[("x-fault", "count")]))
            .unwrap()
            .forwarded();
        forwarded.headers()["x-fault-count"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(count(&first), "1");
    assert_eq!(count(&second), "2");
    assert_eq!(count(&private), "1");
}
