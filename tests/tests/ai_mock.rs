//! `nantian-ai-mock` against the official Python SDKs (`openai`, `anthropic`, `ollama`,
//! through `tests/ai/client.py`), directly, without a gateway: text, streams, tools, tool
//! results, images, `max_tokens`, a wrong key, a rate limit, a held stream released after
//! its first chunk reached the client, and the request log. This proves the mocks speak
//! what the SDKs parse, so the gateway tests can trust them. Plus the wire details checked
//! byte for byte over plain HTTP (these need no Python).
//!
//! The SDK tests are skipped (loudly) without `NANTIAN_PYTHON`; failed instead under `CI`.

use std::path::Path;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use nantian_e2e::ai_mock::reply::words;
use nantian_e2e::ai_mock::sdk::{SdkArgs, is_skip, run_sdk_client, run_sdk_clients};
use nantian_e2e::ai_mock::{AiMockProcess, Provider};
use nantian_e2e::harness::{self, Reply};
use serde_json::{Value, json};

const KEY: &str = "sk-mock-0123456789abcdef";
const PROMPT: &str = "hello there world";
const SYSTEM: &str = "be brief";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nantian-ai-mock"))
}

fn start(provider: Provider, name: &str) -> AiMockProcess {
    AiMockProcess::spawn(binary(), provider, &["--api-key", KEY, "--name", name])
        .expect("start nantian-ai-mock")
}

/// What differs between the SDKs' outputs.
struct Dialect {
    finish: &'static str,
    stop: &'static str,
    tool_stop: &'static str,
    length: &'static str,
    input_tokens: &'static str,
    output_tokens: &'static str,
    auth_error_class: &'static str,
    rate_limit_class: &'static str,
    /// Whether streamed tool arguments come in fragments (Ollama sends them whole).
    fragments: bool,
    /// Whether the SDK exposes response headers.
    headers: bool,
}

fn dialect(provider: Provider) -> Dialect {
    match provider {
        Provider::Openai => Dialect {
            finish: "finish_reason",
            stop: "stop",
            tool_stop: "tool_calls",
            length: "length",
            input_tokens: "/usage/prompt_tokens",
            output_tokens: "/usage/completion_tokens",
            auth_error_class: "AuthenticationError",
            rate_limit_class: "RateLimitError",
            fragments: true,
            headers: true,
        },
        Provider::Anthropic => Dialect {
            finish: "stop_reason",
            stop: "end_turn",
            tool_stop: "tool_use",
            length: "max_tokens",
            input_tokens: "/usage/input_tokens",
            output_tokens: "/usage/output_tokens",
            auth_error_class: "AuthenticationError",
            rate_limit_class: "RateLimitError",
            fragments: true,
            headers: true,
        },
        Provider::Ollama => Dialect {
            finish: "done_reason",
            stop: "stop",
            tool_stop: "stop",
            length: "length",
            input_tokens: "/usage/prompt_eval_count",
            output_tokens: "/usage/eval_count",
            auth_error_class: "ResponseError",
            rate_limit_class: "ResponseError",
            fragments: false,
            headers: false,
        },
    }
}

/// Fails on an error the call did not ask for (a `fail-` model, a wrong key).
fn check_no_unexpected_error(args: &SdkArgs, out: &Value) {
    assert!(
        out.get("error").is_none() || args.model.starts_with("fail-") || args.api_key != KEY,
        "unexpected error for {:?}: {out:#}",
        args.to_args()
    );
}

fn base_args(mock: &AiMockProcess, model: &str) -> SdkArgs {
    let mut args = SdkArgs::new(mock.provider, &mock.base_url(), KEY, model, PROMPT);
    args.system = Some(SYSTEM.into());
    args
}

