//! The AI gateway end to end: official Python SDKs (openai, anthropic, ollama) talk to a
//! real host through an AIService, whose backends are mock providers speaking each API's
//! real wire format. The gateway routes by model, translates between the APIs (the
//! ai-adapter Wasm component) both ways, streams included, injects each backend's key and
//! falls back when a backend fails.

use bytes::Bytes;
use nantian_e2e::ai_mock::Provider;
use nantian_e2e::ai_mock::sdk::{SdkArgs, gateway_base_url, is_skip, run_sdk_client};
use nantian_e2e::ai_mock::service::{self, KeyedMock};
use nantian_e2e::harness::{Env, send, wait_for};
use nantian_e2e::metrics::{host_metrics, series};
use serde_json::Value;

const NS: &str = "ai";
/// What clients send as their key: it must never reach a backend.
const CLIENT_KEY: &str = "sk-client-own";

type Mock = KeyedMock;

fn mock(provider: Provider, name: &str) -> Mock {
    KeyedMock::start(provider, name)
}

/// A backend entry of the AIService for `mock`, with its key in Secret `<name>-key`.
fn backend(name: &str, m: &Mock, models: &str, weight: u32) -> (String, String) {
    service::backend(NS, name, m, models, Some(weight))
}

/// A Gateway with one HTTPRoute whose only backend is AIService `llm` (`spec_tail` after
/// its backends: routing, fallback, sessionAffinity). Returns the gateway's address.
async fn gateway(env: &mut Env, backends: &[(String, String)], spec_tail: &str) -> String {
    let gw = env.gateway_ip(1);
    env.write("ai.yaml", &service::config(NS, &gw, backends, spec_tail));
    env.start_controller();
    env.wait_ready().await;
    format!("{gw}:8080")
}

/// Runs the SDK client off the async runtime (it blocks on a child process).
async fn sdk(args: SdkArgs) -> Value {
    tokio::task::spawn_blocking(move || run_sdk_client(&args))
        .await
        .unwrap()
}

fn client(sdk: Provider, addr: &str, model: &str, prompt: &str) -> SdkArgs {
    SdkArgs::new(sdk, &gateway_base_url(sdk, addr), CLIENT_KEY, model, prompt)
}

/// The one request `m` received since it was last cleared.
fn only_request(m: &Mock) -> nantian_e2e::ai_mock::request_log::LoggedRequest {
    let mut requests = m.process.requests().unwrap();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    m.process.clear_requests().unwrap();
    requests.remove(0)
}

/// Checks what the gateway sent upstream: the provider's path, the backend's key and
/// never the client's.
fn assert_forwarded(m: &Mock, path: &str) -> Value {
    let req = only_request(m);
    assert_eq!(req.path, path);
    let provider_auth = match m.process.provider {
        Provider::Anthropic => req.header("x-api-key").map(str::to_string),
        _ => req
            .header("authorization")
            .map(|v| v.trim_start_matches("Bearer ").to_string()),
    };
    assert_eq!(provider_auth.as_deref(), Some(m.key.as_str()), "{req:#?}");
    let seen = format!("{:?}", req.headers);
    assert!(
        !seen.contains(CLIENT_KEY),
        "the client's key went upstream: {seen}"
    );
    req.body
}

