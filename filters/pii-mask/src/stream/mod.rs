//! Streamed responses: OpenAI and Anthropic server-sent events, Ollama NDJSON.
//!
//! The stream is cut into events whatever its chunk boundaries ([`framing`]); each
//! event's text delta goes through the [`holdback`] of its text, and the event is sent on
//! with the delta replaced by what the holdback lets out (possibly nothing: the event is
//! still sent, with an empty text). Every other event passes byte for byte.
//!
//! | API | text delta | a text ends (held text flushed before this event) |
//! |---|---|---|
//! | OpenAI | `choices[i].delta.content`, per choice `index` | the choice's chunk with a `finish_reason` or `tool_calls`; `[DONE]`; an error |
//! | Anthropic | `content_block_delta` with a `text_delta`, per block `index` | the block's `content_block_stop`; `message_delta`, `message_stop`, `error` |
//! | Ollama | `message.content` | the line with `done: true` or `tool_calls`; an error line |
//!
//! Held text is flushed in an event of the stream's own kind, inserted before the event
//! that ends the text: an OpenAI chunk for the choice (the ending chunk's fields, no
//! finish reason), an Anthropic `content_block_delta`, an Ollama line with `done: false`.
//! If the ending event carries text itself, that text joins the flushed one and its own
//! becomes empty. A stream that stops without ending its texts gets them flushed at its
//! end.
//!
//! Events are recognised by their shape, not by the request path: a JSON object with
//! `choices` is an OpenAI chunk, one with a `type` an Anthropic event, an NDJSON line with
//! `message` or `done` an Ollama message. An event that does not parse passes untouched.

pub mod framing;
pub mod holdback;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::json_text::{Step, path_is, rewrite_strings};
use crate::scanner::{Findings, Scanner};
use framing::{Format, FrameTooLarge, Framer, Piece, line_ending, sse_data, sse_with_data};
use holdback::Holdback;

/// The kind of events a stream's texts arrive in, for the flush events written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    OpenAi,
    Anthropic,
    Ollama,
}

/// Rewrites one streamed response.
#[derive(Debug)]
pub struct StreamRewriter {
    framer: Framer,
    /// The texts being streamed, by choice or content block index.
    texts: BTreeMap<u64, Holdback>,
    /// Set by the first text: the events flushed texts are written as.
    dialect: Option<Dialect>,
    /// The top-level fields of the last OpenAI chunk, or `model` and `created_at` of the
    /// last Ollama line: flush events copy them.
    template: Map<String, Value>,
    /// The line ending of the stream's events.
    eol: &'static str,
    /// A frame was too large to parse: the rest of the stream passes untouched.
    passthrough: bool,
    /// What was found in the stream so far.
    pub findings: Findings,
}

/// The result of one chunk.
#[derive(Debug, Default)]
pub struct Output {
    pub bytes: Vec<u8>,
    /// The stream stopped being rewritten (an oversized frame) with this chunk.
    pub gave_up: bool,
}

impl StreamRewriter {
    pub fn new(format: Format) -> Self {
        StreamRewriter {
            framer: Framer::new(format),
            texts: BTreeMap::new(),
            dialect: None,
            template: Map::new(),
            eol: "\n",
            passthrough: false,
            findings: Findings::default(),
        }
    }

    /// Feeds the next chunk of the stream; returns what to send on.
    pub fn feed(&mut self, scanner: &mut Scanner, chunk: &[u8]) -> Output {
        let mut output = Output::default();
        if self.passthrough {
            output.bytes.extend_from_slice(chunk);
            return output;
        }
        match self.framer.feed(chunk) {
            Ok(pieces) => {
                for piece in pieces {
                    self.piece(scanner, piece, &mut output.bytes);
                }
            }
            Err(FrameTooLarge(pending)) => {
                // Everything before these bytes was sent as whole events: flush the held
                // texts there, then let the rest through.
                self.flush_all(scanner, &mut output.bytes);
                output.bytes.extend_from_slice(&pending);
                self.passthrough = true;
                output.gave_up = true;
            }
        }
        output
    }

