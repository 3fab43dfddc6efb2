//! Ollama's native chat: `POST /api/chat`, streamed (by default) as NDJSON lines, the
//! last with `done: true`. Ollama has no message or tool call ids: they are generated on
//! the way out and matched by position and name on the way in.

mod request;
mod response;
mod stream;

pub use request::{decode_request, encode_request};
pub use response::{decode_response, encode_response};
pub use stream::{StreamDecoder, StreamEncoder};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{FinishReason, ToolCall, Usage};
use crate::ids::ResponseContext;

/// A tool call: `arguments` is a JSON object, not a string.
#[derive(Debug, Deserialize)]
struct WireToolCall {
    /// Not part of Ollama's API; honoured when an OpenAI-minded client sends one.
    #[serde(default)]
    id: Option<String>,
    function: WireFunctionCall,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: Value,
}

impl WireToolCall {
    /// The canonical call; `n` numbers the calls of the response, for a generated id.
    fn into_canonical(self, n: usize, ctx: &ResponseContext) -> ToolCall {
        ToolCall {
            id: self.id.unwrap_or_else(|| ctx.tool_call_id(n)),
            name: self.function.name,
            arguments: object_or_empty(self.function.arguments),
        }
    }
}

/// Arguments as an object, whatever a lenient server sent (null, or a JSON string).
fn object_or_empty(arguments: Value) -> Value {
    match arguments {
        Value::Object(_) => arguments,
        Value::String(text) => match serde_json::from_str::<Value>(&text) {
            Ok(parsed @ Value::Object(_)) => parsed,
            _ => Value::Object(Default::default()),
        },
        _ => Value::Object(Default::default()),
    }
}

#[derive(Serialize)]
struct OutToolCall<'a> {
    function: OutFunctionCall<'a>,
}

#[derive(Serialize)]
struct OutFunctionCall<'a> {
    name: &'a str,
    arguments: &'a Value,
}

impl<'a> From<&'a ToolCall> for OutToolCall<'a> {
    fn from(call: &'a ToolCall) -> Self {
        OutToolCall {
            function: OutFunctionCall {
                name: &call.name,
                arguments: &call.arguments,
            },
        }
    }
}

/// Ollama reports `stop`, `length` (and `load`/`unload` for model management); a turn
/// that called tools also says `stop`.
fn decode_done_reason(reason: Option<&str>, called_tools: bool) -> FinishReason {
    match reason {
        _ if called_tools => FinishReason::ToolUse,
        Some("length") => FinishReason::MaxTokens,
        _ => FinishReason::EndTurn,
    }
}

fn encode_done_reason(reason: Option<FinishReason>) -> &'static str {
    match reason {
        Some(FinishReason::MaxTokens) => "length",
        _ => "stop",
    }
}

fn usage(prompt_eval_count: Option<u64>, eval_count: Option<u64>) -> Usage {
    Usage {
        input_tokens: prompt_eval_count,
        output_tokens: eval_count,
        cached_input_tokens: None,
    }
}
