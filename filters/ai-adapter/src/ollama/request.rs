//! `/api/chat` requests to and from the canonical model.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{OutToolCall, WireToolCall, object_or_empty};
use crate::api::Api;
use crate::canonical::{ChatRequest, Image, Message, Part, Role, Tool, ToolCall, ToolResult};
use crate::error::ApiError;
use crate::wire::{any_object_schema, parse_request};

#[derive(Deserialize)]
struct OllamaChatRequest {
    model: String,
    messages: Vec<WireMessage>,
    #[serde(default)]
    tools: Option<Vec<WireTool>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    options: Option<WireOptions>,
}

#[derive(Deserialize)]
struct WireMessage {
    role: WireRole,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    images: Option<Vec<String>>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    /// On `tool` messages: the function whose result this is.
    #[serde(default)]
    tool_name: Option<String>,
    /// Not part of Ollama's API; honoured when an OpenAI-minded client sends one.
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireRole {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Deserialize)]
struct WireTool {
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Deserialize)]
struct WireOptions {
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<u64>,
    /// -1: unlimited, -2: fill the context; both mean no limit here.
    #[serde(default)]
    num_predict: Option<i64>,
    #[serde(default)]
    stop: Option<Vec<String>>,
    #[serde(default)]
    seed: Option<i64>,
}

/// Reads an Ollama client's request. Tool calls in the history get ids (`call_<n>`), and
/// each `tool` message answers the earliest unanswered call of the assistant turn before
/// it that has its `tool_name` (or any, without one).
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let wire: OllamaChatRequest = parse_request(body)?;
    let mut messages = Vec::with_capacity(wire.messages.len());
    let mut unanswered: Vec<(String, String)> = Vec::new();
    let mut calls = 0;
    for message in wire.messages {
        let text = message.content.unwrap_or_default();
        let mut parts = Vec::new();
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        for data in message.images.unwrap_or_default() {
            parts.push(Part::Image(if data.starts_with("data:") {
                Image::from_url(data)
            } else {
                Image::from_base64(data)
            }));
        }
        let role = match message.role {
            WireRole::System => Role::System,
            WireRole::User => Role::User,
            WireRole::Assistant => {
                unanswered.clear();
                for call in message.tool_calls.unwrap_or_default() {
                    let id = call.id.unwrap_or_else(|| format!("call_{calls}"));
                    calls += 1;
                    unanswered.push((id.clone(), call.function.name.clone()));
                    parts.push(Part::ToolCall(ToolCall {
                        id,
                        name: call.function.name,
                        arguments: object_or_empty(call.function.arguments),
                    }));
                }
                Role::Assistant
            }
            WireRole::Tool => {
                let answered = unanswered.iter().position(|(id, name)| {
                    message.tool_call_id.as_deref().map_or_else(
                        || message.tool_name.as_deref().is_none_or(|n| n == name),
                        |wanted| wanted == id,
                    )
                });
                let call_id = match answered {
                    Some(index) => unanswered.remove(index).0,
                    None => message
                        .tool_call_id
                        .unwrap_or_else(|| format!("call_{calls}")),
                };
                parts = vec![Part::ToolResult(ToolResult {
                    call_id,
                    content: parts,
                    is_error: false,
                })];
                Role::User
            }
        };
        messages.push(Message::new(role, parts));
    }
    let options = wire.options;
    let option = |get: fn(&WireOptions) -> Option<f64>| options.as_ref().and_then(get);
    Ok(ChatRequest {
        model: wire.model,
        messages,
        tools: wire
            .tools
            .unwrap_or_default()
            .into_iter()
            .map(|tool| Tool {
                name: tool.function.name,
                description: tool.function.description,
                parameters: tool.function.parameters.unwrap_or_else(any_object_schema),
            })
            .collect(),
        tool_choice: None,
        parallel_tool_calls: None,
        max_tokens: options
            .as_ref()
            .and_then(|o| o.num_predict)
            .and_then(|n| u64::try_from(n).ok()),
        temperature: option(|o| o.temperature),
        top_p: option(|o| o.top_p),
        top_k: options.as_ref().and_then(|o| o.top_k),
        seed: options.as_ref().and_then(|o| o.seed),
        stop: options
            .as_ref()
            .and_then(|o| o.stop.clone())
            .unwrap_or_default(),
        stream: wire.stream.unwrap_or(Api::Ollama.streams_by_default()),
        stream_usage: true,
        user: None,
    })
}

#[derive(Serialize)]
struct OutRequest<'a> {
    model: &'a str,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    /// Always explicit: Ollama streams when it is absent.
    stream: bool,
    #[serde(skip_serializing_if = "OutOptions::is_empty")]
    options: OutOptions<'a>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_name: Option<&'a str>,
}

impl<'a> OutMessage<'a> {
    fn new(role: &'static str, parts: &[&'a Part]) -> Result<Self, ApiError> {
        let mut content = String::new();
        let mut images = Vec::new();
        for part in parts {
            match part {
                Part::Text(text) => {
                    if !content.is_empty() {
                        content.push('\n');
                    }
                    content.push_str(text);
                }
                Part::Image(Image::Base64 { data, .. }) => images.push(data.as_str()),
                Part::Image(Image::Url(_)) => {
                    return Err(ApiError::invalid_request(
                        "image URLs cannot be sent to an Ollama backend, which takes only \
                         inline images: send the image as a base64 data: URL",
                    ));
                }
                Part::ToolCall(_) | Part::ToolResult(_) => {}
            }
        }
        Ok(OutMessage {
            role,
            content,
            images,
            tool_calls: Vec::new(),
            tool_name: None,
        })
    }
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

#[derive(Serialize, Default)]
struct OutOptions<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
}