    /// The stream ended: its last frame, and the texts it left unfinished.
    pub fn finish(&mut self, scanner: &mut Scanner) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.passthrough
            && let Some(piece) = self.framer.finish()
        {
            self.piece(scanner, piece, &mut out);
            // An unterminated last event is ended before events are written after it.
            let terminator = match self.framer.format() {
                Format::Sse => "\n\n",
                Format::Ndjson => "\n",
            };
            let held = self.texts.values().any(Holdback::is_holding);
            if held && !out.ends_with(terminator.as_bytes()) {
                if self.framer.format() == Format::Sse && out.ends_with(b"\n") {
                    out.push(b'\n');
                } else {
                    out.extend_from_slice(terminator.as_bytes());
                }
            }
        }
        self.flush_all(scanner, &mut out);
        out
    }

    fn piece(&mut self, scanner: &mut Scanner, piece: Piece, out: &mut Vec<u8>) {
        match piece {
            Piece::Gap(bytes) => out.extend_from_slice(&bytes),
            Piece::Frame(frame) => match self.framer.format() {
                Format::Sse => self.sse_event(scanner, &frame, out),
                Format::Ndjson => self.ndjson_line(scanner, &frame, out),
            },
        }
    }

    fn sse_event(&mut self, scanner: &mut Scanner, frame: &[u8], out: &mut Vec<u8>) {
        self.eol = line_ending(frame);
        let Some(data) = sse_data(frame) else {
            out.extend_from_slice(frame);
            return;
        };
        if data.trim() == "[DONE]" {
            self.flush_all(scanner, out);
            out.extend_from_slice(frame);
            return;
        }
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(&data) else {
            out.extend_from_slice(frame);
            return;
        };
        let mut rewrite = Rewrite::default();
        if event.contains_key("choices") {
            self.openai_chunk(scanner, &event, &mut rewrite);
        } else if event.get("type").is_some_and(Value::is_string) {
            self.anthropic_event(scanner, &event, &mut rewrite);
        } else if event.contains_key("error") {
            self.flush_all(scanner, &mut rewrite.before);
        }
        rewrite.write(&data, event, frame, |data| sse_with_data(frame, data), out);
    }

    fn ndjson_line(&mut self, scanner: &mut Scanner, line: &[u8], out: &mut Vec<u8>) {
        let Ok(text) = std::str::from_utf8(line) else {
            out.extend_from_slice(line);
            return;
        };
        let json = text.trim_end_matches(['\n', '\r']);
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(json) else {
            out.extend_from_slice(line);
            return;
        };
        let mut rewrite = Rewrite::default();
        if event.contains_key("message") || event.contains_key("done") {
            self.ollama_line(scanner, &event, &mut rewrite);
        } else if event.contains_key("error") {
            self.flush_all(scanner, &mut rewrite.before);
        }
        let ending = &text[json.len()..];
        rewrite.write(
            json,
            event,
            line,
            |json| format!("{json}{ending}").into_bytes(),
            out,
        );
    }

    /// An OpenAI `chat.completion.chunk`.
    fn openai_chunk(
        &mut self,
        scanner: &mut Scanner,
        event: &Map<String, Value>,
        rewrite: &mut Rewrite,
    ) {
        self.template = event.clone();
        if event.contains_key("error") {
            self.flush_all(scanner, &mut rewrite.before);
        }
        let Some(choices) = event.get("choices").and_then(Value::as_array) else {
            return;
        };
        for (position, choice) in choices.iter().enumerate() {
            let index = choice
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64);
            let delta = choice.get("delta");
            let content = delta
                .and_then(|delta| delta.get("content"))
                .and_then(Value::as_str);
            let present = |value: Option<&Value>| value.is_some_and(|value| !value.is_null());
            let ends = present(choice.get("finish_reason"))
                || present(delta.and_then(|delta| delta.get("tool_calls")))
                || present(delta.and_then(|delta| delta.get("function_call")));
            let path = vec![
                Step::Key("choices"),
                Step::Index(position),
                Step::Key("delta"),
                Step::Key("content"),
            ];
            self.text(
                scanner,
                Dialect::OpenAi,
                index,
                content,
                ends,
                path,
                rewrite,
            );
        }
    }

    /// An Anthropic Messages stream event.
    fn anthropic_event(
        &mut self,
        scanner: &mut Scanner,
        event: &Map<String, Value>,
        rewrite: &mut Rewrite,
    ) {
        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
        match event.get("type").and_then(Value::as_str) {
            Some("content_block_start") => {
                let text = anthropic_text(event.get("content_block"));
                let path = vec![Step::Key("content_block"), Step::Key("text")];
                self.text(
                    scanner,
                    Dialect::Anthropic,
                    index,
                    text,
                    false,
                    path,
                    rewrite,
                );
            }
            Some("content_block_delta") => {
                let text = anthropic_text(event.get("delta"));
                let path = vec![Step::Key("delta"), Step::Key("text")];
                self.text(
                    scanner,
                    Dialect::Anthropic,
                    index,
                    text,
                    false,
                    path,
                    rewrite,
                );
            }
            Some("content_block_stop") => {
                self.text(
                    scanner,
                    Dialect::Anthropic,
                    index,
                    None,
                    true,
                    Vec::new(),
                    rewrite,
                );
            }
            Some("message_delta" | "message_stop" | "error") => {
                self.flush_all(scanner, &mut rewrite.before);
            }
            _ => {}
        }
    }

    /// An Ollama chat NDJSON line.
    fn ollama_line(
        &mut self,
        scanner: &mut Scanner,
        event: &Map<String, Value>,
        rewrite: &mut Rewrite,
    ) {
        self.template = event.clone();
        if event.contains_key("error") {
            self.flush_all(scanner, &mut rewrite.before);
        }
        let message = event.get("message");
        let content = message
            .and_then(|message| message.get("content"))
            .and_then(Value::as_str);
        let tool_calls = message
            .and_then(|message| message.get("tool_calls"))
            .is_some_and(|calls| calls.as_array().is_some_and(|calls| !calls.is_empty()));
        let ends = event.get("done") == Some(&Value::Bool(true)) || tool_calls;
        let path = vec![Step::Key("message"), Step::Key("content")];
        self.text(scanner, Dialect::Ollama, 0, content, ends, path, rewrite);
    }

    /// A piece of the text `index` (`delta`, at `path` in the event), and whether the
    /// text ends with this event.
    #[allow(clippy::too_many_arguments)]
    fn text(
        &mut self,
        scanner: &mut Scanner,
        dialect: Dialect,
        index: u64,
        delta: Option<&str>,
        ends: bool,
        path: Vec<Step>,
        rewrite: &mut Rewrite,
    ) {
        let mut emitted = match delta {
            Some(delta) => {
                self.dialect.get_or_insert(dialect);
                let holdback = self.texts.entry(index).or_default();
                holdback.push(scanner, delta, &mut self.findings)
            }
            None => String::new(),
        };
        if ends {
            if let Some(mut holdback) = self.texts.remove(&index) {
                emitted.push_str(&holdback.finish(scanner, &mut self.findings));
            }
            // The whole rest of the text goes in a flush event before this one.
            self.write_text_event(index, &emitted, &mut rewrite.before);
            emitted.clear();
        }
        if let Some(delta) = delta
            && emitted != delta
        {
            rewrite.replacements.push((path, emitted));
        }
    }

    /// Flushes every text still held, in index order.
    fn flush_all(&mut self, scanner: &mut Scanner, out: &mut Vec<u8>) {
        let texts = std::mem::take(&mut self.texts);
        for (index, mut holdback) in texts {
            let text = holdback.finish(scanner, &mut self.findings);
            self.write_text_event(index, &text, out);
        }
    }

    /// Writes an event carrying `text` for the text `index`, in the stream's dialect.
    fn write_text_event(&self, index: u64, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let eol = self.eol;
        match self.dialect {
            Some(Dialect::OpenAi) | None => {
                let json = openai_text_chunk(&self.template, index, text);
                out.extend_from_slice(format!("data: {json}{eol}{eol}").as_bytes());
            }
            Some(Dialect::Anthropic) => {
                let json = anthropic_text_delta(index, text);
                out.extend_from_slice(
                    format!("event: content_block_delta{eol}data: {json}{eol}{eol}").as_bytes(),
                );
            }
            Some(Dialect::Ollama) => {
                let json = ollama_text_line(&self.template, text);
                out.extend_from_slice(format!("{json}\n").as_bytes());
            }
        }
    }
}

