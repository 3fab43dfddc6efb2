//! TokenPolicy end to end: a real controller and hosts, the token-limit Wasm component in
//! front of an AIService, a mock provider behind it, the official SDKs and plain HTTP in
//! front, and a real redis-server for counters shared by two hosts.
//!
//! Admission uses the component's BPE estimate of the prompt; charging uses the usage the
//! provider reported. The mock reports words as tokens (input: the prompt's words; output:
//! the echo's, three more than the prompt's), so a prompt of `WORDS` words costs
//! `2 * WORDS + 3` tokens while its estimate is about `WORDS + 7`.

use std::time::Instant;

use bytes::Bytes;
use nantian_e2e::ai_mock::sdk::{SdkArgs, gateway_base_url, is_skip, run_sdk_clients};
use nantian_e2e::ai_mock::{AiMockProcess, Provider};
use nantian_e2e::harness::{Env, Reply, send, yaml};
use nantian_e2e::metrics::{host_metrics, series};
use nantian_e2e::redis::RedisServer;
use serde_json::{Value, json};

const NS: &str = "ai";
const MOCK_KEY: &str = "sk-mock-secret";
const WORDS: usize = 200;

fn prompt() -> String {
    vec!["w"; WORDS].join(" ")
}

/// What one successful request of [`prompt`] is charged: the mock's input and output words.
const CHARGED: u64 = (2 * WORDS + 3) as u64;

fn openai_mock() -> AiMockProcess {
    AiMockProcess::start(
        Provider::Openai,
        &["--api-key", MOCK_KEY, "--name", "gpt-mock"],
    )
    .expect("start nantian-ai-mock")
}

/// Gateways `gateways` (names, each on its own address, port 8080) sharing one HTTPRoute
/// to AIService `llm` (the OpenAI mock), and TokenPolicy `budget` on the AIService with
/// `policy` (YAML lines of its spec after targetRefs).
fn config(env: &Env, gateways: &[&str], mock: &AiMockProcess, policy: &str) -> String {
    let mut out = yaml::GATEWAY_CLASS.to_string();
    let mut parents = String::new();
    for (n, name) in gateways.iter().enumerate() {
        let ip = env.gateway_ip(u8::try_from(n + 1).unwrap());
        out.push_str(&yaml::gateway(NS, name, &ip, &[("http", 8080, None)]));
        parents.push_str(&format!("  - {{name: {name}}}\n"));
    }
    out.push_str(&format!(
        r#"---
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: mock-key, namespace: {NS}}}
stringData:
  api-key: {MOCK_KEY}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: llm, namespace: {NS}}}
spec:
  parentRefs:
{parents}  rules:
  - backendRefs:
    - {{group: gateway.nantian.dev, kind: AIService, name: llm}}
---
apiVersion: gateway.nantian.dev/v1alpha1
kind: AIService
metadata: {{name: llm, namespace: {NS}}}
spec:
  backends:
  - name: openai
    provider: openai
    endpoint: {origin}/v1
    auth:
      secretRef: {{name: mock-key, key: api-key}}
---
apiVersion: gateway.nantian.dev/v1alpha1
kind: TokenPolicy
metadata: {{name: budget, namespace: {NS}}}
spec:
  targetRefs:
  - {{group: gateway.nantian.dev, kind: AIService, name: llm}}
{policy}
"#,
        origin = mock.origin(),
    ));
    out
}

async fn start(env: &mut Env, gateways: &[&str], mock: &AiMockProcess, policy: &str) {
    env.write("ai.yaml", &config(env, gateways, mock, policy));
    env.start_controller();
    env.wait_ready().await;
    let status = env.object_status("TokenPolicy", NS, "budget").await;
    assert_eq!(
        status["conditions"][0]["status"], "True",
        "the policy is accepted: {status:#}"
    );
}