/// The calls of [`exercise`], by name: all independent, so they run in one Python process.
fn calls(mock: &AiMockProcess) -> Vec<(&'static str, SdkArgs)> {
    let with = |model: &str, change: &dyn Fn(&mut SdkArgs)| {
        let mut args = base_args(mock, model);
        change(&mut args);
        args
    };
    vec![
        ("text", with("mock-model", &|_| {})),
        (
            "stream",
            with("mock-model", &|a| {
                a.stream = true;
                a.include_usage = true;
            }),
        ),
        ("stream-no-usage", with("mock-model", &|a| a.stream = true)),
        ("tools", with("mock-model", &|a| a.tools = true)),
        (
            "tools-stream",
            with("mock-model", &|a| {
                a.tools = true;
                a.stream = true;
            }),
        ),
        (
            "tool-result",
            with("mock-model", &|a| a.tool_result = Some("21 degrees".into())),
        ),
        (
            "tool-result-stream",
            with("mock-model", &|a| {
                a.tool_result = Some("21 degrees".into());
                a.stream = true;
            }),
        ),
        (
            "image",
            with("mock-model", &|a| {
                a.image_b64 = Some(PNG_1X1.into());
                a.stream = true;
            }),
        ),
        ("capped", with("mock-model", &|a| a.max_tokens = Some(3))),
        (
            "wrong-key",
            with("mock-model", &|a| a.api_key = "sk-wrong-key-000000".into()),
        ),
        ("rate-limited", with("fail-429", &|_| {})),
        (
            "rate-limited-stream",
            with("fail-429", &|a| a.stream = true),
        ),
        (
            "server-error",
            with(
                if mock.provider == Provider::Anthropic {
                    "fail-529"
                } else {
                    "fail-503"
                },
                &|_| {},
            ),
        ),
        (
            "hold",
            with("mock-hold", &|a| {
                a.stream = true;
                a.first_chunk_then_release = Some(mock.release_url());
            }),
        ),
    ]
}

const PNG_1X1: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+A8AAQUBAScY42YAAAAASUVORK5CYII=";

