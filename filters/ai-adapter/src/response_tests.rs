//! Response plans: which head changes and body handling each response gets.

use super::*;
use crate::test_clients as clients;

fn exchange(client: Api, provider: Api, stream: bool) -> Exchange {
    Exchange {
        client,
        provider,
        ctx: ResponseContext::new(1_741_570_283_000, 1),
        stream,
        stream_usage: false,
    }
}

fn head(status: u16, content_type: Option<&str>) -> ResponseHead<'_> {
    ResponseHead {
        status,
        content_type,
    }
}

/// Runs a whole body through a plan in chunks of `size`; the client's bytes.
fn run_body(
    exchange: &Exchange,
    head: &ResponseHead<'_>,
    body: &[u8],
    size: usize,
) -> (BodyOutcome, Usage) {
    let (mut plan, _) = ResponsePlan::new(exchange, head);
    let mut usage = Usage::default();
    let mut generated = Generated::default();
    let chunks: Vec<&[u8]> = body.chunks(size).collect();
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i == chunks.len() - 1;
        match plan.on_body(exchange, chunk.to_vec(), last, &mut usage, &mut generated) {
            BodyOutcome::Replace(bytes) => out.extend(bytes),
            BodyOutcome::Continue => out.extend_from_slice(chunk),
            fail @ BodyOutcome::Fail { .. } => return (fail, usage),
        }
    }
    (BodyOutcome::Replace(out), usage)
}

fn replaced(outcome: BodyOutcome) -> Vec<u8> {
    match outcome {
        BodyOutcome::Replace(bytes) => bytes,
        other => panic!("expected a body, got {other:?}"),
    }
}

#[test]
fn head_changes_follow_the_client_api() {
    let (_, changes) = ResponsePlan::new(
        &exchange(Api::OpenAi, Api::Anthropic, true),
        &head(200, Some("text/event-stream; charset=utf-8")),
    );
    assert_eq!(
        changes,
        HeadChanges {
            status: None,
            content_type: Some("text/event-stream"),
            remove_content_length: true
        }
    );
    let (_, changes) = ResponsePlan::new(
        &exchange(Api::Ollama, Api::OpenAi, true),
        &head(200, Some("text/event-stream")),
    );
    assert_eq!(changes.content_type, Some("application/x-ndjson"));
    let (_, changes) = ResponsePlan::new(
        &exchange(Api::Anthropic, Api::Ollama, false),
        &head(200, Some("application/json; charset=utf-8")),
    );
    assert_eq!(changes.content_type, Some("application/json"));
}

#[test]
fn errors_keep_their_status_unless_the_client_does_not_know_it() {
    let overloaded = head(529, Some("application/json"));
    let (_, changes) = ResponsePlan::new(&exchange(Api::OpenAi, Api::Anthropic, true), &overloaded);
    assert_eq!(changes.status, Some(503));
    assert_eq!(changes.content_type, Some("application/json"));
    let (_, changes) =
        ResponsePlan::new(&exchange(Api::Ollama, Api::OpenAi, false), &head(429, None));
    assert_eq!(changes.status, None);
    // A proxy's HTML error page passes as it is.
    let html = head(502, Some("text/html"));
    let exchange = exchange(Api::Anthropic, Api::OpenAi, false);
    let (plan, changes) = ResponsePlan::new(&exchange, &html);
    assert!(matches!(plan, ResponsePlan::Untouched));
    assert_eq!(changes, HeadChanges::default());
}

#[test]
fn provider_errors_are_rewritten_in_the_clients_shape() {
    let error = include_bytes!("../tests/fixtures/anthropic_error_529.json");
    let ex = exchange(Api::OpenAi, Api::Anthropic, true);
    let (outcome, _) = run_body(&ex, &head(529, Some("application/json")), error, 5);
    let (kind, message, _) = clients::openai_error(&replaced(outcome));
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("server_error", "Overloaded")
    );

    let error = include_bytes!("../tests/fixtures/openai_error_429.json");
    let ex = exchange(Api::Ollama, Api::OpenAi, false);
    let (outcome, _) = run_body(&ex, &head(429, Some("application/json")), error, 1000);
    assert!(clients::ollama_error(&replaced(outcome)).starts_with("Rate limit reached"));
}

