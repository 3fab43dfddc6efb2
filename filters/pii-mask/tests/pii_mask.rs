//! The built PII-mask component under the real engine. Build it first:
//! `cargo build --profile filter --target wasm32-wasip2 -p nantian-filter-pii-mask`.
//!
//! Each client API gets its request masked, its response masked, its stream masked
//! (cut into small chunks, read back the way its SDK reads it) and its rejection in its
//! own error shape.

mod common;

use bytes::Bytes;
use common::clients::{Streamed, anthropic_stream, ollama_stream, openai_stream};
use nantian_filter_testing::{
    BoundFilter, FilterUnderTest, Phases, RequestOutcome, WasmError, chunks_of,
};
use serde_json::{Value, json};

const OPENAI_STREAM: &[u8] = include_bytes!("fixtures/openai_stream.sse");
const ANTHROPIC_STREAM: &[u8] = include_bytes!("fixtures/anthropic_stream.sse");
const OLLAMA_STREAM: &[u8] = include_bytes!("fixtures/ollama_stream.ndjson");
/// The text of the fixture streams, masked.
const STREAM_MASKED: &str = "Sure! Write to [EMAIL] or call [PHONE]. Card: [CREDIT_CARD], \
    SSN [SSN], IP [IPV4] or [IPV6], IBAN [IBAN]. Ticket [EMPLOYEE_ID]. Paris — \"la Ville \
    Lumière\".";

const CONFIG: &str = r#"{"custom": [{"name": "employee_id", "pattern": "EMP-\\d{6}"}]}"#;

/// A user message with one of each kind, and what it becomes.
const USER_TEXT: &str = "I am john.doe@example.com, +44 20 7946 0958, card 4111-1111-1111-1111, \
    SSN 123-45-6789, from 10.1.2.3 / fe80::1ff:fe23:4567:890a, IBAN GB82WEST12345698765432, \
    badge EMP-654321.";
const USER_MASKED: &str = "I am [EMAIL], [PHONE], card [CREDIT_CARD], SSN [SSN], from [IPV4] \
    / [IPV6], IBAN [IBAN], badge [EMPLOYEE_ID].";
/// None of which may reach the other side.
const USER_VALUES: &[&str] = &[
    "john.doe@example.com",
    "7946 0958",
    "4111-1111",
    "123-45-6789",
    "10.1.2.3",
    "fe80::",
    "GB82WEST",
    "EMP-654321",
];

/// The component, compiled once for all tests.
fn filter() -> &'static FilterUnderTest {
    static FILTER: std::sync::OnceLock<FilterUnderTest> = std::sync::OnceLock::new();
    FILTER.get_or_init(|| FilterUnderTest::built("nantian-filter-pii-mask").unwrap())
}

fn bound(config: &str) -> BoundFilter {
    filter().bind(config).unwrap()
}

fn post(path: &str, body: &Value) -> http::Request<Bytes> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

fn assert_no_values(body: &[u8], values: &[&str]) {
    let text = String::from_utf8_lossy(body);
    for value in values {
        assert!(!text.contains(value), "{value} went through: {text}");
    }
}

fn openai_request() -> Value {
    json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [
                {"type": "text", "text": USER_TEXT},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "owner: jane@example.org"}
        ],
        "user": "user-1234",
        "stream": false
    })
}

fn anthropic_request() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "system": [{"type": "text", "text": "Escalate to ops@example.org."}],
        "messages": [
            {"role": "user", "content": USER_TEXT},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                    {"type": "text", "text": "owner: jane@example.org"}]},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                    "data": "iVBORw0KGgo="}}
            ]}
        ]
    })
}

fn ollama_request() -> Value {
    json!({
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Escalate to ops@example.org."},
            {"role": "user", "content": USER_TEXT, "images": ["iVBORw0KGgo="]}
        ],
        "stream": false
    })
}

