//! The answer to a refused request, in the error shape of the client's API:
//!
//! - OpenAI (and unknown paths): `{"error": {"message", "type": "tokens" | "requests",
//!   "param": null, "code": "rate_limit_exceeded"}}`
//! - Anthropic: `{"type": "error", "error": {"type": "rate_limit_error", "message"}}`
//! - Ollama: `{"error": "message"}`

use nantian_filter_sdk::LocalResponse;
use nantian_llm_tokens::Api;
use serde_json::json;

use crate::budget::Refusal;
use crate::config::OnLimit;
use crate::headers;

/// The API a client speaks, from the end of its request path (as the ai-adapter reads
/// it): `…/chat/completions`, `…/messages`, `…/api/chat`.
pub fn client_api(path_and_query: &str) -> Option<Api> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let path = path.strip_suffix('/').unwrap_or(path);
    [
        ("/chat/completions", Api::OpenAi),
        ("/api/chat", Api::Ollama),
        ("/messages", Api::Anthropic),
    ]
    .into_iter()
    .find_map(|(end, api)| path.ends_with(end).then_some(api))
}

/// The local response refusing a request: `onLimit`'s status and message, the client
/// API's error body, `Retry-After` (unless waiting cannot help or it is turned off) and
/// the `x-ratelimit-*` headers of the limits checked.
pub fn response(api: Option<Api>, on_limit: &OnLimit, refusal: &Refusal) -> LocalResponse {
    let message = match &on_limit.message {
        Some(message) => message.clone(),
        None => message(refusal),
    };
    let mut response = LocalResponse::new(on_limit.status)
        .with_header("content-type", "application/json")
        .with_body(body(api, refusal, &message));
    if let (true, Some(millis)) = (on_limit.retry_after, refusal.retry_after_millis) {
        let seconds = headers::retry_after_seconds(millis);
        response = response.with_header("retry-after", seconds.to_string());
    }
    for (name, value) in headers::ratelimit(&refusal.quotas) {
        response = response.with_header(name, value);
    }
    response
}

/// The default message: which limit, how much was asked, and when to retry.
fn message(refusal: &Refusal) -> String {
    let Refusal {
        limit, requested, ..
    } = refusal;
    let what = limit.kind.words();
    match refusal.retry_after_millis {
        None => format!(
            "Request too large for the limit on {what}: limit {}, requested {requested}. \
             Shorten the request.",
            limit.max
        ),
        Some(millis) if limit.kind.counts_tokens() => format!(
            "Rate limit reached for {what}: limit {}, requested {requested}. Please try \
             again in {}.",
            limit.max,
            headers::duration(millis)
        ),
        Some(millis) => format!(
            "Rate limit reached for {what}: limit {}. Please try again in {}.",
            limit.max,
            headers::duration(millis)
        ),
    }
}

fn body(api: Option<Api>, refusal: &Refusal, message: &str) -> Vec<u8> {
    let body = match api {
        Some(Api::OpenAi) | None => {
            let kind = if refusal.limit.kind.counts_tokens() {
                "tokens"
            } else {
                "requests"
            };
            json!({"error": {"message": message, "type": kind, "param": null,
                "code": "rate_limit_exceeded"}})
        }
        Some(Api::Anthropic) => {
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": message}})
        }
        Some(Api::Ollama) => json!({"error": message}),
    };
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::budget::{Kind, Limit, Quota, Quotas};

    fn refusal(kind: Kind, retry_after_millis: Option<u64>) -> Refusal {
        Refusal {
            limit: Limit { kind, max: 1000 },
            requested: if kind.counts_tokens() { 250 } else { 1 },
            retry_after_millis,
            quotas: Quotas {
                requests: None,
                tokens: Some(Quota {
                    limit: 1000,
                    remaining: 100,
                    reset_millis: 54_000,
                }),
            },
        }
    }

    fn header<'a>(response: &'a LocalResponse, name: &str) -> Option<&'a str> {
        let mut values = response.headers.iter().filter(|(n, _)| n == name);
        let value = values.next().map(|(_, v)| v.as_str());
        assert!(values.next().is_none(), "{name} twice");
        value
    }

    fn json_body(response: &LocalResponse) -> Value {
        serde_json::from_slice(&response.body).unwrap()
    }

    #[test]
    fn the_api_comes_from_the_end_of_the_path() {
        for (path, api) in [
            ("/v1/chat/completions", Some(Api::OpenAi)),
            ("/openai/v1/chat/completions/?x=1", Some(Api::OpenAi)),
            ("/v1/messages?beta=true", Some(Api::Anthropic)),
            ("/ollama/api/chat", Some(Api::Ollama)),
            ("/v1/embeddings", None),
            ("/x?to=/v1/messages", None),
        ] {
            assert_eq!(client_api(path), api, "{path}");
        }
    }

    #[test]
    fn each_api_gets_its_error_shape() {
        let tokens = refusal(Kind::TokensPerMinute, Some(12_000));
        let message = "Rate limit reached for tokens per minute: limit 1000, requested 250. \
                       Please try again in 12s.";
        let openai = json!({"error": {"message": message, "type": "tokens", "param": null,
            "code": "rate_limit_exceeded"}});
        let on_limit = OnLimit::default();
        for api in [Some(Api::OpenAi), None] {
            assert_eq!(json_body(&response(api, &on_limit, &tokens)), openai);
        }
        assert_eq!(
            json_body(&response(Some(Api::Anthropic), &on_limit, &tokens)),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": message}})
        );
        assert_eq!(
            json_body(&response(Some(Api::Ollama), &on_limit, &tokens)),
            json!({"error": message})
        );
        let requests = refusal(Kind::RequestsPerMinute, Some(20));
        assert_eq!(
            json_body(&response(None, &on_limit, &requests)),
            json!({"error": {"message": "Rate limit reached for requests per minute: limit 1000. \
                Please try again in 20ms.", "type": "requests", "param": null,
                "code": "rate_limit_exceeded"}})
        );
    }

    #[test]
    fn status_message_and_retry_after_follow_on_limit() {
        let tokens = refusal(Kind::TokensPerDay, Some(3_599_001));
        let answer = response(Some(Api::OpenAi), &OnLimit::default(), &tokens);
        assert_eq!(answer.status, 429);
        assert_eq!(header(&answer, "content-type"), Some("application/json"));
        assert_eq!(header(&answer, "retry-after"), Some("3600"));
        assert_eq!(header(&answer, "x-ratelimit-limit-tokens"), Some("1000"));
        assert_eq!(header(&answer, "x-ratelimit-remaining-tokens"), Some("100"));
        assert_eq!(header(&answer, "x-ratelimit-reset-tokens"), Some("54s"));
        assert_eq!(header(&answer, "x-ratelimit-limit-requests"), None);

        let custom = OnLimit {
            status: 503,
            message: Some("token budget spent".into()),
            retry_after: false,
        };
        let answer = response(Some(Api::Ollama), &custom, &tokens);
        assert_eq!(answer.status, 503);
        assert_eq!(header(&answer, "retry-after"), None);
        assert_eq!(json_body(&answer), json!({"error": "token budget spent"}));
    }

    #[test]
    fn a_request_larger_than_the_limit_gets_no_retry_after() {
        let too_large = refusal(Kind::TokensPerHour, None);
        let answer = response(Some(Api::Anthropic), &OnLimit::default(), &too_large);
        assert_eq!(header(&answer, "retry-after"), None);
        assert_eq!(
            json_body(&answer)["error"]["message"],
            "Request too large for the limit on tokens per hour: limit 1000, requested 250. \
             Shorten the request."
        );
    }
}
