//! Chat Completions streams: `data: {chat.completion.chunk}` events, then `data: [DONE]`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{OutUsage, WireUsage, decode_finish_reason, encode_finish_reason};
use crate::api::Api;
use crate::canonical::{FinishReason, StreamEvent, StreamStart, Usage};
use crate::error::{ApiError, ErrorKind};
use crate::ids::ResponseContext;
use crate::wire::EmptyObject;

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Vec<ChunkChoice<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(default)]
    index: Option<usize>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

/// Reads an OpenAI provider's stream, one SSE `data` at a time.
///
/// Tool calls are expected one after another, as OpenAI streams them: a delta for a new
/// `index` starts a call, and argument fragments belong to the latest one.
pub struct StreamDecoder {
    ctx: ResponseContext,
    started: bool,
    /// The `index` of the tool call being streamed.
    current_tool: Option<usize>,
    tool_calls: usize,
}

impl StreamDecoder {
    pub fn new(ctx: ResponseContext) -> Self {
        StreamDecoder {
            ctx,
            started: false,
            current_tool: None,
            tool_calls: 0,
        }
    }

    pub fn decode(&mut self, data: &str, emit: &mut dyn FnMut(StreamEvent<'_>)) {
        let data = data.trim();
        if data == "[DONE]" {
            return emit(StreamEvent::End);
        }
        let chunk: Chunk<'_> = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(e) => return emit(StreamEvent::Error(unreadable(e))),
        };
        if let Some(error) = chunk.error {
            let error = ApiError::from_error_member(&error, ErrorKind::Api)
                .unwrap_or_else(|| ApiError::new(ErrorKind::Api, error.to_string()));
            return emit(StreamEvent::Error(error));
        }
        // Azure sends a first chunk with empty id and model and no choices (its prompt
        // filter results): the message starts with the first chunk that says something.
        let id = chunk.id.filter(|id| !id.is_empty());
        let model = chunk.model.filter(|model| !model.is_empty());
        if !self.started && (id.is_some() || model.is_some() || !chunk.choices.is_empty()) {
            self.started = true;
            emit(StreamEvent::Start(StreamStart {
                id,
                model,
                usage: Usage::default(),
            }));
        }
        // Only the first choice is translated (`n` > 1 has no equivalent elsewhere).
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                self.decode_delta(delta, emit);
            }
            if let Some(reason) = choice.finish_reason {
                emit(StreamEvent::Finish(decode_finish_reason(&reason)));
            }
        }
        if let Some(usage) = chunk.usage {
            emit(StreamEvent::Usage(usage.into()));
        }
    }

    fn decode_delta(&mut self, delta: Delta<'_>, emit: &mut dyn FnMut(StreamEvent<'_>)) {
        for text in [delta.content, delta.refusal].into_iter().flatten() {
            if !text.is_empty() {
                emit(StreamEvent::Text(text));
            }
        }
        for call in delta.tool_calls.unwrap_or_default() {
            // Servers that leave out `index` start a call with an id and continue it
            // without one.
            let index = match (call.index, &call.id, self.current_tool) {
                (Some(index), _, _) => index,
                (None, None, Some(current)) => current,
                (None, _, _) => self.tool_calls,
            };
            let (name, arguments) = call
                .function
                .map_or((None, None), |f| (f.name, f.arguments));
            if self.current_tool != Some(index) {
                self.current_tool = Some(index);
                let id = call
                    .id
                    .unwrap_or_else(|| Cow::Owned(self.ctx.tool_call_id(self.tool_calls)));
                self.tool_calls += 1;
                emit(StreamEvent::ToolCallStart {
                    id,
                    name: name.unwrap_or_default(),
                });
            }
            if let Some(arguments) = arguments.filter(|a| !a.is_empty()) {
                emit(StreamEvent::ToolCallArguments(arguments));
            }
        }
    }
}

fn unreadable(e: serde_json::Error) -> ApiError {
    ApiError::new(
        ErrorKind::Api,
        format!("the backend sent an unreadable stream event: {e}"),
    )
}

/// A chunk's fields that stay the same for the whole stream, written once
/// ([`StreamEncoder::start`]) and then copied before each chunk's `choices`.
#[derive(Serialize)]
struct OutChunkHead<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
}

#[derive(Serialize)]
struct OutChoice<'a> {
    index: u32,
    delta: OutDelta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutDelta<'a> {
    Role {
        role: &'static str,
        content: &'static str,
    },
    Content {
        content: &'a str,
    },
    ToolCall {
        tool_calls: [OutToolCallDelta<'a>; 1],
    },
    Empty(EmptyObject),
}

#[derive(Serialize)]
struct OutToolCallDelta<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: OutFunctionDelta<'a>,
}

