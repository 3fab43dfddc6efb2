//! Whole `chat.completion` responses to and from the canonical model.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    OutToolCall, OutUsage, WireToolCall, WireUsage, decode_finish_reason, encode_finish_reason,
    parse_arguments,
};
use crate::canonical::{ChatResponse, Part, ToolCall};
use crate::ids::ResponseContext;

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

/// Reads an OpenAI provider's response. Only the first choice is kept (`n` is not
/// translated). Tool call arguments that are not a JSON object become `{}`.
pub fn decode_response(body: &[u8], ctx: &ResponseContext) -> Result<ChatResponse, String> {
    let completion: Completion = crate::wire::parse_response(body)?;
    let choice = completion.choices.into_iter().next();
    let mut content = Vec::new();
    let mut finish = None;
    if let Some(choice) = choice {
        finish = choice.finish_reason.as_deref().map(decode_finish_reason);
        if let Some(message) = choice.message {
            if let Some(text) = message.content.or(message.refusal)
                && !text.is_empty()
            {
                content.push(Part::Text(text));
            }
            for (n, call) in message
                .tool_calls
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                content.push(Part::ToolCall(ToolCall {
                    id: call.id.unwrap_or_else(|| ctx.tool_call_id(n)),
                    name: call.function.name,
                    arguments: parse_arguments(call.function.arguments.as_deref())
                        .unwrap_or_else(|_| Value::Object(Default::default())),
                }));
            }
        }
    }
    Ok(ChatResponse {
        id: completion.id,
        model: completion.model.unwrap_or_default(),
        content,
        finish,
        usage: completion.usage.map(Into::into).unwrap_or_default(),
    })
}

#[derive(Serialize)]
struct OutCompletion<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [OutChoice<'a>; 1],
    usage: OutUsage,
}

#[derive(Serialize)]
struct OutChoice<'a> {
    index: u32,
    message: OutMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
    refusal: Option<()>,
}

/// Writes a response for an OpenAI client.
pub fn encode_response(response: &ChatResponse, ctx: &ResponseContext) -> Vec<u8> {
    let text = crate::canonical::join_text(&response.content, "");
    let tool_calls: Vec<_> = response
        .content
        .iter()
        .filter_map(|part| match part {
            Part::ToolCall(call) => Some(OutToolCall::new(call)),
            _ => None,
        })
        .collect();
    let out = OutCompletion {
        id: ctx.openai_id(response.id.as_deref()),
        object: "chat.completion",
        created: ctx.created_secs(),
        model: &response.model,
        choices: [OutChoice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
                tool_calls,
                refusal: None,
            },
            logprobs: None,
            finish_reason: encode_finish_reason(
                response
                    .finish
                    .unwrap_or(crate::canonical::FinishReason::EndTurn),
            ),
        }],
        usage: response.usage.into(),
    };
    serde_json::to_vec(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::canonical::{FinishReason, Usage};

    fn ctx() -> ResponseContext {
        ResponseContext::new(1_700_000_000_000, 7)
    }

    #[test]
    fn decodes_text_tool_calls_finish_and_usage() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_a", "type": "function",
                     "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"type": "function", "function": {"name": "broken", "arguments": "{"}}
                ]}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27,
                      "prompt_tokens_details": {"cached_tokens": 4}}
        });
        let response = decode_response(body.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(response.id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(response.model, "gpt-4o-2024");
        assert_eq!(response.content[0], Part::Text("Checking.".into()));
        assert_eq!(
            response.content[1],
            Part::ToolCall(ToolCall {
                id: "call_a".into(),
                name: "weather".into(),
                arguments: json!({"city": "Paris"})
            })
        );
        assert!(
            matches!(&response.content[2], Part::ToolCall(c) if c.arguments == json!({}) && c.id == ctx().tool_call_id(1))
        );
        assert_eq!(response.finish, Some(FinishReason::ToolUse));
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: Some(20),
                output_tokens: Some(7),
                cached_input_tokens: Some(4)
            }
        );
        assert!(decode_response(b"[]", &ctx()).is_err());
    }

    #[test]
    fn encodes_a_chat_completion() {
        let response = ChatResponse {
            id: Some("msg_01".into()),
            model: "claude-x".into(),
            content: vec![Part::Text("Hello".into())],
            finish: Some(FinishReason::MaxTokens),
            usage: Usage {
                input_tokens: Some(5),
                output_tokens: Some(2),
                cached_input_tokens: None,
            },
        };
        let out: Value = serde_json::from_slice(&encode_response(&response, &ctx())).unwrap();
        assert_eq!(
            out,
            json!({
                "id": "chatcmpl-01", "object": "chat.completion", "created": 1_700_000_000u64,
                "model": "claude-x",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello",
                    "refusal": null}, "logprobs": null, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
            })
        );
    }
}
