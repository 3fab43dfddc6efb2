//! OpenAI Chat Completions: `POST …/chat/completions`, SSE streams of
//! `chat.completion.chunk`s ending with `data: [DONE]`.

mod request;
mod response;
mod stream;

pub use request::{decode_request, encode_request};
pub use response::{decode_response, encode_response};
pub use stream::{StreamDecoder, StreamEncoder};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{FinishReason, Usage};

/// A tool call as requests and whole responses carry it; `arguments` is a JSON string.
#[derive(Debug, Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    function: WireFunctionCall,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Serialize)]
struct OutToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunctionCall<'a>,
}

#[derive(Serialize)]
struct OutFunctionCall<'a> {
    name: &'a str,
    arguments: String,
}

impl<'a> OutToolCall<'a> {
    fn new(call: &'a crate::canonical::ToolCall) -> Self {
        OutToolCall {
            id: &call.id,
            kind: "function",
            function: OutFunctionCall {
                name: &call.name,
                arguments: call.arguments.to_string(),
            },
        }
    }
}

/// Parses a tool call's `arguments` string. Empty means no arguments.
fn parse_arguments(arguments: Option<&str>) -> Result<Value, String> {
    let arguments = arguments.unwrap_or("").trim();
    if arguments.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("is not a JSON object".into()),
        Err(e) => Err(format!("is not valid JSON: {e}")),
    }
}

#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<WirePromptDetails>,
}

#[derive(Debug, Default, Deserialize)]
struct WirePromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Usage {
        Usage {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            cached_input_tokens: usage.prompt_tokens_details.and_then(|d| d.cached_tokens),
        }
    }
}

#[derive(Serialize)]
struct OutUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<OutPromptDetails>,
}

#[derive(Serialize)]
struct OutPromptDetails {
    cached_tokens: u64,
}

impl From<Usage> for OutUsage {
    fn from(usage: Usage) -> OutUsage {
        OutUsage {
            prompt_tokens: usage.input(),
            completion_tokens: usage.output(),
            total_tokens: usage.input() + usage.output(),
            prompt_tokens_details: usage
                .cached_input_tokens
                .map(|cached_tokens| OutPromptDetails { cached_tokens }),
        }
    }
}

fn decode_finish_reason(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::MaxTokens,
        "tool_calls" | "function_call" => FinishReason::ToolUse,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::EndTurn,
    }
}

fn encode_finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::EndTurn | FinishReason::StopSequence => "stop",
        FinishReason::MaxTokens => "length",
        FinishReason::ToolUse => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}