#[test]
fn asks_only_for_the_phases_of_its_direction_and_reuses_instances() {
    let phases = |direction: &str| {
        let info = bound(&format!(r#"{{"direction": "{direction}"}}"#)).info();
        assert!(!info.per_request_isolation);
        info.phases
    };
    let all = Phases {
        request_headers: true,
        request_body: true,
        response_headers: true,
        response_body: true,
    };
    assert_eq!(phases("both"), all);
    assert_eq!(
        phases("request"),
        Phases {
            request_headers: true,
            request_body: true,
            ..Phases::default()
        }
    );
    assert_eq!(
        phases("response"),
        Phases {
            request_body: false,
            ..all
        }
    );
}

#[test]
fn invalid_configurations_are_refused_with_the_reason() {
    for (config, reason) in [
        (
            r#"{"detectors": ["email", "passport"]}"#,
            "unknown detector \"passport\"",
        ),
        (r#"{"action": "drop"}"#, "unknown action \"drop\""),
        (
            r#"{"custom": [{"name": "x", "pattern": "(unclosed"}]}"#,
            "custom \"x\": invalid pattern",
        ),
        (r#"{"direction": "up"}"#, "unknown direction"),
        ("not json", "pii-mask configuration"),
    ] {
        match filter().bind(config) {
            Err(WasmError::Config(message)) => {
                assert!(message.contains(reason), "{config}: {message}")
            }
            Err(other) => panic!("{config}: expected a config error, got {other}"),
            Ok(_) => panic!("{config}: accepted"),
        }
    }
}

/// The request masked for each API: the text fields, and nothing else.
#[test]
fn requests_are_masked_in_their_text_fields() {
    let filter = bound(CONFIG);
    for (path, request) in [
        ("/v1/chat/completions", openai_request()),
        ("/v1/messages", anthropic_request()),
        ("/api/chat", ollama_request()),
    ] {
        let forwarded = filter.request(post(path, &request)).unwrap().forwarded();
        let body = json_of(forwarded.body());
        assert_no_values(forwarded.body(), USER_VALUES);
        assert_no_values(forwarded.body(), &["jane@example.org", "ops@example.org"]);
        let mut expected = request.clone();
        match path {
            "/v1/chat/completions" => {
                expected["messages"][1]["content"][0]["text"] = json!(USER_MASKED);
                expected["messages"][2]["content"] = json!("owner: [EMAIL]");
            }
            "/v1/messages" => {
                expected["system"][0]["text"] = json!("Escalate to [EMAIL].");
                expected["messages"][0]["content"] = json!(USER_MASKED);
                expected["messages"][1]["content"][0]["content"][0]["text"] =
                    json!("owner: [EMAIL]");
            }
            _ => {
                expected["messages"][0]["content"] = json!("Escalate to [EMAIL].");
                expected["messages"][1]["content"] = json!(USER_MASKED);
            }
        }
        assert_eq!(body, expected, "{path}");
    }
}

#[test]
fn a_request_without_findings_is_forwarded_byte_for_byte() {
    let filter = bound(CONFIG);
    let body = "{\"messages\":[{\"role\":\"user\",\"content\":\"What is 2+2? Version 1.2.3, 12:30.\"}],\n  \"temperature\": 0.30, \"model\":\"gpt-4o\"}";
    let request = http::Request::post("/v1/chat/completions")
        .body(Bytes::from(body))
        .unwrap();
    let forwarded = filter.request(request).unwrap().forwarded();
    assert_eq!(forwarded.body(), body.as_bytes());
}

#[test]
fn a_request_body_in_many_chunks_is_held_and_masked_whole() {
    let filter = bound(CONFIG);
    let body = ollama_request().to_string();
    let request = http::Request::post("/ollama/api/chat")
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let forwarded = filter
        .request_chunked(request, chunks_of(body.as_bytes(), 5))
        .unwrap()
        .forwarded();
    assert_eq!(
        json_of(forwarded.body())["messages"][1]["content"],
        USER_MASKED
    );
}

#[test]
fn plain_text_and_other_paths_are_scanned_too() {
    let filter = bound(CONFIG);
    let request = http::Request::post("/v1/completions")
        .header("content-type", "text/plain")
        .body(Bytes::from("ping me at john.doe@example.com"))
        .unwrap();
    let forwarded = filter.request(request).unwrap().forwarded();
    assert_eq!(forwarded.body(), "ping me at [EMAIL]");

    let request = post(
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": ["call 415-555-2671"]}),
    );
    let forwarded = filter.request(request).unwrap().forwarded();
    assert_eq!(
        json_of(forwarded.body()),
        json!({"model": "text-embedding-3-small", "input": ["call [PHONE]"]})
    );
}

#[test]
fn binary_and_encoded_bodies_pass_unscanned() {
    let filter = bound(CONFIG);
    for (name, value) in [
        ("content-type", "multipart/form-data; boundary=x"),
        ("content-encoding", "gzip"),
    ] {
        let request = http::Request::post("/v1/chat/completions")
            .header(name, value)
            .body(Bytes::from("a@example.com"))
            .unwrap();
        let forwarded = filter.request(request).unwrap().forwarded();
        assert_eq!(forwarded.body(), "a@example.com", "{name}: {value}");
    }
}

fn rejected(filter: &BoundFilter, path: &str, request: &Value) -> (Value, http::Response<Bytes>) {
    let response = filter.request(post(path, request)).unwrap().responded();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_no_values(response.body(), USER_VALUES);
    (json_of(response.body()), response)
}

#[test]
fn reject_answers_400_in_each_apis_error_shape() {
    let filter = bound(r#"{"actions": {"credit_card": "reject", "ssn": "reject"}}"#);
    let message = "The request was blocked because it contains personal data: credit_card, ssn.";
    let (openai, _) = rejected(&filter, "/v1/chat/completions", &openai_request());
    assert_eq!(
        openai,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": null,
            "code": "pii_detected"}})
    );
    let (anthropic, _) = rejected(&filter, "/v1/messages", &anthropic_request());
    assert_eq!(
        anthropic,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
    );
    let (ollama, _) = rejected(&filter, "/api/chat", &ollama_request());
    assert_eq!(ollama, json!({"error": message}));

    // Only rejecting kinds reject: the rest is masked and forwarded.
    let request = json!({"model": "m", "messages": [{"role": "user", "content": "a@example.com"}]});
    let forwarded = filter
        .request(post("/api/chat", &request))
        .unwrap()
        .forwarded();
    assert_eq!(
        json_of(forwarded.body())["messages"][0]["content"],
        "[EMAIL]"
    );
}

#[test]
fn redact_writes_one_placeholder_for_everything() {
    let filter = bound(r#"{"action": "redact", "actions": {"email": "mask"}}"#);
    let request = json!({"messages": [{"role": "user", "content": "a@example.com 123-45-6789"}]});
    let forwarded = filter
        .request(post("/v1/chat/completions", &request))
        .unwrap()
        .forwarded();
    assert_eq!(
        json_of(forwarded.body())["messages"][0]["content"],
        "[EMAIL] [REDACTED]"
    );
}

fn json_response(body: &Value) -> http::Response<Bytes> {
    http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

#[test]
fn responses_are_masked_in_their_text_fields() {
    // `reject` masks in responses.
    let filter = bound(
        r#"{"custom": [{"name": "employee_id", "pattern": "EMP-\\d{6}"}],
            "actions": {"email": "reject"}}"#,
    );
    for (path, response, pointer) in [
        (
            "/v1/chat/completions",
            json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": USER_TEXT},
                    "finish_reason": "stop"}]}),
            "/choices/0/message/content",
        ),
        (
            "/v1/messages",
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
                "content": [{"type": "text", "text": USER_TEXT},
                    {"type": "tool_use", "id": "toolu_1", "name": "mail",
                        "input": {"to": "john.doe@example.com"}}],
                "stop_reason": "tool_use"}),
            "/content/0/text",
        ),
        (
            "/api/chat",
            json!({"model": "llama3.2", "created_at": "2025-03-10T01:25:50.1Z",
                "message": {"role": "assistant", "content": USER_TEXT}, "done": true}),
            "/message/content",
        ),
    ] {
        let exchange = filter
            .exchange(
                post(path, &json!({"messages": []})),
                json_response(&response),
            )
            .unwrap();
        let body = json_of(exchange.response.body());
        let mut expected = response.clone();
        *expected.pointer_mut(pointer).unwrap() = json!(USER_MASKED);
        assert_eq!(body, expected, "{path}");
        assert_eq!(exchange.response.status(), 200);
    }
}

