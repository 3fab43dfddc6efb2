//! The built token-limit component under the real engine and its counters: admission
//! and refusal in each client API's shape, charging from the adapter's usage report,
//! refunds, burst, keys. Build it first:
//! `cargo build --profile filter --target wasm32-wasip2 -p nantian-filter-token-limit`.

mod common;

use bytes::Bytes;
use common::{Call, OK, Upstream, bind, bind_in, call, call_chunked, post};
use nantian_filter_testing::{CounterScope, Phases, WasmError, chunks_of};
use nantian_llm_tokens::Api;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const POLICY: &str = "team-a/per-tenant";

/// A configuration keyed by `x-tenant`, with `limits` and any more fields in `extra`.
fn config(limits: &str, extra: &str) -> String {
    format!(
        r#"{{"policy": "{POLICY}", "limits": {limits},
            "key": {{"type": "header", "header": "x-tenant"}}{extra}}}"#
    )
}

/// A client of one API: where it posts, and what.
struct Client {
    api: Api,
    path: &'static str,
    body: Value,
}

fn clients() -> Vec<Client> {
    let question = "What is the capital of France? Answer in one word, please.";
    vec![
        Client {
            api: Api::OpenAi,
            path: "/v1/chat/completions",
            body: json!({"model": "gpt-4o", "messages": [{"role": "user", "content": question}]}),
        },
        Client {
            api: Api::Anthropic,
            path: "/v1/messages",
            body: json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
                "system": "Be brief.", "messages": [{"role": "user", "content": question}]}),
        },
        Client {
            api: Api::Ollama,
            path: "/api/chat",
            body: json!({"model": "llama3.2", "stream": false,
                "messages": [{"role": "user", "content": question}]}),
        },
        // Not an LLM chat path: estimated and answered as OpenAI.
        Client {
            api: Api::OpenAi,
            path: "/v1/embeddings",
            body: json!({"model": "text-embedding-3-small", "messages": [
                {"role": "user", "content": question}]}),
        },
    ]
}

fn openai() -> Client {
    clients().swap_remove(0)
}

impl Client {
    fn estimate(&self) -> u64 {
        nantian_llm_tokens::estimate_request_json(self.api, &self.body)
    }

