//! Token accounting through the built component: the `ai.*` request attributes it sets
//! at the end of the request (model, prompt estimate) and of the response (input and
//! output tokens, and where they come from), for every client and provider API,
//! streamed or not, with and without the provider's usage.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nantian_filter_testing::{BindingSpec, FilterUnderTest};
use serde_json::Value;

const MODEL: &str = "ai.model";
const ESTIMATED: &str = "ai.estimated_input_tokens";
const INPUT: &str = "ai.input_tokens";
const OUTPUT: &str = "ai.output_tokens";
const SOURCE: &str = "ai.usage_source";

fn llm_api(api: Api) -> nantian_llm_tokens::Api {
    nantian_llm_tokens::Api::from_name(api.name).unwrap()
}

/// The prompt estimate of a client's body, computed natively.
fn estimate(client: Api, body: &[u8]) -> u64 {
    nantian_llm_tokens::estimate_request_body(llm_api(client), body).unwrap()
}

fn stream_file(provider: Api, tools: bool) -> Vec<u8> {
    let extension = if provider == OLLAMA { "ndjson" } else { "sse" };
    let name = if tools { "stream_tools" } else { "stream" };
    provider.fixture(&format!("{name}.{extension}"))
}

/// The provider's stream with every token count taken out: OpenAI's usage chunk,
/// Anthropic's `usage` objects, Ollama's eval counts.
fn without_usage(provider: Api, stream: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(stream.to_vec()).unwrap();
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let (prefix, data) = match line.strip_prefix("data: ") {
            Some(data) => ("data: ", data),
            None if provider == OLLAMA => ("", line),
            None => {
                out.push_str(line);
                continue;
            }
        };
        let Ok(mut event) = serde_json::from_str::<Value>(data.trim_end()) else {
            out.push_str(line);
            continue;
        };
        match provider.name {
            "openai" => {
                if event["choices"].as_array().is_some_and(Vec::is_empty) {
                    continue;
                }
                event.as_object_mut().unwrap().remove("usage");
            }
            "anthropic" => {
                if let Some(message) = event.get_mut("message").and_then(Value::as_object_mut) {
                    message.remove("usage");
                }
                event.as_object_mut().unwrap().remove("usage");
            }
            _ => {
                let event = event.as_object_mut().unwrap();
                event.remove("prompt_eval_count");
                event.remove("eval_count");
            }
        }
        out.push_str(prefix);
        out.push_str(&event.to_string());
        out.push('\n');
    }
    assert!(
        !out.contains("_tokens\":") && !out.contains("eval_count"),
        "{out}"
    );
    out.into_bytes()
}

fn streaming_request(client: Api) -> Vec<u8> {
    with_stream(&client.fixture("request.json"), true)
}

fn attribute_u64(call: &Call, name: &str) -> u64 {
    let value = call
        .attribute(name)
        .unwrap_or_else(|| panic!("{name} is not set: {:?}", call.attributes));
    value.parse().unwrap()
}

#[test]
fn the_request_end_sets_the_model_and_the_prompt_estimate() {
    for client in APIS {
        for provider in APIS {
            let what = format!("{} → {}", client.name, provider.name);
            let body = streaming_request(client);
            let call = call(
                &adapter(provider),
                post(client.path, &body),
                Upstream::new(
                    200,
                    provider.stream_content_type(),
                    &stream_file(provider, false),
                    64,
                ),
            );
            let model = json(&body)["model"].as_str().unwrap().to_owned();
            assert_eq!(
                call.request_attribute(MODEL),
                Some(model.as_str()),
                "{what}"
            );
            let expected = estimate(client, &body);
            assert_eq!(
                call.request_attribute(ESTIMATED),
                Some(expected.to_string().as_str()),
                "{what}"
            );
            // The fixtures hold a system prompt, a question with an image, a tool call and
            // its result, and a tool definition: well past a bare question.
            assert!(expected > 100, "{what}: {expected}");
            // No response counts before the response.
            assert_eq!(call.request_attribute(INPUT), None, "{what}");
        }
    }
}

#[test]
fn streams_with_the_providers_usage_report_its_counts() {
    for client in APIS {
        for provider in APIS {
            for size in [7, 1 << 20] {
                let what = format!("{} ← {} in chunks of {size}", client.name, provider.name);
                let call = call(
                    &adapter(provider),
                    post(client.path, &streaming_request(client)),
                    Upstream::new(
                        200,
                        provider.stream_content_type(),
                        &stream_file(provider, false),
                        size,
                    ),
                );
                assert_eq!(call.response.status(), 200, "{what}");
                assert_eq!(
                    attribute_u64(&call, INPUT),
                    TEXT_ANSWER.input_tokens,
                    "{what}"
                );
                assert_eq!(
                    attribute_u64(&call, OUTPUT),
                    TEXT_ANSWER.output_tokens,
                    "{what}"
                );
                assert_eq!(call.attribute(SOURCE), Some("provider"), "{what}");
            }
        }
    }
}

