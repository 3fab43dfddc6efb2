//! Whole (`stream: false`) `/api/chat` responses to and from the canonical model.

use serde::{Deserialize, Serialize};

use super::{OutToolCall, WireToolCall, decode_done_reason, encode_done_reason, usage};
use crate::canonical::{ChatResponse, Part, join_text};
use crate::ids::{ResponseContext, rfc3339};

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

/// Reads an Ollama provider's response. Its `thinking` is dropped.
pub fn decode_response(body: &[u8], ctx: &ResponseContext) -> Result<ChatResponse, String> {
    let wire: WireResponse = crate::wire::parse_response(body)?;
    let mut content = Vec::new();
    if let Some(message) = wire.message {
        if let Some(text) = message.content.filter(|t| !t.is_empty()) {
            content.push(Part::Text(text));
        }
        for (n, call) in message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            content.push(Part::ToolCall(call.into_canonical(n, ctx)));
        }
    }
    let called_tools = content.iter().any(|p| matches!(p, Part::ToolCall(_)));
    Ok(ChatResponse {
        id: None,
        model: wire.model.unwrap_or_default(),
        content,
        finish: Some(decode_done_reason(
            wire.done_reason.as_deref(),
            called_tools,
        )),
        usage: usage(wire.prompt_eval_count, wire.eval_count),
    })
}

#[derive(Serialize)]
struct OutResponse<'a> {
    model: &'a str,
    created_at: String,
    message: OutMessage<'a>,
    done: bool,
    done_reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_eval_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_count: Option<u64>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
}

/// Writes a response for an Ollama client. The durations Ollama reports have no
/// counterpart and are left out (its clients treat them as optional).
pub fn encode_response(response: &ChatResponse, ctx: &ResponseContext) -> Vec<u8> {
    let out = OutResponse {
        model: &response.model,
        created_at: rfc3339(ctx.now_millis),
        message: OutMessage {
            role: "assistant",
            content: join_text(&response.content, ""),
            tool_calls: response
                .content
                .iter()
                .filter_map(|part| match part {
                    Part::ToolCall(call) => Some(call.into()),
                    _ => None,
                })
                .collect(),
        },
        done: true,
        done_reason: encode_done_reason(response.finish),
        prompt_eval_count: response.usage.input_tokens,
        eval_count: response.usage.output_tokens,
    };
    serde_json::to_vec(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::canonical::{FinishReason, ToolCall, Usage};

    fn ctx() -> ResponseContext {
        ResponseContext::new(1_721_679_091_123, 5)
    }

    #[test]
    fn decodes_content_tool_calls_and_counts() {
        let body = json!({
            "model": "llama3.2", "created_at": "2024-07-22T20:33:28.123648Z",
            "message": {"role": "assistant", "content": "",
                "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]},
            "done": true, "done_reason": "stop", "total_duration": 1_000_000u64,
            "prompt_eval_count": 26, "eval_count": 12
        });
        let response = decode_response(body.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(response.id, None);
        assert_eq!(
            response.content,
            vec![Part::ToolCall(ToolCall {
                id: ctx().tool_call_id(0),
                name: "weather".into(),
                arguments: json!({"city": "Oslo"})
            })]
        );
        assert_eq!(response.finish, Some(FinishReason::ToolUse));
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: Some(26),
                output_tokens: Some(12),
                cached_input_tokens: None
            }
        );
        let cut = decode_response(
            br#"{"model":"m","message":{"role":"assistant","content":"ab"},"done":true,"done_reason":"length"}"#,
            &ctx(),
        )
        .unwrap();
        assert_eq!(cut.finish, Some(FinishReason::MaxTokens));
        assert_eq!(cut.content, vec![Part::Text("ab".into())]);
    }

    #[test]
    fn encodes_a_final_response() {
        let response = ChatResponse {
            id: Some("msg_1".into()),
            model: "claude".into(),
            content: vec![Part::Text("Hi".into())],
            finish: Some(FinishReason::EndTurn),
            usage: Usage {
                input_tokens: Some(3),
                output_tokens: Some(1),
                cached_input_tokens: None,
            },
        };
        let out: Value = serde_json::from_slice(&encode_response(&response, &ctx())).unwrap();
        assert_eq!(
            out,
            json!({
                "model": "claude", "created_at": "2024-07-22T20:11:31.123Z",
                "message": {"role": "assistant", "content": "Hi"},
                "done": true, "done_reason": "stop",
                "prompt_eval_count": 3, "eval_count": 1
            })
        );
    }
}
