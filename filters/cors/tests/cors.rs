//! The built CORS component under the real engine. Build it first:
//! `cargo build --profile filter --target wasm32-wasip2 -p nantian-filter-cors`.
//!
//! The `conformance_*` tests replay the requests of upstream's `HTTPRouteCORS` and
//! `HTTPRouteCORSAllowCredentialsBehavior` against the filter alone, with the routes'
//! filter settings from `httproute-cors*.yaml`.

use bytes::Bytes;
use nantian_filter_testing::{BoundFilter, FilterUnderTest, Phases, WasmError};

/// `cors-multiple-origins-methods-headers` (`/cors-1`).
const MULTIPLE: &str = r#"{"allowOrigins":["https://www.foo.com","https://*.bar.com"],
    "allowMethods":["GET","OPTIONS"],"allowHeaders":["x-header-1","x-header-2"],
    "exposeHeaders":["x-header-3","x-header-4"],"allowCredentials":true,"maxAge":3600}"#;
/// `cors-wildcard-methods` (`/cors-2`).
const WILDCARD_METHODS: &str = r#"{"allowOrigins":["https://www.foo.com"],"allowMethods":["*"]}"#;
/// `cors-wildcard-origin`.
const WILDCARD_ORIGIN: &str =
    r#"{"allowOrigins":["*"],"allowMethods":["PUT"],"allowCredentials":false}"#;
/// `cors-wildcard-methods-headers`, first rule (credentials) and second (`-unauth`).
const WILDCARD_ALL_CREDENTIALS: &str = r#"{"allowOrigins":["*"],"allowMethods":["*"],
    "allowHeaders":["*"],"allowCredentials":true}"#;
const WILDCARD_ALL: &str = r#"{"allowOrigins":["*"],"allowMethods":["*"],
    "allowHeaders":["*"],"allowCredentials":false}"#;

fn cors(config: &str) -> BoundFilter {
    FilterUnderTest::built("nantian-filter-cors")
        .unwrap()
        .bind(config)
        .unwrap()
}

fn request(method: &str, headers: &[(&str, &str)]) -> http::Request<Bytes> {
    let mut builder = http::Request::builder().method(method).uri("/cors");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Bytes::new()).unwrap()
}

fn upstream(headers: &[(&str, &str)]) -> http::Response<Bytes> {
    let mut builder = http::Response::builder().status(200);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Bytes::from_static(b"{}")).unwrap()
}

/// The filter's answer to a preflight it must answer itself.
fn preflight(filter: &BoundFilter, headers: &[(&str, &str)]) -> http::Response<Bytes> {
    filter
        .request(request("OPTIONS", headers))
        .unwrap()
        .responded()
}

/// The response to a request the filter lets through, after its response phase.
fn actual(filter: &BoundFilter, method: &str, headers: &[(&str, &str)]) -> http::Response<Bytes> {
    let exchange = filter
        .exchange(request(method, headers), upstream(&[]))
        .unwrap();
    assert!(exchange.forwarded.is_some(), "{method} was not forwarded");
    exchange.response
}