/// Every check of one SDK against its mock.
fn exercise(provider: Provider) {
    let name = format!("{provider}-mock");
    let mock = start(provider, &name);
    let d = dialect(provider);
    let heard = format!("{name} ({provider}) heard: {PROMPT}");
    let input = words(SYSTEM) + words(PROMPT);

    let calls = calls(&mock);
    let args: Vec<SdkArgs> = calls.iter().map(|(_, args)| args.clone()).collect();
    let outputs = run_sdk_clients(&args);
    if outputs.iter().any(is_skip) {
        return;
    }
    let mut results = std::collections::HashMap::new();
    for ((label, args), out) in calls.iter().zip(outputs) {
        check_no_unexpected_error(args, &out);
        results.insert(*label, out);
    }
    let result = |label: &str| &results[label];

    // Text, whole and streamed (OpenAI: with and without include_usage).
    let out = result("text");
    assert_eq!(out["text"], heard.as_str(), "{out:#}");
    assert_eq!(out[d.finish], d.stop, "{out:#}");
    assert_eq!(out["model"], "mock-model");
    assert_eq!(out.pointer(d.input_tokens), Some(&json!(input)), "{out:#}");
    assert_eq!(
        out.pointer(d.output_tokens),
        Some(&json!(words(&heard))),
        "{out:#}"
    );
    assert_eq!(out["chunks"], 0);
    if d.headers {
        let request_id = match provider {
            Provider::Anthropic => "request-id",
            _ => "x-request-id",
        };
        assert!(out["headers"][request_id].is_string(), "{out:#}");
    }

    let out = result("stream");
    assert_eq!(out["text"], heard.as_str(), "{out:#}");
    assert_eq!(out[d.finish], d.stop, "{out:#}");
    assert_eq!(
        out["text_deltas"],
        words(&heard),
        "one delta per word: {out:#}"
    );
    assert!(out["chunks"].as_u64().unwrap() > words(&heard), "{out:#}");
    assert_eq!(out.pointer(d.input_tokens), Some(&json!(input)), "{out:#}");
    assert_eq!(
        out.pointer(d.output_tokens),
        Some(&json!(words(&heard))),
        "{out:#}"
    );
    let out = result("stream-no-usage");
    assert_eq!(out["text"], heard.as_str());
    if provider == Provider::Openai {
        assert_eq!(out["usage"], Value::Null, "no usage chunk unasked: {out:#}");
        assert_eq!(
            out["chunks"],
            words(&heard) + 2,
            "role, words, finish: {out:#}"
        );
    }

    // Tools: a call of the first tool with the user's text; arguments in fragments when
    // streamed.
    for (label, streamed) in [("tools", false), ("tools-stream", true)] {
        let out = result(label);
        assert_eq!(out[d.finish], d.tool_stop, "{out:#}");
        let calls = out["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "{out:#}");
        assert_eq!(calls[0]["name"], "echo");
        assert_eq!(calls[0]["arguments"], json!({ "text": PROMPT }), "{out:#}");
        if streamed && d.fragments {
            assert!(calls[0]["fragments"].as_u64().unwrap() >= 2, "{out:#}");
        }
        if provider != Provider::Ollama {
            assert!(calls[0]["id"].is_string(), "{out:#}");
        }
        assert_eq!(out["text"], "", "{out:#}");
    }

    // A tool result: the reply quotes it.
    for label in ["tool-result", "tool-result-stream"] {
        let out = result(label);
        assert_eq!(
            out["text"],
            format!("{name} ({provider}) got tool result: 21 degrees"),
            "{out:#}"
        );
        assert_eq!(out[d.finish], d.stop);
    }

    // An image: counted in the reply, so a translated image part is checkable.
    let out = result("image");
    assert_eq!(out["text"], format!("{heard} [1 image(s)]"), "{out:#}");

    // max_tokens cuts the reply.
    let out = result("capped");
    assert_eq!(
        out["text"],
        format!("{name} ({provider}) heard:"),
        "{out:#}"
    );
    assert_eq!(out[d.finish], d.length, "{out:#}");

    // A wrong key: the SDK's authentication error.
    let out = result("wrong-key");
    let error = &out["error"];
    assert_eq!(error["status"], 401, "{out:#}");
    assert_eq!(error["class"], d.auth_error_class, "{out:#}");
    match provider {
        Provider::Openai => {
            assert_eq!(error["type"], "invalid_request_error");
            assert_eq!(error["code"], "invalid_api_key");
        }
        Provider::Anthropic => assert_eq!(error["type"], "authentication_error"),
        Provider::Ollama => assert_eq!(error["message"], "unauthorized"),
    }

    // Rate limited, streamed or not: 429 with retry-after.
    for label in ["rate-limited", "rate-limited-stream"] {
        let out = result(label);
        let error = &out["error"];
        assert_eq!(error["status"], 429, "{out:#}");
        assert_eq!(error["class"], d.rate_limit_class, "{out:#}");
        match provider {
            Provider::Openai => assert_eq!(error["code"], "rate_limit_exceeded"),
            Provider::Anthropic => assert_eq!(error["type"], "rate_limit_error"),
            Provider::Ollama => assert!(error["message"].is_string()),
        }
        if d.headers {
            assert_eq!(error["headers"]["retry-after"], "1", "{out:#}");
        }
    }

    // Server errors: 503 (Anthropic: 529, overloaded).
    let out = result("server-error");
    if provider == Provider::Anthropic {
        assert_eq!(out["error"]["status"], 529, "{out:#}");
        assert_eq!(out["error"]["type"], "overloaded_error");
        assert_eq!(out["error"]["class"], "OverloadedError");
    } else {
        assert_eq!(out["error"]["status"], 503, "{out:#}");
    }

    // A held stream: the first delta reaches the SDK while the mock still holds the rest;
    // only the client's release (after it saw that delta) lets the stream finish.
    let out = result("hold");
    assert_eq!(out["text"], heard.as_str(), "{out:#}");
    let released_after = out["released_after_chunks"].as_u64().expect("released");
    assert!(
        released_after < out["chunks"].as_u64().unwrap(),
        "released mid-stream: {out:#}"
    );
    assert_eq!(mock.held().unwrap(), 0);

    // The request log: what the SDK sent.
    mock.clear_requests().unwrap();
    let mut logged = base_args(&mock, "mock-model");
    logged.headers.push(("x-test-header".into(), "one".into()));
    logged.user = Some("user-1".into());
    logged.stream = true;
    logged.include_usage = provider == Provider::Openai;
    let out = run_sdk_client(&logged);
    check_no_unexpected_error(&logged, &out);
    let requests = mock.requests().unwrap();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("x-test-header"), Some("one"));
    assert_eq!(request.body["model"], "mock-model");
    match provider {
        Provider::Openai => {
            assert_eq!(request.path, "/v1/chat/completions");
            assert_eq!(
                request.header("authorization"),
                Some(format!("Bearer {KEY}").as_str())
            );
            assert_eq!(request.body["stream"], true);
            assert_eq!(request.body["stream_options"]["include_usage"], true);
            assert_eq!(request.body["user"], "user-1");
            assert_eq!(request.body["messages"][0]["role"], "system");
        }
        Provider::Anthropic => {
            assert_eq!(request.path, "/v1/messages");
            assert!(request.header("anthropic-version").is_some());
            let key = request.header("x-api-key").map(str::to_string).or_else(|| {
                request
                    .header("authorization")
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::to_string)
            });
            assert_eq!(key.as_deref(), Some(KEY), "{request:#?}");
            assert_eq!(request.body["system"], SYSTEM);
            assert_eq!(request.body["metadata"]["user_id"], "user-1");
            assert_eq!(request.body["stream"], true);
        }
        Provider::Ollama => {
            assert_eq!(request.path, "/api/chat");
            assert_eq!(
                request.header("authorization"),
                Some(format!("Bearer {KEY}").as_str())
            );
            assert_eq!(request.body["stream"], true);
        }
    }
    mock.clear_requests().unwrap();
    assert!(mock.requests().unwrap().is_empty());
}

