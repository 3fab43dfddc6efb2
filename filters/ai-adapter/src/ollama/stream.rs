//! `/api/chat` streams: one JSON object per line, `done: false` with a piece of the
//! message, then `done: true` with `done_reason` and the token counts.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    OutToolCall, WireToolCall, decode_done_reason, encode_done_reason, object_or_empty, usage,
};
use crate::api::Api;
use crate::canonical::{FinishReason, StreamEvent, StreamStart, ToolCall, Usage};
use crate::error::{ApiError, ErrorKind};
use crate::ids::{ResponseContext, rfc3339};

#[derive(Deserialize)]
struct WireLine<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<WireLineMessage<'a>>,
    #[serde(default)]
    done: bool,
    #[serde(borrow, default)]
    done_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireLineMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

/// Reads an Ollama provider's stream, one line at a time. Tool calls arrive whole, each
/// becoming a start and one arguments fragment.
pub struct StreamDecoder {
    ctx: ResponseContext,
    started: bool,
    tool_calls: usize,
}

impl StreamDecoder {
    pub fn new(ctx: ResponseContext) -> Self {
        StreamDecoder {
            ctx,
            started: false,
            tool_calls: 0,
        }
    }

    pub fn decode(&mut self, line: &str, emit: &mut dyn FnMut(StreamEvent<'_>)) {
        let line: WireLine<'_> = match serde_json::from_str(line) {
            Ok(line) => line,
            Err(e) => {
                return emit(StreamEvent::Error(ApiError::new(
                    ErrorKind::Api,
                    format!("the backend sent an unreadable stream line: {e}"),
                )));
            }
        };
        if let Some(error) = line.error {
            let error = ApiError::from_error_member(&error, ErrorKind::Api)
                .unwrap_or_else(|| ApiError::new(ErrorKind::Api, error.to_string()));
            return emit(StreamEvent::Error(error));
        }
        if !self.started {
            self.started = true;
            emit(StreamEvent::Start(StreamStart {
                id: None,
                model: line.model,
                usage: Usage::default(),
            }));
        }
        if let Some(message) = line.message {
            if let Some(text) = message.content.filter(|t| !t.is_empty()) {
                emit(StreamEvent::Text(text));
            }
            for call in message.tool_calls.unwrap_or_default() {
                let call = call.into_canonical(self.tool_calls, &self.ctx);
                self.tool_calls += 1;
                emit(StreamEvent::ToolCallStart {
                    id: Cow::Owned(call.id),
                    name: Cow::Owned(call.name),
                });
                emit(StreamEvent::ToolCallArguments(Cow::Owned(
                    call.arguments.to_string(),
                )));
            }
        }
        if line.done {
            let reason = decode_done_reason(line.done_reason.as_deref(), self.tool_calls > 0);
            emit(StreamEvent::Finish(reason));
            emit(StreamEvent::Usage(usage(
                line.prompt_eval_count,
                line.eval_count,
            )));
            emit(StreamEvent::End);
        }
    }
}

#[derive(Serialize)]
struct OutLine<'a> {
    model: &'a str,
    created_at: &'a str,
    message: OutLineMessage<'a>,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_eval_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_count: Option<u64>,
}

#[derive(Serialize)]
struct OutLineMessage<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tool_calls: &'a [OutToolCall<'a>],
}

/// A tool call being streamed to an Ollama client, which takes each call whole.
struct PendingCall {
    id: String,
    name: String,
    arguments: String,
}

/// Writes an Ollama client's stream: a line per text delta, a line per tool call once
/// its arguments are complete, and the final `done: true` line.
pub struct StreamEncoder {
    created_at: String,
    model: String,
    pending_call: Option<PendingCall>,
    finish: Option<FinishReason>,
    usage: Usage,
    done: bool,
}

impl StreamEncoder {
    pub fn new(ctx: ResponseContext) -> Self {
        StreamEncoder {
            created_at: rfc3339(ctx.now_millis),
            model: String::new(),
            pending_call: None,
            finish: None,
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
            StreamEvent::Start(start) => {
                if let Some(model) = start.model {
                    self.model = model.into_owned();
                }
                self.usage.merge(start.usage);
            }
            StreamEvent::Text(text) => {
                self.flush_call(out);
                self.write_line(&text, &[], false, out);
            }
            StreamEvent::ToolCallStart { id, name } => {
                self.flush_call(out);
                self.pending_call = Some(PendingCall {
                    id: id.into_owned(),
                    name: name.into_owned(),
                    arguments: String::new(),
                });
            }
            StreamEvent::ToolCallArguments(json) => {
                if let Some(call) = &mut self.pending_call {
                    call.arguments.push_str(&json);
                }
            }
            StreamEvent::Finish(reason) => {
                self.flush_call(out);
                self.finish.get_or_insert(reason);
            }
            StreamEvent::Usage(usage) => self.usage.merge(usage),
            StreamEvent::End => {
                self.flush_call(out);
                self.write_line("", &[], true, out);
                self.done = true;
            }
            StreamEvent::Error(error) => {
                out.extend_from_slice(&error.to_body(Api::Ollama));
                out.push(b'\n');
                self.done = true;
            }
        }
    }

