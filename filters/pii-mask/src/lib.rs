//! PII masking for LLM routes: finds personal data in the text of requests and responses
//! — streams included — and masks, redacts or rejects it.
//!
//! # Configuration
//!
//! ```json
//! {"detectors": ["email", "phone", "credit_card", "ssn", "ipv4", "ipv6", "iban"],
//!  "custom": [{"name": "employee_id", "pattern": "EMP-\\d{6}"}],
//!  "action": "mask", "actions": {"email": "reject"}, "direction": "both"}
//! ```
//!
//! - `detectors`: the built-in detectors to run (default: all). See [`detectors`] for
//!   what each one matches and what it deliberately leaves alone.
//! - `custom`: named regular expressions (Rust `regex` syntax). A name has ASCII
//!   letters, digits, `_` and `-`, is not a built-in name and is unique (ignoring case);
//!   a pattern must not match the empty string. At most 64.
//! - `action`: `mask` (default) replaces a finding with a typed placeholder (`[EMAIL]`,
//!   `[PHONE]`, `[CREDIT_CARD]`, `[SSN]`, `[IPV4]`, `[IPV6]`, `[IBAN]`, or the custom
//!   name upper-cased: `[EMPLOYEE_ID]`); `redact` with `[REDACTED]`; `reject` answers the
//!   request with a 400 instead of forwarding it.
//! - `actions`: per-detector overrides of `action`, by detector name.
//! - `direction`: `request`, `response` or `both` (default).
//!
//! Anything else — an unknown field, detector, action or direction, an invalid pattern —
//! is refused by `init` with a message naming the problem.
//!
//! # Requests
//!
//! The body is held until it is complete, then scanned. The client's API comes from the
//! end of the request path: `…/chat/completions` (OpenAI), `…/messages` (Anthropic),
//! `…/api/chat` (Ollama). In a JSON body only the text fields are scanned and rewritten
//! (message contents and text parts, `system`, tool results); keys, model names, ids,
//! tool-call arguments and base64 data are not, and everything but the replaced text is
//! forwarded byte for byte. For other paths every string value is scanned except
//! `model`, `id`, `object`, `role`, `type` and `data:` URLs. A body that is not JSON is
//! scanned as plain text; binary and multipart bodies (by content type), bodies that
//! are not UTF-8 and bodies with a `content-encoding` pass unscanned.
//!
//! A finding whose action is `reject` answers 400 in the client API's error format,
//! naming the kinds found (never the values): OpenAI (also for unknown paths)
//! `{"error": {"message", "type": "invalid_request_error", "param": null, "code":
//! "pii_detected"}}`, Anthropic `{"type": "error", "error": {"type":
//! "invalid_request_error", "message"}}`, Ollama `{"error": "…"}`.
//!
//! # Responses
//!
//! The request is sent with `accept-encoding: identity` so the response is readable.
//! Whole responses are held to the end and their text fields rewritten (OpenAI
//! `choices[].message.content`, Anthropic `content[].text`, Ollama `message.content`,
//! and error messages). Streams (`text/event-stream`, `application/x-ndjson`) are
//! rewritten event by event as they pass, holding back only the end of a text that could
//! still become a finding (see [`stream`] and [`stream::holdback`]).
//!
//! **`reject` masks in responses.** A response cannot be refused once its head has gone
//! to the client, which for a stream is before any text is seen; so that the same
//! configuration behaves the same whether or not the response streams, findings with
//! `reject` are masked in every response.
//!
//! # Findings
//!
//! Overlapping findings (a card number inside an e-mail address) are merged into one
//! replacement, named after the longest of them; among equally long ones the earliest,
//! then custom detectors before built-in ones (see [`scanner`]). The replacement takes
//! the action of the detector it is named after.
//!
//! # State and costs
//!
//! Instances are reused across requests (`per-request-isolation: false`): all of a
//! request's state lives in one value replaced at each request's head. The regexes are
//! compiled once per instance in `init` (2–10 ms under the engine for all detectors);
//! the automata of the stream holdback on the first streamed response. Only the phases
//! `direction` needs are requested.
//!
//! Scanning a whole body under the engine takes about 20 ms per MB of prose and up to
//! about 70 ms per MB of text dense with numbers (most detectors only look near digits);
//! a stream event about 15 µs. Bodies are scanned in the call that receives their last
//! chunk, within the binding's call budget (`timeout_millis`, 50 ms by default): raise it
//! on routes whose requests carry more than half a megabyte of text.
//!
//! # Limits
//!
//! - Held bodies are kept in the instance's memory while they arrive: it needs a few
//!   times the largest request or response body (`max_memory_bytes`).
//! - Not scanned: tool-call arguments and tool-use inputs (rewriting them would break the
//!   calls the client makes), OpenAI `refusal` and reasoning deltas, Anthropic thinking
//!   blocks, Ollama `thinking`; encoded (`content-encoding`), binary, multipart and
//!   non-UTF-8 bodies; SSE events or NDJSON lines over 1 MiB (the rest of such a stream
//!   passes unscanned, with a warning).
//! - In streams at most 64 characters are held back: a finding longer than that (a very
//!   long e-mail address) can be cut or missed.
//! - Detectors are pattern-based: see each one in [`detectors`] for what it deliberately
//!   leaves alone (national phone formats without `+`, nine-digit SSNs without dashes,
//!   `::1`, quoted e-mail local parts…).
#![forbid(unsafe_code)]