#[derive(Serialize)]
struct OutFunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// Writes an OpenAI client's stream: a first chunk with the role, one chunk per delta, a
/// chunk with the finish reason, the usage chunk (`choices: []`) if the client asked for
/// it, and `data: [DONE]`.
pub struct StreamEncoder {
    ctx: ResponseContext,
    include_usage: bool,
    /// `data: {"id":…,"object":…,"created":…,"model":…,"choices":`, from `start`.
    chunk_head: Vec<u8>,
    started: bool,
    tool_calls: usize,
    finish_sent: bool,
    usage: Usage,
    done: bool,
}

impl StreamEncoder {
    pub fn new(ctx: ResponseContext, include_usage: bool) -> Self {
        StreamEncoder {
            ctx,
            include_usage,
            chunk_head: Vec::new(),
            started: false,
            tool_calls: 0,
            finish_sent: false,
            usage: Usage::default(),
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
                self.ensure_started(out);
                self.write_delta(OutDelta::Content { content: &text }, None, out);
            }
            StreamEvent::ToolCallStart { id, name } => {
                self.ensure_started(out);
                self.tool_calls += 1;
                let delta = self.tool_call_delta(Some(&id), Some(&name), "");
                self.write_delta(delta, None, out);
            }
            StreamEvent::ToolCallArguments(arguments) => {
                self.ensure_started(out);
                let delta = self.tool_call_delta(None, None, &arguments);
                self.write_delta(delta, None, out);
            }
            StreamEvent::Finish(reason) => self.finish(reason, out),
            StreamEvent::Usage(usage) => self.usage.merge(usage),
            StreamEvent::End => {
                self.finish(FinishReason::EndTurn, out);
                if self.include_usage {
                    self.write_chunk(&[], Some(self.usage.into()), out);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.done = true;
            }
            StreamEvent::Error(error) => {
                write_data(&error.to_body(Api::OpenAi), out);
                self.done = true;
            }
        }
    }