    /// Sends the tool call being collected, its arguments parsed (`{}` if they are not a
    /// JSON object: Ollama's clients want an object).
    fn flush_call(&mut self, out: &mut Vec<u8>) {
        let Some(call) = self.pending_call.take() else {
            return;
        };
        let arguments = serde_json::from_str(&call.arguments).unwrap_or(Value::Null);
        let call = ToolCall {
            id: call.id,
            name: call.name,
            arguments: object_or_empty(arguments),
        };
        self.write_line("", &[OutToolCall::from(&call)], false, out);
    }

    fn write_line(
        &self,
        content: &str,
        tool_calls: &[OutToolCall<'_>],
        done: bool,
        out: &mut Vec<u8>,
    ) {
        let line = OutLine {
            model: &self.model,
            created_at: &self.created_at,
            message: OutLineMessage {
                role: "assistant",
                content,
                tool_calls,
            },
            done,
            done_reason: done.then(|| encode_done_reason(self.finish)),
            prompt_eval_count: if done { self.usage.input_tokens } else { None },
            eval_count: if done { self.usage.output_tokens } else { None },
        };
        // Writing plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &line);
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> ResponseContext {
        ResponseContext::new(1_721_679_091_123, 3)
    }

    #[test]
    fn decodes_lines_into_events() {
        let mut decoder = StreamDecoder::new(ctx());
        let mut events = Vec::new();
        for line in [
            r#"{"model":"llama3.2","created_at":"2024-07-22T20:33:28.1Z","message":{"role":"assistant","content":"The"},"done":false}"#,
            r#"{"model":"llama3.2","created_at":"2024-07-22T20:33:28.2Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"weather","arguments":{"city":"Oslo"}}}]},"done":false}"#,
            r#"{"model":"llama3.2","created_at":"2024-07-22T20:33:28.3Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":5,"prompt_eval_count":26,"eval_count":9}"#,
        ] {
            decoder.decode(line, &mut |e| events.push(e.into_owned()));
        }
        assert_eq!(
            events,
            vec![
                StreamEvent::Start(StreamStart {
                    id: None,
                    model: Some("llama3.2".into()),
                    usage: Usage::default()
                }),
                StreamEvent::Text("The".into()),
                StreamEvent::ToolCallStart {
                    id: ctx().tool_call_id(0).into(),
                    name: "weather".into()
                },
                StreamEvent::ToolCallArguments(r#"{"city":"Oslo"}"#.into()),
                StreamEvent::Finish(FinishReason::ToolUse),
                StreamEvent::Usage(Usage {
                    input_tokens: Some(26),
                    output_tokens: Some(9),
                    cached_input_tokens: None
                }),
                StreamEvent::End,
            ]
        );
        let mut errors = Vec::new();
        decoder.decode(r#"{"error":"model crashed"}"#, &mut |e| {
            errors.push(e.into_owned())
        });
        assert!(matches!(&errors[0], StreamEvent::Error(e) if e.message == "model crashed"));
    }

    #[test]
    fn encodes_ndjson_with_whole_tool_calls() {
        let mut encoder = StreamEncoder::new(ctx());
        let mut out = Vec::new();
        for event in [
            StreamEvent::Start(StreamStart {
                id: Some("msg_1".into()),
                model: Some("claude".into()),
                usage: Usage {
                    input_tokens: Some(30),
                    ..Usage::default()
                },
            }),
            StreamEvent::Text("Hi".into()),
            StreamEvent::ToolCallStart {
                id: "toolu_1".into(),
                name: "weather".into(),
            },
            StreamEvent::ToolCallArguments("{\"city\":".into()),
            StreamEvent::ToolCallArguments("\"Oslo\"}".into()),
            StreamEvent::Finish(FinishReason::ToolUse),
            StreamEvent::Usage(Usage {
                output_tokens: Some(7),
                ..Usage::default()
            }),
            StreamEvent::End,
        ] {
            encoder.encode(event, &mut out);
        }
        let lines: Vec<Value> = std::str::from_utf8(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            json!({"model": "claude", "created_at": "2024-07-22T20:11:31.123Z",
                "message": {"role": "assistant", "content": "Hi"}, "done": false})
        );
        assert_eq!(
            lines[1]["message"]["tool_calls"],
            json!([{"function": {"name": "weather", "arguments": {"city": "Oslo"}}}])
        );
        assert_eq!(
            lines[2],
            json!({"model": "claude", "created_at": "2024-07-22T20:11:31.123Z",
                "message": {"role": "assistant", "content": ""}, "done": true,
                "done_reason": "stop", "prompt_eval_count": 30, "eval_count": 7})
        );
        assert!(out.ends_with(b"\n"));
    }

    #[test]
    fn errors_are_error_lines() {
        let mut encoder = StreamEncoder::new(ctx());
        let mut out = Vec::new();
        encoder.encode(
            StreamEvent::Error(ApiError::new(ErrorKind::Api, "boom")),
            &mut out,
        );
        assert_eq!(out, b"{\"error\":\"boom\"}\n");
        assert!(encoder.is_done());
    }
}
