//! Ollama's native API: `POST /api/chat` (one JSON object, or NDJSON lines ending with a
//! `done: true` line carrying `done_reason`, the counts and the durations; Ollama streams
//! unless `stream` is `false`) and `GET /api/tags`; errors as `{"error":"..."}`.

use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::reply::{self, Answer, Behaviour, Conversation, LastTurn, words};
use super::server::{JsonBody, State, bearer, parse_body};
use super::stream::{self, Body, StreamPlan, ndjson};

/// The models `GET /api/tags` lists (any model name is served).
pub const MODELS: &[&str] = &["mock-llama:latest", "mock-llama-hold:latest"];
const JSON: &str = "application/json; charset=utf-8";

pub fn handle(parts: &http::request::Parts, body: &[u8], state: &State) -> Response<Body> {
    let chat = match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/api/chat") => true,
        (&Method::GET, "/api/tags") => false,
        _ => return error(StatusCode::NOT_FOUND, "404 page not found"),
    };
    if let Some(expected) = &state.config.api_key
        && bearer(parts) != Some(expected.as_str())
    {
        return error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    if !chat {
        return tags();
    }
    let request = match parse_body(body) {
        JsonBody::Object(map) => map,
        JsonBody::Invalid(err) => return error(StatusCode::BAD_REQUEST, &err),
        JsonBody::NotObject => {
            return error(
                StatusCode::BAD_REQUEST,
                "json: cannot unmarshal value into Go value of type api.ChatRequest",
            );
        }
    };
    let (model, conversation, empty) = match read_request(&request) {
        Ok(read) => read,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let behaviour = Behaviour::of_model(&model);
    if let Some(status) = behaviour.fail {
        return failure(status, &model);
    }
    // Ollama streams unless told not to.
    let streaming = request.get("stream").and_then(Value::as_bool) != Some(false);
    if empty {
        // No messages: Ollama just loads the model.
        let loaded = json!({
            "model": model,
            "created_at": reply::rfc3339_now(),
            "message": { "role": "assistant", "content": "" },
            "done_reason": "load",
            "done": true
        });
        return if streaming {
            let mut plan = StreamPlan::default();
            plan.push(ndjson(&loaded));
            stream::stream(
                plan,
                behaviour,
                "application/x-ndjson",
                state.release.clone(),
            )
        } else {
            stream::full(StatusCode::OK, JSON, loaded.to_string())
        };
    }
    let answer = reply::answer(&conversation, &state.config.name, state.config.provider);
    if streaming {
        stream::stream(
            stream_plan(&model, &conversation, &answer),
            behaviour,
            "application/x-ndjson",
            state.release.clone(),
        )
    } else {
        stream::full(
            StatusCode::OK,
            JSON,
            chat_response(&model, &conversation, &answer).to_string(),
        )
    }
}

/// Reads and validates a chat request: its model, conversation and whether it had no
/// messages, or the message of the 400 to answer.
fn read_request(request: &Map<String, Value>) -> Result<(String, Conversation, bool), String> {
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or("model is required")?;
    let messages = match request.get("messages") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(messages)) => messages,
        Some(_) => {
            return Err(
                "json: cannot unmarshal value into Go struct field ChatRequest.messages of type \
                 []api.Message"
                    .into(),
            );
        }
    };
    let mut conversation = Conversation::default();
    for message in messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let text = message
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        conversation.input_words += words(&text);
        conversation.images += message
            .get("images")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if role == "user" {
            conversation.last_user_text = text.clone();
        }
        conversation.last = match role {
            "user" => LastTurn::User,
            "tool" => LastTurn::ToolResult(text),
            _ => LastTurn::Other,
        };
    }
    conversation.first_tool = request
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.first())
        .and_then(|tool| tool.pointer("/function/name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    // num_predict -1 (or -2) means no limit.
    conversation.max_tokens = request
        .get("options")
        .and_then(|options| options.get("num_predict"))
        .and_then(Value::as_u64);
    Ok((model.to_string(), conversation, messages.is_empty()))
}

fn done_reason(answer: &Answer) -> &'static str {
    match answer {
        Answer::Text {
            truncated: true, ..
        } => "length",
        // Ollama says "stop" after tool calls too.
        _ => "stop",
    }
}

/// The counts and durations (nanoseconds, made up but consistent) of a final line.
fn stats(conversation: &Conversation, answer: &Answer) -> Map<String, Value> {
    let prompt = conversation.input_words;
    let eval = answer.output_tokens();
    let load = 1_000_000u64;
    let (prompt_duration, eval_duration) = (100_000 * prompt.max(1), 1_000_000 * eval.max(1));
    let Value::Object(map) = json!({
        "total_duration": load + prompt_duration + eval_duration,
        "load_duration": load,
        "prompt_eval_count": prompt,
        "prompt_eval_duration": prompt_duration,
        "eval_count": eval,
        "eval_duration": eval_duration
    }) else {
        unreachable!("an object literal")
    };
    map
}

