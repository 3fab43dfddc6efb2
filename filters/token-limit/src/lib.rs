//! Token budgets for LLM routes: the filter behind the TokenPolicy resource. It admits a
//! request only if its key's budget has room for the prompt's estimated tokens (and one
//! more request), and charges the tokens the provider reported once the response ends.
//!
//! # Configuration
//!
//! ```json
//! {"policy": "team-a/per-tenant",
//!  "limits": {"tokensPerMinute": 20000, "tokensPerHour": 100000,
//!             "tokensPerDay": 2000000, "requestsPerMinute": 60},
//!  "burst": 5000,
//!  "key": {"type": "header", "header": "x-tenant"},
//!  "onLimit": {"statusCode": 429, "message": "token budget spent", "retryAfter": true}}
//! ```
//!
//! See [`config`] for each field. The key ([`key::KeySource`]) is a header, the client's
//! API key, the body's `user` or its `model`; requests without one share one budget.
//!
//! # Where it runs
//!
//! In an AI route's rule filters, before the backend's ai-adapter on the request path
//! and so after it on the response path: it sees the client's own request (path, API key
//! and body), and by the end of the response body the adapter has reported the usage
//! (`ai.input_tokens`, `ai.output_tokens`; see `wit/README.md`).
//!
//! # Admission (end of the request body)
//!
//! The body is held until it is complete (the gateway hands AI routes the whole body at
//! once). Its prompt is estimated with `nantian-llm-tokens`, in the client's API from the
//! end of the path (OpenAI for other paths); a body that is not JSON, or is over 4 MiB,
//! counts 0 tokens. Then every configured limit takes its cost, in the order requests
//! per minute, tokens per minute, per hour, per day (see [`budget`]); if one refuses,
//! the earlier ones get their cost back. A request whose estimate alone is more than a
//! token limit is refused outright, with no `Retry-After` (waiting would not help).
//!
//! A refused request is answered with `onLimit`'s status (429) in the client API's error
//! shape (see [`refusal`]), with `Retry-After` and the `x-ratelimit-*` headers, after
//! setting the request attributes `ai.rate_limited` (`requests_per_minute`,
//! `tokens_per_minute`, `tokens_per_hour` or `tokens_per_day`) and
//! `ai.rate_limit_policy` (the configuration's `policy`), from which the host counts
//! refusals. An admitted request carries its reservation in a request attribute (see
//! [`ticket`]).
//!
//! # Responses
//!
//! - The head gets OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
//!   headers for the configured limits, as they stood after admission; with several
//!   token limits, the one with the least left.
//! - An error response (status 400 or more) gives the reservation back at its head: the
//!   provider charges nothing for it, and a local answer (the adapter refusing the
//!   request, no backend) has no body phase to wait for.
//! - At the end of the body the request costs `ai.input_tokens + ai.output_tokens`, or,
//!   without them, its reservation; the difference is charged to every token limit (the
//!   minute bucket may go into debt, which delays the key's next requests).
//!
//! # Failures
//!
//! When the counter store fails (a shared Redis is unreachable), the request goes on
//! unlimited, with a warning and no headers: the budget fails open. The filter never
//! fails a request itself.
//!
//! # State and costs
//!
//! Instances are reused (`per-request-isolation: false`): nothing outlives a request but
//! the body of one request while it arrives. Measured in the engine on a busy 2-core
//! machine (`tests/token_limit.rs`'s `measure`): instantiating and `init`, which compiles
//! the tokenizer's pattern, 35–55 ms; a whole exchange 0.2–0.4 ms for a small prompt,
//! 11–15 ms at 32 KiB (past which the estimate is extrapolated), 25–35 ms at 1 MiB and
//! about 100 ms at 4 MiB. The binding's call budget (`timeout_millis`) must allow for
//! these: 250 ms, as the ai-adapter's. The tokenizer's vocabulary is static data (about
//! 5 MiB of linear memory), and a held body needs a few times its size: 64 MiB
//! (`max_memory_bytes`) covers 4 MiB bodies.
#![forbid(unsafe_code)]

mod budget;
pub mod config;
mod headers;
mod key;
mod refusal;
mod ticket;

use nantian_filter_sdk::{
    BodyAction, Filter, FilterInfo, HeadersAction, Phases, Request, Response, host,
};
use nantian_llm_tokens::Api;
use serde_json::Value;

use budget::{Admission, HostCounters};
use config::Config;
use ticket::Ticket;

/// The longest body read for its estimate and key: past it, the request counts 0 tokens.
pub const MAX_HELD_BYTES: usize = 4 << 20;

/// Set on a refused request: the name of the limit that refused it.
pub const RATE_LIMITED: &str = "ai.rate_limited";
/// Set on a refused request: the configuration's `policy`.
pub const RATE_LIMIT_POLICY: &str = "ai.rate_limit_policy";
/// The ai-adapter's usage report, read at the end of the response.
const INPUT_TOKENS: &str = "ai.input_tokens";
const OUTPUT_TOKENS: &str = "ai.output_tokens";

/// The filter: one policy's binding.
pub struct TokenLimit {
    config: Config,
    /// The request attribute carrying this binding's [`Ticket`].
    attribute: String,
    held: Held,
}

/// A request body arriving in several chunks, held until its end.
#[derive(Default)]
struct Held {
    body: Vec<u8>,
    /// Past [`MAX_HELD_BYTES`]: what was held went on, and the rest follows unread.
    overflowed: bool,
}

impl Held {
    fn in_use(&self) -> bool {
        self.overflowed || !self.body.is_empty()
    }

