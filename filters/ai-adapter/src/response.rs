//! The provider's response on its way back: what to change in its head, and what the
//! client gets of its body.
//!
//! Kept apart from the SDK's host resources (the filter passes plain values in and
//! applies the answers), so the whole flow is testable natively.

use crate::accumulate::Accumulator;
use crate::api::{Api, JSON};
use crate::canonical::{ChatResponse, Usage};
use crate::codec::{self, StreamEncoder};
use crate::error::{ApiError, ErrorKind};
use crate::ids::ResponseContext;
use crate::stream::{Output, StreamTranslator};
use crate::tokens::Generated;

/// What the response head says, as far as the plan depends on it.
pub struct ResponseHead<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
}

/// Changes to make to the response head.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeadChanges {
    pub status: Option<u16>,
    pub content_type: Option<&'static str>,
    /// The body changes length (the host streams it chunked instead).
    pub remove_content_length: bool,
}

/// What to do with a body chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyOutcome {
    /// Pass the chunk on unchanged.
    Continue,
    /// Send these bytes instead (empty: nothing yet).
    Replace(Vec<u8>),
    /// The response cannot be translated: answer with this error (a 502) instead, or
    /// abort the body if its head is already on its way.
    Fail { status: u16, body: Vec<u8> },
}

/// What the request phases learnt, for the response.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    pub client: Api,
    pub provider: Api,
    pub ctx: ResponseContext,
    /// The client asked to stream.
    pub stream: bool,
    /// The client wants the usage at the end of its stream.
    pub stream_usage: bool,
}

/// How one response body is handled, decided from its head.
pub enum ResponsePlan {
    /// Passed on as it is.
    Untouched,
    /// Passed on as it is; a copy is kept to read the token usage at the end.
    Observe(Vec<u8>),
    /// An error from the provider, rewritten in the client's error shape at the end.
    Error { status: u16, body: Vec<u8> },
    /// A whole response, translated at the end; `as_stream` replays it as the client's
    /// stream (the client asked to stream, the provider answered all at once).
    Whole { body: Vec<u8>, as_stream: bool },
    /// A stream, translated (or passed on) event by event. Boxed: it is by far the
    /// largest plan, and one allocation per stream is nothing next to its buffers.
    Stream(Box<StreamTranslator>),
}

impl ResponsePlan {
    pub fn new(exchange: &Exchange, head: &ResponseHead<'_>) -> (ResponsePlan, HeadChanges) {
        let Exchange {
            client, provider, ..
        } = *exchange;
        let translating = client != provider;
        let streamed = is_streamed(head.content_type, exchange.stream);
        let mut changes = HeadChanges::default();
        if !(200..300).contains(&head.status) {
            if !translating {
                return (ResponsePlan::Untouched, changes);
            }
            let status = client.client_status(head.status);
            changes.status = (status != head.status).then_some(status);
            // Proxies in front of a provider answer in HTML or text; such bodies are passed
            // on as they are rather than guessed at.
            if !head.content_type.is_none_or(is_json) {
                return (ResponsePlan::Untouched, changes);
            }
            changes.content_type = Some(JSON);
            changes.remove_content_length = true;
            let plan = ResponsePlan::Error {
                status: head.status,
                body: Vec::new(),
            };
            return (plan, changes);
        }
        if !translating {
            let plan = if !streamed {
                ResponsePlan::Observe(Vec::new())
            } else if provider == Api::OpenAi && exchange.stream && !exchange.stream_usage {
                changes.remove_content_length = true;
                stream(exchange, Output::ForwardWithoutUsage)
            } else {
                stream(exchange, Output::Observe)
            };
            return (plan, changes);
        }
        changes.remove_content_length = true;
        changes.content_type = Some(if exchange.stream {
            client.stream_content_type()
        } else {
            JSON
        });
        let plan = match (streamed, exchange.stream) {
            (true, true) => {
                let encoder = StreamEncoder::new(client, exchange.ctx, exchange.stream_usage);
                stream(exchange, Output::Translate(encoder))
            }
            (true, false) => stream(exchange, Output::Collect(Accumulator::default())),
            (false, as_stream) => ResponsePlan::Whole {
                body: Vec::new(),
                as_stream,
            },
        };
        (plan, changes)
    }