#[tokio::test]
async fn openai_and_anthropic_sdks_cross_over_both_ways_streaming_or_not() {
    let mut env = Env::new();
    let openai = mock(Provider::Openai, "gpt-mock");
    let anthropic = mock(Provider::Anthropic, "claude-mock");
    let addr = gateway(
        &mut env,
        &[
            backend("openai", &openai, "[gpt-4o]", 1),
            backend(
                "anthropic",
                &anthropic,
                "[claude-sonnet-4, claude-sonnet-4-slow]",
                1,
            ),
        ],
        "",
    )
    .await;

    for stream in [false, true] {
        // OpenAI SDK → Anthropic backend.
        let mut args = client(Provider::Openai, &addr, "claude-sonnet-4", "hello gateway");
        args.stream = stream;
        args.include_usage = stream;
        args.system = Some("be brief".into());
        let out = sdk(args).await;
        if is_skip(&out) {
            return;
        }
        assert_eq!(out["error"], Value::Null, "{out:#}");
        assert_eq!(
            out["text"], "claude-mock (anthropic) heard: hello gateway",
            "{out:#}"
        );
        assert_eq!(out["finish_reason"], "stop", "{out:#}");
        // Input: "be brief" + "hello gateway"; output: the reply's words.
        assert_eq!(out["usage"]["prompt_tokens"], 4, "{out:#}");
        assert_eq!(out["usage"]["completion_tokens"], 5, "{out:#}");
        if stream {
            assert!(out["text_deltas"].as_u64().unwrap() >= 5, "{out:#}");
        }
        let sent = assert_forwarded(&anthropic, "/v1/messages");
        // The system prompt moved to Anthropic's top-level `system` (a string or blocks).
        let system = sent["system"][0]["text"]
            .as_str()
            .or(sent["system"].as_str());
        assert_eq!(system, Some("be brief"), "{sent:#}");
        assert!(sent["max_tokens"].as_u64().is_some(), "{sent:#}");
        assert_eq!(sent["messages"][0]["role"], "user", "{sent:#}");

        // Anthropic SDK → OpenAI backend.
        let mut args = client(Provider::Anthropic, &addr, "gpt-4o", "hi there");
        args.stream = stream;
        args.max_tokens = Some(64);
        let out = sdk(args).await;
        assert_eq!(out["error"], Value::Null, "{out:#}");
        assert_eq!(out["text"], "gpt-mock (openai) heard: hi there", "{out:#}");
        assert_eq!(out["stop_reason"], "end_turn", "{out:#}");
        assert_eq!(out["usage"]["input_tokens"], 2, "{out:#}");
        assert_eq!(out["usage"]["output_tokens"], 5, "{out:#}");
        let sent = assert_forwarded(&openai, "/v1/chat/completions");
        assert_eq!(
            sent["max_tokens"]
                .as_u64()
                .or(sent["max_completion_tokens"].as_u64()),
            Some(64),
            "{sent:#}"
        );
    }
    // Two answers from each backend: counted by backend, model and status, timed to the
    // first token, and their tokens (as each backend reported them) added up.
    let metrics = host_metrics(&env, 1).await;
    for (backend, model, input, output) in [
        ("anthropic", "claude-sonnet-4", 8.0, 10.0),
        ("openai", "gpt-4o", 4.0, 10.0),
    ] {
        let at = |direction| {
            [
                ("backend", backend),
                ("model", model),
                ("direction", direction),
            ]
        };
        let answered = [("backend", backend), ("model", model), ("status", "200")];
        assert_eq!(
            series(&metrics, "nantian_ai_requests_total", &answered),
            Some(2.0),
            "{metrics}"
        );
        let timed = [("backend", backend)];
        assert_eq!(
            series(
                &metrics,
                "nantian_ai_time_to_first_token_seconds_count",
                &timed
            ),
            Some(2.0),
            "{metrics}"
        );
        assert_eq!(
            series(&metrics, "nantian_ai_tokens_total", &at("input")),
            Some(input),
            "{metrics}"
        );
        assert_eq!(
            series(&metrics, "nantian_ai_tokens_total", &at("output")),
            Some(output),
            "{metrics}"
        );
    }
    // A stream whose events come 50 ms apart (the mock's `slow` models) reaches the client
    // event by event. (Events that arrive together may go out as one chunk.)
    let mut args = client(
        Provider::Openai,
        &addr,
        "claude-sonnet-4-slow",
        "hello gateway",
    );
    args.stream = true;
    let out = sdk(args).await;
    assert_eq!(out["error"], Value::Null, "{out:#}");
    assert!(out["text_deltas"].as_u64().unwrap() >= 5, "{out:#}");
    assert_forwarded(&anthropic, "/v1/messages");
    let metrics = host_metrics(&env, 1).await;
    // The slow stream's chunks were timed apart: at least its role chunk and its five
    // words went out one by one.
    let gaps = series(
        &metrics,
        "nantian_ai_inter_token_latency_seconds_count",
        &[("backend", "anthropic")],
    );
    assert!(gaps.is_some_and(|n| n >= 5.0), "{metrics}");
}

