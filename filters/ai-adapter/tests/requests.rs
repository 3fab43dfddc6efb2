//! The request side of the built component: paths, headers, and the same conversation
//! (system prompt, image, tool call, tool result, follow-up; `tests/fixtures/*_request.json`)
//! from each client API to each provider API.

mod common;

use common::*;
use serde_json::{Value, json};

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==";
const SYSTEM: &str = "You are a concise travel assistant.";
const QUESTION: &str = "What's the weather in Paris, and what is in this picture?";
const TOOL_OUTPUT: &str = r#"{"temperature": 18, "conditions": "light rain"}"#;
const FOLLOW_UP: &str = "Thanks! Should I take an umbrella?";

fn schema() -> Value {
    json!({"type": "object", "properties": {
        "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]})
}

fn paris() -> Value {
    json!({"location": "Paris, France", "unit": "celsius"})
}

/// The request `client` sends, as `provider` gets it.
fn forwarded(client: Api, provider: Api, body: &[u8]) -> (http::Request<bytes::Bytes>, Value) {
    let call = call(
        &adapter(provider),
        post(client.path, body),
        Upstream::json(b"{}"),
    );
    let request = call.forwarded.expect("forwarded");
    let mut sent = json(request.body());
    // OpenAI arguments are JSON in a string: compare them as JSON.
    for message in sent["messages"].as_array_mut().into_iter().flatten() {
        let calls = message.get_mut("tool_calls").and_then(Value::as_array_mut);
        for call in calls.into_iter().flatten() {
            if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str) {
                call["function"]["arguments"] = json(arguments.as_bytes());
            }
        }
    }
    (request, sent)
}

fn openai_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Get the current weather for a location", "parameters": schema()}}])
}

fn anthropic_tools() -> Value {
    json!([{"name": "get_weather", "description": "Get the current weather for a location",
        "input_schema": schema()}])
}

#[test]
fn paths_and_headers_are_set_for_the_provider() {
    for client in APIS {
        for provider in APIS {
            let body = client.fixture("request.json");
            let (request, _) = forwarded(client, provider, &body);
            let what = format!("{} → {}", client.name, provider.name);
            assert_eq!(request.uri().path(), provider.upstream_path(), "{what}");
            let header = |name: &str| request.headers().get(name).map(|v| v.to_str().unwrap());
            assert_eq!(header("accept-encoding"), Some("identity"), "{what}");
            assert_eq!(header("content-type"), Some("application/json"), "{what}");
            if provider == ANTHROPIC {
                assert_eq!(header("anthropic-version"), Some("2023-06-01"), "{what}");
                assert_eq!(header("anthropic-beta"), Some("prompt-caching-2024-07-31"));
            } else {
                assert_eq!(header("anthropic-version"), None, "{what}");
                assert_eq!(header("anthropic-beta"), None, "{what}");
            }
        }
    }
}

#[test]
fn the_query_is_kept_and_anthropic_version_added_when_missing() {
    let request = http::Request::post("/openai/v1/chat/completions?api-version=2024-10-21")
        .body(bytes::Bytes::from(OPENAI.fixture("request.json")))
        .unwrap();
    let call = call(&adapter(ANTHROPIC), request, Upstream::json(b"{}"));
    let forwarded = call.forwarded.unwrap();
    assert_eq!(
        forwarded.uri().path_and_query().unwrap().as_str(),
        "/v1/messages?api-version=2024-10-21"
    );
    assert_eq!(forwarded.headers()["anthropic-version"], "2023-06-01");
    let mut own_version = post(ANTHROPIC.path, &ANTHROPIC.fixture("request.json"));
    own_version
        .headers_mut()
        .insert("anthropic-version", "2023-01-01".parse().unwrap());
    let call = common::call(&adapter(ANTHROPIC), own_version, Upstream::json(b"{}"));
    assert_eq!(
        call.forwarded.unwrap().headers()["anthropic-version"],
        "2023-01-01"
    );
}

#[test]
fn same_api_requests_pass_byte_for_byte() {
    for api in APIS {
        let body = api.fixture("request.json");
        let call = call(&adapter(api), post(api.path, &body), Upstream::json(b"{}"));
        assert_eq!(call.forwarded.unwrap().body(), &body[..], "{}", api.name);
    }
}

#[test]
fn openai_to_anthropic() {
    let (_, sent) = forwarded(OPENAI, ANTHROPIC, &OPENAI.fixture("request.json"));
    assert_eq!(
        sent,
        json!({
            "model": "gpt-4o",
            "max_tokens": 512,
            "system": [{"type": "text", "text": SYSTEM}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": QUESTION},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_Wx3kP9", "name": "get_weather", "input": paris()}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_Wx3kP9",
                     "content": [{"type": "text", "text": TOOL_OUTPUT}]},
                    {"type": "text", "text": FOLLOW_UP}]}
            ],
            "tools": anthropic_tools(),
            "tool_choice": {"type": "auto"},
            "temperature": 0.3,
            "stop_sequences": ["\n\nUser:"],
            "metadata": {"user_id": "user-1234"}
        })
    );
}