#[test]
fn same_api_responses_pass_and_their_usage_is_read() {
    let fixture = include_bytes!("../tests/fixtures/anthropic_response.json");
    let ex = exchange(Api::Anthropic, Api::Anthropic, false);
    let json = head(200, Some("application/json"));
    let (plan, changes) = ResponsePlan::new(&ex, &json);
    assert!(matches!(plan, ResponsePlan::Observe(_)));
    assert_eq!(changes, HeadChanges::default());
    let (outcome, usage) = run_body(&ex, &json, fixture, 100);
    assert_eq!(replaced(outcome), fixture);
    assert_eq!((usage.input(), usage.output()), (19, 14));
    // Same-API errors are not touched.
    let (plan, _) = ResponsePlan::new(&ex, &head(529, Some("application/json")));
    assert!(matches!(plan, ResponsePlan::Untouched));
}

#[test]
fn a_whole_response_is_replayed_as_a_stream_when_the_client_asked_for_one() {
    let fixture = include_bytes!("../tests/fixtures/ollama_response_tools.json");
    let ex = Exchange {
        stream_usage: true,
        ..exchange(Api::OpenAi, Api::Ollama, true)
    };
    let (outcome, usage) = run_body(&ex, &head(200, Some("application/json")), fixture, 64);
    let streamed = clients::openai_stream(&replaced(outcome));
    assert!(streamed.usage_chunk);
    assert_eq!(streamed.message.tool_calls.len(), 2);
    assert_eq!(streamed.message.finish, "tool_calls");
    assert_eq!((usage.input(), usage.output()), (82, 49));
}

#[test]
fn a_stream_is_collected_when_the_client_did_not_ask_for_one() {
    let fixture = include_bytes!("../tests/fixtures/anthropic_stream.sse");
    let ex = exchange(Api::Ollama, Api::Anthropic, false);
    let (outcome, usage) = run_body(&ex, &head(200, Some("text/event-stream")), fixture, 50);
    let message = clients::ollama_response(&replaced(outcome));
    assert!(message.text.starts_with("The capital of France"));
    assert_eq!((usage.input(), usage.output()), (19, 14));
}

#[test]
fn unreadable_responses_fail_with_a_502_in_the_clients_shape() {
    let ex = exchange(Api::Anthropic, Api::OpenAi, false);
    let (outcome, _) = run_body(
        &ex,
        &head(200, Some("application/json")),
        b"{\"choices\": 7}",
        4,
    );
    let BodyOutcome::Fail { status, body } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(status, 502);
    let (kind, message) = clients::anthropic_error(&body);
    assert_eq!(kind, "api_error");
    assert!(
        message.contains("openai backend's response could not be read"),
        "{message}"
    );

    let truncated = &include_bytes!("../tests/fixtures/openai_stream.sse")[..300];
    let ex = exchange(Api::Ollama, Api::OpenAi, false);
    let (outcome, _) = run_body(&ex, &head(200, Some("text/event-stream")), truncated, 100);
    assert!(
        matches!(outcome, BodyOutcome::Fail { status: 502, .. }),
        "{outcome:?}"
    );
}

#[test]
fn streamed_is_told_by_content_type_then_by_the_request() {
    assert!(is_streamed(Some("text/event-stream"), false));
    assert!(is_streamed(Some("Application/X-NDJSON"), false));
    assert!(!is_streamed(Some("application/json; charset=utf-8"), true));
    assert!(is_streamed(None, true));
    assert!(!is_streamed(Some("text/plain"), false));
    assert!(is_json("application/problem+json"));
    assert!(!is_json("text/html; charset=utf-8"));
}