/// The value of the series `name` whose labels include every pair of `labels`.
#[tokio::test]
async fn tool_calls_and_tool_results_cross_the_apis() {
    let mut env = Env::new();
    let anthropic = mock(Provider::Anthropic, "claude-mock");
    let openai = mock(Provider::Openai, "gpt-mock");
    let addr = gateway(
        &mut env,
        &[
            backend("anthropic", &anthropic, "[claude-sonnet-4]", 1),
            backend("openai", &openai, "[gpt-4o]", 1),
        ],
        "",
    )
    .await;
    for stream in [false, true] {
        let mut args = client(Provider::Openai, &addr, "claude-sonnet-4", "call the tool");
        args.tools = true;
        args.stream = stream;
        let out = sdk(args).await;
        if is_skip(&out) {
            return;
        }
        assert_eq!(out["finish_reason"], "tool_calls", "{out:#}");
        assert_eq!(out["tool_calls"][0]["name"], "echo", "{out:#}");
        assert_eq!(
            out["tool_calls"][0]["arguments"]["text"], "call the tool",
            "{out:#}"
        );
        let sent = assert_forwarded(&anthropic, "/v1/messages");
        assert_eq!(sent["tools"][0]["name"], "echo", "{sent:#}");
        assert!(sent["tools"][0]["input_schema"].is_object(), "{sent:#}");

        // The conversation goes on with the tool's result, from the Anthropic SDK to OpenAI.
        let mut args = client(Provider::Anthropic, &addr, "gpt-4o", "call the tool");
        args.tools = true;
        args.stream = stream;
        args.tool_result = Some("echoed".into());
        let out = sdk(args).await;
        assert_eq!(
            out["text"], "gpt-mock (openai) got tool result: echoed",
            "{out:#}"
        );
        let sent = assert_forwarded(&openai, "/v1/chat/completions");
        let messages = sent["messages"].as_array().unwrap();
        let tool = messages
            .iter()
            .find(|m| m["role"] == "tool")
            .expect("a tool message");
        assert_eq!(tool["content"], "echoed", "{sent:#}");
        assert!(
            messages.iter().any(|m| m["tool_calls"].is_array()),
            "{sent:#}"
        );
    }
}

#[tokio::test]
async fn the_first_token_reaches_the_client_while_the_backend_is_still_streaming() {
    let mut env = Env::new();
    let anthropic = mock(Provider::Anthropic, "claude-mock");
    let ollama = mock(Provider::Ollama, "llama-mock");
    let addr = gateway(
        &mut env,
        &[
            backend("anthropic", &anthropic, "[claude-hold]", 1),
            backend("ollama", &ollama, "[llama-hold]", 1),
        ],
        "",
    )
    .await;
    // The mock sends one delta and then holds the stream until released; the client
    // releases it only after it has seen a delta. A gateway that waited for the end of
    // the upstream's stream would never pass the first delta on, and the call would hang.
    for (sdk_kind, model, mock) in [
        (Provider::Openai, "claude-hold", &anthropic),
        (Provider::Ollama, "claude-hold", &anthropic),
        (Provider::Anthropic, "llama-hold", &ollama),
    ] {
        let mut args = client(sdk_kind, &addr, model, "stream me please");
        args.stream = true;
        args.max_tokens = Some(50);
        args.first_chunk_then_release = Some(mock.process.release_url());
        let out = sdk(args).await;
        if is_skip(&out) {
            return;
        }
        assert_eq!(out["error"], Value::Null, "{sdk_kind}: {out:#}");
        // Released mid-stream: some chunks came before, the rest after.
        let before = out["released_after_chunks"].as_u64().unwrap_or(0);
        let all = out["chunks"].as_u64().unwrap_or(0);
        assert!(before >= 1 && before < all, "{sdk_kind}: {out:#}");
        assert!(
            out["text"]
                .as_str()
                .unwrap()
                .ends_with("heard: stream me please"),
            "{sdk_kind}: {out:#}"
        );
        mock.process.clear_requests().unwrap();
    }
}

#[tokio::test]
async fn failures_fall_back_to_the_next_backend_before_the_client_sees_them() {
    let mut env = Env::new();
    let primary = mock(Provider::Openai, "primary");
    let secondary = mock(Provider::Anthropic, "secondary");
    // An endpoint nobody listens on: connection refused.
    let dead = format!(
        "  - name: dead\n    provider: openai\n    endpoint: http://{}:9/v1\n    models: [gone]\n",
        env.backend_ip(9)
    );
    let addr = gateway(
        &mut env,
        &[
            (dead, String::new()),
            backend("primary", &primary, "[gpt-4o, fail-503, fail-429]", 1),
            backend("secondary", &secondary, "[]", 0),
        ],
        "  fallback: [primary, secondary]\n",
    )
    .await;
    let out = sdk(client(Provider::Openai, &addr, "gone", "anyone there")).await;
    if is_skip(&out) {
        return;
    }
    // Refused by `dead`, answered by `primary`.
    assert_eq!(
        out["text"], "primary (openai) heard: anyone there",
        "{out:#}"
    );
    assert_forwarded(&primary, "/v1/chat/completions");
    // `primary` answers 503 and 429 for these models (so would `secondary`, as the mocks
    // fail by model name): the client gets the last backend's answer in its own API's shape.
    for (model, status) in [("fail-503", 503), ("fail-429", 429)] {
        let out = sdk(client(Provider::Anthropic, &addr, model, "x")).await;
        assert_eq!(out["error"]["status"], status, "{out:#}");
        assert_eq!(primary.process.requests().unwrap().len(), 1);
        assert_eq!(secondary.process.requests().unwrap().len(), 1);
        primary.process.clear_requests().unwrap();
        secondary.process.clear_requests().unwrap();
    }
    let metrics = host_metrics(&env, 1).await;
    let dead = [("backend", "dead"), ("provider", "openai")];
    assert_eq!(
        series(&metrics, "nantian_ai_fallbacks_total", &dead),
        Some(1.0),
        "{metrics}"
    );
}

