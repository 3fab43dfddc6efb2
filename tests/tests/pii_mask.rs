//! The PII mask end to end: an AIService's `piiMask` puts the built-in pii-mask Wasm
//! component first in the rules that use it, and official Python SDKs talk through a real
//! controller and host to mock providers. Personal data in a prompt never reaches the
//! backend; in a streamed answer it is masked although the mock sends it a word at a time,
//! across a translation between two providers' APIs; and with `action: Reject` the client
//! gets a 400 in its own API's error shape while the backend gets nothing.

use bytes::Bytes;
use nantian_e2e::ai_mock::Provider;
use nantian_e2e::ai_mock::sdk::{SdkArgs, gateway_base_url, is_skip, run_sdk_clients};
use nantian_e2e::ai_mock::service::{self, KeyedMock};
use nantian_e2e::harness::{Env, send};
use serde_json::{Value, json};

const NS: &str = "ai";
/// What clients send as their key.
const CLIENT_KEY: &str = "sk-client-own";

/// Personal data the filter's built-in detectors find. The card (the Visa test number,
/// which passes the Luhn check) and the phone number are four words each, so the mock
/// streams each of them in four deltas.
const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";
const PHONE: &str = "+1 415 555 0100";

/// A prompt holding all three, and what the mask makes of it.
fn prompt() -> String {
    format!("mail {EMAIL}, pay with {CARD} or call {PHONE} today")
}
const MASKED: &str = "mail [EMAIL], pay with [CREDIT_CARD] or call [PHONE] today";

/// Pieces of the values that must not get past the mask.
const RAW: &[&str] = &["jane.doe", "example.com", "4111", "415 555", "0100"];

fn assert_no_raw(what: &str, text: &str) {
    for raw in RAW {
        assert!(!text.contains(raw), "{raw:?} got through in {what}: {text}");
    }
}

type Mock = KeyedMock;

fn mock(provider: Provider, name: &str) -> Mock {
    KeyedMock::start(provider, name)
}

/// A Gateway with one HTTPRoute whose only backend is AIService `llm`, which has one
/// backend per `(name, mock, models)` and `pii_mask` (YAML lines of its spec). Returns the
/// gateway's address.
async fn gateway(env: &mut Env, backends: &[(&str, &Mock, &str)], pii_mask: &str) -> String {
    let gw = env.gateway_ip(1);
    let backends: Vec<_> = backends
        .iter()
        .map(|(name, m, models)| service::backend(NS, name, m, models, None))
        .collect();
    env.write("ai.yaml", &service::config(NS, &gw, &backends, pii_mask));
    env.start_controller();
    env.wait_ready().await;
    // The AIService was accepted with its piiMask: the route is programmed with it.
    let status = env.status().await;
    assert!(
        status.to_string().contains("AIService is accepted"),
        "{status:#}"
    );
    format!("{gw}:8080")
}

/// An SDK call of `prompt` to `model` through the gateway at `addr`.
fn client(sdk: Provider, addr: &str, model: &str, prompt: &str, stream: bool) -> SdkArgs {
    let base_url = gateway_base_url(sdk, addr);
    let mut args = SdkArgs::new(sdk, &base_url, CLIENT_KEY, model, prompt);
    args.stream = stream;
    args
}

/// Runs the calls in one Python process, off the async runtime.
async fn sdk(calls: Vec<SdkArgs>) -> Vec<Value> {
    tokio::task::spawn_blocking(move || run_sdk_clients(&calls))
        .await
        .unwrap()
}

/// The text of the last user message of an OpenAI or Anthropic request body (a string,
/// or the text of its parts).
fn user_text(body: &Value) -> String {
    let user = body["messages"]
        .as_array()
        .and_then(|messages| messages.iter().rev().find(|m| m["role"] == "user"))
        .unwrap_or_else(|| panic!("no user message: {body:#}"));
    match &user["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        other => panic!("user content {other}"),
    }
}