/// The text of an Anthropic `text` content block or `text_delta`.
fn anthropic_text(value: Option<&Value>) -> Option<&str> {
    value
        .filter(|value| {
            matches!(
                value.get("type").and_then(Value::as_str),
                Some("text" | "text_delta")
            )
        })
        .and_then(|value| value.get("text"))
        .and_then(Value::as_str)
}

/// What becomes of one event: flush events written before it, and its text deltas
/// replaced.
#[derive(Debug, Default)]
struct Rewrite {
    before: Vec<u8>,
    replacements: Vec<(Vec<Step>, String)>,
}

impl Rewrite {
    /// Writes the flush events, then the event: as received when none of its strings
    /// changed, else with them replaced (everything else kept byte for byte).
    fn write(
        self,
        json: &str,
        event: Map<String, Value>,
        raw: &[u8],
        reframe: impl FnOnce(&str) -> Vec<u8>,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(&self.before);
        if self.replacements.is_empty() {
            out.extend_from_slice(raw);
            return;
        }
        let replaced = rewrite_strings(json, &mut |path, _| {
            self.replacements
                .iter()
                .find(|(pattern, _)| path_is(path, pattern))
                .map(|(_, text)| text.clone())
        });
        let json = match replaced {
            Ok(Some(json)) => json,
            // The walker reads whatever serde_json read; should it not, rebuild the event.
            _ => {
                let mut event = Value::Object(event);
                for (path, text) in &self.replacements {
                    if let Some(slot) = pointer_mut(&mut event, path) {
                        *slot = Value::String(text.clone());
                    }
                }
                event.to_string()
            }
        };
        out.extend_from_slice(&reframe(&json));
    }
}