mod api;
mod body;
mod config;
mod detectors;
mod errors;
mod json_text;
mod prefix;
mod scanner;
mod stream;

use nantian_filter_sdk::{
    BodyAction, Filter, FilterInfo, HeadersAction, LocalResponse, Phases, Request, Response, host,
};

use api::{Api, BodyKind};
use body::Verdict;
use config::{Config, Direction};
use scanner::{Findings, Scanner, Side};
use stream::StreamRewriter;
use stream::framing::Format;

/// The filter: one binding's detectors, and the request in flight.
pub struct PiiMask {
    direction: Direction,
    scanner: Scanner,
    exchange: Exchange,
}

/// One request and its response.
#[derive(Default)]
struct Exchange {
    api: Option<Api>,
    request: RequestBody,
    response: ResponseBody,
    /// The filter answered the request itself: its response is left alone.
    rejected: bool,
}

#[derive(Default)]
enum RequestBody {
    /// Not scanned.
    #[default]
    Pass,
    /// Collected until the end.
    Hold(Vec<u8>),
}

#[derive(Default)]
enum ResponseBody {
    #[default]
    Pass,
    Whole(Vec<u8>),
    Stream(Box<StreamRewriter>),
}

impl Filter for PiiMask {
    fn new(config: &[u8]) -> Result<Self, String> {
        let config = Config::parse(config)?;
        Ok(PiiMask {
            direction: config.direction,
            scanner: Scanner::new(&config)?,
            exchange: Exchange::default(),
        })
    }

    fn info(&self) -> FilterInfo {
        let mut phases = Phases::REQUEST_HEADERS;
        if self.direction.request() {
            phases |= Phases::REQUEST_BODY;
        }
        if self.direction.response() {
            phases |= Phases::RESPONSE_HEADERS | Phases::RESPONSE_BODY;
        }
        FilterInfo::stateless(phases)
    }

    fn on_request_headers(&mut self, req: &Request) -> HeadersAction {
        self.exchange = Exchange {
            api: Api::from_path(&req.path()),
            ..Exchange::default()
        };
        if self.direction.response() {
            req.set_header("accept-encoding", "identity");
        }
        if self.direction.request()
            && readable(
                "request",
                req.header("content-encoding"),
                req.header("content-type"),
            )
            .is_some()
        {
            self.exchange.request = RequestBody::Hold(Vec::new());
        }
        HeadersAction::Continue
    }