/// A raw OpenAI chat request (no SDK: hundreds of them run in a loop).
async fn chat(addr: &str, model: &str, user: Option<&str>) -> (u16, Value) {
    let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let mut req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {CLIENT_KEY}"));
    if let Some(user) = user {
        req = req.header("x-user-id", user);
    }
    let reply = send(req.body(Bytes::from(body.to_string())).unwrap())
        .await
        .unwrap();
    (
        reply.status,
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn weighted_ab_splits_within_bounds_and_sticks_by_header() {
    let mut env = Env::new();
    let a = mock(Provider::Openai, "side-a");
    let b = mock(Provider::Anthropic, "side-b");
    let addr = gateway(
        &mut env,
        &[backend("a", &a, "[]", 3), backend("b", &b, "[]", 1)],
        "  routing:\n  - model: \"ab-*\"\n    backends: [a, b]\n  sessionAffinity: {type: header, header: x-user-id}\n",
    )
    .await;
    const N: usize = 400;
    let mut to_b = 0;
    for _ in 0..N {
        let (status, body) = chat(&addr, "ab-test", None).await;
        assert_eq!(status, 200, "{body:#}");
        let text = body["choices"][0]["message"]["content"].as_str().unwrap();
        if text.starts_with("side-b") {
            to_b += 1;
        } else {
            assert!(text.starts_with("side-a"), "{text}");
        }
    }
    // Weight 1 of 4: binomial mean 100, sd ~8.7; 5 sd either side never fails by chance.
    assert!(
        (57..=143).contains(&to_b),
        "{to_b} of {N} went to the weight-1 side"
    );
    // Each user stays on one side; across users both sides are used.
    let mut sides = std::collections::BTreeSet::new();
    for user in 0..16 {
        let user = format!("user-{user}");
        let (_, first) = chat(&addr, "ab-test", Some(&user)).await;
        let first = first["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string();
        for _ in 0..4 {
            let (_, again) = chat(&addr, "ab-test", Some(&user)).await;
            assert_eq!(
                again["choices"][0]["message"]["content"],
                first.as_str(),
                "{user}"
            );
        }
        sides.insert(first.split_whitespace().next().unwrap().to_string());
    }
    assert_eq!(sides.len(), 2, "{sides:?}");
}

#[tokio::test]
async fn models_are_listed_and_bad_requests_get_the_clients_error_shape() {
    let mut env = Env::new();
    let anthropic = mock(Provider::Anthropic, "claude-mock");
    let addr = gateway(
        &mut env,
        &[backend(
            "anthropic",
            &anthropic,
            "[claude-sonnet-4, claude-haiku]",
            1,
        )],
        "",
    )
    .await;
    let reply = send(nantian_e2e::harness::get(&addr, "x", "/v1/models"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let list: Value = serde_json::from_slice(&reply.body).unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["claude-haiku", "claude-sonnet-4"]);

    // Not JSON: the OpenAI client gets an OpenAI error, and nothing reached the backend.
    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .body(Bytes::from_static(b"{not json"))
        .unwrap();
    let reply = send(req).await.unwrap();
    assert_eq!(reply.status, 400);
    let err: Value = serde_json::from_slice(&reply.body).unwrap();
    assert!(err["error"]["message"].is_string(), "{err:#}");
    assert!(anthropic.process.requests().unwrap().is_empty());

    // The backend's own 4xx is the client's to see, translated (no fallback): the
    // Anthropic mock refuses a request without messages.
    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .body(Bytes::from_static(
            br#"{"model":"claude-haiku","messages":[]}"#,
        ))
        .unwrap();
    let reply = send(req).await.unwrap();
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    let err: Value = serde_json::from_slice(&reply.body).unwrap();
    assert!(err["error"]["message"].is_string(), "{err:#}");

    // An invalid AIService (its Secret is gone) is reported, and its route answers 500.
    env.write(
        "ai.yaml",
        &std::fs::read_to_string(env.config_dir().join("ai.yaml"))
            .unwrap()
            .replace("anthropic-key, key: api-key", "missing-key, key: api-key"),
    );
    wait_for(
        || async {
            send(nantian_e2e::harness::get(&addr, "x", "/v1/models"))
                .await
                .is_ok_and(|r| r.status == 500)
        },
        "the route of the invalid AIService answering 500",
    )
    .await;
}
