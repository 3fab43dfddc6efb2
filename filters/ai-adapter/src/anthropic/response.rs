//! Whole Messages responses to and from the canonical model.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{OutUsage, WireUsage, decode_stop_reason, encode_stop_reason};
use crate::canonical::{ChatResponse, FinishReason, Part, ToolCall};
use crate::ids::ResponseContext;

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<WireBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking and server-tool blocks.
    #[serde(other)]
    Other,
}

/// Reads an Anthropic provider's response.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, String> {
    let wire: WireResponse = crate::wire::parse_response(body)?;
    let content = wire
        .content
        .into_iter()
        .filter_map(|block| match block {
            WireBlock::Text { text } => Some(Part::Text(text)),
            WireBlock::ToolUse { id, name, input } => Some(Part::ToolCall(ToolCall {
                id,
                name,
                arguments: input,
            })),
            WireBlock::Other => None,
        })
        .collect();
    Ok(ChatResponse {
        id: wire.id,
        model: wire.model.unwrap_or_default(),
        content,
        finish: wire.stop_reason.as_deref().map(decode_stop_reason),
        usage: wire.usage.map(Into::into).unwrap_or_default(),
    })
}

#[derive(Serialize)]
struct OutMessage<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<OutBlock<'a>>,
    stop_reason: &'static str,
    stop_sequence: Option<()>,
    usage: OutUsage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutBlock<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
}

/// Writes a response for an Anthropic client.
pub fn encode_response(response: &ChatResponse, ctx: &ResponseContext) -> Vec<u8> {
    let out = OutMessage {
        id: ctx.anthropic_id(response.id.as_deref()),
        kind: "message",
        role: "assistant",
        model: &response.model,
        content: response
            .content
            .iter()
            .filter_map(|part| match part {
                Part::Text(text) if !text.is_empty() => Some(OutBlock::Text { text }),
                Part::ToolCall(call) => Some(OutBlock::ToolUse {
                    id: &call.id,
                    name: &call.name,
                    input: &call.arguments,
                }),
                _ => None,
            })
            .collect(),
        stop_reason: encode_stop_reason(response.finish.unwrap_or(FinishReason::EndTurn)),
        stop_sequence: None,
        usage: response.usage.into(),
    };
    serde_json::to_vec(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::canonical::Usage;

    #[test]
    fn decodes_blocks_stop_reason_and_cache_usage() {
        let body = json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": "...", "signature": "x"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5,
                      "cache_read_input_tokens": 100, "output_tokens": 30}
        });
        let response = decode_response(body.to_string().as_bytes()).unwrap();
        assert_eq!(response.id.as_deref(), Some("msg_01"));
        assert_eq!(
            response.content,
            vec![
                Part::Text("Let me check.".into()),
                Part::ToolCall(ToolCall {
                    id: "toolu_1".into(),
                    name: "weather".into(),
                    arguments: json!({"city": "Oslo"})
                })
            ]
        );
        assert_eq!(response.finish, Some(FinishReason::ToolUse));
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: Some(115),
                output_tokens: Some(30),
                cached_input_tokens: Some(100)
            }
        );
        assert!(decode_response(br#"{"content":"nope"}"#).is_err());
    }

    #[test]
    fn encodes_a_message() {
        let response = ChatResponse {
            id: Some("chatcmpl-9".into()),
            model: "gpt-4o".into(),
            content: vec![
                Part::Text("Hi".into()),
                Part::ToolCall(ToolCall {
                    id: "call_1".into(),
                    name: "f".into(),
                    arguments: json!({}),
                }),
            ],
            finish: Some(FinishReason::ToolUse),
            usage: Usage {
                input_tokens: Some(12),
                output_tokens: Some(3),
                cached_input_tokens: Some(2),
            },
        };
        let out: Value =
            serde_json::from_slice(&encode_response(&response, &ResponseContext::new(0, 0)))
                .unwrap();
        assert_eq!(
            out,
            json!({
                "id": "msg_9", "type": "message", "role": "assistant", "model": "gpt-4o",
                "content": [{"type": "text", "text": "Hi"},
                            {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 2}
            })
        );
    }
}
