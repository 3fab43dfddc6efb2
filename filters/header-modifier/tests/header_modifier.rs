//! The built header-modifier component under the real engine. Build it first:
//! `cargo build --profile filter --target wasm32-wasip2 -p nantian-filter-header-modifier`.

use bytes::Bytes;
use nantian_filter_testing::{BoundFilter, FilterUnderTest, Phases, WasmError};

fn modifier(config: &str) -> BoundFilter {
    FilterUnderTest::built("nantian-filter-header-modifier")
        .unwrap()
        .bind(config)
        .unwrap()
}

fn request(headers: &[(&str, &str)]) -> http::Request<Bytes> {
    let mut builder = http::Request::get("/");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Bytes::new()).unwrap()
}

fn response(headers: &[(&str, &str)]) -> http::Response<Bytes> {
    let mut builder = http::Response::builder().status(200);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Bytes::new()).unwrap()
}

fn values(headers: &http::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn forward(filter: &BoundFilter, headers: &[(&str, &str)]) -> http::HeaderMap {
    filter
        .request(request(headers))
        .unwrap()
        .forwarded()
        .headers()
        .clone()
}

#[test]
fn set_replaces_every_existing_value_whatever_its_case() {
    let filter = modifier(
        r#"{"request":{"set":[{"name":"X-Header-Set","value":"set-overwrites-values"}]}}"#,
    );
    let headers = forward(
        &filter,
        &[
            ("x-header-set", "one"),
            ("X-HEADER-SET", "two"),
            ("other", "o"),
        ],
    );
    assert_eq!(values(&headers, "x-header-set"), ["set-overwrites-values"]);
    assert_eq!(values(&headers, "other"), ["o"]);
    let headers = forward(&filter, &[]);
    assert_eq!(values(&headers, "X-Header-Set"), ["set-overwrites-values"]);
}

#[test]
fn add_appends_a_value() {
    let filter =
        modifier(r#"{"request":{"add":[{"name":"X-Header-Add","value":"add-appends-values"}]}}"#);
    let headers = forward(&filter, &[("x-header-add", "some-other-value")]);
    assert_eq!(
        values(&headers, "x-header-add"),
        ["some-other-value", "add-appends-values"]
    );
    let headers = forward(&filter, &[]);
    assert_eq!(values(&headers, "x-header-add"), ["add-appends-values"]);
}

#[test]
fn remove_drops_every_value() {
    let filter = modifier(r#"{"request":{"remove":["X-Header-Remove"]}}"#);
    let headers = forward(
        &filter,
        &[
            ("x-header-remove", "a"),
            ("X-Header-Remove", "b"),
            ("keep", "k"),
        ],
    );
    assert!(values(&headers, "x-header-remove").is_empty());
    assert_eq!(values(&headers, "keep"), ["k"]);
}

#[test]
fn response_modifier_changes_the_response_only() {
    let filter = modifier(
        r#"{"response":{"set":[{"name":"X-Set","value":"s"}],"add":[{"name":"X-Add","value":"a"}],"remove":["X-Remove"]}}"#,
    );
    assert_eq!(
        filter.binding().active_phases(),
        Phases {
            response_headers: true,
            ..Phases::default()
        }
    );
    assert!(!filter.info().per_request_isolation);
    let upstream = response(&[("x-set", "old"), ("x-add", "first"), ("x-remove", "r")]);
    let headers = filter
        .response(request(&[("x-set", "request")]), upstream)
        .unwrap()
        .into_response();
    assert_eq!(values(headers.headers(), "x-set"), ["s"]);
    assert_eq!(values(headers.headers(), "x-add"), ["first", "a"]);
    assert!(values(headers.headers(), "x-remove").is_empty());
    // The request is not the response modifier's business.
    let forwarded = forward(&filter, &[("x-set", "request")]);
    assert_eq!(values(&forwarded, "x-set"), ["request"]);
}

#[test]
fn declared_changes_follow_the_configuration_and_the_guest_is_never_entered() {
    let request_only = modifier(r#"{"request":{"remove":["a"]}}"#);
    // Every change is declared at init: the host makes it, no phase calls the guest.
    assert_eq!(request_only.info().phases, Phases::default());
    assert_eq!(
        request_only.binding().active_phases(),
        Phases {
            request_headers: true,
            ..Phases::default()
        }
    );
    let both = modifier(r#"{"request":{"remove":["a"]},"response":{"remove":["b"]}}"#);
    assert_eq!(
        both.binding().active_phases(),
        Phases {
            request_headers: true,
            response_headers: true,
            ..Phases::default()
        }
    );
    let nothing = modifier(r#"{"request":{},"response":{"set":[]}}"#);
    assert_eq!(nothing.binding().active_phases(), Phases::default());
}

#[test]
fn invalid_configuration_is_rejected_with_a_reason() {
    let filter = FilterUnderTest::built("nantian-filter-header-modifier").unwrap();
    for (config, reason) in [
        ("{not json", "not valid"),
        (
            r#"{"request":{"set":[{"name":"X","value":"v","extra":1}]}}"#,
            "unknown field",
        ),
        (r#"{"headers":{}}"#, "unknown field"),
        (
            r#"{"request":{"set":[{"name":"X Bad","value":"v"}]}}"#,
            "invalid header name",
        ),
        (r#"{"response":{"remove":["a:b"]}}"#, "invalid header name"),
        (
            r#"{"request":{"add":[{"name":"X","value":"line\r\nbreak"}]}}"#,
            "control characters",
        ),
    ] {
        match filter.bind(config) {
            Err(WasmError::Config(message)) => {
                assert!(message.contains(reason), "{config}: {message}")
            }
            Err(other) => panic!("{config}: expected a config error, got {other}"),
            Ok(_) => panic!("{config}: accepted"),
        }
    }
}

/// Gateway API conformance `HTTPRouteRequestHeaderModifier`, rule `/multiple`.
#[test]
fn conformance_multiple_operations() {
    let filter = modifier(
        r#"{"request":{
            "set":[{"name":"X-Header-Set-1","value":"header-set-1"},{"name":"X-Header-Set-2","value":"header-set-2"}],
            "add":[{"name":"X-Header-Add-1","value":"header-add-1"},{"name":"X-Header-Add-2","value":"header-add-2"},{"name":"X-Header-Add-3","value":"header-add-3"}],
            "remove":["X-Header-Remove-1","X-Header-Remove-2"]}}"#,
    );
    let headers = forward(
        &filter,
        &[
            ("X-Header-Set-2", "set-val"),
            ("X-Header-Add-2", "add-val"),
            ("X-Header-Remove-2", "remove-val"),
            ("Another-Header", "another-header-val"),
        ],
    );
    assert_eq!(values(&headers, "x-header-set-1"), ["header-set-1"]);
    assert_eq!(values(&headers, "x-header-set-2"), ["header-set-2"]);
    assert_eq!(values(&headers, "x-header-add-1"), ["header-add-1"]);
    assert_eq!(
        values(&headers, "x-header-add-2"),
        ["add-val", "header-add-2"]
    );
    assert_eq!(values(&headers, "x-header-add-3"), ["header-add-3"]);
    assert_eq!(values(&headers, "another-header"), ["another-header-val"]);
    assert!(values(&headers, "x-header-remove-1").is_empty());
    assert!(values(&headers, "x-header-remove-2").is_empty());
}

/// Gateway API conformance `HTTPRouteRequestHeaderModifier`, rule `/case-insensitivity`.
#[test]
fn conformance_case_insensitivity() {
    let filter = modifier(
        r#"{"request":{"set":[{"name":"X-Header-Set","value":"header-set"}],
            "add":[{"name":"X-Header-Add","value":"header-add"}],"remove":["X-Header-Remove"]}}"#,
    );
    let headers = forward(
        &filter,
        &[
            ("x-header-set", "original-val-set"),
            ("x-header-add", "original-val-add"),
            ("x-header-remove", "original-val-remove"),
            ("Another-Header", "another-header-val"),
        ],
    );
    assert_eq!(values(&headers, "X-Header-Set"), ["header-set"]);
    assert_eq!(
        values(&headers, "X-Header-Add"),
        ["original-val-add", "header-add"]
    );
    assert_eq!(values(&headers, "another-header"), ["another-header-val"]);
    assert!(values(&headers, "x-header-remove").is_empty());
}

#[test]
fn one_binding_serves_many_requests() {
    let filter = modifier(r#"{"request":{"add":[{"name":"x-n","value":"1"}]}}"#);
    for _ in 0..50 {
        assert_eq!(values(&forward(&filter, &[]), "x-n"), ["1"]);
    }
}