#[test]
fn error_responses_are_masked_too() {
    let filter = bound(CONFIG);
    let upstream = http::Response::builder()
        .status(400)
        .header("content-type", "application/json")
        .body(Bytes::from(
            json!({"error": {"message": "Invalid user 'john.doe@example.com'", "type": "invalid_request_error"}})
                .to_string(),
        ))
        .unwrap();
    let exchange = filter
        .exchange(post("/v1/chat/completions", &json!({})), upstream)
        .unwrap();
    assert_eq!(exchange.response.status(), 400);
    assert_eq!(
        json_of(exchange.response.body())["error"]["message"],
        "Invalid user '[EMAIL]'"
    );
}

fn streamed(
    filter: &BoundFilter,
    path: &str,
    content_type: &str,
    fixture: &[u8],
    chunk_size: usize,
) -> Vec<u8> {
    let request = post(path, &json!({"stream": true}));
    let response = http::Response::builder()
        .status(200)
        .header("content-type", content_type)
        .body(())
        .unwrap();
    filter
        .response_chunked(request, response, chunks_of(fixture, chunk_size))
        .unwrap()
        .into_response()
        .into_body()
        .to_vec()
}

#[test]
fn streams_are_masked_for_each_api() {
    let filter = bound(CONFIG);
    for (path, content_type, fixture, client) in [
        (
            "/v1/chat/completions",
            "text/event-stream; charset=utf-8",
            OPENAI_STREAM,
            openai_stream as fn(&[u8]) -> Streamed,
        ),
        (
            "/v1/messages",
            "text/event-stream",
            ANTHROPIC_STREAM,
            anthropic_stream,
        ),
        (
            "/api/chat",
            "application/x-ndjson",
            OLLAMA_STREAM,
            ollama_stream,
        ),
    ] {
        let whole = streamed(&filter, path, content_type, fixture, fixture.len());
        let read = client(&whole);
        assert_eq!(read.text, STREAM_MASKED, "{path}");
        assert_eq!(read.text_at_end.as_deref(), Some(STREAM_MASKED), "{path}");
        assert_no_values(
            &whole,
            &[
                "john.doe@example.com",
                "555-2671",
                "4111 1111 1111 1111",
                "123-45-6789",
            ],
        );
        for chunk_size in [1, 3, 17, 64] {
            let chunked = streamed(&filter, path, content_type, fixture, chunk_size);
            assert!(chunked == whole, "{path} in chunks of {chunk_size}");
        }
    }
}

