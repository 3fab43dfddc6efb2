//! The AI adapter: lets a client of one LLM API — OpenAI Chat Completions, Anthropic
//! Messages or Ollama chat — call a backend (provider) of any of them, streaming
//! included. The gateway binds one to each AIService backend.
//!
//! # Configuration
//!
//! `{"provider": "openai" | "anthropic" | "ollama", "basePath": "/v1", "defaultMaxTokens": 4096}`
//! (see [`config`](crate::config) for the details; unknown keys are rejected).
//!
//! # What it does to a request
//!
//! - **Which API the client speaks** comes from the end of its path (the query is
//!   ignored): `…/chat/completions` OpenAI, `…/messages` Anthropic, `…/api/chat` Ollama.
//!   Any other path is answered 404 (an OpenAI-shaped error), and any method but POST 405
//!   (in the client's error shape).
//! - **The upstream path** becomes `{basePath}/chat/completions`, `{basePath}/v1/messages`
//!   or `{basePath}/api/chat` for the provider, with the client's query. `accept-encoding`
//!   is set to `identity` (the response must be readable) and `content-type` to JSON.
//!   Anthropic gets `anthropic-version: 2023-06-01` unless the client sent its own; other
//!   providers get neither `anthropic-version` nor `anthropic-beta`. Credentials are the
//!   host's business.
//! - **The body** is read whole. A body that is not JSON, not an object, or lacks `model`
//!   or `messages` is answered 400 in the client's error shape, saying what is wrong.
//!   When client and provider speak the same API it passes untouched — except that an
//!   OpenAI stream always asks for `stream_options.include_usage` (token accounting needs
//!   it; the usage chunk is dropped on the way back unless the client asked for it).
//!   Otherwise it is translated: client API → canonical model → provider API.
//!
//! # Translated request fields
//!
//! | canonical | OpenAI | Anthropic | Ollama |
//! |---|---|---|---|
//! | system prompt | `system`/`developer` messages | top-level `system` | `system` messages |
//! | text, images | `content` string or parts, `image_url` (data: or http URL) | text and `image` blocks (base64 or url) | `content`, `images` (base64 only) |
//! | tools | `tools[].function` | `tools[]` with `input_schema` | `tools[].function` |
//! | tool choice | `auto`/`none`/`required`/function | `auto`/`none`/`any`/`tool` | — |
//! | parallel tool calls | `parallel_tool_calls` | `disable_parallel_tool_use` | — |
//! | tool calls | `tool_calls` (JSON string arguments) | `tool_use` blocks | `tool_calls` (object arguments) |
//! | tool results | `role: tool` messages | `tool_result` blocks in a user turn | `role: tool` + `tool_name` |
//! | max tokens | `max_completion_tokens` / `max_tokens` | `max_tokens` (required: `defaultMaxTokens`) | `options.num_predict` |
//! | temperature, top_p | same | same (temperature clamped to 0–1) | `options.*` |
//! | top_k | — | `top_k` | `options.top_k` |
//! | seed | `seed` | — | `options.seed` |
//! | stop | `stop` | `stop_sequences` | `options.stop` |
//! | stream | `stream` | `stream` | `stream` (default true; always sent explicitly) |
//! | user | `user` | `metadata.user_id` | — |
//!
//! When client and provider differ, **fields without a counterpart are dropped**: for
//! example OpenAI's `n`, `logprobs`, `response_format`, `logit_bias`, penalties, audio and
//! file parts; Anthropic's `thinking`, cache control, documents, server tools and thinking
//! blocks; Ollama's `format`, `keep_alive`, `think` and options other than those above;
//! the error flag of tool results for OpenAI and Ollama. Only the first choice of an
//! OpenAI response is used. Images by URL cannot go to Ollama (a 400 says so). Ollama
//! tool calls have no ids: they are generated (`call_…`) and tool results are matched to
//! calls by `tool_name` and order.
//!
//! # What it does to the response
//!
//! When the APIs differ, the head gets the client's content type (`text/event-stream`
//! for OpenAI and Anthropic streams, `application/x-ndjson` for Ollama streams, else
//! JSON) and loses its content-length; Anthropic's 529 becomes a 503 for other clients.
//!
//! - **Errors** (non-2xx JSON bodies) are rewritten into the client's error shape, with
//!   matching types (401 `authentication_error`, 429 `rate_limit_error`, …). Non-JSON
//!   error bodies (a proxy's HTML) pass as they are.
//! - **Whole responses** are translated: id (`chatcmpl-…`/`msg_…`, generated when the
//!   provider has none), model as the provider named it, text, tool calls, finish reason
//!   and token usage; `created` is the time of the request.
//! - **Streams** are translated event by event as they arrive: each complete provider
//!   event (SSE events and NDJSON lines may be split anywhere across chunks) is sent on
//!   at once as the client's events. Anthropic clients get a well-formed sequence
//!   (`message_start`, numbered content blocks each stopped before the next,
//!   `message_delta`, `message_stop`); OpenAI clients get chunks ending in `data: [DONE]`
//!   with the usage chunk only if they asked; Ollama clients get NDJSON ending in
//!   `done: true`. Provider errors mid-stream, unreadable events and streams that stop
//!   early become an error event in the client's format. A stream answered to a
//!   non-streaming request is collected into one response, and a whole response to a
//!   streaming request is replayed as a stream.
//!
//! The token usage the provider reports is kept for every request
//! ([`AiAdapter::usage`]).
//!
//! # Token accounting
//!
//! The adapter reports each request's tokens as request attributes, which the host reads
//! for its metrics and later filters (a token budget) read too — the well-known names of
//! `wit/README.md`:
//!
//! - At the end of the request body, once the request is accepted (translated or passed
//!   on): `ai.model`, the `model` the client asked for (cut to 256 bytes), and `ai.estimated_input_tokens`,
//!   the prompt's BPE estimate (o200k_base, GPT-4o's encoding) computed from the
//!   client's own body by `nantian_llm_tokens::estimate_request_json` — the same number
//!   any filter gets from that body. Requests the adapter refuses (404, 405, 400) get no
//!   attributes.
//! - At the end of the response body — streamed or not, translated or passed through,
//!   error responses included: `ai.input_tokens` and `ai.output_tokens`, each as the
//!   provider reported it, else estimated (the input: the request's estimate; the
//!   output: the BPE count of the generated text, tool call names and arguments
//!   included, so 0 for an error), and `ai.usage_source`: `provider` when the provider
//!   reported both counts, else `estimate`.
//!
//! Counts are decimal strings. For Anthropic and Ollama models the estimates are
//! o200k counts, not their own tokenizers': close, not exact. The costs (measured in
//! the component, `tests/tokens.rs`'s `measure`): `init` builds nothing for the
//! tokenizer (its tables are static data); estimating a prompt takes ~0.3 ms per KiB up
//! to 32 KiB, past which the rest is extrapolated (a 1 MiB prompt: ~16 ms for the whole
//! call); the vocabulary is static data (~4.3 MB, about 5.3 MiB more linear memory than
//! without it).
//!
//! # Limits
//!
//! OpenAI tool call deltas are expected one call after another, as OpenAI sends them.
//! The request body is held whole while it is translated: an instance needs a few times
//! the largest request body in memory (`max_memory_bytes`).
#![forbid(unsafe_code)]