    fn start(&mut self, start: StreamStart<'_>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        let head = OutChunkHead {
            id: &self.ctx.openai_id(start.id.as_deref()),
            object: "chat.completion.chunk",
            created: self.ctx.created_secs(),
            model: start.model.as_deref().unwrap_or_default(),
        };
        self.chunk_head.clear();
        self.chunk_head.extend_from_slice(b"data: ");
        // Writing plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.chunk_head, &head);
        // Reopen the object for `choices`: the head always ends with its `}`.
        self.chunk_head.pop();
        self.chunk_head.extend_from_slice(br#","choices":"#);
        self.usage.merge(start.usage);
        self.started = true;
        let delta = OutDelta::Role {
            role: "assistant",
            content: "",
        };
        self.write_delta(delta, None, out);
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start(StreamStart::default(), out);
        }
    }

    /// Sends the finish reason once: the first one given, or `reason` at the end.
    fn finish(&mut self, reason: FinishReason, out: &mut Vec<u8>) {
        self.ensure_started(out);
        if !self.finish_sent {
            self.finish_sent = true;
            let reason = Some(encode_finish_reason(reason));
            self.write_delta(OutDelta::Empty(EmptyObject), reason, out);
        }
    }

    fn tool_call_delta<'a>(
        &self,
        id: Option<&'a str>,
        name: Option<&'a str>,
        arguments: &'a str,
    ) -> OutDelta<'a> {
        OutDelta::ToolCall {
            tool_calls: [OutToolCallDelta {
                index: self.tool_calls.saturating_sub(1),
                id,
                kind: id.map(|_| "function"),
                function: OutFunctionDelta { name, arguments },
            }],
        }
    }

    fn write_delta(
        &self,
        delta: OutDelta<'_>,
        finish_reason: Option<&'static str>,
        out: &mut Vec<u8>,
    ) {
        let choice = OutChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        };
        self.write_chunk(std::slice::from_ref(&choice), None, out);
    }

    fn write_chunk(&self, choices: &[OutChoice<'_>], usage: Option<OutUsage>, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.chunk_head);
        // Writing plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, choices);
        if let Some(usage) = usage {
            out.extend_from_slice(br#","usage":"#);
            let _ = serde_json::to_writer(&mut *out, &usage);
        }
        out.extend_from_slice(b"}\n\n");
    }
}

fn write_data(json: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> ResponseContext {
        ResponseContext::new(1_700_000_000_000, 1)
    }

    fn decode_all(datas: &[&str]) -> Vec<StreamEvent<'static>> {
        let mut decoder = StreamDecoder::new(ctx());
        let mut events = Vec::new();
        for data in datas {
            decoder.decode(data, &mut |event| events.push(event.into_owned()));
        }
        events
    }

    #[test]
    fn decodes_text_tool_calls_usage_and_done() {
        let events = decode_all(&[
            r#"{"id":"chatcmpl-1","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-1","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi\n"},"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#,
            "[DONE]",
        ]);
        assert_eq!(
            events,
            vec![
                StreamEvent::Start(StreamStart {
                    id: Some("chatcmpl-1".into()),
                    model: Some("gpt-4o".into()),
                    usage: Usage::default()
                }),
                StreamEvent::Text("Hi\n".into()),
                StreamEvent::ToolCallStart {
                    id: "call_1".into(),
                    name: "f".into()
                },
                StreamEvent::ToolCallArguments("{\"a\":".into()),
                StreamEvent::ToolCallArguments("1}".into()),
                StreamEvent::Finish(FinishReason::ToolUse),
                StreamEvent::Usage(Usage {
                    input_tokens: Some(9),
                    output_tokens: Some(3),
                    cached_input_tokens: None
                }),
                StreamEvent::End,
            ]
        );
    }

    #[test]
    fn reads_azure_and_index_less_tool_call_chunks() {
        let events = decode_all(&[
            r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]}"#,
            r#"{"id":"chatcmpl-2","model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"id":"call_9","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
            r#"{"id":"chatcmpl-2","model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":":1}"}}]}}]}"#,
        ]);
        assert_eq!(
            events,
            vec![
                StreamEvent::Start(StreamStart {
                    id: Some("chatcmpl-2".into()),
                    model: Some("gpt-4o".into()),
                    usage: Usage::default()
                }),
                StreamEvent::ToolCallStart {
                    id: "call_9".into(),
                    name: "f".into()
                },
                StreamEvent::ToolCallArguments("{\"a\"".into()),
                StreamEvent::ToolCallArguments(":1}".into()),
            ]
        );
    }

    #[test]
    fn errors_and_garbage_become_error_events() {
        let events = decode_all(&[
            r#"{"error":{"message":"boom","type":"server_error"}}"#,
            "{not json",
        ]);
        assert!(matches!(&events[0], StreamEvent::Error(e) if e.message == "boom"));
        assert!(
            matches!(&events[1], StreamEvent::Error(e) if e.message.contains("unreadable stream event"))
        );
    }

    fn datas(out: &[u8]) -> Vec<String> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.ends_with("\n\n"));
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap().to_string())
            .collect()
    }

    #[test]
    fn encodes_a_stream_the_openai_sdk_accepts() {
        let mut encoder = StreamEncoder::new(ctx(), true);
        let mut out = Vec::new();
        for event in [
            StreamEvent::Start(StreamStart {
                id: Some("msg_1".into()),
                model: Some("claude".into()),
                usage: Usage {
                    input_tokens: Some(4),
                    ..Usage::default()
                },
            }),
            StreamEvent::Text("Hel".into()),
            StreamEvent::Text("lo".into()),
            StreamEvent::ToolCallStart {
                id: "toolu_1".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallArguments("{}".into()),
            StreamEvent::Finish(FinishReason::ToolUse),
            StreamEvent::Usage(Usage {
                output_tokens: Some(6),
                ..Usage::default()
            }),
            StreamEvent::End,
            StreamEvent::Text("ignored after the end".into()),
        ] {
            encoder.encode(event, &mut out);
        }
        let lines = datas(&out);
        assert_eq!(lines.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = lines[..lines.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert!(chunks.iter().all(|c| c["id"] == "chatcmpl-1"
            && c["object"] == "chat.completion.chunk"
            && c["model"] == "claude"));
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": "Hel"}));
        assert_eq!(
            chunks[3]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "id": "toolu_1", "type": "function",
                "function": {"name": "f", "arguments": ""}})
        );
        assert_eq!(
            chunks[4]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "function": {"arguments": "{}"}})
        );
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[5]["choices"][0]["delta"], json!({}));
        assert_eq!(chunks[6]["choices"], json!([]));
        assert_eq!(
            chunks[6]["usage"],
            json!({"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10})
        );
        assert_eq!(chunks.len(), 7);
    }

    #[test]
    fn leaves_out_usage_unless_asked_and_ends_errors_cleanly() {
        let mut encoder = StreamEncoder::new(ctx(), false);
        let mut out = Vec::new();
        encoder.encode(StreamEvent::Text("x".into()), &mut out);
        encoder.encode(StreamEvent::End, &mut out);
        let lines = datas(&out);
        assert_eq!(lines.len(), 4, "{lines:?}"); // role, text, finish, [DONE]
        assert!(!lines.iter().any(|d| d.contains("usage")));
        assert!(lines[2].contains(r#""finish_reason":"stop""#));

        let mut encoder = StreamEncoder::new(ctx(), false);
        let mut out = Vec::new();
        encoder.encode(
            StreamEvent::Error(ApiError::new(ErrorKind::Overloaded, "busy")),
            &mut out,
        );
        assert!(encoder.is_done());
        let error: Value = serde_json::from_str(&datas(&out)[0]).unwrap();
        assert_eq!(error["error"]["message"], "busy");
    }
}
