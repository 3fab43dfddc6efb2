//! Anthropic Messages: `POST /v1/messages` (a `message`, or with `stream: true` the named
//! server-sent events `message_start`, `content_block_start`, `ping`,
//! `content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`); errors
//! as `{"type":"error","error":{"type","message"}}`. Like the real API it wants
//! `anthropic-version` and `max_tokens`, refuses a `system` role among the messages, and
//! takes the key from `x-api-key` or, as the official Python SDK 2.10 sends it,
//! `Authorization: Bearer`.

use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::reply::{self, Answer, Behaviour, Conversation, LastTurn, words};
use super::server::{JsonBody, State, bearer, header, parse_body, set_header};
use super::stream::{self, Body, StreamPlan, sse_event};

pub fn handle(parts: &http::request::Parts, body: &[u8], state: &State) -> Response<Body> {
    if (&parts.method, parts.uri.path()) != (&Method::POST, "/v1/messages") {
        return error(StatusCode::NOT_FOUND, "not_found_error", "Not Found");
    }
    if let Some(expected) = &state.config.api_key {
        // The Python SDK 2.10 sends its API key as `Authorization: Bearer`; `x-api-key` is
        // the documented header. The API takes either.
        match header(parts, "x-api-key").or_else(|| bearer(parts)) {
            Some(key) if key == expected => {}
            Some(_) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    "invalid x-api-key",
                );
            }
            None => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    "x-api-key header is required",
                );
            }
        }
    }
    if header(parts, "anthropic-version").is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    let request = match parse_body(body) {
        JsonBody::Object(map) => map,
        JsonBody::Invalid(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("The request body is not valid JSON: {err}"),
            );
        }
        JsonBody::NotObject => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "Input should be a valid dictionary or object to extract fields from",
            );
        }
    };
    let (model, conversation) = match read_request(&request) {
        Ok(read) => read,
        Err(message) => {
            return error(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
        }
    };
    let behaviour = Behaviour::of_model(&model);
    if let Some(status) = behaviour.fail {
        return failure(status);
    }
    let answer = reply::answer(&conversation, &state.config.name, state.config.provider);
    let mut response = if request.get("stream").and_then(Value::as_bool) == Some(true) {
        stream::stream(
            stream_plan(&model, &conversation, &answer),
            behaviour,
            "text/event-stream; charset=utf-8",
            state.release.clone(),
        )
    } else {
        stream::json(StatusCode::OK, &message(&model, &conversation, &answer))
    };
    add_response_headers(&mut response);
    response
}

/// Reads and validates a Messages request: its model and conversation, or the message of
/// the 400 to answer.
fn read_request(request: &Map<String, Value>) -> Result<(String, Conversation), String> {
    let Some(model) = request.get("model").and_then(Value::as_str) else {
        return Err("model: Field required".into());
    };
    let max_tokens = match request.get("max_tokens") {
        None | Some(Value::Null) => return Err("max_tokens: Field required".into()),
        Some(value) => match value.as_u64() {
            Some(0) => return Err("max_tokens: Input should be greater than or equal to 1".into()),
            Some(n) => n,
            None => return Err("max_tokens: Input should be a valid integer".into()),
        },
    };
    let Some(messages) = request.get("messages") else {
        return Err("messages: Field required".into());
    };
    let Some(messages) = messages.as_array() else {
        return Err("messages: Input should be a valid list".into());
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    let mut conversation = Conversation {
        input_words: words(&system_text(request.get("system"))),
        max_tokens: Some(max_tokens),
        ..Default::default()
    };
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        match role {
            "user" | "assistant" => {}
            "system" => {
                return Err(format!(
                    "messages.{i}.role: Unexpected role \"system\". The Messages API accepts a \
                     top-level `system` parameter, not \"system\" as an input message role."
                ));
            }
            _ => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ));
            }
        }
        let content = read_content(message.get("content"));
        conversation.input_words += words(&content.text) + words(&content.tool_results);
        conversation.images += content.images;
        if role == "user" && content.has_text {
            conversation.last_user_text = content.text.clone();
        }
        conversation.last = match role {
            "user" if content.has_tool_result => LastTurn::ToolResult(content.tool_results),
            "user" => LastTurn::User,
            _ => LastTurn::Other,
        };
    }
    let tool_choice_none = request
        .get("tool_choice")
        .and_then(|choice| choice.get("type"))
        .and_then(Value::as_str)
        == Some("none");
    conversation.first_tool = request
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.first())
        .and_then(|tool| tool.get("name"))
        .and_then(Value::as_str)
        .filter(|_| !tool_choice_none)
        .map(str::to_string);
    Ok((model.to_string(), conversation))
}