    /// A chunk before the last.
    fn hold(&mut self, chunk: Vec<u8>) -> BodyAction {
        if self.overflowed {
            return BodyAction::Continue;
        }
        if self.body.len() + chunk.len() > MAX_HELD_BYTES {
            self.overflowed = true;
            let mut held = std::mem::take(&mut self.body);
            held.extend_from_slice(&chunk);
            return BodyAction::Replace(held);
        }
        if self.body.is_empty() {
            self.body = chunk;
        } else {
            self.body.extend_from_slice(&chunk);
        }
        BodyAction::Replace(Vec::new())
    }
}

impl Filter for TokenLimit {
    fn new(config: &[u8]) -> Result<Self, String> {
        let config = Config::parse(config)?;
        Ok(TokenLimit {
            attribute: ticket::attribute(&config.policy),
            config,
            held: Held::default(),
        })
    }

    fn info(&self) -> FilterInfo {
        FilterInfo::stateless(
            Phases::REQUEST_BODY | Phases::RESPONSE_HEADERS | Phases::RESPONSE_BODY,
        )
    }

    fn on_request_body(
        &mut self,
        req: &Request,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> BodyAction {
        if self.held.in_use() && req.attribute(&self.attribute).as_deref() != Some(ticket::PENDING)
        {
            // Left by a request whose body never ended.
            self.held = Held::default();
        }
        if !end_of_stream {
            if !self.held.in_use() {
                req.set_attribute(&self.attribute, ticket::PENDING);
            }
            return self.held.hold(chunk);
        }
        let held = std::mem::take(&mut self.held);
        if held.overflowed {
            return self.admit(req, None).unwrap_or(BodyAction::Continue);
        }
        if held.body.is_empty() {
            let readable = chunk.len() <= MAX_HELD_BYTES;
            return self
                .admit(req, readable.then_some(&chunk[..]))
                .unwrap_or(BodyAction::Continue);
        }
        let mut body = held.body;
        body.extend_from_slice(&chunk);
        let readable = body.len() <= MAX_HELD_BYTES;
        match self.admit(req, readable.then_some(&body[..])) {
            Some(refused) => refused,
            None => BodyAction::Replace(body),
        }
    }

    fn on_response_headers(&mut self, req: &Request, resp: &Response) -> HeadersAction {
        let Some(mut ticket) = self.ticket(req) else {
            return HeadersAction::Continue;
        };
        for (name, value) in headers::ratelimit(&ticket.quotas) {
            resp.set_header(name, &value);
        }
        if resp.status() >= 400 {
            self.settle(&ticket, 0);
            ticket.settled = true;
            req.set_attribute(&self.attribute, &ticket.encode());
        }
        HeadersAction::Continue
    }

    fn on_response_body(
        &mut self,
        req: &Request,
        _resp: &Response,
        _chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> BodyAction {
        if end_of_stream && let Some(ticket) = self.ticket(req) {
            let used = reported_usage(req).unwrap_or(ticket.reserved);
            self.settle(&ticket, used);
        }
        BodyAction::Continue
    }
}

impl TokenLimit {
    /// Takes the request's cost from its budget; `Some` is the refusal.
    fn admit(&self, req: &Request, body: Option<&[u8]>) -> Option<BodyAction> {
        let api = refusal::client_api(&req.path());
        let json: Option<Value> = body.and_then(|body| serde_json::from_slice(body).ok());
        let estimate = json.as_ref().map_or(0, |json| {
            nantian_llm_tokens::estimate_request_json(api.unwrap_or(Api::OpenAi), json)
        });
        let key = self
            .config
            .key
            .value(|name| req.header(name), json.as_ref());
        let key = key::hash(&key);
        let Config { limits, burst, .. } = &self.config;
        match budget::admit(&mut HostCounters, limits, *burst, &key, estimate) {
            Admission::Admitted(quotas) => {
                let ticket = Ticket {
                    key,
                    reserved: estimate,
                    at: host::now_millis(),
                    quotas,
                    settled: false,
                };
                req.set_attribute(&self.attribute, &ticket.encode());
                None
            }
            Admission::Refused(refusal) => {
                let name = refusal.limit.kind.name();
                host::debug(&format!(
                    "token-limit {}: refused on {name} (requested {})",
                    self.config.policy, refusal.requested
                ));
                req.set_attribute(RATE_LIMITED, name);
                req.set_attribute(RATE_LIMIT_POLICY, &self.config.policy);
                let answer = refusal::response(api, &self.config.on_limit, &refusal);
                Some(BodyAction::Respond(answer))
            }
            Admission::Unavailable(e) => {
                host::warn(&format!(
                    "token-limit {}: {e}; the request goes on unlimited",
                    self.config.policy
                ));
                None
            }
        }
    }

    /// The admitted request's unsettled ticket.
    fn ticket(&self, req: &Request) -> Option<Ticket> {
        Ticket::decode(&req.attribute(&self.attribute)?)
    }

    /// Charges the difference between `used` and the reservation.
    fn settle(&self, ticket: &Ticket, used: u64) {
        let delta = i128::from(used) - i128::from(ticket.reserved);
        let delta = i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX });
        let Config { limits, burst, .. } = &self.config;
        budget::settle(
            &mut HostCounters,
            limits,
            *burst,
            &ticket.key,
            delta,
            ticket.at,
        );
    }
}

/// `ai.input_tokens + ai.output_tokens` as the ai-adapter reported them, if it did.
fn reported_usage(req: &Request) -> Option<u64> {
    let count = |name: &str| req.attribute(name)?.trim().parse::<u64>().ok();
    match (count(INPUT_TOKENS), count(OUTPUT_TOKENS)) {
        (None, None) => None,
        (input, output) => Some(input.unwrap_or(0).saturating_add(output.unwrap_or(0))),
    }
}

nantian_filter_sdk::export_filter!(TokenLimit);