    /// Takes one body chunk; `usage` is updated with what the provider reported, and
    /// `generated` gets the response's text by the end of the body.
    pub fn on_body(
        &mut self,
        exchange: &Exchange,
        chunk: Vec<u8>,
        end_of_stream: bool,
        usage: &mut Usage,
        generated: &mut Generated,
    ) -> BodyOutcome {
        match self {
            ResponsePlan::Untouched => BodyOutcome::Continue,
            ResponsePlan::Observe(copy) => {
                copy.extend_from_slice(&chunk);
                if end_of_stream
                    && let Ok(response) =
                        codec::decode_response(exchange.provider, copy, &exchange.ctx)
                {
                    usage.merge(response.usage);
                    generated.response(&response);
                }
                BodyOutcome::Continue
            }
            ResponsePlan::Error { status, body } => {
                if !hold(body, chunk, end_of_stream) {
                    return BodyOutcome::Replace(Vec::new());
                }
                let error = ApiError::from_provider(*status, body);
                BodyOutcome::Replace(error.to_body(exchange.client))
            }
            ResponsePlan::Whole { body, as_stream } => {
                if !hold(body, chunk, end_of_stream) {
                    return BodyOutcome::Replace(Vec::new());
                }
                match codec::decode_response(exchange.provider, body, &exchange.ctx) {
                    Ok(response) => {
                        usage.merge(response.usage);
                        generated.response(&response);
                        BodyOutcome::Replace(encode_whole(exchange, &response, *as_stream))
                    }
                    Err(e) => unreadable(exchange, &e),
                }
            }
            ResponsePlan::Stream(translator) => {
                let mut out = Vec::new();
                translator.feed(&chunk, &mut out);
                if end_of_stream {
                    translator.finish(&mut out);
                    *generated = translator.take_generated();
                }
                usage.merge(translator.usage());
                match translator.output() {
                    Output::Observe => BodyOutcome::Continue,
                    Output::Collect(_) if end_of_stream => self.collected(exchange),
                    // Collecting sends nothing before the end; the others what is ready.
                    Output::Collect(_) | Output::Translate(_) | Output::ForwardWithoutUsage => {
                        BodyOutcome::Replace(out)
                    }
                }
            }
        }
    }

    /// The response collected from a stream, for a client that did not ask to stream.
    fn collected(&mut self, exchange: &Exchange) -> BodyOutcome {
        let plan = std::mem::replace(self, ResponsePlan::Untouched);
        let ResponsePlan::Stream(translator) = plan else {
            return BodyOutcome::Continue;
        };
        let Output::Collect(accumulator) = translator.into_output() else {
            return BodyOutcome::Continue;
        };
        match accumulator.finish() {
            Ok(response) => BodyOutcome::Replace(codec::encode_response(
                exchange.client,
                &response,
                &exchange.ctx,
            )),
            Err(error) => BodyOutcome::Fail {
                status: 502,
                body: error.to_body(exchange.client),
            },
        }
    }
}

fn stream(exchange: &Exchange, output: Output) -> ResponsePlan {
    let translator = StreamTranslator::new(exchange.provider, exchange.ctx, output);
    ResponsePlan::Stream(Box::new(translator))
}

/// Adds `chunk` to `body`; true once the body is complete. The first chunk is moved in,
/// not copied: most bodies arrive as one.
fn hold(body: &mut Vec<u8>, chunk: Vec<u8>, end_of_stream: bool) -> bool {
    if body.is_empty() {
        *body = chunk;
    } else {
        body.extend_from_slice(&chunk);
    }
    end_of_stream
}

fn encode_whole(exchange: &Exchange, response: &ChatResponse, as_stream: bool) -> Vec<u8> {
    if !as_stream {
        return codec::encode_response(exchange.client, response, &exchange.ctx);
    }
    let mut encoder = StreamEncoder::new(exchange.client, exchange.ctx, exchange.stream_usage);
    let mut out = Vec::new();
    for event in response.events() {
        encoder.encode(event, &mut out);
    }
    out
}

fn unreadable(exchange: &Exchange, problem: &str) -> BodyOutcome {
    let error = ApiError::new(
        ErrorKind::Api,
        format!(
            "the {} backend's response could not be read: {problem}",
            exchange.provider.name()
        ),
    );
    BodyOutcome::Fail {
        status: 502,
        body: error.to_body(exchange.client),
    }
}

/// Whether a 2xx response is streamed: by its content type, which servers set reliably,
/// else by what the client asked for.
fn is_streamed(content_type: Option<&str>, requested: bool) -> bool {
    match content_type.map(media_type).as_deref() {
        Some("text/event-stream" | "application/x-ndjson") => true,
        Some("application/json") => false,
        _ => requested,
    }
}

fn is_json(content_type: &str) -> bool {
    let media_type = media_type(content_type);
    media_type == "application/json" || media_type.ends_with("+json")
}

/// `Text/Event-Stream; charset=utf-8` → `text/event-stream`.
fn media_type(content_type: &str) -> String {
    let essence = content_type.split(';').next().unwrap_or("");
    essence.trim().to_ascii_lowercase()
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
