//! Chat Completions requests to and from the canonical model.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{OutToolCall, WireToolCall, parse_arguments};
use crate::canonical::{
    ChatRequest, Image, Message, Part, Role, Tool, ToolCall, ToolChoice, ToolResult,
};
use crate::error::ApiError;
use crate::wire::{TextOr, any_object_schema, parse_request};

#[derive(Deserialize)]
struct ChatCompletionRequest {
    model: String,
    messages: Vec<WireMessage>,
    #[serde(default)]
    tools: Option<Vec<WireTool>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    stop: Option<TextOr<String>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum WireMessage {
    System {
        content: TextOr<WirePart>,
    },
    /// The newer name of `system` for reasoning models.
    Developer {
        content: TextOr<WirePart>,
    },
    User {
        content: TextOr<WirePart>,
    },
    Assistant {
        #[serde(default)]
        content: Option<TextOr<WirePart>>,
        #[serde(default)]
        tool_calls: Option<Vec<WireToolCall>>,
    },
    Tool {
        content: TextOr<WirePart>,
        tool_call_id: String,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WirePart {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: WireImageUrl,
    },
    Refusal {
        refusal: String,
    },
    /// Audio and files: no other API here takes them.
    #[serde(other)]
    Unsupported,
}

#[derive(Deserialize)]
struct WireImageUrl {
    url: String,
}

#[derive(Deserialize)]
struct WireTool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

/// Reads an OpenAI client's request.
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let wire: ChatCompletionRequest = parse_request(body)?;
    let mut messages = Vec::with_capacity(wire.messages.len());
    for (index, message) in wire.messages.into_iter().enumerate() {
        messages.push(decode_message(message).map_err(|e| {
            ApiError::invalid_request(format!("invalid request body: messages[{index}]{e}"))
        })?);
    }
    let tools = wire
        .tools
        .unwrap_or_default()
        .into_iter()
        // Only function tools translate; OpenAI's built-in tool types have no equivalent.
        .filter(|tool| tool.kind.as_deref().is_none_or(|kind| kind == "function"))
        .filter_map(|tool| tool.function)
        .map(|function| Tool {
            name: function.name,
            description: function.description,
            parameters: function.parameters.unwrap_or_else(any_object_schema),
        })
        .collect();
    let tool_choice = wire
        .tool_choice
        .as_ref()
        .map(decode_tool_choice)
        .transpose()?;
    let stream = wire.stream.unwrap_or(false);
    Ok(ChatRequest {
        model: wire.model,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: wire.parallel_tool_calls,
        max_tokens: wire.max_completion_tokens.or(wire.max_tokens),
        temperature: wire.temperature,
        top_p: wire.top_p,
        top_k: None,
        seed: wire.seed,
        stop: wire.stop.map(TextOr::into_strings).unwrap_or_default(),
        stream,
        stream_usage: wire
            .stream_options
            .and_then(|options| options.include_usage)
            .unwrap_or(false),
        user: wire.user,
    })
}

/// One message; errors are the rest of a "messages[i]…" message.
fn decode_message(message: WireMessage) -> Result<Message, String> {
    Ok(match message {
        WireMessage::System { content } | WireMessage::Developer { content } => {
            Message::new(Role::System, decode_content(content))
        }
        WireMessage::User { content } => Message::new(Role::User, decode_content(content)),
        WireMessage::Assistant {
            content,
            tool_calls,
        } => {
            let mut parts = content.map(decode_content).unwrap_or_default();
            for (index, call) in tool_calls.unwrap_or_default().into_iter().enumerate() {
                let arguments = parse_arguments(call.function.arguments.as_deref())
                    .map_err(|e| format!(".tool_calls[{index}].function.arguments {e}"))?;
                parts.push(Part::ToolCall(ToolCall {
                    id: call.id.unwrap_or_default(),
                    name: call.function.name,
                    arguments,
                }));
            }
            Message::new(Role::Assistant, parts)
        }
        WireMessage::Tool {
            content,
            tool_call_id,
        } => Message::new(
            Role::User,
            vec![Part::ToolResult(ToolResult {
                call_id: tool_call_id,
                content: decode_content(content),
                is_error: false,
            })],
        ),
    })
}

fn decode_content(content: TextOr<WirePart>) -> Vec<Part> {
    match content {
        TextOr::Text(text) => vec![Part::Text(text)],
        TextOr::List(parts) => parts
            .into_iter()
            .filter_map(|part| match part {
                WirePart::Text { text } | WirePart::Refusal { refusal: text } => {
                    Some(Part::Text(text))
                }
                WirePart::ImageUrl { image_url } => {
                    Some(Part::Image(Image::from_url(image_url.url)))
                }
                WirePart::Unsupported => None,
            })
            .collect(),
    }
}

fn decode_tool_choice(choice: &Value) -> Result<ToolChoice, ApiError> {
    let name = choice.pointer("/function/name").and_then(Value::as_str);
    match (choice.as_str(), name) {
        (Some("auto"), _) => Ok(ToolChoice::Auto),
        (Some("none"), _) => Ok(ToolChoice::None),
        (Some("required"), _) => Ok(ToolChoice::Required),
        (None, Some(name)) => Ok(ToolChoice::Tool(name.to_string())),
        _ => Err(ApiError::invalid_request(
            "invalid request body: tool_choice must be \"auto\", \"none\", \"required\" or \
             {\"type\": \"function\", \"function\": {\"name\": …}}",
        )),
    }
}

#[derive(Serialize)]
struct OutRequest<'a> {
    model: &'a str,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<OutStreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

#[derive(Serialize)]
struct OutStreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum OutMessage<'a> {
    System {
        content: OutContent<'a>,
    },
    User {
        content: OutContent<'a>,
    },
    Assistant {
        content: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<OutToolCall<'a>>,
    },
    Tool {
        tool_call_id: &'a str,
        content: OutContent<'a>,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutContent<'a> {
    Text(&'a str),
    Parts(Vec<OutPart<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutPart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: OutImageUrl<'a> },
}

#[derive(Serialize)]
struct OutImageUrl<'a> {
    url: Cow<'a, str>,
}

#[derive(Serialize)]
struct OutTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    parameters: &'a Value,
}

/// Writes the request for an OpenAI provider. Streams always ask for the usage chunk:
/// token accounting needs it, and the client's own wish is honoured on the way back.
pub fn encode_request(request: &ChatRequest) -> Vec<u8> {
    let mut messages = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        encode_message(message, &mut messages);
    }
    let has_tools = !request.tools.is_empty();
    let out = OutRequest {
        model: &request.model,
        messages,
        tools: request
            .tools
            .iter()
            .map(|tool| OutTool {
                kind: "function",
                function: OutFunction {
                    name: &tool.name,
                    description: tool.description.as_deref(),
                    parameters: &tool.parameters,
                },
            })
            .collect(),
        tool_choice: request
            .tool_choice
            .as_ref()
            .filter(|_| has_tools)
            .map(encode_tool_choice),
        parallel_tool_calls: request.parallel_tool_calls.filter(|_| has_tools),
        max_completion_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        seed: request.seed,
        stop: &request.stop,
        stream: request.stream,
        stream_options: request.stream.then_some(OutStreamOptions {
            include_usage: true,
        }),
        user: request.user.as_deref(),
    };
    serde_json::to_vec(&out).unwrap_or_default()
}

fn encode_message<'a>(message: &'a Message, out: &mut Vec<OutMessage<'a>>) {
    match message.role {
        Role::System => out.push(OutMessage::System {
            content: encode_content(&message.content),
        }),
        Role::User => {
            // Tool results are messages of their own, and come first: they answer the
            // assistant turn right before.
            let mut rest = Vec::new();
            for part in &message.content {
                match part {
                    Part::ToolResult(result) => out.push(OutMessage::Tool {
                        tool_call_id: &result.call_id,
                        content: encode_content(&result.content),
                    }),
                    other => rest.push(other),
                }
            }
            if !rest.is_empty() || message.content.is_empty() {
                out.push(OutMessage::User {
                    content: encode_parts(&rest),
                });
            }
        }
        Role::Assistant => {
            let text = message.text("\n");
            let tool_calls: Vec<_> = message
                .content
                .iter()
                .filter_map(|part| match part {
                    Part::ToolCall(call) => Some(OutToolCall::new(call)),
                    _ => None,
                })
                .collect();
            out.push(OutMessage::Assistant {
                content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
                tool_calls,
            });
        }
    }
}