/// All values of `name`, joined like upstream's comparison (`strings.Join(values, ",")`).
fn joined(response: &http::Response<Bytes>, name: &str) -> Option<String> {
    let values: Vec<&str> = response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn assert_header(response: &http::Response<Bytes>, name: &str, expected: &str) {
    assert_eq!(
        joined(response, name).as_deref(),
        Some(expected),
        "{name} in {response:?}"
    );
}

fn assert_absent(response: &http::Response<Bytes>, name: &str) {
    assert_eq!(joined(response, name), None, "{name} in {response:?}");
}

#[test]
fn takes_part_in_both_header_phases_and_keeps_no_state() {
    let info = cors(WILDCARD_ORIGIN).info();
    assert_eq!(
        info.phases,
        Phases {
            request_headers: true,
            response_headers: true,
            ..Phases::default()
        }
    );
    assert!(!info.per_request_isolation);
}

#[test]
fn conformance_preflight_from_exact_and_wildcard_origins() {
    let filter = cors(MULTIPLE);
    for origin in [
        "https://www.foo.com",
        "https://www.bar.com",
        "https://xpto.www.bar.com",
    ] {
        let answer = preflight(
            &filter,
            &[
                ("Origin", origin),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-header-1, x-header-2"),
            ],
        );
        assert_eq!(answer.status(), 204);
        assert_header(&answer, "access-control-allow-origin", origin);
        assert_header(&answer, "access-control-allow-methods", "GET, OPTIONS");
        assert_header(
            &answer,
            "access-control-allow-headers",
            "x-header-1, x-header-2",
        );
        assert_header(
            &answer,
            "access-control-expose-headers",
            "x-header-3, x-header-4",
        );
        assert_header(&answer, "access-control-max-age", "3600");
        assert_header(&answer, "access-control-allow-credentials", "true");
        assert!(answer.body().is_empty());
        // Not JSON: upstream's round tripper must not take it for the echo server's reply.
        assert_absent(&answer, "content-type");
    }
}

#[test]
fn conformance_preflight_from_a_non_matching_origin_is_refused() {
    let answer = preflight(
        &cors(MULTIPLE),
        &[
            ("Origin", "https://foobar.com"),
            ("access-control-request-method", "GET"),
        ],
    );
    assert_eq!(answer.status(), 403);
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-max-age",
    ] {
        assert_absent(&answer, name);
    }
}

#[test]
fn conformance_simple_requests_get_the_origin_only_when_it_matches() {
    let filter = cors(MULTIPLE);
    for origin in ["https://www.foo.com", "https://www.bar.com"] {
        let response = actual(
            &filter,
            "GET",
            &[
                ("Origin", origin),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-header-1, x-header-2"),
            ],
        );
        assert_header(&response, "access-control-allow-origin", origin);
        assert_header(&response, "access-control-allow-credentials", "true");
        assert_header(
            &response,
            "access-control-expose-headers",
            "x-header-3, x-header-4",
        );
        assert_absent(&response, "access-control-allow-methods");
        assert_absent(&response, "access-control-max-age");
    }
    let refused = actual(
        &filter,
        "GET",
        &[
            ("Origin", "https://foobar.com"),
            ("access-control-request-method", "GET"),
        ],
    );
    assert_eq!(refused.status(), 200);
    assert_absent(&refused, "access-control-allow-origin");
    assert_absent(&refused, "access-control-allow-credentials");
}

#[test]
fn conformance_wildcard_methods_echo_the_requested_method_without_credentials() {
    let answer = preflight(
        &cors(WILDCARD_METHODS),
        &[
            ("Origin", "https://www.foo.com"),
            ("access-control-request-method", "POST"),
        ],
    );
    assert_eq!(answer.status(), 204);
    assert_header(&answer, "access-control-allow-methods", "POST");
    assert_header(
        &answer,
        "access-control-allow-origin",
        "https://www.foo.com",
    );
    assert_header(&answer, "access-control-max-age", "5");
    assert_absent(&answer, "access-control-allow-credentials");
    assert_absent(&answer, "access-control-allow-headers");
}

#[test]
fn conformance_wildcard_origin_echoes_the_origin_with_or_without_a_port() {
    let filter = cors(WILDCARD_ORIGIN);
    for origin in ["https://foobar.com", "https://foobar.com:12345"] {
        let answer = preflight(
            &filter,
            &[("Origin", origin), ("access-control-request-method", "PUT")],
        );
        assert_eq!(answer.status(), 204);
        assert_header(&answer, "access-control-allow-origin", origin);
        assert_header(&answer, "access-control-allow-methods", "PUT");
        assert_absent(&answer, "access-control-allow-credentials");

        let response = actual(&filter, "PUT", &[("Origin", origin)]);
        assert_header(&response, "access-control-allow-origin", origin);
        assert_absent(&response, "access-control-allow-credentials");
    }
}

