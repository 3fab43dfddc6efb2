//! OpenAI Chat Completions: `POST /v1/chat/completions` (a `chat.completion`, or with
//! `stream: true` server-sent `chat.completion.chunk`s ending in `data: [DONE]`) and
//! `GET /v1/models`; errors as `{"error":{"message","type","param","code"}}`.

use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::reply::{self, Answer, Behaviour, Conversation, LastTurn, words};
use super::server::{JsonBody, State, bearer, parse_body, set_header};
use super::stream::{self, Body, StreamPlan, sse_data};

/// The models `GET /v1/models` lists (any model name is served).
pub const MODELS: &[&str] = &["mock-gpt", "mock-gpt-hold", "mock-gpt-slow", "fail-429"];
const FINGERPRINT: &str = "fp_n4nt14nm0ck";

pub fn handle(parts: &http::request::Parts, body: &[u8], state: &State) -> Response<Body> {
    let path = parts.uri.path();
    let chat = match (&parts.method, path) {
        (&Method::POST, "/v1/chat/completions") => true,
        (&Method::GET, "/v1/models") => false,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("Invalid URL ({} {path})", parts.method),
                "invalid_request_error",
                None,
                None,
            );
        }
    };
    if let Some(expected) = &state.config.api_key {
        match bearer(parts) {
            Some(key) if key == expected => {}
            Some(key) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    &format!(
                        "Incorrect API key provided: {}. You can find your API key at \
                         https://platform.openai.com/account/api-keys.",
                        redact(key)
                    ),
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                );
            }
            None => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "You didn't provide an API key. You need to provide your API key in an \
                     Authorization header using Bearer auth (i.e. Authorization: Bearer \
                     YOUR_KEY), or as the password field (with blank username) if you're \
                     accessing the API from your browser and are prompted for a username and \
                     password. You can obtain an API key from \
                     https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                );
            }
        }
    }
    if !chat {
        return models(state);
    }
    let request = match parse_body(body) {
        JsonBody::Object(map) => map,
        JsonBody::Invalid(_) | JsonBody::NotObject => {
            return error(
                StatusCode::BAD_REQUEST,
                "We could not parse the JSON body of your request. (HINT: This likely means \
                 you aren't using your HTTP library correctly. The OpenAI API expects a JSON \
                 payload, but what was sent was not valid JSON. If you have trouble figuring \
                 out how to fix this, please contact us through our help center at \
                 help.openai.com.)",
                "invalid_request_error",
                None,
                None,
            );
        }
    };
    let (model, conversation) = match read_request(&request) {
        Ok(read) => read,
        Err(invalid) => return invalid.response(),
    };
    let behaviour = Behaviour::of_model(&model);
    if let Some(status) = behaviour.fail {
        return failure(status, &model);
    }
    let answer = reply::answer(&conversation, &state.config.name, state.config.provider);
    let streaming = request.get("stream").and_then(Value::as_bool) == Some(true);
    let mut response = if streaming {
        let include_usage = request
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true);
        let plan = stream_plan(&model, &conversation, &answer, include_usage);
        stream::stream(
            plan,
            behaviour,
            "text/event-stream; charset=utf-8",
            state.release.clone(),
        )
    } else {
        stream::json(StatusCode::OK, &completion(&model, &conversation, &answer))
    };
    add_response_headers(&mut response);
    response
}

/// Why a request is refused with 400 `invalid_request_error`.
#[derive(Debug)]
struct Invalid {
    message: String,
    param: Option<String>,
    code: Option<&'static str>,
}

impl Invalid {
    fn response(&self) -> Response<Body> {
        error(
            StatusCode::BAD_REQUEST,
            &self.message,
            "invalid_request_error",
            self.param.as_deref(),
            self.code,
        )
    }
}