/// The value at a path of keys and indexes.
fn pointer_mut<'v>(value: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |value, step| match step {
        Step::Key(key) => value.get_mut(*key),
        Step::Index(index) => value.get_mut(*index),
        Step::Each => None,
    })
}

#[derive(Serialize)]
struct OpenAiChunk<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    object: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_fingerprint: Option<&'a Value>,
    choices: [OpenAiChoice<'a>; 1],
    /// `null` when the stream's chunks carry `usage` (`stream_options.include_usage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<()>,
}

#[derive(Serialize)]
struct OpenAiChoice<'a> {
    index: u64,
    delta: TextDelta<'a>,
    logprobs: (),
    finish_reason: (),
}

#[derive(Serialize)]
struct TextDelta<'a> {
    content: &'a str,
}

/// An OpenAI chunk carrying `text` for choice `index`, with the stream's other fields.
fn openai_text_chunk(template: &Map<String, Value>, index: u64, text: &str) -> String {
    let object = Value::String("chat.completion.chunk".into());
    let chunk = OpenAiChunk {
        id: template.get("id"),
        object: template.get("object").unwrap_or(&object),
        created: template.get("created"),
        model: template.get("model"),
        service_tier: template.get("service_tier"),
        system_fingerprint: template.get("system_fingerprint"),
        choices: [OpenAiChoice {
            index,
            delta: TextDelta { content: text },
            logprobs: (),
            finish_reason: (),
        }],
        usage: template.contains_key("usage").then_some(()),
    };
    serde_json::to_string(&chunk).unwrap_or_default()
}

#[derive(Serialize)]
struct AnthropicDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u64,
    delta: AnthropicTextDelta<'a>,
}

#[derive(Serialize)]
struct AnthropicTextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// An Anthropic `content_block_delta` carrying `text` for block `index`.
fn anthropic_text_delta(index: u64, text: &str) -> String {
    serde_json::to_string(&AnthropicDelta {
        kind: "content_block_delta",
        index,
        delta: AnthropicTextDelta {
            kind: "text_delta",
            text,
        },
    })
    .unwrap_or_default()
}

#[derive(Serialize)]
struct OllamaLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<&'a Value>,
    message: OllamaMessage<'a>,
    done: bool,
}

#[derive(Serialize)]
struct OllamaMessage<'a> {
    role: &'static str,
    content: &'a str,
}

/// An Ollama chat line carrying `text`, not done.
fn ollama_text_line(template: &Map<String, Value>, text: &str) -> String {
    serde_json::to_string(&OllamaLine {
        model: template.get("model"),
        created_at: template.get("created_at"),
        message: OllamaMessage {
            role: "assistant",
            content: text,
        },
        done: false,
    })
    .unwrap_or_default()
}