#[test]
fn conformance_credentialed_wildcards_echo_the_request() {
    let preflight_headers = [
        ("Origin", "https://other.foo.com"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-header-1, x-header-2"),
    ];
    let answer = preflight(&cors(WILDCARD_ALL_CREDENTIALS), &preflight_headers);
    assert_eq!(answer.status(), 204);
    assert_header(
        &answer,
        "access-control-allow-origin",
        "https://other.foo.com",
    );
    assert_header(&answer, "access-control-allow-methods", "PUT");
    assert_header(
        &answer,
        "access-control-allow-headers",
        "x-header-1, x-header-2",
    );
    assert_header(&answer, "access-control-allow-credentials", "true");

    let unauth = preflight(&cors(WILDCARD_ALL), &preflight_headers);
    assert_eq!(unauth.status(), 204);
    assert_header(
        &unauth,
        "access-control-allow-origin",
        "https://other.foo.com",
    );
    assert_header(&unauth, "access-control-allow-methods", "PUT");
    assert_absent(&unauth, "access-control-allow-credentials");

    let cookie = [("Origin", "https://other.foo.com"), ("Cookie", "foo=bar")];
    let response = actual(&cors(WILDCARD_ALL_CREDENTIALS), "GET", &cookie);
    assert_header(
        &response,
        "access-control-allow-origin",
        "https://other.foo.com",
    );
    assert_header(&response, "access-control-allow-credentials", "true");
    let response = actual(&cors(WILDCARD_ALL), "GET", &cookie);
    assert_header(
        &response,
        "access-control-allow-origin",
        "https://other.foo.com",
    );
    assert_absent(&response, "access-control-allow-credentials");
}

/// `HTTPRouteCORSAllowCredentialsBehavior`.
#[test]
fn conformance_credentials_only_when_allowed_and_with_a_matching_origin() {
    let credentialed = |origin| {
        [
            ("Origin", origin),
            ("Cookie", "sid=abc123"),
            ("Authorization", "Bearer test"),
        ]
    };
    let creds_false = cors(r#"{"allowOrigins":["https://app.example"],"allowCredentials":false}"#);
    let creds_true = cors(r#"{"allowOrigins":["https://app.example"],"allowCredentials":true}"#);

    let response = actual(&creds_false, "GET", &credentialed("https://app.example"));
    assert_header(
        &response,
        "access-control-allow-origin",
        "https://app.example",
    );
    assert_absent(&response, "access-control-allow-credentials");

    let response = actual(&creds_true, "GET", &credentialed("http://not-app.example"));
    assert_absent(&response, "access-control-allow-origin");
    assert_absent(&response, "access-control-allow-credentials");

    let response = actual(&creds_true, "GET", &credentialed("https://app.example"));
    assert_header(&response, "access-control-allow-credentials", "true");
    assert_header(
        &response,
        "access-control-allow-origin",
        "https://app.example",
    );
}

#[test]
fn requests_without_origin_and_plain_options_go_to_the_backend() {
    let filter = cors(MULTIPLE);
    let response = actual(&filter, "GET", &[]);
    assert_absent(&response, "access-control-allow-origin");
    // An OPTIONS without Access-Control-Request-Method is not a preflight.
    let response = actual(&filter, "OPTIONS", &[("Origin", "https://www.foo.com")]);
    assert_header(
        &response,
        "access-control-allow-origin",
        "https://www.foo.com",
    );
    // Nor is one without Origin.
    let response = actual(
        &filter,
        "OPTIONS",
        &[("access-control-request-method", "GET")],
    );
    assert_absent(&response, "access-control-allow-origin");
}

#[test]
fn every_answer_varies_on_origin() {
    let filter = cors(MULTIPLE);
    let allowed = [
        ("Origin", "https://www.foo.com"),
        ("access-control-request-method", "GET"),
    ];
    let refused = [
        ("Origin", "https://foobar.com"),
        ("access-control-request-method", "GET"),
    ];
    for answer in [preflight(&filter, &allowed), preflight(&filter, &refused)] {
        assert_header(
            &answer,
            "vary",
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        );
    }
    assert_header(&actual(&filter, "GET", &allowed), "vary", "Origin");
    assert_header(&actual(&filter, "GET", &refused), "vary", "Origin");
    assert_header(&actual(&filter, "GET", &[]), "vary", "Origin");

    let vary = |existing: &[(&str, &str)]| {
        let response = filter
            .response(request("GET", &allowed), upstream(existing))
            .unwrap()
            .into_response();
        joined(&response, "vary")
    };
    assert_eq!(
        vary(&[("Vary", "Accept-Encoding")]).as_deref(),
        Some("Accept-Encoding,Origin")
    );
    assert_eq!(
        vary(&[("Vary", "accept-encoding, origin")]).as_deref(),
        Some("accept-encoding, origin")
    );
    assert_eq!(vary(&[("Vary", "*")]).as_deref(), Some("*"));
}

#[test]
fn the_policy_replaces_what_the_backend_said_for_allowed_origins() {
    let filter = cors(MULTIPLE);
    let response = filter
        .response(
            request("GET", &[("Origin", "https://www.bar.com")]),
            upstream(&[
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Expose-Headers", "x-other"),
            ]),
        )
        .unwrap()
        .into_response();
    assert_header(
        &response,
        "access-control-allow-origin",
        "https://www.bar.com",
    );
    assert_header(
        &response,
        "access-control-expose-headers",
        "x-header-3, x-header-4",
    );
}

#[test]
fn credentialed_expose_wildcard_lists_the_response_headers() {
    let filter = cors(
        r#"{"allowOrigins":["https://a.example"],"exposeHeaders":["*"],"allowCredentials":true}"#,
    );
    let response = filter
        .response(
            request("GET", &[("Origin", "https://a.example")]),
            upstream(&[("X-Trace", "1"), ("Content-Type", "text/plain")]),
        )
        .unwrap()
        .into_response();
    let exposed = joined(&response, "access-control-expose-headers").unwrap();
    let names: Vec<&str> = exposed.split(", ").collect();
    assert!(names.contains(&"x-trace"), "{exposed}");
    assert!(names.contains(&"content-type"), "{exposed}");
    assert!(!names.contains(&"*"), "{exposed}");

    let open = cors(r#"{"allowOrigins":["https://a.example"],"exposeHeaders":["*"]}"#);
    let response = actual(&open, "GET", &[("Origin", "https://a.example")]);
    assert_header(&response, "access-control-expose-headers", "*");
}

#[test]
fn origins_match_on_scheme_host_and_port() {
    let filter = cors(r#"{"allowOrigins":["https://www.foo.com","http://*.bar.com:8080"]}"#);
    let allowed = |origin: &str| {
        let response = actual(&filter, "GET", &[("Origin", origin)]);
        joined(&response, "access-control-allow-origin").is_some()
    };
    assert!(allowed("https://www.foo.com:443"));
    assert!(allowed("HTTPS://WWW.FOO.COM"));
    assert!(allowed("http://a.b.bar.com:8080"));
    assert!(!allowed("http://www.foo.com"));
    assert!(!allowed("http://a.bar.com"));
    assert!(!allowed("http://bar.com:8080"));
    assert!(!allowed("null"));
}

#[test]
fn invalid_configuration_is_rejected_with_a_reason() {
    let filter = FilterUnderTest::built("nantian-filter-cors").unwrap();
    for (config, reason) in [
        ("{not json", "not valid"),
        (r#"{"allowOrigin":["*"]}"#, "unknown field"),
        (
            r#"{"allowOrigins":["https://a.com/path"]}"#,
            "invalid origin",
        ),
        (r#"{"allowMethods":["GET,PUT"]}"#, "invalid method"),
        (r#"{"exposeHeaders":["x y"]}"#, "invalid header name"),
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

#[test]
fn one_binding_serves_many_requests() {
    let filter = cors(MULTIPLE);
    for n in 0..50 {
        let origin = if n % 2 == 0 {
            "https://www.foo.com"
        } else {
            "https://foobar.com"
        };
        let response = actual(&filter, "GET", &[("Origin", origin)]);
        assert_eq!(
            joined(&response, "access-control-allow-origin").is_some(),
            n % 2 == 0
        );
    }
}