    fn post(&self, tenant: &str) -> http::Request<Bytes> {
        post(self.path, &[("x-tenant", tenant)], &self.body)
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn assert_admitted(call: &Call, what: &str) {
    assert!(!call.refused(), "{what}: refused: {:?}", call.response);
    assert_eq!(call.attribute("ai.rate_limited"), None, "{what}");
}

/// A refusal by `limit` (its attribute name), with the attributes the host counts.
fn assert_refused(call: &Call, limit: &str, what: &str) {
    assert!(call.refused(), "{what}: admitted: {:?}", call.response);
    assert_eq!(call.attribute("ai.rate_limited"), Some(limit), "{what}");
    assert_eq!(
        call.attribute("ai.rate_limit_policy"),
        Some(POLICY),
        "{what}"
    );
    assert_eq!(
        call.header("content-type"),
        Some("application/json"),
        "{what}"
    );
}

#[test]
fn init_validates_the_configuration_and_asks_for_the_body_and_response_phases() {
    let bound = bind(&config(r#"{"tokensPerMinute": 1000}"#, r#", "burst": 10"#)).unwrap();
    let info = bound.info();
    assert!(!info.per_request_isolation);
    assert_eq!(
        info.phases,
        Phases {
            request_headers: false,
            request_body: true,
            response_headers: true,
            response_body: true,
        }
    );
    for (config, reason) in [
        (config("{}", ""), "limits: name at least one of"),
        (
            config(r#"{"tokensPerHour": 0}"#, ""),
            "limits.tokensPerHour: must be at least 1",
        ),
        (
            config(r#"{"tokensPerHour": 5}"#, r#", "burst": 5"#),
            "burst: applies to limits.tokensPerMinute",
        ),
        (
            r#"{"policy": "p", "limits": {"tokensPerDay": 1}, "key": {"type": "header"}}"#
                .to_owned(),
            "key.header: required",
        ),
        ("nope".to_owned(), "not JSON"),
    ] {
        match bind(&config) {
            Err(WasmError::Config(message)) => {
                assert!(message.contains(reason), "{config}: {message}")
            }
            Err(other) => panic!("{config}: expected a config error, got {other}"),
            Ok(_) => panic!("{config}: accepted"),
        }
    }
}

#[test]
fn admits_up_to_the_request_limit_then_refuses_in_each_apis_shape() {
    let bound = bind(&config(r#"{"requestsPerMinute": 2}"#, "")).unwrap();
    for (n, client) in clients().iter().enumerate() {
        let tenant = format!("tenant-{n}");
        let what = client.path;
        for remaining in ["1", "0"] {
            let call = call(&bound, client.post(&tenant), OK);
            assert_admitted(&call, what);
            assert_eq!(
                call.header("x-ratelimit-limit-requests"),
                Some("2"),
                "{what}"
            );
            let left = call.header("x-ratelimit-remaining-requests");
            assert_eq!(left, Some(remaining), "{what}");
            let reset = call.header("x-ratelimit-reset-requests").unwrap();
            assert!(reset.ends_with('s'), "{what}: {reset}");
            assert_eq!(call.header("x-ratelimit-limit-tokens"), None, "{what}");
        }
        let refused = call(&bound, client.post(&tenant), OK);
        assert_refused(&refused, "requests_per_minute", what);
        assert_eq!(refused.status(), 429, "{what}");
        // Two a minute: one comes back within 30 s.
        let retry_after = refused.header_u64("retry-after");
        assert!((1..=30).contains(&retry_after), "{what}: {retry_after}");
        assert_eq!(refused.header("x-ratelimit-limit-requests"), Some("2"));
        assert_eq!(refused.header("x-ratelimit-remaining-requests"), Some("0"));
        let body = refused.json();
        let message = match client.api {
            Api::OpenAi => {
                assert_eq!(body["error"]["type"], "requests", "{what}");
                assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{what}");
                assert_eq!(body["error"]["param"], Value::Null, "{what}");
                body["error"]["message"].as_str()
            }
            Api::Anthropic => {
                assert_eq!(body["type"], "error", "{what}");
                assert_eq!(body["error"]["type"], "rate_limit_error", "{what}");
                body["error"]["message"].as_str()
            }
            Api::Ollama => {
                assert_eq!(body.as_object().unwrap().len(), 1, "{what}: {body}");
                body["error"].as_str()
            }
        };
        let message = message.unwrap_or_else(|| panic!("{what}: no message in {body}"));
        assert!(
            message.starts_with("Rate limit reached for requests per minute: limit 2."),
            "{what}: {message}"
        );
    }
}

#[test]
fn tokens_per_minute_takes_the_estimate_and_burst_adds_room() {
    let client = openai();
    let estimate = client.estimate();
    let tpm = 2 * estimate + estimate / 2;
    let limits = format!(r#"{{"tokensPerMinute": {tpm}}}"#);

    let bound = bind(&config(&limits, "")).unwrap();
    let first = call(&bound, client.post("a"), OK);
    assert_admitted(&first, "first");
    assert_eq!(first.header_u64("x-ratelimit-limit-tokens"), tpm);
    // The bucket refills while the test runs: a token at most.
    let remaining = first.header_u64("x-ratelimit-remaining-tokens");
    assert!((tpm - estimate..=tpm - estimate + 1).contains(&remaining));
    assert_admitted(&call(&bound, client.post("a"), OK), "second");
    let third = call(&bound, client.post("a"), OK);
    assert_refused(&third, "tokens_per_minute", "third");
    assert_eq!(third.json()["error"]["type"], "tokens");
    assert!(third.header_u64("retry-after") >= 1);

    let bound = bind(&config(&limits, &format!(r#", "burst": {estimate}"#))).unwrap();
    for n in 0..3 {
        assert_admitted(&call(&bound, client.post("a"), OK), &format!("burst {n}"));
    }
    assert_refused(
        &call(&bound, client.post("a"), OK),
        "tokens_per_minute",
        "past the burst",
    );
}

#[test]
fn the_reported_usage_is_charged_at_the_end_of_the_response() {
    let client = openai();
    let estimate = client.estimate();
    let bound = bind(&config(r#"{"tokensPerDay": 100000}"#, "")).unwrap();
    let first = call(&bound, client.post("a"), Upstream::used(1000, 500));
    assert_admitted(&first, "first");
    assert_eq!(
        first.header_u64("x-ratelimit-remaining-tokens"),
        100_000 - estimate
    );
    // The day holds what the first used; without a report the reservation stands.
    let second = call(&bound, client.post("a"), OK);
    let remaining = second.header_u64("x-ratelimit-remaining-tokens");
    assert_eq!(remaining, 100_000 - 1500 - estimate);
    let third = call(&bound, client.post("a"), OK);
    let remaining = third.header_u64("x-ratelimit-remaining-tokens");
    assert_eq!(remaining, 100_000 - 1500 - 2 * estimate);
    assert!(
        third
            .header("x-ratelimit-reset-tokens")
            .unwrap()
            .ends_with('s')
    );

    // More than the minute's budget puts its bucket in debt: the next request waits.
    let bound = bind(&config(r#"{"tokensPerMinute": 1000}"#, "")).unwrap();
    assert_admitted(
        &call(&bound, client.post("a"), Upstream::used(1400, 100)),
        "first",
    );
    let waiting = call(&bound, client.post("a"), OK);
    assert_refused(&waiting, "tokens_per_minute", "in debt");
    // 500 tokens of debt plus the estimate, at 1000 a minute.
    assert!(waiting.header_u64("retry-after") >= 30);
    assert_admitted(&call(&bound, client.post("b"), OK), "another key");
}

#[test]
fn error_responses_give_the_reservation_back() {
    let client = openai();
    let estimate = client.estimate();
    let bound = bind(&config(
        r#"{"tokensPerDay": 100000, "tokensPerMinute": 1000000}"#,
        "",
    ))
    .unwrap();
    let failed = [
        // The provider failed and reported nothing.
        Upstream { status: 503, ..OK },
        // The adapter reports its estimate for a failed call: the provider charged nothing.
        Upstream {
            status: 500,
            usage: Some((estimate, 0, "estimate")),
            local: false,
        },
        // The adapter refused the request itself: no body phase comes.
        Upstream {
            status: 404,
            usage: None,
            local: true,
        },
    ];
    for upstream in failed {
        let call = call(&bound, client.post("a"), upstream);
        assert_admitted(&call, "failed");
        // Each one saw the day as if nothing had happened before it.
        let remaining = call.header_u64("x-ratelimit-remaining-tokens");
        assert_eq!(remaining, 100_000 - estimate, "{}", upstream.status);
    }
    let next = call(&bound, client.post("a"), OK);
    assert_eq!(
        next.header_u64("x-ratelimit-remaining-tokens"),
        100_000 - estimate
    );
}

#[test]
fn each_key_has_its_own_budget() {
    let bound = bind(
        r#"{"policy": "team-a/per-tenant", "limits": {"requestsPerMinute": 1},
            "key": {"type": "apiKey"}}"#,
    )
    .unwrap();
    let body = openai().body;
    let request = |header: Option<(&str, &str)>| {
        let headers: Vec<(&str, &str)> = header.into_iter().collect();
        post("/v1/chat/completions", &headers, &body)
    };
    for (header, admitted) in [
        (Some(("authorization", "Bearer sk-a")), true),
        (Some(("authorization", "Bearer sk-a")), false),
        (Some(("x-api-key", "sk-b")), true),
        // The same key, however it is sent.
        (Some(("authorization", "Bearer sk-b")), false),
        (Some(("api-key", "sk-c")), true),
        // Requests without a key share one budget.
        (None, true),
        (None, false),
    ] {
        let call = call(&bound, request(header), OK);
        let what = format!("{header:?}");
        if admitted {
            assert_admitted(&call, &what);
        } else {
            assert_refused(&call, "requests_per_minute", &what);
        }
    }
}

#[test]
fn raw_keys_never_leave_the_filter() {
    let secret = "sk-proj-very-secret-0123456789";
    let bound = bind(
        r#"{"policy": "team-a/per-tenant", "limits": {"requestsPerMinute": 1},
            "key": {"type": "apiKey"}}"#,
    )
    .unwrap();
    let body = openai().body;
    let request = || {
        let bearer = format!("Bearer {secret}");
        post(
            "/v1/chat/completions",
            &[("authorization", bearer.as_str())],
            &body,
        )
    };
    let admitted = call(&bound, request(), OK);
    let attributes = format!("{:?}", admitted.attributes);
    assert!(!attributes.contains(secret), "{attributes}");
    // The ticket names the key by its hash.
    assert!(attributes.contains(&sha256_hex(secret)), "{attributes}");
    let refused = call(&bound, request(), OK);
    assert!(refused.refused());
    let attributes = format!("{:?}", refused.attributes);
    assert!(!attributes.contains(secret), "{attributes}");

    let bound =
        bind(r#"{"policy": "p", "limits": {"tokensPerDay": 100000}, "key": {"type": "user"}}"#)
            .unwrap();
    let mut body = openai().body;
    body["user"] = json!("alice@example.com");
    let call = call(&bound, post("/v1/chat/completions", &[], &body), OK);
    let attributes = format!("{:?}", call.attributes);
    assert!(!attributes.contains("alice"), "{attributes}");
    assert!(attributes.contains(&sha256_hex("alice@example.com")));
}

#[test]
fn a_request_larger_than_a_limit_is_refused_without_retry_after() {
    let small = openai();
    let estimate = small.estimate();
    let mut large = openai();
    large.body["messages"][0]["content"] = json!("word ".repeat(200));
    let limits = format!(r#"{{"requestsPerMinute": 1, "tokensPerDay": {estimate}}}"#);
    let bound = bind(&config(&limits, "")).unwrap();
    let refused = call(&bound, large.post("a"), OK);
    assert_refused(&refused, "tokens_per_day", "large");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.header("retry-after"), None);
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.starts_with(&format!(
            "Request too large for the limit on tokens per day: limit {estimate}, requested"
        )),
        "{message}"
    );
    // It spent nothing: the one request of the minute is still there.
    assert_admitted(&call(&bound, small.post("a"), OK), "small");
    assert_refused(
        &call(&bound, small.post("a"), OK),
        "requests_per_minute",
        "again",
    );
}

#[test]
fn on_limit_sets_the_status_message_and_retry_after() {
    let extra = r#", "onLimit": {"statusCode": 503, "message": "token budget spent",
        "retryAfter": false}"#;
    let bound = bind(&config(r#"{"requestsPerMinute": 1}"#, extra)).unwrap();
    let ollama = clients().swap_remove(2);
    assert_admitted(&call(&bound, ollama.post("a"), OK), "first");
    let refused = call(&bound, ollama.post("a"), OK);
    assert_refused(&refused, "requests_per_minute", "second");
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.header("retry-after"), None);
    assert_eq!(refused.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(refused.json(), json!({"error": "token budget spent"}));
}

#[test]
fn several_token_limits_report_the_one_with_the_least_left() {
    let client = openai();
    let estimate = client.estimate();
    let limits = r#"{"tokensPerMinute": 10000, "tokensPerHour": 5000, "tokensPerDay": 100000}"#;
    let bound = bind(&config(limits, "")).unwrap();
    let call = call(&bound, client.post("a"), OK);
    assert_eq!(call.header_u64("x-ratelimit-limit-tokens"), 5000);
    assert_eq!(
        call.header_u64("x-ratelimit-remaining-tokens"),
        5000 - estimate
    );
}

#[test]
fn chunked_bodies_are_held_and_forwarded_whole() {
    let client = openai();
    let estimate = client.estimate();
    let bound = bind(&config(r#"{"tokensPerDay": 100000}"#, "")).unwrap();
    let (head, body) = client.post("a").into_parts();
    let chunks = chunks_of(&body, 7);
    assert!(chunks.len() > 3);
    let call = call_chunked(&bound, http::Request::from_parts(head, ()), chunks, OK);
    assert_admitted(&call, "chunked");
    assert_eq!(call.forwarded.as_ref().unwrap().body(), &body);
    assert_eq!(
        call.header_u64("x-ratelimit-remaining-tokens"),
        100_000 - estimate
    );
}

#[test]
fn a_body_left_unfinished_does_not_leak_into_the_next_request() {
    let client = openai();
    let estimate = client.estimate();
    let bound = bind(&config(r#"{"tokensPerDay": 100000}"#, "")).unwrap();
    {
        // The client goes away after a first chunk; the instance goes back to the pool.
        let mut active = bound.binding().start().unwrap();
        let (mut head, body) = client.post("a").into_parts();
        let chunk = body.slice(..10);
        active.on_request_body(&mut head, chunk, false).unwrap();
    }
    let (head, body) = client.post("a").into_parts();
    let call = call(&bound, http::Request::from_parts(head, body.clone()), OK);
    assert_admitted(&call, "next");
    assert_eq!(call.forwarded.as_ref().unwrap().body(), &body);
    assert_eq!(
        call.header_u64("x-ratelimit-remaining-tokens"),
        100_000 - estimate
    );
}

#[test]
fn bodies_past_4_mib_go_on_unestimated() {
    let bound = bind(&config(r#"{"tokensPerDay": 1000}"#, "")).unwrap();
    let mut client = openai();
    client.body["messages"][0]["content"] = json!("x".repeat(5 << 20));
    let (head, body) = client.post("a").into_parts();
    let chunks = chunks_of(&body, 1 << 20);
    let call = call_chunked(&bound, http::Request::from_parts(head, ()), chunks, OK);
    assert_admitted(&call, "large");
    assert_eq!(call.forwarded.as_ref().unwrap().body(), &body);
    assert_eq!(call.header_u64("x-ratelimit-remaining-tokens"), 1000);
}

#[test]
fn bindings_of_one_policy_share_its_budget() {
    let config = config(r#"{"requestsPerMinute": 1}"#, "");
    let scope = || CounterScope::local("tokenpolicy/team-a/per-tenant");
    let (first, second) = (bind_in(&config, scope()), bind_in(&config, scope()));
    let client = openai();
    assert_admitted(&call(&first.unwrap(), client.post("a"), OK), "first");
    let refused = call(&second.unwrap(), client.post("a"), OK);
    assert_refused(&refused, "requests_per_minute", "second binding");
}

#[test]
fn an_unreachable_counter_store_lets_requests_through_without_headers() {
    // Nothing listens on port 1.
    let scope = CounterScope::redis("tokenpolicy/team-a/per-tenant", "redis://127.0.0.1:1");
    // With a store, the second request would be refused.
    let limits = r#"{"requestsPerMinute": 1, "tokensPerDay": 100000}"#;
    let bound = bind_in(&config(limits, ""), scope).unwrap();
    for n in 0..2 {
        let call = call(&bound, openai().post("a"), Upstream::used(10, 10));
        assert_admitted(&call, &format!("request {n}"));
        let headers = call.response.headers();
        assert!(
            headers
                .keys()
                .all(|name| !name.as_str().starts_with("x-ratelimit")),
            "{headers:?}"
        );
    }
}

/// What the filter costs under the engine (for the crate doc and the controller's call
/// budget): `cargo test --release -p nantian-filter-token-limit --test token_limit --
/// --ignored --nocapture measure`.
#[test]
#[ignore]
fn measure() {
    let config = config(
        r#"{"requestsPerMinute": 1000000, "tokensPerDay": 1000000000}"#,
        "",
    );
    let started = std::time::Instant::now();
    drop(bind(&config).unwrap());
    println!(
        "first bind (compiles the component): {:?}",
        started.elapsed()
    );
    let started = std::time::Instant::now();
    let bound = bind(&config).unwrap();
    println!("bind (instantiate + init): {:?}", started.elapsed());
    for (what, words) in [
        ("small prompt", 10),
        ("32 KiB prompt", 6000),
        ("1 MiB prompt", 200_000),
        ("4 MiB prompt", 690_000),
    ] {
        let mut client = openai();
        client.body["messages"][0]["content"] = json!("lorem ipsum ".repeat(words / 2));
        let started = std::time::Instant::now();
        let rounds = 20;
        for n in 0..rounds {
            let call = call(
                &bound,
                client.post(&format!("t{n}")),
                Upstream::used(10, 10),
            );
            assert_admitted(&call, what);
        }
        println!("{what}: {:?} per exchange", started.elapsed() / rounds);
    }
}