mod accumulate;
mod anthropic;
mod api;
mod canonical;
mod codec;
pub mod config;
mod error;
mod framing;
mod ids;
mod ollama;
mod openai;
mod request;
mod response;
mod sse;
mod stream;
mod tokens;
mod wire;

/// What each API's client makes of a response (shared with the component tests).
#[cfg(test)]
#[path = "../tests/common/clients.rs"]
mod test_clients;

use nantian_filter_sdk::{
    BodyAction, Filter, FilterInfo, HeadersAction, LocalResponse, Phases, Request, Response, host,
};

pub use api::Api;
use api::JSON;
pub use canonical::Usage;
use config::Config;
use error::{ApiError, ErrorKind};
use ids::ResponseContext;
use response::{BodyOutcome, Exchange, ResponseHead, ResponsePlan};
use tokens::Generated;

/// The Anthropic API version sent when the client named none.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The filter: one provider's binding. Instances are reused across requests; all of a
/// request's state lives in `InFlight`, replaced at each request's head.
pub struct AiAdapter {
    config: Config,
    in_flight: Option<InFlight>,
}

/// One request, from its head to the end of its response.
struct InFlight {
    exchange: Exchange,
    /// The request body while it arrives.
    body: Vec<u8>,
    /// Set from the response head.
    plan: Option<ResponsePlan>,
    usage: Usage,
    /// The prompt's BPE estimate, from the request body.
    estimated_input_tokens: u64,
    /// The response's text, counted at its end if the provider reports no usage.
    generated: Generated,
}

impl AiAdapter {
    /// The token usage the provider reported for the current (or last) request.
    pub fn usage(&self) -> Option<Usage> {
        self.in_flight.as_ref().map(|in_flight| in_flight.usage)
    }
}

impl Filter for AiAdapter {
    fn new(config: &[u8]) -> Result<Self, String> {
        let config = Config::parse(config)?;
        Ok(AiAdapter {
            config,
            in_flight: None,
        })
    }

    fn info(&self) -> FilterInfo {
        FilterInfo::stateless(
            Phases::REQUEST_HEADERS
                | Phases::REQUEST_BODY
                | Phases::RESPONSE_HEADERS
                | Phases::RESPONSE_BODY,
        )
    }