fn message(answer: &Answer) -> Value {
    match answer {
        Answer::Text { text, .. } => json!({ "role": "assistant", "content": text }),
        Answer::ToolCall { name, .. } => json!({
            "role": "assistant",
            "content": "",
            "tool_calls": [{
                "id": format!("call_{}", reply::random_id(8).to_lowercase()),
                "function": { "index": 0, "name": name, "arguments": answer.arguments_value() }
            }]
        }),
    }
}

/// A non-streamed chat response.
pub fn chat_response(model: &str, conversation: &Conversation, answer: &Answer) -> Value {
    let mut response = json!({
        "model": model,
        "created_at": reply::rfc3339_now(),
        "message": message(answer),
        "done_reason": done_reason(answer),
        "done": true
    });
    if let Value::Object(map) = &mut response {
        map.extend(stats(conversation, answer));
    }
    response
}

/// The lines of a streamed chat: one per word (or one with the tool call), then the
/// `done: true` line.
pub fn stream_plan(model: &str, conversation: &Conversation, answer: &Answer) -> StreamPlan {
    let mut plan = StreamPlan::default();
    let mut marked = false;
    let line = |message: Value| {
        ndjson(&json!({
            "model": model,
            "created_at": reply::rfc3339_now(),
            "message": message,
            "done": false
        }))
    };
    match answer {
        Answer::Text { text, .. } => {
            for piece in reply::word_pieces(text) {
                plan.push(line(json!({ "role": "assistant", "content": piece })));
                plan.mark_first_delta(&mut marked);
            }
        }
        Answer::ToolCall { .. } => {
            plan.push(line(message(answer)));
            plan.mark_first_delta(&mut marked);
        }
    }
    let mut last = json!({
        "model": model,
        "created_at": reply::rfc3339_now(),
        "message": { "role": "assistant", "content": "" },
        "done": true,
        "done_reason": done_reason(answer)
    });
    if let Value::Object(map) = &mut last {
        map.extend(stats(conversation, answer));
    }
    plan.push(ndjson(&last));
    plan.mark_first_delta(&mut marked);
    plan
}

/// `GET /api/tags`.
fn tags() -> Response<Body> {
    let modified = reply::rfc3339_now();
    let models: Vec<Value> = MODELS
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "model": name,
                "modified_at": modified,
                "size": 1_234_567_890u64,
                "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "llama",
                    "families": ["llama"],
                    "parameter_size": "1.2B",
                    "quantization_level": "Q4_K_M"
                }
            })
        })
        .collect();
    stream::full(
        StatusCode::OK,
        JSON,
        json!({ "models": models }).to_string(),
    )
}

/// What `fail-NNN` answers.
fn failure(status: u16, model: &str) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match status.as_u16() {
        401 => "unauthorized".to_string(),
        404 => format!("model \"{model}\" not found, try pulling it first"),
        429 => "rate limit exceeded: too many requests".to_string(),
        503 => "server busy, please try again.  maximum pending requests exceeded".to_string(),
        500..=599 => "an internal error occurred in the mock".to_string(),
        code => format!("the mock was asked to fail with {code}"),
    };
    let mut response = error(status, &message);
    if status == StatusCode::TOO_MANY_REQUESTS {
        super::server::set_header(&mut response, "retry-after", "1");
    }
    response
}

/// An Ollama error response.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    stream::full(status, JSON, json!({ "error": message }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_and_stream() {
        let request = json!({
            "model": "m",
            "messages": [
                { "role": "system", "content": "short answers" },
                { "role": "user", "content": "hi there", "images": ["AA==", "AA=="] }
            ],
            "options": { "num_predict": -1 }
        });
        let (model, conversation, empty) = read_request(request.as_object().unwrap()).unwrap();
        assert_eq!((model.as_str(), empty), ("m", false));
        assert_eq!(conversation.input_words, 4);
        assert_eq!(conversation.images, 2);
        assert_eq!(conversation.max_tokens, None);

        let answer = reply::answer(&conversation, "n", crate::ai_mock::Provider::Ollama);
        let plan = stream_plan(&model, &conversation, &answer);
        let lines: Vec<Value> = plan
            .chunks
            .iter()
            .map(|c| {
                assert!(c.ends_with(b"\n") && c.iter().filter(|&&b| b == b'\n').count() == 1);
                serde_json::from_slice(c).unwrap()
            })
            .collect();
        let text: String = lines
            .iter()
            .map(|l| l["message"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(text, "n (ollama) heard: hi there [2 image(s)]");
        let last = lines.last().unwrap();
        assert_eq!(last["done"], true);
        assert_eq!(last["done_reason"], "stop");
        assert_eq!(last["prompt_eval_count"], 4);
        assert_eq!(last["eval_count"], 7);
        assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));
    }

    #[test]
    fn model_is_required() {
        let request = json!({ "messages": [] });
        assert_eq!(
            read_request(request.as_object().unwrap()).unwrap_err(),
            "model is required"
        );
    }
}
