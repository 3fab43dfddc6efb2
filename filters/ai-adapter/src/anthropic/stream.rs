//! Messages streams: `message_start`, then per content block `content_block_start`,
//! `content_block_delta`s and `content_block_stop`, then `message_delta` (stop reason,
//! output tokens) and `message_stop`; `ping`s anywhere, `error` in place of the rest.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{OutUsage, WireUsage, decode_stop_reason, encode_stop_reason};
use crate::api::Api;
use crate::canonical::{FinishReason, StreamEvent, StreamStart, Usage};
use crate::error::{ApiError, ErrorKind};
use crate::ids::ResponseContext;
use crate::wire::EmptyObject;

/// Every event type in one flat shape: one pass over the JSON, no buffering of an
/// internally tagged enum, and unknown event types read as nothing.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    message: Option<WireMessageStart<'a>>,
    #[serde(borrow, default)]
    content_block: Option<WireBlockStart<'a>>,
    #[serde(borrow, default)]
    delta: Option<WireDelta<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireMessageStart<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireBlockStart<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    input: Option<Value>,
}

/// A `content_block_delta`'s delta (`type` text_delta / input_json_delta / …) or a
/// `message_delta`'s (no type; `stop_reason`).
#[derive(Deserialize)]
struct WireDelta<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

/// Reads an Anthropic provider's stream, one SSE `data` at a time. Thinking and
/// server-tool blocks are skipped: only text and tool_use blocks have counterparts.
#[derive(Default)]
pub struct StreamDecoder;