/// Reads and validates a chat request: its model and conversation, or why it is invalid.
fn read_request(request: &Map<String, Value>) -> Result<(String, Conversation), Invalid> {
    let invalid = |message: &str, param: Option<&str>, code: Option<&'static str>| Invalid {
        message: message.to_string(),
        param: param.map(str::to_string),
        code,
    };
    let Some(model) = request.get("model").and_then(Value::as_str) else {
        return Err(invalid("you must provide a model parameter", None, None));
    };
    let Some(messages) = request.get("messages") else {
        return Err(invalid(
            "Missing required parameter: 'messages'.",
            Some("messages"),
            Some("missing_required_parameter"),
        ));
    };
    let Some(messages) = messages.as_array() else {
        return Err(invalid(
            &format!("Invalid type for 'messages': expected an array, but got {messages}."),
            Some("messages"),
            Some("invalid_type"),
        ));
    };
    if messages.is_empty() {
        return Err(invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but \
             got an empty array instead.",
            Some("messages"),
            Some("empty_array"),
        ));
    }
    let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
    if request.get("stream_options").is_some_and(|o| !o.is_null()) && !stream {
        return Err(invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            Some("stream_options"),
            None,
        ));
    }
    let mut conversation = Conversation::default();
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if !matches!(
            role,
            "system" | "developer" | "user" | "assistant" | "tool" | "function"
        ) {
            return Err(invalid(
                &format!(
                    "Invalid value: '{role}'. Supported values are: 'system', 'assistant', \
                     'user', 'tool', and 'function'."
                ),
                Some(&format!("messages[{i}].role")),
                Some("invalid_value"),
            ));
        }
        let (text, images) = content_text(message.get("content"));
        conversation.input_words += words(&text);
        conversation.images += images;
        if role == "user" {
            conversation.last_user_text = text.clone();
        }
        conversation.last = match role {
            "user" => LastTurn::User,
            "tool" | "function" => LastTurn::ToolResult(text),
            _ => LastTurn::Other,
        };
    }
    let tool_choice_none = request.get("tool_choice").and_then(Value::as_str) == Some("none");
    conversation.first_tool = request
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.first())
        .and_then(|tool| tool.pointer("/function/name"))
        .and_then(Value::as_str)
        .filter(|_| !tool_choice_none)
        .map(str::to_string);
    conversation.max_tokens = request
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| request.get("max_tokens").and_then(Value::as_u64));
    Ok((model.to_string(), conversation))
}

/// The text of a message's `content` (a string, or text parts joined by a space) and the
/// number of `image_url` parts.
fn content_text(content: Option<&Value>) -> (String, usize) {
    match content {
        Some(Value::String(text)) => (text.clone(), 0),
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            let images = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("image_url"))
                .count();
            (texts.join(" "), images)
        }
        _ => (String::new(), 0),
    }
}

fn usage(conversation: &Conversation, answer: &Answer) -> Value {
    let prompt = conversation.input_words;
    let completion = answer.output_tokens();
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

fn finish_reason(answer: &Answer) -> &'static str {
    match answer {
        Answer::Text {
            truncated: false, ..
        } => "stop",
        Answer::Text {
            truncated: true, ..
        } => "length",
        Answer::ToolCall { .. } => "tool_calls",
    }
}

fn completion_id() -> String {
    format!("chatcmpl-{}", reply::random_id(29))
}

fn call_id() -> String {
    format!("call_{}", reply::random_id(24))
}

/// A non-streamed `chat.completion`.
pub fn completion(model: &str, conversation: &Conversation, answer: &Answer) -> Value {
    let message = match answer {
        Answer::Text { text, .. } => json!({
            "role": "assistant",
            "content": text,
            "refusal": null,
            "annotations": []
        }),
        Answer::ToolCall { name, arguments } => json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [{
                "id": call_id(),
                "type": "function",
                "function": { "name": name, "arguments": arguments }
            }],
            "refusal": null,
            "annotations": []
        }),
    };
    json!({
        "id": completion_id(),
        "object": "chat.completion",
        "created": reply::unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(answer)
        }],
        "usage": usage(conversation, answer),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT
    })
}

/// The chunks of a streamed completion: the role (with the tool call's id and name), one
/// delta per word or per fragment of the arguments, the finish reason, the usage chunk
/// (`choices: []`) when `include_usage`, then `[DONE]`.
pub fn stream_plan(
    model: &str,
    conversation: &Conversation,
    answer: &Answer,
    include_usage: bool,
) -> StreamPlan {
    let id = completion_id();
    let created = reply::unix_now();
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": choices
        });
        if include_usage {
            // With include_usage every chunk carries `usage`, null until the last.
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        sse_data(&chunk.to_string())
    };
    let choice = |delta: Value, finish: Option<&str>| json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]);
    let mut plan = StreamPlan::default();
    let mut marked = false;
    match answer {
        Answer::Text { text, .. } => {
            plan.push(chunk(
                choice(
                    json!({ "role": "assistant", "content": "", "refusal": null }),
                    None,
                ),
                None,
            ));
            for piece in reply::word_pieces(text) {
                plan.push(chunk(choice(json!({ "content": piece }), None), None));
                plan.mark_first_delta(&mut marked);
            }
        }
        Answer::ToolCall { name, arguments } => {
            plan.push(chunk(
                choice(
                    json!({
                        "role": "assistant",
                        "content": null,
                        "tool_calls": [{
                            "index": 0,
                            "id": call_id(),
                            "type": "function",
                            "function": { "name": name, "arguments": "" }
                        }],
                        "refusal": null
                    }),
                    None,
                ),
                None,
            ));
            for fragment in reply::fragments(arguments) {
                plan.push(chunk(
                    choice(
                        json!({ "tool_calls": [{ "index": 0, "function": { "arguments": fragment } }] }),
                        None,
                    ),
                    None,
                ));
                plan.mark_first_delta(&mut marked);
            }
        }
    }
    plan.mark_first_delta(&mut marked);
    plan.push(chunk(choice(json!({}), Some(finish_reason(answer))), None));
    if include_usage {
        plan.push(chunk(json!([]), Some(usage(conversation, answer))));
    }
    plan.push(sse_data("[DONE]"));
    plan
}