fn sdk(sdk: Provider, addr: &str, tenant: &str) -> SdkArgs {
    let base_url = gateway_base_url(sdk, addr);
    let mut args = SdkArgs::new(sdk, &base_url, "sk-client", "gpt-4o", &prompt());
    args.headers.push(("x-tenant".into(), tenant.into()));
    args
}

/// A plain OpenAI chat request for `tenant`.
async fn chat(addr: &str, tenant: &str) -> Reply {
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi there"}]});
    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-tenant", tenant)
        .body(Bytes::from(body.to_string()))
        .unwrap();
    send(req).await.expect("the gateway answers")
}

#[tokio::test]
async fn token_budgets_admit_on_the_estimate_charge_the_usage_and_refuse_in_each_apis_shape() {
    let mut env = Env::new();
    let mock = openai_mock();
    // Two successes spend 2 * CHARGED; a third prompt's estimate (~WORDS) no longer fits,
    // while with estimates alone charged, four would.
    let budget = 2 * CHARGED + CHARGED / 4;
    let policy = format!(
        "  limits: {{tokensPerDay: {budget}}}\n  key: {{type: header, header: x-tenant}}\n"
    );
    start(&mut env, &["gw"], &mock, &policy).await;
    let addr = format!("{}:8080", env.gateway_ip(1));

    let calls = [
        sdk(Provider::Openai, &addr, "a"),
        sdk(Provider::Openai, &addr, "a"),
        sdk(Provider::Openai, &addr, "a"),
        sdk(Provider::Anthropic, &addr, "a"),
        sdk(Provider::Ollama, &addr, "a"),
        sdk(Provider::Openai, &addr, "b"),
    ];
    let out = tokio::task::spawn_blocking(move || run_sdk_clients(&calls))
        .await
        .unwrap();
    if out.iter().any(is_skip) {
        return;
    }
    for (n, o) in out[..2].iter().enumerate() {
        assert!(o.get("error").is_none(), "call {n} is admitted: {o:#}");
        let usage = &o["usage"];
        assert_eq!(
            usage["prompt_tokens"].as_u64().unwrap_or_default()
                + usage["completion_tokens"].as_u64().unwrap_or_default(),
            CHARGED,
            "the mock charges words: {o:#}"
        );
    }

    // OpenAI's shape, with when to come back and the budget's state.
    let refused = &out[2]["error"];
    assert_eq!(refused["status"], 429, "{:#}", out[2]);
    assert_eq!(refused["code"], "rate_limit_exceeded", "{refused:#}");
    let headers = &refused["headers"];
    let retry_after: u64 = headers["retry-after"].as_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry_after), "{headers:#}");
    assert_eq!(
        headers["x-ratelimit-limit-tokens"],
        budget.to_string(),
        "{headers:#}"
    );

    // Anthropic's and Ollama's clients get their own shapes.
    let anthropic = &out[3]["error"];
    assert_eq!(anthropic["status"], 429, "{:#}", out[3]);
    assert_eq!(anthropic["type"], "rate_limit_error", "{anthropic:#}");
    let ollama = &out[4]["error"];
    assert_eq!(ollama["status"], 429, "{:#}", out[4]);
    assert!(
        ollama["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{ollama:#}"
    );

    // Another tenant has its own budget.
    assert!(
        out[5].get("error").is_none(),
        "tenant b is admitted: {:#}",
        out[5]
    );

    // Refused requests never reached the provider.
    let reached = mock.requests().unwrap().len();
    assert_eq!(reached, 3, "two of tenant a and one of tenant b");

    let metrics = host_metrics(&env, 1).await;
    let rejected = [("policy", "ai/budget"), ("limit", "tokens_per_day")];
    assert_eq!(
        series(&metrics, "nantian_ai_limit_rejections_total", &rejected),
        Some(3.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn admitted_requests_carry_the_budgets_state_in_ratelimit_headers() {
    let mut env = Env::new();
    let mock = openai_mock();
    let policy = "  limits: {requestsPerMinute: 5, tokensPerHour: 100000}\n  key: {type: header, header: x-tenant}\n";
    start(&mut env, &["gw"], &mock, policy).await;
    let addr = format!("{}:8080", env.gateway_ip(1));

    let reply = chat(&addr, "a").await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let header = |name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{name} in {:?}", reply.headers))
            .to_string()
    };
    assert_eq!(header("x-ratelimit-limit-requests"), "5");
    assert_eq!(header("x-ratelimit-remaining-requests"), "4");
    assert_eq!(header("x-ratelimit-limit-tokens"), "100000");
    let remaining: u64 = header("x-ratelimit-remaining-tokens").parse().unwrap();
    assert!(
        remaining < 100_000,
        "the estimate was reserved: {remaining}"
    );
    assert!(!header("x-ratelimit-reset-requests").is_empty());

    // The sixth request in a minute is one too many.
    for _ in 0..4 {
        assert_eq!(chat(&addr, "a").await.status, 200);
    }
    let refused = chat(&addr, "a").await;
    assert_eq!(refused.status, 429);
    let body: Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body["error"]["type"], "requests", "{body:#}");
    assert!(refused.headers.contains_key("retry-after"));
}

/// Fires `per_host` concurrent requests of one tenant at each address; returns how many
/// were admitted and the seconds it took. Every answer is a 200 or a 429.
async fn burst(addrs: &[String], per_host: usize, tenant: &str) -> (usize, f64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for addr in addrs {
        for _ in 0..per_host {
            let (addr, tenant) = (addr.clone(), tenant.to_string());
            tasks.push(tokio::spawn(async move { chat(&addr, &tenant).await }));
        }
    }
    let mut admitted = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            200 => admitted += 1,
            429 => {}
            other => panic!("{other}: {}", String::from_utf8_lossy(&reply.body)),
        }
    }
    (admitted, started.elapsed().as_secs_f64())
}