#[test]
fn streams_without_usage_report_estimates() {
    let text_tokens = nantian_llm_tokens::count_text(TEXT);
    for client in APIS {
        for provider in APIS {
            let what = format!("{} ← {}", client.name, provider.name);
            let request = streaming_request(client);
            let call = call(
                &adapter(provider),
                post(client.path, &request),
                Upstream::new(
                    200,
                    provider.stream_content_type(),
                    &without_usage(provider, &stream_file(provider, false)),
                    13,
                ),
            );
            // (The clients' readers want usage in the stream: only its text is checked.)
            assert_eq!(call.response.status(), 200, "{what}");
            let body = String::from_utf8_lossy(call.body());
            assert!(
                body.contains("Paris") && !body.contains("error"),
                "{what}: {body}"
            );
            assert_eq!(call.attribute(SOURCE), Some("estimate"), "{what}");
            assert_eq!(
                attribute_u64(&call, INPUT),
                estimate(client, &request),
                "{what}"
            );
            assert_eq!(attribute_u64(&call, OUTPUT), text_tokens, "{what}");
        }
    }
    // The provider said 14 tokens for this text (its own count, on its side of the
    // template); the estimate is the text's BPE count.
    assert!((12..=14).contains(&text_tokens), "{text_tokens}");
}

#[test]
fn tool_call_streams_without_usage_count_the_calls() {
    for client in APIS {
        for provider in APIS {
            let what = format!("{} ← {}", client.name, provider.name);
            let expected = streamed_tools_answer(provider);
            // The arguments count as the provider streamed them: compact JSON, or with a
            // space after each `:` and `,` (OpenAI's and Anthropic's fixtures).
            let generated = |spaced: bool| {
                let mut text = expected.text.to_owned();
                for (name, arguments) in expected.tools {
                    text.push_str(name);
                    if spaced {
                        text.push_str(&arguments.replace("\":", "\": ").replace("\",\"", "\", \""));
                    } else {
                        text.push_str(arguments);
                    }
                }
                nantian_llm_tokens::count_text(&text)
            };
            let call = call(
                &adapter(provider),
                post(client.path, &streaming_request(client)),
                Upstream::new(
                    200,
                    provider.stream_content_type(),
                    &without_usage(provider, &stream_file(provider, true)),
                    29,
                ),
            );
            assert_eq!(call.attribute(SOURCE), Some("estimate"), "{what}");
            let output = attribute_u64(&call, OUTPUT);
            let (compact, spaced) = (generated(false), generated(true));
            assert!(
                output == compact || output == spaced,
                "{what}: {output}, expected {compact} or {spaced}"
            );
        }
    }
}

#[test]
fn whole_responses_and_errors_report_too() {
    for client in APIS {
        for provider in APIS {
            let what = format!("{} ← {}", client.name, provider.name);
            let request = client.fixture("request.json");
            let whole = call(
                &adapter(provider),
                post(client.path, &request),
                Upstream::json(&provider.fixture("response.json")),
            );
            assert_eq!(whole.response.status(), 200, "{what}");
            assert_eq!(whole.attribute(SOURCE), Some("provider"), "{what}");
            assert_eq!(
                attribute_u64(&whole, INPUT),
                TEXT_ANSWER.input_tokens,
                "{what}"
            );
            assert_eq!(
                attribute_u64(&whole, OUTPUT),
                TEXT_ANSWER.output_tokens,
                "{what}"
            );

            let error = match provider.name {
                "openai" => ("openai_error_429.json", 429),
                "anthropic" => ("anthropic_error_401.json", 401),
                _ => ("ollama_error_404.json", 404),
            };
            let failed = call(
                &adapter(provider),
                post(client.path, &request),
                Upstream::new(error.1, "application/json", &fixture(error.0), 1 << 20),
            );
            assert_eq!(failed.response.status(), error.1, "{what}");
            assert_eq!(failed.attribute(SOURCE), Some("estimate"), "{what}");
            assert_eq!(
                attribute_u64(&failed, INPUT),
                estimate(client, &request),
                "{what}"
            );
            assert_eq!(attribute_u64(&failed, OUTPUT), 0, "{what}");
        }
    }
}

#[test]
fn requests_the_adapter_refuses_set_nothing() {
    let call = call(
        &adapter(OPENAI),
        post(OPENAI.path, br#"{"model": "gpt-4o"}"#),
        Upstream::json(b"{}"),
    );
    assert_eq!(call.response.status(), 400);
    assert!(call.attributes.get(MODEL).is_none() && call.attributes.get(INPUT).is_none());
}

/// A request whose single user message is `text`.
fn prompt_of(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o", "stream": true,
        "messages": [{"role": "user", "content": text}],
    }))
    .unwrap()
}