/// `GET /v1/models`.
fn models(state: &State) -> Response<Body> {
    let created = reply::unix_now();
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| json!({ "id": id, "object": "model", "created": created, "owned_by": state.config.name }))
        .collect();
    let mut response = stream::json(StatusCode::OK, &json!({ "object": "list", "data": data }));
    add_response_headers(&mut response);
    response
}

/// What `fail-NNN` answers.
fn failure(status: u16, model: &str) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (message, kind, code) = match status.as_u16() {
        401 => (
            "Incorrect API key provided.".to_string(),
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        404 => (
            format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            Some("model_not_found"),
        ),
        429 => (
            format!(
                "Rate limit reached for {model} on requests per min (RPM): Limit 1, Used 1, \
                 Requested 1. Please try again in 1s."
            ),
            "requests",
            Some("rate_limit_exceeded"),
        ),
        503 => (
            "The server is overloaded or not ready yet.".to_string(),
            "server_error",
            None,
        ),
        500..=599 => (
            "The server had an error while processing your request. Sorry about that!".to_string(),
            "server_error",
            None,
        ),
        _ => (
            format!(
                "The mock was asked to fail with {} (model {model}).",
                status.as_u16()
            ),
            "invalid_request_error",
            None,
        ),
    };
    error(status, &message, kind, None, code)
}

/// An OpenAI error response.
pub fn error(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response<Body> {
    let mut response = stream::json(
        status,
        &json!({ "error": { "message": message, "type": kind, "param": param, "code": code } }),
    );
    add_response_headers(&mut response);
    if status == StatusCode::TOO_MANY_REQUESTS {
        set_header(&mut response, "retry-after", "1");
        set_header(&mut response, "x-ratelimit-limit-requests", "1");
        set_header(&mut response, "x-ratelimit-remaining-requests", "0");
        set_header(&mut response, "x-ratelimit-reset-requests", "1s");
    }
    response
}

/// The headers OpenAI puts on every response.
fn add_response_headers(response: &mut Response<Body>) {
    set_header(
        response,
        "x-request-id",
        &format!("req_{}", reply::random_id(32)),
    );
    set_header(response, "openai-version", "2020-10-01");
    set_header(response, "openai-processing-ms", "1");
}

/// An API key as OpenAI quotes it in errors: `sk-abc***************wxyz`.
fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_stream(plan: &StreamPlan) -> Vec<String> {
        plan.chunks
            .iter()
            .map(|c| {
                let text = std::str::from_utf8(c).unwrap();
                assert!(
                    text.starts_with("data: ") && text.ends_with("\n\n"),
                    "{text:?}"
                );
                text["data: ".len()..text.len() - 2].to_string()
            })
            .collect()
    }

    fn request(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn conversation_from_messages() {
        let (model, conversation) = read_request(&request(json!({
            "model": "m",
            "messages": [
                { "role": "system", "content": "be brief" },
                { "role": "user", "content": [
                    { "type": "text", "text": "what is" },
                    { "type": "image_url", "image_url": { "url": "data:image/png;base64,AA==" } }
                ]},
            ],
            "tools": [{ "type": "function", "function": { "name": "echo" } }],
            "max_tokens": 7
        })))
        .expect("valid request");
        assert_eq!(model, "m");
        assert_eq!(
            conversation,
            Conversation {
                input_words: 4,
                last_user_text: "what is".into(),
                last: LastTurn::User,
                images: 1,
                first_tool: Some("echo".into()),
                max_tokens: Some(7),
            }
        );
    }

    #[test]
    fn text_stream_chunks() {
        let conversation = Conversation {
            input_words: 1,
            last_user_text: "hi".into(),
            last: LastTurn::User,
            ..Default::default()
        };
        let answer = Answer::Text {
            text: "a b".into(),
            truncated: false,
        };
        let plan = stream_plan("m", &conversation, &answer, true);
        let data = parse_stream(&plan);
        assert_eq!(
            data.len(),
            6,
            "role, 2 words, finish, usage, done: {data:?}"
        );
        assert_eq!(plan.first_delta, 1);
        let first: Value = serde_json::from_str(&data[0]).unwrap();
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(first["usage"], Value::Null);
        let finish: Value = serde_json::from_str(&data[3]).unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let usage: Value = serde_json::from_str(&data[4]).unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 3);
        assert_eq!(data[5], "[DONE]");

        let without = parse_stream(&stream_plan("m", &conversation, &answer, false));
        assert_eq!(without.len(), 5);
        assert!(without[..4].iter().all(|d| {
            serde_json::from_str::<Value>(d)
                .unwrap()
                .get("usage")
                .is_none()
        }));
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("sk-0123456789"), "sk-******6789");
        assert_eq!(redact("short"), "*****");
    }
}