#[test]
fn instances_start_each_request_afresh() {
    let filter = bound(r#"{"actions": {"ssn": "reject"}}"#);
    // A rejection, a stream left unfinished, then a normal exchange on the same pool.
    for _ in 0..3 {
        rejected(
            &filter,
            "/api/chat",
            &json!({"messages": [{"role": "user", "content": "123-45-6789"}]}),
        );
        let half = &OPENAI_STREAM[..OPENAI_STREAM.len() / 2];
        streamed(
            &filter,
            "/v1/chat/completions",
            "text/event-stream",
            half,
            50,
        );
        let exchange = filter
            .exchange(
                post(
                    "/v1/messages",
                    &json!({"messages": [{"role": "user", "content": "hi a@example.com"}]}),
                ),
                json_response(&json!({"content": [{"type": "text", "text": "ok b@example.com"}]})),
            )
            .unwrap();
        let forwarded = exchange.forwarded.unwrap();
        assert_eq!(
            json_of(forwarded.body())["messages"][0]["content"],
            "hi [EMAIL]"
        );
        assert_eq!(
            json_of(exchange.response.body())["content"][0]["text"],
            "ok [EMAIL]"
        );
        assert_eq!(forwarded.headers()["accept-encoding"], "identity");
    }
}

#[test]
fn direction_limits_what_is_scanned() {
    let request = json!({"messages": [{"role": "user", "content": "a@example.com"}]});
    let response = json!({"message": {"role": "assistant", "content": "b@example.com"}});

    let requests_only = bound(r#"{"direction": "request"}"#);
    let exchange = requests_only
        .exchange(post("/api/chat", &request), json_response(&response))
        .unwrap();
    assert_eq!(
        json_of(exchange.forwarded.unwrap().body())["messages"][0]["content"],
        "[EMAIL]"
    );
    assert_eq!(json_of(exchange.response.body()), response);

    let responses_only = bound(r#"{"direction": "response"}"#);
    let exchange = responses_only
        .exchange(post("/api/chat", &request), json_response(&response))
        .unwrap();
    let forwarded = exchange.forwarded.unwrap();
    assert_eq!(json_of(forwarded.body()), request);
    assert_eq!(forwarded.headers()["accept-encoding"], "identity");
    assert_eq!(
        json_of(exchange.response.body())["message"]["content"],
        "[EMAIL]"
    );
}

#[test]
fn a_rejected_request_is_not_forwarded() {
    let filter = bound(r#"{"action": "reject"}"#);
    let outcome = filter
        .request(post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "fe80::1ff:fe23:4567:890a"}]}),
        ))
        .unwrap();
    assert!(matches!(outcome, RequestOutcome::Responded(_)));
    let forwarded = filter
        .request(post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "nothing personal"}]}),
        ))
        .unwrap()
        .forwarded();
    assert_eq!(
        json_of(forwarded.body())["messages"][0]["content"],
        "nothing personal"
    );
}