    fn on_request_body(
        &mut self,
        _req: &Request,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> BodyAction {
        let RequestBody::Hold(body) = &mut self.exchange.request else {
            return BodyAction::Continue;
        };
        if body.is_empty() {
            *body = chunk;
        } else {
            body.extend_from_slice(&chunk);
        }
        if !end_of_stream {
            return BodyAction::Replace(Vec::new());
        }
        let body = std::mem::take(body);
        self.exchange.request = RequestBody::Pass;
        let mut findings = Findings::default();
        let verdict = body::scan(
            &self.scanner,
            self.exchange.api,
            Side::Request,
            &body,
            &mut findings,
        );
        self.log_findings("request", &findings);
        match verdict {
            Verdict::Unchanged => BodyAction::Replace(body),
            Verdict::Rewritten(body) => BodyAction::Replace(body),
            Verdict::Reject => {
                self.exchange.rejected = true;
                let kinds = findings.names(&self.scanner, true);
                BodyAction::Respond(
                    LocalResponse::new(errors::STATUS)
                        .with_header("content-type", errors::CONTENT_TYPE)
                        .with_body(errors::rejection_body(self.exchange.api, &kinds)),
                )
            }
        }
    }

    fn on_response_headers(&mut self, _req: &Request, resp: &Response) -> HeadersAction {
        self.exchange.response = ResponseBody::Pass;
        if self.exchange.rejected {
            return HeadersAction::Continue;
        }
        self.exchange.response = match readable(
            "response",
            resp.header("content-encoding"),
            resp.header("content-type"),
        ) {
            Some(BodyKind::Sse) => ResponseBody::Stream(Box::new(StreamRewriter::new(Format::Sse))),
            Some(BodyKind::Ndjson) => {
                ResponseBody::Stream(Box::new(StreamRewriter::new(Format::Ndjson)))
            }
            Some(_) => ResponseBody::Whole(Vec::new()),
            None => ResponseBody::Pass,
        };
        HeadersAction::Continue
    }

    fn on_response_body(
        &mut self,
        _req: &Request,
        _resp: &Response,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> BodyAction {
        match &mut self.exchange.response {
            ResponseBody::Pass => BodyAction::Continue,
            ResponseBody::Whole(body) => {
                body.extend_from_slice(&chunk);
                if !end_of_stream {
                    return BodyAction::Replace(Vec::new());
                }
                let body = std::mem::take(body);
                self.exchange.response = ResponseBody::Pass;
                let mut findings = Findings::default();
                let verdict = body::scan(
                    &self.scanner,
                    self.exchange.api,
                    Side::Response,
                    &body,
                    &mut findings,
                );
                self.log_findings("response", &findings);
                match verdict {
                    Verdict::Rewritten(body) => BodyAction::Replace(body),
                    Verdict::Unchanged | Verdict::Reject => BodyAction::Replace(body),
                }
            }
            ResponseBody::Stream(rewriter) => {
                let output = rewriter.feed(&mut self.scanner, &chunk);
                if output.gave_up {
                    host::warn(&format!(
                        "pii-mask: a response stream event is longer than {} bytes; the rest \
                         of the stream passes unscanned",
                        stream::framing::MAX_FRAME_BYTES
                    ));
                }
                let mut bytes = output.bytes;
                if end_of_stream {
                    bytes.extend(rewriter.finish(&mut self.scanner));
                    let findings = std::mem::take(&mut rewriter.findings);
                    self.exchange.response = ResponseBody::Pass;
                    self.log_findings("response stream", &findings);
                }
                BodyAction::Replace(bytes)
            }
        }
    }
}

impl PiiMask {
    fn log_findings(&self, what: &str, findings: &Findings) {
        if !findings.is_empty() {
            host::debug(&format!(
                "pii-mask: found in the {what}: {}",
                findings.summary(&self.scanner)
            ));
        }
    }
}

/// The kind of a body that can be scanned, or `None` (logged) when it cannot.
fn readable(
    what: &str,
    content_encoding: Option<String>,
    content_type: Option<String>,
) -> Option<BodyKind> {
    if let Some(encoding) = content_encoding
        && !encoding.trim().eq_ignore_ascii_case("identity")
    {
        host::warn(&format!(
            "pii-mask: the {what} body is encoded ({encoding}) and passes unscanned"
        ));
        return None;
    }
    match BodyKind::of(content_type.as_deref()) {
        BodyKind::Opaque => None,
        kind => Some(kind),
    }
}

nantian_filter_sdk::export_filter!(PiiMask);