#[tokio::test]
async fn personal_data_in_a_prompt_never_reaches_the_backend() {
    let mut env = Env::new();
    let openai = mock(Provider::Openai, "gpt-mock");
    // The defaults: every built-in detector, masking, both ways.
    let addr = gateway(
        &mut env,
        &[("openai", &openai, "[gpt-4o]")],
        "  piiMask: {}\n",
    )
    .await;
    // The OpenAI SDK in the backend's own API, and the Anthropic SDK, whose request the
    // mask reads in Anthropic's format before the ai-adapter translates it.
    let outs = sdk(vec![
        client(Provider::Openai, &addr, "gpt-4o", &prompt(), false),
        client(Provider::Anthropic, &addr, "gpt-4o", &prompt(), false),
    ])
    .await;
    if is_skip(&outs[0]) {
        return;
    }
    for out in &outs {
        assert_eq!(out["error"], Value::Null, "{out:#}");
        // The mock echoes what it was sent: the placeholders.
        assert_eq!(
            out["text"],
            format!("gpt-mock (openai) heard: {MASKED}"),
            "{out:#}"
        );
    }
    let requests = openai.process.requests().unwrap();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    for req in &requests {
        assert_eq!(req.path, "/v1/chat/completions");
        assert_eq!(user_text(&req.body), MASKED, "{:#}", req.body);
        assert_no_raw("the upstream request", &req.body.to_string());
    }
}