impl StreamDecoder {
    pub fn decode(&mut self, data: &str, emit: &mut dyn FnMut(StreamEvent<'_>)) {
        let event: WireEvent<'_> = match serde_json::from_str(data) {
            Ok(event) => event,
            Err(e) => {
                return emit(StreamEvent::Error(ApiError::new(
                    ErrorKind::Api,
                    format!("the backend sent an unreadable stream event: {e}"),
                )));
            }
        };
        match &*event.kind {
            "message_start" => {
                let message = event.message.unwrap_or(WireMessageStart {
                    id: None,
                    model: None,
                    usage: None,
                });
                emit(StreamEvent::Start(StreamStart {
                    id: message.id,
                    model: message.model,
                    usage: message.usage.map(Into::into).unwrap_or_default(),
                }));
            }
            "content_block_start" => {
                let Some(block) = event.content_block else {
                    return;
                };
                match &*block.kind {
                    "text" => {
                        if let Some(text) = block.text.filter(|t| !t.is_empty()) {
                            emit(StreamEvent::Text(text));
                        }
                    }
                    "tool_use" => {
                        emit(StreamEvent::ToolCallStart {
                            id: block.id.unwrap_or_default(),
                            name: block.name.unwrap_or_default(),
                        });
                        // Streamed input arrives as deltas; a non-empty one here is whole.
                        if let Some(input) = block
                            .input
                            .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                        {
                            emit(StreamEvent::ToolCallArguments(Cow::Owned(
                                input.to_string(),
                            )));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let Some(delta) = event.delta else { return };
                match delta.kind.as_deref() {
                    Some("text_delta") => {
                        if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
                            emit(StreamEvent::Text(text));
                        }
                    }
                    Some("input_json_delta") => {
                        if let Some(json) = delta.partial_json.filter(|j| !j.is_empty()) {
                            emit(StreamEvent::ToolCallArguments(json));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = event.delta.and_then(|d| d.stop_reason) {
                    emit(StreamEvent::Finish(decode_stop_reason(&reason)));
                }
                if let Some(usage) = event.usage {
                    emit(StreamEvent::Usage(usage.into()));
                }
            }
            "message_stop" => emit(StreamEvent::End),
            "error" => {
                let error = event
                    .error
                    .and_then(|e| ApiError::from_error_member(&e, ErrorKind::Api))
                    .unwrap_or_else(|| ApiError::new(ErrorKind::Api, "the backend failed"));
                emit(StreamEvent::Error(error));
            }
            // ping, content_block_stop, and event types added later.
            _ => {}
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutEvent<'a> {
    MessageStart {
        message: OutMessageStart<'a>,
    },
    ContentBlockStart {
        index: usize,
        content_block: OutBlockStart<'a>,
    },
    ContentBlockDelta {
        index: usize,
        delta: OutDelta<'a>,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: OutMessageDelta,
        usage: OutDeltaUsage,
    },
    MessageStop,
}

impl OutEvent<'_> {
    fn name(&self) -> &'static str {
        match self {
            OutEvent::MessageStart { .. } => "message_start",
            OutEvent::ContentBlockStart { .. } => "content_block_start",
            OutEvent::ContentBlockDelta { .. } => "content_block_delta",
            OutEvent::ContentBlockStop { .. } => "content_block_stop",
            OutEvent::MessageDelta { .. } => "message_delta",
            OutEvent::MessageStop => "message_stop",
        }
    }
}

#[derive(Serialize)]
struct OutMessageStart<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: OutUsage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutBlockStart<'a> {
    Text {
        text: &'static str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: EmptyObject,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutDelta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct OutMessageDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Serialize)]
struct OutDeltaUsage {
    /// Sent here when `message_start` could not know it (providers that count the input
    /// at the end); the Anthropic SDK takes it from either place.
    #[serde(skip_serializing_if = "Option::is_none")]
    input_tokens: Option<u64>,
    output_tokens: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    ToolUse,
}

/// Writes an Anthropic client's stream: a well-formed event sequence whatever the
/// provider's stream looked like — `message_start` first, content blocks numbered from 0,
/// each stopped before the next starts, then `message_delta` and `message_stop`.
pub struct StreamEncoder {
    ctx: ResponseContext,
    started: bool,
    id: String,
    model: String,
    /// The open content block: its kind and index.
    open: Option<(BlockKind, usize)>,
    next_index: usize,
    stop_reason: Option<FinishReason>,
    usage: Usage,
    input_sent_at_start: bool,
    done: bool,
}

impl StreamEncoder {
    pub fn new(ctx: ResponseContext) -> Self {
        StreamEncoder {
            ctx,
            started: false,
            id: String::new(),
            model: String::new(),
            open: None,
            next_index: 0,
            stop_reason: None,
            usage: Usage::default(),
            input_sent_at_start: false,
            done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn encode(&mut self, event: StreamEvent<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match event {
            StreamEvent::Start(start) => self.start(start, out),
            StreamEvent::Text(text) => {
                let index = self.block(BlockKind::Text, None, out);
                let delta = OutDelta::TextDelta { text: &text };
                write(&OutEvent::ContentBlockDelta { index, delta }, out);
            }
            StreamEvent::ToolCallStart { id, name } => {
                self.block(BlockKind::ToolUse, Some((&id, &name)), out);
            }
            StreamEvent::ToolCallArguments(json) => {
                // Fragments belong to the tool call just started; there is none otherwise.
                if let Some((BlockKind::ToolUse, index)) = self.open {
                    let delta = OutDelta::InputJsonDelta {
                        partial_json: &json,
                    };
                    write(&OutEvent::ContentBlockDelta { index, delta }, out);
                }
            }
            StreamEvent::Finish(reason) => {
                self.stop_reason.get_or_insert(reason);
            }
            StreamEvent::Usage(usage) => self.usage.merge(usage),
            StreamEvent::End => self.end(out),
            StreamEvent::Error(error) => {
                write_event("error", &error.to_body(Api::Anthropic), out);
                self.done = true;
            }
        }
    }

    fn start(&mut self, start: StreamStart<'_>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = self.ctx.anthropic_id(start.id.as_deref());
        self.model = start.model.map(Cow::into_owned).unwrap_or_default();
        self.usage.merge(start.usage);
        self.input_sent_at_start = self.usage.input_tokens.is_some();
        let message = OutMessageStart {
            id: &self.id,
            kind: "message",
            role: "assistant",
            model: &self.model,
            content: [],
            stop_reason: None,
            stop_sequence: None,
            usage: OutUsage::from(self.usage),
        };
        write(&OutEvent::MessageStart { message }, out);
    }

    /// The index of an open block of `kind`, starting one (and stopping the open one) if
    /// needed. A tool_use block always starts anew.
    fn block(&mut self, kind: BlockKind, tool: Option<(&str, &str)>, out: &mut Vec<u8>) -> usize {
        if !self.started {
            self.start(StreamStart::default(), out);
        }
        if let Some((open, index)) = self.open
            && open == kind
            && kind == BlockKind::Text
        {
            return index;
        }
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((kind, index));
        let content_block = match tool {
            Some((id, name)) => OutBlockStart::ToolUse {
                id,
                name,
                input: EmptyObject,
            },
            None => OutBlockStart::Text { text: "" },
        };
        write(
            &OutEvent::ContentBlockStart {
                index,
                content_block,
            },
            out,
        );
        index
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            write(&OutEvent::ContentBlockStop { index }, out);
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start(StreamStart::default(), out);
        }
        self.close_block(out);
        let delta = OutMessageDelta {
            stop_reason: encode_stop_reason(self.stop_reason.unwrap_or(FinishReason::EndTurn)),
            stop_sequence: None,
        };
        let usage = OutDeltaUsage {
            input_tokens: match self.usage.input_tokens {
                Some(_) if !self.input_sent_at_start => {
                    Some(OutUsage::from(self.usage).input_tokens)
                }
                _ => None,
            },
            output_tokens: self.usage.output(),
        };
        write(&OutEvent::MessageDelta { delta, usage }, out);
        write(&OutEvent::MessageStop, out);
        self.done = true;
    }
}

fn write(event: &OutEvent<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.name().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Writing plain structs into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, event);
    out.extend_from_slice(b"\n\n");
}

fn write_event(name: &str, json: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode_all(datas: &[&str]) -> Vec<StreamEvent<'static>> {
        let mut decoder = StreamDecoder;
        let mut events = Vec::new();
        for data in datas {
            decoder.decode(data, &mut |event| events.push(event.into_owned()));
        }
        events
    }

    #[test]
    fn decodes_the_documented_event_sequence() {
        let events = decode_all(&[
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hi \"there\""}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"a\": 1}"}}"#,
            r#"{"type":"content_block_stop","index":2}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            r#"{"type":"message_stop"}"#,
        ]);
        assert_eq!(
            events,
            vec![
                StreamEvent::Start(StreamStart {
                    id: Some("msg_1".into()),
                    model: Some("claude-sonnet-4-5".into()),
                    usage: Usage {
                        input_tokens: Some(25),
                        output_tokens: Some(1),
                        cached_input_tokens: None
                    }
                }),
                StreamEvent::Text("Hi \"there\"".into()),
                StreamEvent::ToolCallStart {
                    id: "toolu_1".into(),
                    name: "f".into()
                },
                StreamEvent::ToolCallArguments("{\"a\": 1}".into()),
                StreamEvent::Finish(FinishReason::ToolUse),
                StreamEvent::Usage(Usage {
                    output_tokens: Some(15),
                    ..Usage::default()
                }),
                StreamEvent::End,
            ]
        );
        let errors = decode_all(&[
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            "not json",
        ]);
        assert!(
            matches!(&errors[0], StreamEvent::Error(e) if e.kind == ErrorKind::Overloaded && e.message == "Overloaded")
        );
        assert!(matches!(&errors[1], StreamEvent::Error(e) if e.kind == ErrorKind::Api));
    }

    /// The events of `out` as (name, data) pairs, checking each is `event:` + `data:`.
    fn events(out: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(out).unwrap();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], name);
                (name.to_string(), data)
            })
            .collect()
    }

    #[test]
    fn encodes_a_well_formed_sequence_from_any_provider() {
        let mut encoder = StreamEncoder::new(ResponseContext::new(0, 0));
        let mut out = Vec::new();
        // As an OpenAI provider would say it: no input tokens until the end.
        for event in [
            StreamEvent::Start(StreamStart {
                id: Some("chatcmpl-1".into()),
                model: Some("gpt-4o".into()),
                usage: Usage::default(),
            }),
            StreamEvent::Text("Hel".into()),
            StreamEvent::Text("lo".into()),
            StreamEvent::ToolCallStart {
                id: "call_1".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallArguments("{\"a\"".into()),
            StreamEvent::ToolCallArguments(":1}".into()),
            StreamEvent::ToolCallStart {
                id: "call_2".into(),
                name: "g".into(),
            },
            StreamEvent::Finish(FinishReason::ToolUse),
            StreamEvent::Usage(Usage {
                input_tokens: Some(9),
                output_tokens: Some(4),
                cached_input_tokens: None,
            }),
            StreamEvent::End,
        ] {
            encoder.encode(event, &mut out);
        }
        let events = events(&out);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(events[0].1["message"]["id"], "msg_1");
        assert_eq!(events[0].1["message"]["model"], "gpt-4o");
        assert_eq!(events[0].1["message"]["content"], json!([]));
        assert_eq!(
            events[1].1["content_block"],
            json!({"type": "text", "text": ""})
        );
        assert_eq!(
            events[5].1,
            json!({"type": "content_block_start", "index": 1, "content_block":
                {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}})
        );
        assert_eq!(events[7].1["delta"]["partial_json"], ":1}");
        assert_eq!(events[9].1["index"], 2);
        assert_eq!(
            events[11].1,
            json!({"type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"input_tokens": 9, "output_tokens": 4}})
        );
    }

    #[test]
    fn errors_are_error_events_and_end_the_stream() {
        let mut encoder = StreamEncoder::new(ResponseContext::new(0, 0));
        let mut out = Vec::new();
        encoder.encode(StreamEvent::Text("partial".into()), &mut out);
        encoder.encode(
            StreamEvent::Error(ApiError::new(ErrorKind::RateLimit, "slow down")),
            &mut out,
        );
        encoder.encode(StreamEvent::End, &mut out);
        let events = events(&out);
        assert_eq!(events[0].0, "message_start");
        let (name, error) = events.last().unwrap();
        assert_eq!(name, "error");
        assert_eq!(
            error,
            &json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
        );
        assert!(encoder.is_done());
    }
}