/// At 10 requests a minute, a bucket admits 10 at once and one more per 6 s after.
fn refill_allowance(seconds: f64) -> usize {
    (seconds / 6.0).floor() as usize
}

#[tokio::test]
async fn redis_counters_hold_one_budget_across_two_hosts_local_ones_do_not() {
    let Some(redis) = RedisServer::start_or_skip(
        "redis_counters_hold_one_budget_across_two_hosts_local_ones_do_not",
    ) else {
        return;
    };
    let mock = openai_mock();
    let per_minute = 10;
    let limits = format!(
        "  limits: {{requestsPerMinute: {per_minute}}}\n  key: {{type: header, header: x-tenant}}\n"
    );

    // Shared: two hosts, twelve concurrent requests each, ten admitted in all.
    let mut env = Env::new();
    let shared = format!(
        "{limits}  storage:\n    type: redis\n    redis: {{url: \"{}\"}}\n",
        redis.url()
    );
    start(&mut env, &["gw-a", "gw-b"], &mock, &shared).await;
    let addrs = [
        format!("{}:8080", env.gateway_ip(1)),
        format!("{}:8080", env.gateway_ip(2)),
    ];
    let (admitted, seconds) = burst(&addrs, 12, "t").await;
    assert!(
        (per_minute..=per_minute + refill_allowance(seconds)).contains(&admitted),
        "one budget of {per_minute} for both hosts: {admitted} admitted in {seconds:.1} s"
    );
    drop(env);

    // Local: each host counts on its own.
    let mut env = Env::new();
    start(&mut env, &["gw-a", "gw-b"], &mock, &limits).await;
    let addrs = [
        format!("{}:8080", env.gateway_ip(1)),
        format!("{}:8080", env.gateway_ip(2)),
    ];
    let (admitted, seconds) = burst(&addrs, 12, "t").await;
    assert!(
        (2 * per_minute..=2 * per_minute + 2 * refill_allowance(seconds)).contains(&admitted),
        "a budget of {per_minute} per host: {admitted} admitted in {seconds:.1} s"
    );
}