/// The mock's OpenAI stream of `prompt`'s echo, read directly: its text deltas.
async fn mock_deltas(m: &Mock, model: &str, prompt: &str) -> Vec<String> {
    let body = json!({
        "model": model,
        "stream": true,
        "messages": [{"role": "user", "content": prompt}],
    });
    let req = http::Request::post(format!("{}/v1/chat/completions", m.process.origin()))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", m.key))
        .body(Bytes::from(body.to_string()))
        .unwrap();
    let reply = send(req).await.unwrap();
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| {
            let chunk: Value = serde_json::from_str(data).unwrap();
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn personal_data_streamed_back_is_masked_across_deltas_and_apis() {
    let mut env = Env::new();
    let openai = mock(Provider::Openai, "gpt-mock");
    let anthropic = mock(Provider::Anthropic, "claude-mock");
    // Only answers are scanned: the prompt reaches the mock whole, and its echo carries the
    // personal data back. `slow` models pause 50 ms between stream chunks, so each delta
    // reaches the gateway on its own.
    let addr = gateway(
        &mut env,
        &[
            ("openai", &openai, "[gpt-slow]"),
            ("anthropic", &anthropic, "[claude-slow]"),
        ],
        "  piiMask:\n    direction: Response\n",
    )
    .await;

    // The mock streams a word per delta: the card and the phone number are each cut over
    // four deltas, which only the filter's holdback across events can put together.
    let deltas = mock_deltas(&openai, "gpt-slow", &prompt()).await;
    openai.process.clear_requests().unwrap();
    assert_eq!(
        deltas.concat(),
        format!("gpt-mock (openai) heard: {}", prompt())
    );
    for piece in ["+1 ", "415 ", "555 ", "0100 "] {
        assert!(deltas.iter().any(|d| d == piece), "{piece:?}: {deltas:?}");
    }
    assert_eq!(
        deltas.iter().filter(|d| *d == "1111 ").count(),
        3,
        "{deltas:?}"
    );
    assert!(
        deltas
            .iter()
            .all(|d| !d.contains(PHONE) && !d.contains(CARD))
    );

    // The Anthropic SDK against the OpenAI backend, and the OpenAI SDK against the
    // Anthropic one: each stream is translated by the ai-adapter, then masked.
    let outs = sdk(vec![
        client(Provider::Anthropic, &addr, "gpt-slow", &prompt(), true),
        client(Provider::Openai, &addr, "claude-slow", &prompt(), true),
    ])
    .await;
    if is_skip(&outs[0]) {
        return;
    }
    for (out, heard) in outs
        .iter()
        .zip(["gpt-mock (openai) heard", "claude-mock (anthropic) heard"])
    {
        assert_eq!(out["error"], Value::Null, "{out:#}");
        assert_eq!(out["text"], format!("{heard}: {MASKED}"), "{out:#}");
        assert_no_raw("the streamed answer", out["text"].as_str().unwrap());
        // Still a stream: the text came in many deltas, not held to the end.
        assert!(out["text_deltas"].as_u64().unwrap() >= 8, "{out:#}");
    }
    // The requests were not masked (direction Response).
    for m in [&openai, &anthropic] {
        let requests = m.process.requests().unwrap();
        assert_eq!(requests.len(), 1, "{requests:#?}");
        assert_eq!(user_text(&requests[0].body), prompt());
    }
}

#[tokio::test]
async fn reject_answers_400_in_the_clients_own_error_shape() {
    let mut env = Env::new();
    let openai = mock(Provider::Openai, "gpt-mock");
    let addr = gateway(
        &mut env,
        &[("openai", &openai, "[gpt-4o]")],
        "  piiMask:\n    action: Reject\n",
    )
    .await;
    let outs = sdk(vec![
        client(Provider::Openai, &addr, "gpt-4o", &prompt(), false),
        client(Provider::Openai, &addr, "gpt-4o", &prompt(), true),
        client(Provider::Anthropic, &addr, "gpt-4o", &prompt(), false),
        client(Provider::Anthropic, &addr, "gpt-4o", &prompt(), true),
        client(Provider::Openai, &addr, "gpt-4o", "nothing personal", false),
    ])
    .await;
    if is_skip(&outs[0]) {
        return;
    }
    for out in &outs[..4] {
        let error = &out["error"];
        assert_eq!(error["status"], 400, "{out:#}");
        assert_eq!(error["type"], "invalid_request_error", "{out:#}");
        let message = error["message"].as_str().unwrap();
        // It names the kinds found, never the values.
        assert!(message.contains("personal data"), "{out:#}");
        assert!(message.contains("email"), "{out:#}");
        assert_no_raw("the error", message);
    }
    // OpenAI's error shape has a code; the SDK's exception classes are the API's own.
    for out in &outs[..2] {
        assert_eq!(out["error"]["code"], "pii_detected", "{out:#}");
        assert_eq!(out["error"]["class"], "BadRequestError", "{out:#}");
    }
    for out in &outs[2..4] {
        assert_eq!(out["error"]["class"], "BadRequestError", "{out:#}");
    }
    // A prompt without personal data goes through; it is the only one the mock received.
    assert_eq!(outs[4]["error"], Value::Null, "{:#}", outs[4]);
    assert_eq!(outs[4]["text"], "gpt-mock (openai) heard: nothing personal");
    let requests = openai.process.requests().unwrap();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(user_text(&requests[0].body), "nothing personal");
}

/// A prompt of prose just under the host's 4 MiB cap on AI requests, with the personal data
/// at its very end: the mask holds it whole and scans it within the memory (64 MiB) and the
/// time per call (1 s) the controller gives it, and then the answer echoing it.
#[tokio::test]
async fn a_prompt_at_the_size_cap_is_masked_within_the_filters_budget() {
    const PARAGRAPH: &str =
        "It was the best of times, it was the worst of times, it was the age of wisdom; ";
    let mut env = Env::new();
    let openai = mock(Provider::Openai, "gpt-mock");
    let addr = gateway(
        &mut env,
        &[("openai", &openai, "[gpt-4o]")],
        "  piiMask: {}\n",
    )
    .await;
    let mut text = PARAGRAPH.repeat((4 << 20) / PARAGRAPH.len() - 2_000);
    text.push_str(&prompt());
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]});
    let body = Bytes::from(body.to_string());
    assert!(
        body.len() > 4_000_000 && body.len() < 4 << 20,
        "{}",
        body.len()
    );
    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {CLIENT_KEY}"))
        .body(body)
        .unwrap();
    let started = std::time::Instant::now();
    let reply = send(req).await.unwrap();
    let took = started.elapsed();
    assert_eq!(
        reply.status,
        200,
        "after {took:?}: {}",
        String::from_utf8_lossy(&reply.body[..reply.body.len().min(500)])
    );
    let answer: Value = serde_json::from_slice(&reply.body).unwrap();
    let answer = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        answer.ends_with(MASKED),
        "{}",
        &answer[answer.len() - 200..]
    );
    let requests = openai.process.requests().unwrap();
    assert_eq!(requests.len(), 1);
    let sent = user_text(&requests[0].body);
    assert_eq!(sent.len(), text.len() - prompt().len() + MASKED.len());
    assert!(sent.ends_with(MASKED));
    assert_no_raw("the upstream request", &sent);
    eprintln!(
        "a request of {} bytes, masked both ways, took {took:?}",
        text.len()
    );
}