/// `system`: a string or text blocks.
fn system_text(system: Option<&Value>) -> String {
    read_content(system).text
}

/// What a message's content holds.
#[derive(Debug, Default)]
struct Content {
    /// Text blocks (or the string), joined by a space.
    text: String,
    has_text: bool,
    /// The text of the tool results, joined by a space.
    tool_results: String,
    has_tool_result: bool,
    images: usize,
}

fn read_content(content: Option<&Value>) -> Content {
    let blocks = match content {
        Some(Value::String(text)) => {
            return Content {
                text: text.clone(),
                has_text: true,
                ..Default::default()
            };
        }
        Some(Value::Array(blocks)) => blocks,
        _ => return Content::default(),
    };
    let mut texts = Vec::new();
    let mut results = Vec::new();
    let mut content = Content::default();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                texts.push(block.get("text").and_then(Value::as_str).unwrap_or(""));
            }
            Some("image") => content.images += 1,
            Some("tool_result") => {
                content.has_tool_result = true;
                let inner = read_content(block.get("content"));
                content.images += inner.images;
                results.push(inner.text);
            }
            _ => {}
        }
    }
    content.has_text = !texts.is_empty();
    content.text = texts.join(" ");
    content.tool_results = results.join(" ");
    content
}

fn stop_reason(answer: &Answer) -> &'static str {
    match answer {
        Answer::Text {
            truncated: false, ..
        } => "end_turn",
        Answer::Text {
            truncated: true, ..
        } => "max_tokens",
        Answer::ToolCall { .. } => "tool_use",
    }
}

fn usage(input: u64, output: u64) -> Value {
    json!({
        "input_tokens": input,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output,
        "service_tier": "standard"
    })
}

fn message_id() -> String {
    format!("msg_01{}", reply::random_id(22))
}

fn tool_use_id() -> String {
    format!("toolu_01{}", reply::random_id(22))
}

/// A non-streamed `message`.
pub fn message(model: &str, conversation: &Conversation, answer: &Answer) -> Value {
    let content = match answer {
        Answer::Text { text, .. } => json!([{ "type": "text", "text": text }]),
        Answer::ToolCall { name, .. } => json!([{
            "type": "tool_use",
            "id": tool_use_id(),
            "name": name,
            "input": answer.arguments_value()
        }]),
    };
    json!({
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(answer),
        "stop_sequence": null,
        "usage": usage(conversation.input_words, answer.output_tokens())
    })
}

/// The events of a streamed message.
pub fn stream_plan(model: &str, conversation: &Conversation, answer: &Answer) -> StreamPlan {
    let mut plan = StreamPlan::default();
    let mut marked = false;
    let event = |value: Value| {
        let name = value["type"].as_str().unwrap_or_default().to_string();
        sse_event(&name, &value.to_string())
    };
    plan.push(event(json!({
        "type": "message_start",
        "message": {
            "id": message_id(),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage(conversation.input_words, 1)
        }
    })));
    let block = match answer {
        Answer::Text { .. } => json!({ "type": "text", "text": "" }),
        Answer::ToolCall { name, .. } => json!({
            "type": "tool_use",
            "id": tool_use_id(),
            "name": name,
            "input": {}
        }),
    };
    plan.push(event(json!({
        "type": "content_block_start",
        "index": 0,
        "content_block": block
    })));
    // The real API writes the ping with a space after the colon.
    plan.push(sse_event("ping", r#"{"type": "ping"}"#));
    let delta =
        |delta: Value| event(json!({ "type": "content_block_delta", "index": 0, "delta": delta }));
    match answer {
        Answer::Text { text, .. } => {
            for piece in reply::word_pieces(text) {
                plan.push(delta(json!({ "type": "text_delta", "text": piece })));
                plan.mark_first_delta(&mut marked);
            }
        }
        Answer::ToolCall { arguments, .. } => {
            plan.push(delta(
                json!({ "type": "input_json_delta", "partial_json": "" }),
            ));
            for fragment in reply::fragments(arguments) {
                plan.push(delta(
                    json!({ "type": "input_json_delta", "partial_json": fragment }),
                ));
                plan.mark_first_delta(&mut marked);
            }
        }
    }
    plan.mark_first_delta(&mut marked);
    plan.push(event(json!({ "type": "content_block_stop", "index": 0 })));
    plan.push(event(json!({
        "type": "message_delta",
        "delta": { "stop_reason": stop_reason(answer), "stop_sequence": null },
        "usage": { "output_tokens": answer.output_tokens() }
    })));
    plan.push(event(json!({ "type": "message_stop" })));
    plan
}

/// What `fail-NNN` answers.
fn failure(status: u16) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, message) = match status.as_u16() {
        400 => (
            "invalid_request_error",
            "The mock was asked to fail with 400.",
        ),
        401 => ("authentication_error", "invalid x-api-key"),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => (
            "not_found_error",
            "The requested resource could not be found.",
        ),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        429 => (
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 1 requests \
             per minute. Please try again in 1 second.",
        ),
        529 => ("overloaded_error", "Overloaded"),
        500..=599 => ("api_error", "Internal server error"),
        _ => ("invalid_request_error", "The mock was asked to fail."),
    };
    error(status, kind, message)
}

