//! Messages requests to and from the canonical model.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{
    ChatRequest, Image, Message, Part, Role, Tool, ToolCall, ToolChoice, ToolResult,
};
use crate::error::ApiError;
use crate::wire::{TextOr, any_object_schema, parse_request};

#[derive(Deserialize)]
struct MessagesRequest {
    model: String,
    messages: Vec<WireMessage>,
    #[serde(default)]
    system: Option<TextOr<WireBlock>>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<u64>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    tools: Option<Vec<WireTool>>,
    #[serde(default)]
    tool_choice: Option<WireToolChoice>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct WireMessage {
    role: WireRole,
    content: TextOr<WireBlock>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireRole {
    User,
    Assistant,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    Image {
        source: WireImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<TextOr<WireBlock>>,
        #[serde(default)]
        is_error: Option<bool>,
    },
    /// Documents, thinking, server tool blocks: nothing to translate them to.
    #[serde(other)]
    Unsupported,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireImageSource {
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    /// Files API references.
    #[serde(other)]
    Unsupported,
}

#[derive(Deserialize)]
struct WireTool {
    /// Absent or `custom` for client tools; server tools (`web_search_…`) have their own.
    #[serde(rename = "type", default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireToolChoice {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

/// Reads an Anthropic client's request.
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let wire: MessagesRequest = parse_request(body)?;
    let mut messages = Vec::with_capacity(wire.messages.len() + 1);
    if let Some(system) = wire.system {
        messages.push(Message::new(Role::System, decode_blocks(system)));
    }
    for message in wire.messages {
        let role = match message.role {
            WireRole::User => Role::User,
            WireRole::Assistant => Role::Assistant,
        };
        messages.push(Message::new(role, decode_blocks(message.content)));
    }
    let (tool_choice, disable_parallel) = match wire.tool_choice {
        None => (None, None),
        Some(WireToolChoice::Auto {
            disable_parallel_tool_use,
        }) => (Some(ToolChoice::Auto), disable_parallel_tool_use),
        Some(WireToolChoice::Any {
            disable_parallel_tool_use,
        }) => (Some(ToolChoice::Required), disable_parallel_tool_use),
        Some(WireToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        }) => (Some(ToolChoice::Tool(name)), disable_parallel_tool_use),
        Some(WireToolChoice::None) => (Some(ToolChoice::None), None),
    };
    Ok(ChatRequest {
        model: wire.model,
        messages,
        tools: wire
            .tools
            .unwrap_or_default()
            .into_iter()
            .filter(|tool| tool.kind.as_deref().is_none_or(|kind| kind == "custom"))
            .map(|tool| Tool {
                name: tool.name,
                description: tool.description,
                parameters: tool.input_schema.unwrap_or_else(any_object_schema),
            })
            .collect(),
        tool_choice,
        parallel_tool_calls: disable_parallel.map(|disable| !disable),
        max_tokens: wire.max_tokens,
        temperature: wire.temperature,
        top_p: wire.top_p,
        top_k: wire.top_k,
        seed: None,
        stop: wire.stop_sequences.unwrap_or_default(),
        stream: wire.stream.unwrap_or(false),
        stream_usage: true,
        user: wire.metadata.and_then(|metadata| metadata.user_id),
    })
}

fn decode_blocks(content: TextOr<WireBlock>) -> Vec<Part> {
    match content {
        TextOr::Text(text) => vec![Part::Text(text)],
        TextOr::List(blocks) => blocks.into_iter().filter_map(decode_block).collect(),
    }
}

fn decode_block(block: WireBlock) -> Option<Part> {
    Some(match block {
        WireBlock::Text { text } => Part::Text(text),
        WireBlock::Image { source } => Part::Image(match source {
            WireImageSource::Base64 { media_type, data } => Image::Base64 { media_type, data },
            WireImageSource::Url { url } => Image::Url(url),
            WireImageSource::Unsupported => return None,
        }),
        WireBlock::ToolUse { id, name, input } => Part::ToolCall(ToolCall {
            id,
            name,
            arguments: if input.is_null() {
                Value::Object(Default::default())
            } else {
                input
            },
        }),
        WireBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => Part::ToolResult(ToolResult {
            call_id: tool_use_id,
            content: content.map(decode_blocks).unwrap_or_default(),
            is_error: is_error.unwrap_or(false),
        }),
        WireBlock::Unsupported => return None,
    })
}

#[derive(Serialize)]
struct OutRequest<'a> {
    model: &'a str,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<OutBlock<'a>>,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<OutToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<OutMetadata<'a>>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Vec<OutBlock<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutBlock<'a> {
    Text {
        text: &'a str,
    },
    Image {
        source: OutImageSource<'a>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        content: Vec<OutBlock<'a>>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutImageSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

#[derive(Serialize)]
struct OutTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: &'a Value,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutToolChoice<'a> {
    Auto {
        #[serde(skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

#[derive(Serialize)]
struct OutMetadata<'a> {
    user_id: &'a str,
}

/// Writes the request for an Anthropic provider, which wants: the system prompt at the
/// top, user and assistant turns alternating (consecutive turns of one role are merged,
/// which also gathers consecutive tool results into one user turn), tool results first in
/// their turn, no empty text blocks, `max_tokens` always, and `temperature` within 0–1.
pub fn encode_request(request: &ChatRequest, default_max_tokens: u64) -> Vec<u8> {
    let mut system = Vec::new();
    let mut messages: Vec<OutMessage<'_>> = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        let blocks = message.content.iter().filter_map(encode_part);
        let role = match message.role {
            Role::System => {
                system.extend(blocks.filter(|b| matches!(b, OutBlock::Text { .. })));
                continue;
            }
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        match messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => messages.push(OutMessage {
                role,
                content: blocks.collect(),
            }),
        }
    }
    // Turns left empty (an assistant turn with only an empty text) are dropped, which may
    // leave two turns of one role side by side again: merge once more.
    let mut alternating: Vec<OutMessage<'_>> = Vec::with_capacity(messages.len());
    for message in messages.into_iter().filter(|m| !m.content.is_empty()) {
        match alternating.last_mut() {
            Some(last) if last.role == message.role => last.content.extend(message.content),
            _ => alternating.push(message),
        }
    }
    for message in &mut alternating {
        // Stable: tool results keep their order, and so does everything after them.
        message
            .content
            .sort_by_key(|block| !matches!(block, OutBlock::ToolResult { .. }));
    }
    let has_tools = !request.tools.is_empty();
    let disable_parallel_tool_use = match request.parallel_tool_calls {
        Some(false) => Some(true),
        _ => None,
    };
    let tool_choice = match request.tool_choice.as_ref().filter(|_| has_tools) {
        None if disable_parallel_tool_use.is_some() && has_tools => Some(OutToolChoice::Auto {
            disable_parallel_tool_use,
        }),
        None => None,
        Some(ToolChoice::Auto) => Some(OutToolChoice::Auto {
            disable_parallel_tool_use,
        }),
        Some(ToolChoice::Required) => Some(OutToolChoice::Any {
            disable_parallel_tool_use,
        }),
        Some(ToolChoice::Tool(name)) => Some(OutToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        }),
        Some(ToolChoice::None) => Some(OutToolChoice::None),
    };
    let out = OutRequest {
        model: &request.model,
        max_tokens: request.max_tokens.unwrap_or(default_max_tokens),
        system,
        messages: alternating,
        tools: request
            .tools
            .iter()
            .map(|tool| OutTool {
                name: &tool.name,
                description: tool.description.as_deref(),
                input_schema: &tool.parameters,
            })
            .collect(),
        tool_choice,
        // OpenAI's range is 0–2; Anthropic refuses anything above 1.
        temperature: request.temperature.map(|t| t.clamp(0.0, 1.0)),
        top_p: request.top_p,
        top_k: request.top_k,
        stop_sequences: &request.stop,
        stream: request.stream,
        metadata: request
            .user
            .as_deref()
            .map(|user_id| OutMetadata { user_id }),
    };
    serde_json::to_vec(&out).unwrap_or_default()
}

fn encode_part(part: &Part) -> Option<OutBlock<'_>> {
    Some(match part {
        // Anthropic refuses empty text blocks.
        Part::Text(text) if text.is_empty() => return None,
        Part::Text(text) => OutBlock::Text { text },
        Part::Image(Image::Base64 { media_type, data }) => OutBlock::Image {
            source: OutImageSource::Base64 { media_type, data },
        },
        Part::Image(Image::Url(url)) => OutBlock::Image {
            source: OutImageSource::Url { url },
        },
        Part::ToolCall(call) => OutBlock::ToolUse {
            id: &call.id,
            name: &call.name,
            input: &call.arguments,
        },
        Part::ToolResult(result) => OutBlock::ToolResult {
            tool_use_id: &result.call_id,
            content: result.content.iter().filter_map(encode_part).collect(),
            is_error: result.is_error,
        },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn encode(request: &ChatRequest) -> Value {
        serde_json::from_slice(&encode_request(request, 4096)).unwrap()
    }

    fn text(role: Role, text: &str) -> Message {
        Message::new(role, vec![Part::Text(text.into())])
    }

    fn tool_result(id: &str, text: &str) -> Message {
        Message::new(
            Role::User,
            vec![Part::ToolResult(ToolResult {
                call_id: id.into(),
                content: vec![Part::Text(text.into())],
                is_error: false,
            })],
        )
    }

    #[test]
    fn decodes_system_blocks_tools_and_metadata() {
        let body = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 1024,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}},
                    {"type": "text", "text": "What is this?"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found", "is_error": true}]}
            ],
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}},
                      {"type": "web_search_20250305", "name": "web_search"}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["\n\nHuman:"], "top_k": 5, "stream": true,
            "metadata": {"user_id": "u-9"}
        });
        let request = decode_request(body.to_string().as_bytes()).unwrap();
        assert_eq!(request.messages[0], text(Role::System, "Be brief."));
        assert_eq!(
            request.messages[1].content[0],
            Part::Image(Image::Base64 {
                media_type: "image/jpeg".into(),
                data: "/9j/".into()
            })
        );
        assert_eq!(request.messages[2].content.len(), 1, "thinking is dropped");
        assert_eq!(
            request.messages[3].content[0],
            Part::ToolResult(ToolResult {
                call_id: "toolu_1".into(),
                content: vec![Part::Text("found".into())],
                is_error: true
            })
        );
        assert_eq!(request.tools.len(), 1);
        assert_eq!(request.tool_choice, Some(ToolChoice::Required));
        assert_eq!(request.parallel_tool_calls, Some(false));
        assert_eq!(request.max_tokens, Some(1024));
        assert_eq!(request.top_k, Some(5));
        assert!(request.stream && request.stream_usage);
        assert_eq!(request.user.as_deref(), Some("u-9"));
        let err = decode_request(br#"{"model":"m","messages":[{"role":"system","content":"x"}]}"#)
            .unwrap_err();
        assert!(err.message.contains("unknown variant `system`"), "{err:?}");
    }

    #[test]
    fn merges_tool_results_and_keeps_roles_alternating() {
        let request = ChatRequest {
            model: "claude".into(),
            messages: vec![
                text(Role::System, "sys one"),
                text(Role::User, "weather in Paris and Rome?"),
                Message::new(
                    Role::Assistant,
                    vec![
                        Part::Text(String::new()),
                        Part::ToolCall(ToolCall {
                            id: "a".into(),
                            name: "w".into(),
                            arguments: json!({"city": "Paris"}),
                        }),
                        Part::ToolCall(ToolCall {
                            id: "b".into(),
                            name: "w".into(),
                            arguments: json!({"city": "Rome"}),
                        }),
                    ],
                ),
                tool_result("a", "sunny"),
                tool_result("b", "rainy"),
                text(Role::User, "thanks"),
                text(Role::System, "sys two"),
                text(Role::Assistant, ""),
            ],
            temperature: Some(1.6),
            stream: true,
            ..ChatRequest::default()
        };
        assert_eq!(
            encode(&request),
            json!({
                "model": "claude", "max_tokens": 4096,
                "system": [{"type": "text", "text": "sys one"}, {"type": "text", "text": "sys two"}],
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "weather in Paris and Rome?"}]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "a", "name": "w", "input": {"city": "Paris"}},
                        {"type": "tool_use", "id": "b", "name": "w", "input": {"city": "Rome"}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "a", "content": [{"type": "text", "text": "sunny"}]},
                        {"type": "tool_result", "tool_use_id": "b", "content": [{"type": "text", "text": "rainy"}]},
                        {"type": "text", "text": "thanks"}]}
                ],
                "temperature": 1.0,
                "stream": true
            })
        );
    }

    #[test]
    fn encodes_tools_choice_images_and_user() {
        let request = ChatRequest {
            model: "claude".into(),
            messages: vec![Message::new(
                Role::User,
                vec![
                    Part::Text("look".into()),
                    Part::Image(Image::Url("https://x/cat.png".into())),
                ],
            )],
            tools: vec![Tool {
                name: "f".into(),
                description: Some("does f".into()),
                parameters: json!({"type": "object"}),
            }],
            tool_choice: Some(ToolChoice::Tool("f".into())),
            parallel_tool_calls: Some(false),
            max_tokens: Some(50),
            stop: vec!["STOP".into()],
            user: Some("u1".into()),
            ..ChatRequest::default()
        };
        let out = encode(&request);
        assert_eq!(out["max_tokens"], 50);
        assert_eq!(
            out["messages"][0]["content"][1],
            json!({"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}})
        );
        assert_eq!(
            out["tools"],
            json!([{"name": "f", "description": "does f", "input_schema": {"type": "object"}}])
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})
        );
        assert_eq!(out["stop_sequences"], json!(["STOP"]));
        assert_eq!(out["metadata"], json!({"user_id": "u1"}));
        assert!(out.get("stream").is_none());
    }
}