#[test]
fn openai_to_ollama() {
    let (_, sent) = forwarded(OPENAI, OLLAMA, &OPENAI.fixture("request.json"));
    assert_eq!(
        sent,
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": QUESTION, "images": [PNG]},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": paris()}}]},
                {"role": "tool", "content": TOOL_OUTPUT, "tool_name": "get_weather"},
                {"role": "user", "content": FOLLOW_UP}
            ],
            "tools": openai_tools(),
            "stream": false,
            "options": {"temperature": 0.3, "num_predict": 512, "stop": ["\n\nUser:"]}
        })
    );
}

#[test]
fn anthropic_to_openai() {
    let (_, sent) = forwarded(ANTHROPIC, OPENAI, &ANTHROPIC.fixture("request.json"));
    assert_eq!(
        sent,
        json!({
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": [
                    {"type": "text", "text": QUESTION},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}]},
                {"role": "assistant", "content": "Let me check the weather.", "tool_calls": [
                    {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                     "function": {"name": "get_weather", "arguments": paris()}}]},
                {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": TOOL_OUTPUT},
                {"role": "user", "content": FOLLOW_UP}
            ],
            "tools": openai_tools(),
            "tool_choice": "auto",
            "max_completion_tokens": 512,
            "temperature": 0.3,
            "stop": ["\n\nUser:"],
            "user": "user-1234"
        })
    );
}

#[test]
fn anthropic_to_ollama() {
    let (_, sent) = forwarded(ANTHROPIC, OLLAMA, &ANTHROPIC.fixture("request.json"));
    assert_eq!(
        sent,
        json!({
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": QUESTION, "images": [PNG]},
                {"role": "assistant", "content": "Let me check the weather.", "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": paris()}}]},
                {"role": "tool", "content": TOOL_OUTPUT, "tool_name": "get_weather"},
                {"role": "user", "content": FOLLOW_UP}
            ],
            "tools": openai_tools(),
            "stream": false,
            "options": {"temperature": 0.3, "num_predict": 512, "stop": ["\n\nUser:"]}
        })
    );
}

#[test]
fn ollama_to_openai() {
    let (_, sent) = forwarded(OLLAMA, OPENAI, &OLLAMA.fixture("request.json"));
    assert_eq!(
        sent,
        json!({
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": [
                    {"type": "text", "text": QUESTION},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_0", "type": "function",
                     "function": {"name": "get_weather", "arguments": paris()}}]},
                {"role": "tool", "tool_call_id": "call_0", "content": TOOL_OUTPUT},
                {"role": "user", "content": FOLLOW_UP}
            ],
            "tools": openai_tools(),
            "max_completion_tokens": 512,
            "temperature": 0.3,
            "stop": ["\n\nUser:"]
        })
    );
}

#[test]
fn ollama_to_anthropic() {
    let (_, sent) = forwarded(OLLAMA, ANTHROPIC, &OLLAMA.fixture("request.json"));
    assert_eq!(
        sent,
        json!({
            "model": "llama3.2",
            "max_tokens": 512,
            "system": [{"type": "text", "text": SYSTEM}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": QUESTION},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_0", "name": "get_weather", "input": paris()}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_0",
                     "content": [{"type": "text", "text": TOOL_OUTPUT}]},
                    {"type": "text", "text": FOLLOW_UP}]}
            ],
            "tools": anthropic_tools(),
            "temperature": 0.3,
            "stop_sequences": ["\n\nUser:"]
        })
    );
}

#[test]
fn streaming_requests_ask_each_provider_to_stream() {
    for client in APIS {
        let body = with_stream(&client.fixture("request.json"), true);
        for provider in APIS {
            let (_, sent) = forwarded(client, provider, &body);
            let what = format!("{} → {}", client.name, provider.name);
            assert_eq!(sent["stream"], true, "{what}");
            if provider == OPENAI {
                assert_eq!(sent["stream_options"]["include_usage"], true, "{what}");
            }
        }
    }
    // Ollama streams unless told otherwise, and is always told.
    let mut ollama = json(&OLLAMA.fixture("request.json"));
    ollama.as_object_mut().unwrap().remove("stream");
    let ollama = serde_json::to_vec(&ollama).unwrap();
    for provider in [OPENAI, ANTHROPIC] {
        assert_eq!(forwarded(OLLAMA, provider, &ollama).1["stream"], true);
    }
    let (_, sent) = forwarded(ANTHROPIC, OLLAMA, &ANTHROPIC.fixture("request.json"));
    assert_eq!(sent["stream"], false);
}

#[test]
fn a_body_in_many_chunks_is_read_whole() {
    let body = OPENAI.fixture("request.json");
    let call = call_chunked(
        &adapter(ANTHROPIC),
        post(OPENAI.path, &body),
        Some(7),
        Upstream::json(b"{}"),
    );
    let sent = call.forwarded_json();
    assert_eq!(sent["system"][0]["text"], SYSTEM);
    assert_eq!(sent["messages"].as_array().unwrap().len(), 3);
}