#[test]
fn openai_sdk_against_its_mock() {
    exercise(Provider::Openai);
}

#[test]
fn anthropic_sdk_against_its_mock() {
    exercise(Provider::Anthropic);
}

#[test]
fn ollama_sdk_against_its_mock() {
    exercise(Provider::Ollama);
}

// ---------------------------------------------------------------------------------------
// Wire details over plain HTTP (no Python needed).

async fn call(
    mock: &AiMockProcess,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", mock.origin()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    harness::send(request.body(Bytes::from(body.to_string())).unwrap())
        .await
        .expect("mock answers")
}

fn body_json(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&reply.body)))
}

#[tokio::test]
async fn openai_wire() {
    let mock = start(Provider::Openai, "w");
    let auth = format!("Bearer {KEY}");
    let auth = [("authorization", auth.as_str())];
    let body = r#"{"model":"m","messages":[{"role":"user","content":"a b"}],"stream":true}"#;
    let reply = call(&mock, "POST", "/v1/chat/completions", &auth, body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(
        events
            .iter()
            .all(|e| e.starts_with("data: ") && !e.contains('\n'))
    );
    // role, "w ", "(openai) ", "heard: ", "a ", "b", finish, [DONE]
    assert_eq!(events.len(), 8, "{text}");
    let first: Value = serde_json::from_str(&events[0][6..]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert!(first.get("usage").is_none());

    // Errors in OpenAI's shape.
    let reply = call(&mock, "POST", "/v1/chat/completions", &[], body).await;
    assert_eq!(reply.status, 401);
    assert_eq!(body_json(&reply)["error"]["code"], "invalid_api_key");
    let reply = call(&mock, "POST", "/v1/chat/completions", &auth, "{nope").await;
    assert_eq!(reply.status, 400);
    assert_eq!(body_json(&reply)["error"]["type"], "invalid_request_error");
    let no_stream = r#"{"model":"m","messages":[{"role":"user","content":"a"}],"stream_options":{"include_usage":true}}"#;
    let reply = call(&mock, "POST", "/v1/chat/completions", &auth, no_stream).await;
    assert_eq!(reply.status, 400);
    assert_eq!(body_json(&reply)["error"]["param"], "stream_options");
    let reply = call(&mock, "POST", "/v1/messages", &auth, body).await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        body_json(&reply)["error"]["message"],
        "Invalid URL (POST /v1/messages)"
    );
    for (model, status) in [("fail-429", 429), ("fail-500", 500), ("fail-503", 503)] {
        let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"a"}}]}}"#);
        let reply = call(&mock, "POST", "/v1/chat/completions", &auth, &body).await;
        assert_eq!(reply.status, status);
        assert!(body_json(&reply)["error"]["message"].is_string());
        assert_eq!(
            reply
                .headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            (status == 429).then_some("1")
        );
    }

    let reply = call(&mock, "GET", "/v1/models", &auth, "").await;
    assert_eq!(reply.status, 200);
    let models = body_json(&reply);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["object"], "model");

    // The log: every API request, with lowercase headers and parsed bodies.
    let requests = mock.requests().unwrap();
    assert_eq!(requests.len(), 9);
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(requests[0].body["stream"], true);
    assert_eq!(requests[2].body, Value::Null, "not JSON");
    assert!(
        requests
            .iter()
            .all(|r| r.headers.keys().all(|k| *k == k.to_lowercase()))
    );
}