/// What `init` and scanning cost under the engine, for the crate docs. Run with
/// `cargo test --release -p nantian-filter-pii-mask --test pii_mask -- --ignored --nocapture costs`.
#[test]
#[ignore]
fn costs() {
    let filter = filter();
    let spec = |config: &str| nantian_filter_testing::BindingSpec {
        display_name: "costs".into(),
        config: config.as_bytes().to_vec(),
        timeout: Some(std::time::Duration::from_secs(10)),
        max_memory: Some(64 << 20),
    };
    for config in [
        "{}",
        r#"{"detectors": ["email"]}"#,
        r#"{"detectors": ["phone", "credit_card", "ssn", "ipv4", "ipv6", "iban"]}"#,
    ] {
        let start = std::time::Instant::now();
        filter.bind_with(spec(config)).unwrap();
        eprintln!("init {config}: {:?}", start.elapsed());
    }

    let bound = filter.bind_with(spec(CONFIG)).unwrap();
    for (name, paragraph) in [
        (
            "prose",
            "It was the best of times, it was the worst of times, it was the age of wisdom; ",
        ),
        (
            "digit-dense",
            "The quick brown fox jumps over the lazy dog 1234 times on 2024-08-06 at 12:30, v1.2.3; ",
        ),
    ] {
        for size in [256 << 10, 1 << 20] {
            let mut text = paragraph.repeat(size / paragraph.len());
            text.push_str(USER_TEXT);
            let request = post(
                "/v1/chat/completions",
                &json!({"messages": [{"role": "user", "content": text}]}),
            );
            let start = std::time::Instant::now();
            let forwarded = bound.request(request).unwrap().forwarded();
            eprintln!("request of {size} bytes of {name}: {:?}", start.elapsed());
            assert!(String::from_utf8_lossy(forwarded.body()).contains(USER_MASKED));
        }
    }

    // A stream of 4-character deltas, 16 KiB per chunk (about 180 events).
    let mut stream = String::new();
    let chars: Vec<char> = USER_TEXT.repeat(200).chars().collect();
    for delta in chars.chunks(4) {
        let delta: String = delta.iter().collect();
        stream += &format!(
            "{}\n",
            json!({"model": "m", "message": {"role": "assistant", "content": delta}, "done": false})
        );
    }
    stream += &format!(
        "{}\n",
        json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true})
    );
    let start = std::time::Instant::now();
    let out = streamed(
        &bound,
        "/api/chat",
        "application/x-ndjson",
        stream.as_bytes(),
        16 << 10,
    );
    let calls = stream.len().div_ceil(16 << 10);
    eprintln!(
        "stream of {} events in {calls} chunks: {:?}",
        chars.len().div_ceil(4) + 1,
        start.elapsed()
    );
    assert_eq!(ollama_stream(&out).text, USER_MASKED.repeat(200));
}