#[test]
fn unknown_paths_get_an_openai_404() {
    let call = call(
        &adapter(OPENAI),
        post("/v1/embeddings", b"{}"),
        Upstream::json(b"{}"),
    );
    assert!(call.forwarded.is_none());
    assert_eq!(call.response.status(), 404);
    assert_eq!(call.header("content-type"), Some("application/json"));
    let (kind, message, code) = clients::openai_error(call.body());
    assert_eq!(kind, "invalid_request_error");
    assert!(message.contains("/v1/embeddings"), "{message}");
    assert_eq!(code, "unknown_url");
}

#[test]
fn other_methods_get_a_405_in_the_clients_shape() {
    for client in APIS {
        let request = http::Request::get(client.path)
            .body(bytes::Bytes::new())
            .unwrap();
        let call = call(&adapter(OPENAI), request, Upstream::json(b"{}"));
        assert_eq!(call.response.status(), 405, "{}", client.name);
        assert_eq!(call.header("allow"), Some("POST"));
        let (_, message) = client.read_error(call.body());
        assert!(message.contains("GET is not allowed"), "{message}");
    }
}

#[test]
fn unreadable_bodies_get_a_400_naming_the_problem() {
    for client in APIS {
        for provider in APIS {
            for (body, problem) in [
                (
                    &b"{\"model\": \"m\", \"messages\": ["[..],
                    "EOF while parsing",
                ),
                (b"[\"not\", \"an\", \"object\"]", "must be a JSON object"),
                (br#"{"model": "m"}"#, "missing field `messages`"),
                (br#"{"messages": []}"#, "missing field `model`"),
            ] {
                let call = call(
                    &adapter(provider),
                    post(client.path, body),
                    Upstream::json(b"{}"),
                );
                let what = format!("{} → {}: {}", client.name, provider.name, problem);
                assert!(call.forwarded.is_none(), "{what}");
                assert_eq!(call.response.status(), 400, "{what}");
                let (kind, message) = client.read_error(call.body());
                assert!(message.contains(problem), "{what}: {message}");
                if client != OLLAMA {
                    assert_eq!(kind.as_deref(), Some("invalid_request_error"));
                }
            }
        }
    }
}

#[test]
fn image_urls_cannot_go_to_ollama() {
    let body = json!({"model": "llava", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let body = serde_json::to_vec(&body).unwrap();
    let call = call(
        &adapter(OLLAMA),
        post(OPENAI.path, &body),
        Upstream::json(b"{}"),
    );
    assert_eq!(call.response.status(), 400);
    assert!(clients::openai_error(call.body()).1.contains("image URLs"));
    // Anthropic takes them.
    let call = common::call(
        &adapter(ANTHROPIC),
        post(OPENAI.path, &body),
        Upstream::json(b"{}"),
    );
    assert_eq!(
        call.forwarded_json()["messages"][0]["content"][0]["source"],
        json!({"type": "url", "url": "https://example.com/cat.png"})
    );
}

#[test]
fn bad_configurations_are_rejected() {
    for config in [
        r#"{"provider": "gemini"}"#,
        r#"{"provider": "openai", "basepath": "/v1"}"#,
        r#"{"basePath": "/v1"}"#,
        r#"{"provider": "openai", "basePath": "/v1?key=x"}"#,
        r#"{"provider": "anthropic", "defaultMaxTokens": 0}"#,
        "provider=openai",
    ] {
        let err = bind(config)
            .err()
            .unwrap_or_else(|| panic!("{config} was accepted"));
        assert!(
            matches!(err, nantian_filter_testing::WasmError::Config(_)),
            "{config}: {err}"
        );
    }
    assert!(bind(r#"{"provider": "ollama"}"#).is_ok());
}

#[test]
fn instances_forget_the_previous_request() {
    let bound = adapter(ANTHROPIC);
    // A streamed request answered locally, then a whole one from another client, then a
    // stream again: each gets its own handling on the reused instance.
    let bad = call(&bound, post(OPENAI.path, b"{"), Upstream::json(b"{}"));
    assert_eq!(bad.response.status(), 400);
    let whole = call(
        &bound,
        post(OLLAMA.path, &OLLAMA.fixture("request.json")),
        Upstream::json(&ANTHROPIC.fixture("response.json")),
    );
    assert_eq!(OLLAMA.read_response(whole.body()).text, TEXT);
    let streamed = call(
        &bound,
        post(
            OPENAI.path,
            &with_stream(&OPENAI.fixture("request.json"), true),
        ),
        Upstream::new(
            200,
            "text/event-stream",
            &ANTHROPIC.fixture("stream.sse"),
            100,
        ),
    );
    let streamed = OPENAI.read_stream(streamed.body());
    assert_eq!(streamed.message.text, TEXT);
    assert!(!streamed.usage_chunk);
}