impl OutOptions<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.num_predict.is_none()
            && self.stop.is_empty()
            && self.seed.is_none()
    }
}

/// Writes the request for an Ollama provider. Fails only for what Ollama cannot take at
/// all: images by URL.
pub fn encode_request(request: &ChatRequest) -> Result<Vec<u8>, ApiError> {
    let mut messages = Vec::with_capacity(request.messages.len());
    // Tool results name their function, which Ollama matches on; the calls name it.
    let mut call_names: Vec<(&str, &str)> = Vec::new();
    for message in &request.messages {
        let parts: Vec<&Part> = message.content.iter().collect();
        match message.role {
            Role::System => messages.push(OutMessage::new("system", &parts)?),
            Role::Assistant => {
                let mut out = OutMessage::new("assistant", &parts)?;
                for part in &message.content {
                    if let Part::ToolCall(call) = part {
                        call_names.push((&call.id, &call.name));
                        out.tool_calls.push(call.into());
                    }
                }
                messages.push(out);
            }
            Role::User => {
                let mut rest = Vec::new();
                for part in &parts {
                    let Part::ToolResult(result) = part else {
                        rest.push(*part);
                        continue;
                    };
                    let content: Vec<&Part> = result.content.iter().collect();
                    let mut out = OutMessage::new("tool", &content)?;
                    out.tool_name = call_names
                        .iter()
                        .rev()
                        .find(|(id, _)| *id == result.call_id)
                        .map(|(_, name)| *name);
                    messages.push(out);
                }
                if !rest.is_empty() || parts.is_empty() {
                    messages.push(OutMessage::new("user", &rest)?);
                }
            }
        }
    }
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
        stream: request.stream,
        options: OutOptions {
            temperature: request.temperature,
            top_p: request.top_p,
            top_k: request.top_k,
            num_predict: request.max_tokens,
            stop: &request.stop,
            seed: request.seed,
        },
    };
    Ok(serde_json::to_vec(&out).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decodes_history_matching_tool_results_to_calls() {
        let body = json!({
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather?", "images": ["iVBORw0KGgoAAA"]},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "weather", "arguments": {"city": "Paris"}}},
                    {"function": {"name": "time", "arguments": {}}}]},
                {"role": "tool", "content": "12:00", "tool_name": "time"},
                {"role": "tool", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather",
                "parameters": {"type": "object"}}}],
            "options": {"temperature": 0.2, "num_predict": 64, "stop": ["<|eot|>"], "num_ctx": 8192},
            "keep_alive": "5m"
        });
        let request = decode_request(body.to_string().as_bytes()).unwrap();
        assert!(request.stream, "Ollama streams unless told not to");
        assert_eq!(
            request.messages[1].content[1],
            Part::Image(Image::Base64 {
                media_type: "image/png".into(),
                data: "iVBORw0KGgoAAA".into()
            })
        );
        let call_ids: Vec<&str> = request.messages[2]
            .content
            .iter()
            .map(|p| match p {
                Part::ToolCall(c) => c.id.as_str(),
                _ => panic!("{p:?}"),
            })
            .collect();
        assert_eq!(call_ids, ["call_0", "call_1"]);
        let answered = |i: usize| match &request.messages[i].content[0] {
            Part::ToolResult(r) => r.call_id.clone(),
            p => panic!("{p:?}"),
        };
        assert_eq!(answered(3), "call_1", "matched by tool_name");
        assert_eq!(answered(4), "call_0", "the remaining one");
        assert_eq!(request.messages[3].role, Role::User);
        assert_eq!(request.max_tokens, Some(64));
        assert_eq!(request.temperature, Some(0.2));
        assert_eq!(request.stop, ["<|eot|>"]);
        let unlimited = decode_request(
            br#"{"model":"m","messages":[],"stream":false,"options":{"num_predict":-1}}"#,
        )
        .unwrap();
        assert_eq!((unlimited.max_tokens, unlimited.stream), (None, false));
    }

    #[test]
    fn encodes_tool_messages_with_names_and_explicit_stream() {
        let request = ChatRequest {
            model: "llama3.2".into(),
            messages: vec![
                Message::new(Role::System, vec![Part::Text("sys".into())]),
                Message::new(
                    Role::Assistant,
                    vec![Part::ToolCall(ToolCall {
                        id: "toolu_1".into(),
                        name: "weather".into(),
                        arguments: json!({"city": "Paris"}),
                    })],
                ),
                Message::new(
                    Role::User,
                    vec![
                        Part::ToolResult(ToolResult {
                            call_id: "toolu_1".into(),
                            content: vec![Part::Text("sunny".into())],
                            is_error: false,
                        }),
                        Part::Text("and here?".into()),
                        Part::Image(Image::Base64 {
                            media_type: "image/png".into(),
                            data: "AAA".into(),
                        }),
                    ],
                ),
            ],
            max_tokens: Some(100),
            temperature: Some(0.7),
            ..ChatRequest::default()
        };
        let out: Value = serde_json::from_slice(&encode_request(&request).unwrap()).unwrap();
        assert_eq!(
            out,
            json!({
                "model": "llama3.2",
                "messages": [
                    {"role": "system", "content": "sys"},
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
                    {"role": "tool", "content": "sunny", "tool_name": "weather"},
                    {"role": "user", "content": "and here?", "images": ["AAA"]}
                ],
                "stream": false,
                "options": {"temperature": 0.7, "num_predict": 100}
            })
        );
    }

    #[test]
    fn image_urls_are_refused() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![Message::new(
                Role::User,
                vec![Part::Image(Image::Url("https://x/y.png".into()))],
            )],
            ..ChatRequest::default()
        };
        let err = encode_request(&request).unwrap_err();
        assert!(err.message.contains("image URLs"), "{err:?}");
    }
}