fn prose(bytes: usize) -> String {
    "The quick brown fox jumps over the lazy dog, 42 times; naïve café. ".repeat(bytes / 68 + 1)
}

/// Times the request-body call of `bound` for `body`; `None` if it failed (timed out).
fn time_request(bound: &nantian_filter_testing::BoundFilter, body: &[u8]) -> Option<Duration> {
    let mut active = bound.binding().start().unwrap();
    let (mut parts, _) = post(OPENAI.path, b"").into_parts();
    active.on_request_headers(&mut parts).unwrap();
    let start = Instant::now();
    let result = active.on_request_body(&mut parts, bytes::Bytes::copy_from_slice(body), true);
    let elapsed = start.elapsed();
    result.ok().map(|_| elapsed)
}

#[test]
fn the_largest_requests_are_estimated_within_the_adapters_budget() {
    let bound = adapter(ANTHROPIC);
    // Past the exact budget the prompt is extrapolated: a 4 MiB prompt (the host's
    // largest request body) is translated and estimated in one call.
    // The call fails (traps) when it runs past the adapter's timeout.
    let huge = prompt_of(&prose(4000 << 10));
    let elapsed = time_request(&bound, &huge).expect("within the budget");
    eprintln!("a 4 MiB prompt: request body call {elapsed:?}");
}

/// The smallest memory cap (in 64 KiB pages) under which `component` serves a request
/// with a 16 KiB prompt.
fn smallest_memory(component: &FilterUnderTest) -> u64 {
    let body = prompt_of(&prose(16 << 10));
    let works = |pages: u64| {
        let spec = BindingSpec {
            display_name: "memory".into(),
            config: br#"{"provider": "anthropic"}"#.to_vec(),
            max_memory: Some(pages << 16),
            timeout: Some(Duration::from_secs(5)),
        };
        let Ok(bound) = component.bind_with(spec) else {
            return false;
        };
        let Ok(mut active) = bound.binding().start() else {
            return false;
        };
        let (mut parts, _) = post(OPENAI.path, b"").into_parts();
        active.on_request_headers(&mut parts).is_ok()
            && active
                .on_request_body(&mut parts, bytes::Bytes::copy_from_slice(&body), true)
                .is_ok()
    };
    let (mut low, mut high) = (1u64, 1024u64);
    assert!(works(high));
    while low < high {
        let middle = (low + high) / 2;
        if works(middle) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    low
}

/// Numbers for the record: `cargo test --release -p nantian-filter-ai-adapter --test
/// tokens -- --ignored --nocapture` (set `NANTIAN_BASELINE_ADAPTER` to a build without
/// token counting to compare).
#[test]
#[ignore]
fn measure() {
    let mut components = vec![(
        "current".to_owned(),
        nantian_filter_testing::built_filter("nantian-filter-ai-adapter"),
    )];
    if let Ok(baseline) = std::env::var("NANTIAN_BASELINE_ADAPTER") {
        components.push(("baseline".to_owned(), baseline.into()));
    }
    for (name, path) in components {
        let size = std::fs::metadata(&path).unwrap().len();
        let component = FilterUnderTest::load(&path).unwrap();
        let spec = |timeout_ms: u64| BindingSpec {
            display_name: "measure".into(),
            config: br#"{"provider": "anthropic"}"#.to_vec(),
            timeout: Some(Duration::from_millis(timeout_ms)),
            max_memory: Some(64 << 20),
        };
        eprintln!("{name}: {size} bytes");
        // Bind (the first instance's `init`) with the default 50 ms budget, 5 times.
        for _ in 0..5 {
            let start = Instant::now();
            let bound = component.bind_with(spec(50));
            eprintln!(
                "  bind with 50 ms: {:?} in {:?}",
                bound.is_ok(),
                start.elapsed()
            );
        }
        for _ in 0..3 {
            let start = Instant::now();
            let bound = component.bind_with(spec(50)).unwrap();
            let bind = start.elapsed();
            let small = prompt_of("What is the capital of France?");
            let first = time_request(&bound, &small);
            let second = time_request(&bound, &small);
            eprintln!("  bind (init) {bind:?}; first request body {first:?}; next {second:?}");
        }
        let bound = component.bind_with(spec(5000)).unwrap();
        time_request(&bound, &prompt_of("warm"));
        for kib in [0usize, 1, 16, 64, 256, 1024, 4000] {
            let body = prompt_of(&prose(kib << 10));
            let elapsed = (0..3).filter_map(|_| time_request(&bound, &body)).min();
            eprintln!("  {kib} KiB prompt: request body call {elapsed:?}");
        }
        eprintln!(
            "  smallest memory: {} pages of 64 KiB",
            smallest_memory(&component)
        );
    }
}