/// An Anthropic error response.
pub fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    let request_id = request_id();
    let mut response = stream::json(
        status,
        &json!({
            "type": "error",
            "error": { "type": kind, "message": message },
            "request_id": request_id
        }),
    );
    set_header(&mut response, "request-id", &request_id);
    if status == StatusCode::TOO_MANY_REQUESTS {
        set_header(&mut response, "retry-after", "1");
        set_header(&mut response, "anthropic-ratelimit-requests-limit", "1");
        set_header(&mut response, "anthropic-ratelimit-requests-remaining", "0");
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        set_header(&mut response, "x-should-retry", "true");
    }
    response
}

fn request_id() -> String {
    format!("req_01{}", reply::random_id(22))
}

/// The headers Anthropic puts on every response.
fn add_response_headers(response: &mut Response<Body>) {
    set_header(response, "request-id", &request_id());
    set_header(
        response,
        "anthropic-organization-id",
        "00000000-0000-4000-8000-000000000000",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn validation() {
        let base = json!({ "model": "m", "max_tokens": 5, "messages": [{ "role": "user", "content": "hi" }] });
        assert!(read_request(&request(base.clone())).is_ok());
        let mut no_max = base.clone();
        no_max.as_object_mut().unwrap().remove("max_tokens");
        assert_eq!(
            read_request(&request(no_max)).unwrap_err(),
            "max_tokens: Field required"
        );
        let mut system = base.clone();
        system["messages"] = json!([{ "role": "system", "content": "x" }]);
        assert!(
            read_request(&request(system))
                .unwrap_err()
                .starts_with("messages.0.role: Unexpected role \"system\"")
        );
    }

    #[test]
    fn tool_results_and_images() {
        let (_, conversation) = read_request(&request(json!({
            "model": "m",
            "max_tokens": 100,
            "system": [{ "type": "text", "text": "be kind" }],
            "tools": [{ "name": "echo", "input_schema": { "type": "object" } }],
            "messages": [
                { "role": "user", "content": [
                    { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "AA==" } },
                    { "type": "text", "text": "say it" }
                ]},
                { "role": "assistant", "content": [{ "type": "tool_use", "id": "t", "name": "echo", "input": {} }] },
                { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "t", "content": "it was said" }] }
            ]
        })))
        .unwrap();
        assert_eq!(
            conversation,
            Conversation {
                input_words: 7,
                last_user_text: "say it".into(),
                last: LastTurn::ToolResult("it was said".into()),
                images: 1,
                first_tool: Some("echo".into()),
                max_tokens: Some(100),
            }
        );
    }

    #[test]
    fn stream_events() {
        let conversation = Conversation {
            input_words: 2,
            ..Default::default()
        };
        let answer = Answer::ToolCall {
            name: "echo".into(),
            arguments: r#"{"text":"hello world"}"#.into(),
        };
        let plan = stream_plan("m", &conversation, &answer);
        let names: Vec<String> = plan
            .chunks
            .iter()
            .map(|c| {
                let text = std::str::from_utf8(c).unwrap();
                assert!(text.ends_with("\n\n"));
                let (event, data) = text.trim_end().split_once('\n').unwrap();
                let event = event.strip_prefix("event: ").unwrap();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], event);
                event.to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(plan.first_delta, 4);
    }
}