#[tokio::test]
async fn anthropic_wire() {
    let mock = start(Provider::Anthropic, "w");
    let headers = [("x-api-key", KEY), ("anthropic-version", "2023-06-01")];
    let body = r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"a b"}],"stream":true}"#;
    let reply = call(&mock, "POST", "/v1/messages", &headers, body).await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let events: Vec<(&str, Value)> = text
        .split_terminator("\n\n")
        .map(|e| {
            let (event, data) = e.split_once('\n').unwrap();
            (
                event.strip_prefix("event: ").unwrap(),
                serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(text.contains("event: ping\ndata: {\"type\": \"ping\"}\n\n"));
    let delta = &events[9].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 5);
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 2);

    let error = |reply: &Reply| {
        body_json(reply)["error"]["type"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let reply = call(&mock, "POST", "/v1/messages", &headers[..1], body).await;
    assert_eq!(reply.status, 400, "anthropic-version is required");
    assert_eq!(error(&reply), "invalid_request_error");
    let reply = call(&mock, "POST", "/v1/messages", &headers[1..], body).await;
    assert_eq!(reply.status, 401);
    assert_eq!(body_json(&reply)["type"], "error");
    assert_eq!(error(&reply), "authentication_error");
    let no_max = r#"{"model":"m","messages":[{"role":"user","content":"a"}]}"#;
    let reply = call(&mock, "POST", "/v1/messages", &headers, no_max).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        body_json(&reply)["error"]["message"],
        "max_tokens: Field required"
    );
    let system = r#"{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"s"},{"role":"user","content":"a"}]}"#;
    let reply = call(&mock, "POST", "/v1/messages", &headers, system).await;
    assert_eq!(reply.status, 400);
    assert_eq!(error(&reply), "invalid_request_error");
    let reply = call(&mock, "POST", "/v1/messages", &headers, "[").await;
    assert_eq!(reply.status, 400);
    let reply = call(&mock, "POST", "/v1/chat/completions", &headers, body).await;
    assert_eq!(reply.status, 404);
    assert_eq!(error(&reply), "not_found_error");
    for (model, status, kind) in [
        ("fail-429", 429, "rate_limit_error"),
        ("fail-500", 500, "api_error"),
        ("fail-529", 529, "overloaded_error"),
    ] {
        let body = format!(
            r#"{{"model":"{model}","max_tokens":5,"messages":[{{"role":"user","content":"a"}}]}}"#
        );
        let reply = call(&mock, "POST", "/v1/messages", &headers, &body).await;
        assert_eq!(reply.status, status);
        assert_eq!(error(&reply), kind);
    }
}

#[tokio::test]
async fn ollama_wire() {
    let mock = start(Provider::Ollama, "w");
    let auth = format!("Bearer {KEY}");
    let auth = [("authorization", auth.as_str())];
    // No `stream`: Ollama streams.
    let body = r#"{"model":"m","messages":[{"role":"user","content":"a b"}]}"#;
    let reply = call(&mock, "POST", "/api/chat", &auth, body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/x-ndjson");
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(text.ends_with("}\n"));
    assert_eq!(lines.len(), 6, "{text}");
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["prompt_eval_count"], 2);
    assert_eq!(last["eval_count"], 5);
    assert!(last["total_duration"].as_u64().unwrap() > 0);
    assert!(last["created_at"].as_str().unwrap().ends_with('Z'));

    let whole = r#"{"model":"m","stream":false,"messages":[{"role":"user","content":"a b"}]}"#;
    let reply = call(&mock, "POST", "/api/chat", &auth, whole).await;
    let response = body_json(&reply);
    assert_eq!(response["message"]["content"], "w (ollama) heard: a b");
    assert_eq!(response["done"], true);

    let reply = call(&mock, "POST", "/api/chat", &[], body).await;
    assert_eq!(reply.status, 401);
    assert_eq!(body_json(&reply), json!({ "error": "unauthorized" }));
    let reply = call(&mock, "POST", "/api/chat", &auth, "nope").await;
    assert_eq!(reply.status, 400);
    assert!(body_json(&reply)["error"].is_string());
    let reply = call(&mock, "POST", "/v1/chat/completions", &auth, body).await;
    assert_eq!(reply.status, 404);
    assert!(body_json(&reply)["error"].is_string());
    let reply = call(&mock, "GET", "/api/tags", &auth, "").await;
    assert!(body_json(&reply)["models"][0]["name"].is_string());

    // A `slow` model streams the same lines (its pacing is for benchmarks; tests assert
    // no timings).
    let slow = r#"{"model":"mock-slow","messages":[{"role":"user","content":"a b"}]}"#;
    let reply = call(&mock, "POST", "/api/chat", &auth, slow).await;
    let lines = reply
        .body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(lines, 6);
}

/// A `hold` model's stream stops after its first delta until `POST /_mock/release`,
/// whoever reads it.
#[tokio::test]
async fn hold_until_release() {
    let mock = start(Provider::Openai, "h");
    let stream = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let body =
        r#"{"model":"mock-hold","messages":[{"role":"user","content":"x y"}],"stream":true}"#;
    let request = http::Request::post("/v1/chat/completions")
        .header("host", mock.addr().to_string())
        .header("authorization", format!("Bearer {KEY}"))
        .body(http_body_util::Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = String::new();
    // The role chunk and the first word arrive...
    while !received.contains("\"content\":\"h \"") {
        let frame = body.frame().await.expect("more").unwrap();
        if let Some(data) = frame.data_ref() {
            received.push_str(std::str::from_utf8(data).unwrap());
        }
    }
    // ...and the rest waits for the release.
    let held = tokio::task::spawn_blocking({
        let addr = mock.addr();
        move || {
            for _ in 0..600 {
                let (_, body) =
                    nantian_e2e::ai_mock::process::http_call(addr, "GET", "/_mock/held").unwrap();
                if serde_json::from_slice::<Value>(&body).unwrap()["held"] == 1 {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            false
        }
    })
    .await
    .unwrap();
    assert!(held, "the stream is held");
    assert!(!received.contains("[DONE]"));
    let addr = mock.addr();
    let (status, released) = tokio::task::spawn_blocking(move || {
        nantian_e2e::ai_mock::process::http_call(addr, "POST", "/_mock/release").unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&released).unwrap()["released"],
        1
    );
    let rest = body.collect().await.unwrap().to_bytes();
    received.push_str(std::str::from_utf8(&rest).unwrap());
    assert!(received.ends_with("data: [DONE]\n\n"), "{received}");
    assert!(received.contains("\"content\":\"y\""));
}