    fn on_request_headers(&mut self, req: &Request) -> HeadersAction {
        // A request this filter answers itself keeps `None`: its response is left alone.
        self.in_flight = None;
        let path = req.path();
        let Some(client) = Api::from_client_path(&path) else {
            let path = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
            let error = ApiError::new(
                ErrorKind::NotFound,
                format!(
                    "no LLM API is served at {path}: use …/chat/completions (OpenAI), \
                     …/messages (Anthropic) or …/api/chat (Ollama)"
                ),
            )
            .with_code("unknown_url");
            return HeadersAction::Respond(error_response(Api::OpenAi, 404, &error));
        };
        let method = req.method();
        if method != "POST" {
            let error =
                ApiError::invalid_request(format!("{method} is not allowed here: use POST"))
                    .with_code("method_not_allowed");
            let answer = error_response(client, 405, &error).with_header("allow", "POST");
            return HeadersAction::Respond(answer);
        }
        let provider = self.config.provider;
        req.set_path(&provider.upstream_path(&self.config.base_path, &path));
        req.set_header("accept-encoding", "identity");
        req.set_header("content-type", JSON);
        if provider == Api::Anthropic {
            if req.header("anthropic-version").is_none() {
                req.set_header("anthropic-version", ANTHROPIC_VERSION);
            }
        } else {
            req.remove_header("anthropic-version");
            req.remove_header("anthropic-beta");
        }
        self.in_flight = Some(InFlight {
            exchange: Exchange {
                client,
                provider,
                ctx: ResponseContext::new(host::now_millis(), host::monotonic_nanos()),
                stream: false,
                stream_usage: false,
            },
            body: Vec::new(),
            plan: None,
            usage: Usage::default(),
            estimated_input_tokens: 0,
            generated: Generated::default(),
        });
        HeadersAction::Continue
    }

    fn on_request_body(
        &mut self,
        req: &Request,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> BodyAction {
        let Some(in_flight) = &mut self.in_flight else {
            return BodyAction::Continue;
        };
        if in_flight.body.is_empty() {
            in_flight.body = chunk;
        } else {
            in_flight.body.extend_from_slice(&chunk);
        }
        if !end_of_stream {
            return BodyAction::Replace(Vec::new());
        }
        let body = std::mem::take(&mut in_flight.body);
        let client = in_flight.exchange.client;
        // Estimated from the client's own body (before `prepare` consumes it), so that a
        // filter reading the same body without the adapter gets the same number.
        let estimate = tokens::estimate_request(client, &body);
        match request::prepare(client, &self.config, body) {
            Ok(prepared) => {
                in_flight.exchange.stream = prepared.stream;
                in_flight.exchange.stream_usage = prepared.stream_usage;
                if let Some(estimate) = estimate {
                    in_flight.estimated_input_tokens = estimate.input_tokens;
                    req.set_attribute(tokens::MODEL, &estimate.model);
                    req.set_attribute(
                        tokens::ESTIMATED_INPUT_TOKENS,
                        &estimate.input_tokens.to_string(),
                    );
                }
                BodyAction::Replace(prepared.body)
            }
            Err(error) => {
                self.in_flight = None;
                BodyAction::Respond(error_response(client, 400, &error))
            }
        }
    }

    fn on_response_headers(&mut self, _req: &Request, resp: &Response) -> HeadersAction {
        let Some(in_flight) = &mut self.in_flight else {
            return HeadersAction::Continue;
        };
        let content_type = resp.header("content-type");
        let head = ResponseHead {
            status: resp.status(),
            content_type: content_type.as_deref(),
        };
        let (plan, changes) = ResponsePlan::new(&in_flight.exchange, &head);
        if let Some(status) = changes.status {
            resp.set_status(status);
        }
        if let Some(content_type) = changes.content_type {
            resp.set_header("content-type", content_type);
        }
        if changes.remove_content_length {
            resp.remove_header("content-length");
        }
        in_flight.plan = Some(plan);
        HeadersAction::Continue
    }

    fn on_response_body(
        &mut self,
        req: &Request,
        _resp: &Response,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> BodyAction {
        let Some(in_flight) = &mut self.in_flight else {
            return BodyAction::Continue;
        };
        let Some(plan) = &mut in_flight.plan else {
            return BodyAction::Continue;
        };
        let outcome = plan.on_body(
            &in_flight.exchange,
            chunk,
            end_of_stream,
            &mut in_flight.usage,
            &mut in_flight.generated,
        );
        if end_of_stream {
            // The instance serves other requests next: free this one's buffers now.
            in_flight.plan = None;
            let generated = std::mem::take(&mut in_flight.generated);
            let reported = tokens::report(
                in_flight.usage,
                in_flight.estimated_input_tokens,
                &generated,
            );
            req.set_attribute(tokens::INPUT_TOKENS, &reported.input_tokens.to_string());
            req.set_attribute(tokens::OUTPUT_TOKENS, &reported.output_tokens.to_string());
            req.set_attribute(tokens::USAGE_SOURCE, reported.source.name());
        }
        match outcome {
            BodyOutcome::Continue => BodyAction::Continue,
            BodyOutcome::Replace(bytes) => BodyAction::Replace(bytes),
            BodyOutcome::Fail { status, body } => BodyAction::Respond(
                LocalResponse::new(status)
                    .with_header("content-type", JSON)
                    .with_body(body),
            ),
        }
    }
}

fn error_response(client: Api, status: u16, error: &ApiError) -> LocalResponse {
    LocalResponse::new(status)
        .with_header("content-type", JSON)
        .with_body(error.to_body(client))
}

nantian_filter_sdk::export_filter!(AiAdapter);
