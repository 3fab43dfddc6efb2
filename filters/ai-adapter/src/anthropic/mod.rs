//! Anthropic Messages: `POST /v1/messages`, SSE streams of typed events from
//! `message_start` to `message_stop`.

mod request;
mod response;
mod stream;

pub use request::{decode_request, encode_request};
pub use response::{decode_response, encode_response};
pub use stream::{StreamDecoder, StreamEncoder};

use serde::{Deserialize, Serialize};

use crate::canonical::{FinishReason, Usage};

/// Anthropic counts prompt-cache reads and writes apart from `input_tokens`; the
/// canonical input count includes them.
#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Usage {
        let cache_writes = usage.cache_creation_input_tokens.unwrap_or(0);
        let cache_reads = usage.cache_read_input_tokens.unwrap_or(0);
        Usage {
            input_tokens: usage
                .input_tokens
                .map(|input| input + cache_writes + cache_reads),
            output_tokens: usage.output_tokens,
            cached_input_tokens: usage.cache_read_input_tokens,
        }
    }
}

#[derive(Serialize)]
struct OutUsage {
    input_tokens: u64,
    output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_input_tokens: Option<u64>,
}

impl From<Usage> for OutUsage {
    fn from(usage: Usage) -> OutUsage {
        let cached = usage.cached_input_tokens;
        OutUsage {
            input_tokens: usage.input().saturating_sub(cached.unwrap_or(0)),
            output_tokens: usage.output(),
            cache_read_input_tokens: cached,
        }
    }
}

fn decode_stop_reason(reason: &str) -> FinishReason {
    match reason {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::MaxTokens,
        "stop_sequence" => FinishReason::StopSequence,
        "tool_use" => FinishReason::ToolUse,
        "refusal" => FinishReason::ContentFilter,
        // end_turn, and pause_turn (a server tool paused a long turn).
        _ => FinishReason::EndTurn,
    }
}

fn encode_stop_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::EndTurn => "end_turn",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::MaxTokens => "max_tokens",
        FinishReason::ToolUse => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}