fn encode_content(parts: &[Part]) -> OutContent<'_> {
    let parts: Vec<&Part> = parts.iter().collect();
    encode_parts(&parts)
}

/// A lone text is a plain string (what every OpenAI-compatible server accepts); anything
/// else is a list of text and image parts.
fn encode_parts<'a>(parts: &[&'a Part]) -> OutContent<'a> {
    if let [Part::Text(text)] = parts {
        return OutContent::Text(text);
    }
    if parts.is_empty() {
        return OutContent::Text("");
    }
    OutContent::Parts(
        parts
            .iter()
            .filter_map(|part| match part {
                Part::Text(text) => Some(OutPart::Text { text }),
                Part::Image(image) => Some(OutPart::ImageUrl {
                    image_url: OutImageUrl {
                        url: image.to_url(),
                    },
                }),
                Part::ToolCall(_) | Part::ToolResult(_) => None,
            })
            .collect(),
    )
}

fn encode_tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => "auto".into(),
        ToolChoice::None => "none".into(),
        ToolChoice::Required => "required".into(),
        ToolChoice::Tool(name) => {
            serde_json::json!({"type": "function", "function": {"name": name}})
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode(body: Value) -> ChatRequest {
        decode_request(body.to_string().as_bytes()).unwrap()
    }

    fn encode(request: &ChatRequest) -> Value {
        serde_json::from_slice(&encode_request(request)).unwrap()
    }

    #[test]
    fn decodes_a_conversation_with_tools_and_images() {
        let request = decode(json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "lookup", "arguments": "{\"q\":\"cat\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup",
                "description": "Looks up", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
            "max_tokens": 50, "max_completion_tokens": 100, "temperature": 0.5,
            "stop": "END", "stream": true, "stream_options": {"include_usage": true},
            "user": "u1", "logit_bias": {"1": 2}
        }));
        assert_eq!(request.model, "gpt-4o");
        assert_eq!(
            request.messages[0],
            Message::new(Role::System, vec![Part::Text("Be brief.".into())])
        );
        assert_eq!(
            request.messages[1].content,
            vec![
                Part::Text("What is here?".into()),
                Part::Image(Image::Base64 {
                    media_type: "image/png".into(),
                    data: "AAAA".into()
                })
            ]
        );
        assert_eq!(
            request.messages[2].content,
            vec![Part::ToolCall(ToolCall {
                id: "call_1".into(),
                name: "lookup".into(),
                arguments: json!({"q": "cat"})
            })]
        );
        assert_eq!(
            request.messages[3],
            Message::new(
                Role::User,
                vec![Part::ToolResult(ToolResult {
                    call_id: "call_1".into(),
                    content: vec![Part::Text("a cat".into())],
                    is_error: false
                })]
            )
        );
        assert_eq!(request.tools[0].name, "lookup");
        assert_eq!(request.tool_choice, Some(ToolChoice::Tool("lookup".into())));
        assert_eq!(request.max_tokens, Some(100));
        assert_eq!(request.stop, ["END"]);
        assert!(request.stream && request.stream_usage);
        assert_eq!(request.user.as_deref(), Some("u1"));
    }

    #[test]
    fn rejects_what_it_cannot_read_naming_the_problem() {
        for (body, expected) in [
            ("[1]", "must be a JSON object"),
            ("", "body is empty"),
            ("{\"model\":", "invalid request body: EOF"),
            (r#"{"messages":[]}"#, "missing field `model`"),
            (r#"{"model":"m"}"#, "missing field `messages`"),
            (
                r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
                "unknown variant `wizard`",
            ),
            (
                r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{oops"}}]}]}"#,
                "messages[0].tool_calls[0].function.arguments is not valid JSON",
            ),
            (
                r#"{"model":"m","messages":[],"tool_choice":"sometimes"}"#,
                "tool_choice must be",
            ),
        ] {
            let err = decode_request(body.as_bytes()).unwrap_err();
            assert!(err.message.contains(expected), "{body}: {}", err.message);
        }
    }

    #[test]
    fn encodes_tool_results_as_tool_messages_and_asks_for_stream_usage() {
        let request = ChatRequest {
            model: "gpt-4o".into(),
            messages: vec![
                Message::new(Role::System, vec![Part::Text("sys".into())]),
                Message::new(
                    Role::Assistant,
                    vec![Part::ToolCall(ToolCall {
                        id: "toolu_1".into(),
                        name: "lookup".into(),
                        arguments: json!({"q": "cat"}),
                    })],
                ),
                Message::new(
                    Role::User,
                    vec![
                        Part::ToolResult(ToolResult {
                            call_id: "toolu_1".into(),
                            content: vec![Part::Text("a cat".into())],
                            is_error: false,
                        }),
                        Part::Text("thanks".into()),
                        Part::Image(Image::Url("https://x/y.png".into())),
                    ],
                ),
            ],
            tools: vec![Tool {
                name: "lookup".into(),
                description: None,
                parameters: json!({"type": "object"}),
            }],
            tool_choice: Some(ToolChoice::Required),
            max_tokens: Some(10),
            stop: vec!["a".into()],
            stream: true,
            ..ChatRequest::default()
        };
        assert_eq!(
            encode(&request),
            json!({
                "model": "gpt-4o",
                "messages": [
                    {"role": "system", "content": "sys"},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": "{\"q\":\"cat\"}"}}]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat"},
                    {"role": "user", "content": [{"type": "text", "text": "thanks"},
                        {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
                ],
                "tools": [{"type": "function",
                    "function": {"name": "lookup", "parameters": {"type": "object"}}}],
                "tool_choice": "required",
                "max_completion_tokens": 10,
                "stop": ["a"],
                "stream": true,
                "stream_options": {"include_usage": true}
            })
        );
    }

    #[test]
    fn tool_choice_without_tools_is_dropped() {
        let request = ChatRequest {
            model: "m".into(),
            tool_choice: Some(ToolChoice::Auto),
            parallel_tool_calls: Some(false),
            ..ChatRequest::default()
        };
        assert_eq!(encode(&request), json!({"model": "m", "messages": []}));
    }
}
