//! What each API's client makes of a response: the body or stream is read the way the
//! official SDKs read it (`openai`, `anthropic`, `ollama` for Python), and checked at
//! least as strictly — every event parses, ids and indexes are consistent, the sequence
//! is well-formed and properly ended. Panics say what is wrong.
//!
//! Shared by the crate's unit tests (`#[path]`) and the component tests (`mod common`).

#![allow(dead_code)]

use serde_json::Value;

/// A message as a client ends up with it, in the client API's own terms.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub model: String,
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    /// `finish_reason`, `stop_reason` or `done_reason`.
    pub finish: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// A stream as a client sees it: the message so far, and the error that ended it early.
#[derive(Debug, Default)]
pub struct Streamed {
    pub message: Message,
    pub error: Option<Value>,
    /// OpenAI: the stream had a usage chunk (`choices: []`).
    pub usage_chunk: bool,
    /// The number of events (SSE) or lines (NDJSON).
    pub events: usize,
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn str_of<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} is not a string in {value}"))
}

/// SSE events as (event name, data); every event must end with a blank line.
fn sse_events(body: &[u8]) -> Vec<(Option<String>, String)> {
    let text = std::str::from_utf8(body).expect("the stream is UTF-8");
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "unterminated event at the end: {text:?}"
    );
    text.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = Vec::new();
            for line in block.split('\n') {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_string());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push(value);
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            assert!(!data.is_empty(), "event without data: {block:?}");
            (name, data.join("\n"))
        })
        .collect()
}

// ------------------------------------------------------------------------ OpenAI

/// An OpenAI `chat.completion.chunk` stream, as `openai`'s `Stream` and
/// `ChatCompletionStreamState` read it.
pub fn openai_stream(body: &[u8]) -> Streamed {
    let events = sse_events(body);
    let mut streamed = Streamed {
        events: events.len(),
        ..Streamed::default()
    };
    let message = &mut streamed.message;
    let mut done = false;
    let mut finished = false;
    for (i, (name, data)) in events.iter().enumerate() {
        assert!(
            name.is_none(),
            "OpenAI streams have no event names: {name:?}"
        );
        assert!(!done, "events after [DONE]");
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk = json(data);
        if let Some(error) = chunk.get("error") {
            assert_eq!(i, events.len() - 1, "events after the error");
            streamed.error = Some(error.clone());
            return streamed;
        }
        assert_eq!(str_of(&chunk, "/object"), "chat.completion.chunk");
        assert!(chunk["created"].is_u64(), "created: {chunk}");
        let id = str_of(&chunk, "/id");
        assert!(id.starts_with("chatcmpl-"), "id {id}");
        if i == 0 {
            message.id = id.to_string();
            message.model = str_of(&chunk, "/model").to_string();
        } else {
            assert_eq!(id, message.id, "one id for every chunk");
            assert_eq!(str_of(&chunk, "/model"), message.model);
        }
        let choices = chunk["choices"].as_array().expect("choices");
        if choices.is_empty() {
            let usage = &chunk["usage"];
            assert!(finished, "the usage chunk comes after the finish reason");
            message.input_tokens = usage["prompt_tokens"].as_u64();
            message.output_tokens = usage["completion_tokens"].as_u64();
            assert_eq!(
                usage["total_tokens"].as_u64(),
                Some(message.input_tokens.unwrap() + message.output_tokens.unwrap())
            );
            streamed.usage_chunk = true;
            continue;
        }
        assert_eq!(choices.len(), 1);
        let choice = &choices[0];
        assert_eq!(choice["index"], 0);
        assert!(!finished, "content after the finish reason: {chunk}");
        let delta = choice["delta"].as_object().expect("delta");
        assert_eq!(
            delta.get("role").is_some(),
            i == 0,
            "the role comes in the first chunk only: {chunk}"
        );
        if let Some(content) = delta.get("content").and_then(Value::as_str) {
            message.text.push_str(content);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().expect("tool call index") as usize;
            if index == message.tool_calls.len() {
                assert_eq!(call["type"], "function", "{call}");
                message.tool_calls.push(ToolCall {
                    id: str_of(call, "/id").to_string(),
                    name: str_of(call, "/function/name").to_string(),
                    arguments: Value::String(String::new()),
                });
            }
            let tool = message
                .tool_calls
                .get_mut(index)
                .unwrap_or_else(|| panic!("tool call index {index} skips one"));
            let fragment = call.pointer("/function/arguments").and_then(Value::as_str);
            if let (Some(fragment), Value::String(arguments)) = (fragment, &mut tool.arguments) {
                arguments.push_str(fragment);
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            message.finish = reason.to_string();
            finished = true;
        }
    }
    assert!(done, "the stream does not end with data: [DONE]");
    assert!(finished, "no finish_reason");
    for call in &mut message.tool_calls {
        let arguments = call.arguments.as_str().unwrap().to_string();
        call.arguments = json(&arguments);
    }
    streamed
}

/// A whole `chat.completion`.
pub fn openai_response(body: &[u8]) -> Message {
    let response = json(std::str::from_utf8(body).unwrap());
    assert_eq!(
        str_of(&response, "/object"),
        "chat.completion",
        "{response}"
    );
    assert!(response["created"].is_u64());
    let choice = &response["choices"][0];
    let message = &choice["message"];
    assert_eq!(message["role"], "assistant");
    let tool_calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|call| {
                    assert_eq!(call["type"], "function");
                    ToolCall {
                        id: str_of(call, "/id").to_string(),
                        name: str_of(call, "/function/name").to_string(),
                        arguments: json(str_of(call, "/function/arguments")),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let usage = &response["usage"];
    Message {
        id: str_of(&response, "/id").to_string(),
        model: str_of(&response, "/model").to_string(),
        text: message["content"].as_str().unwrap_or("").to_string(),
        tool_calls,
        finish: str_of(choice, "/finish_reason").to_string(),
        input_tokens: usage["prompt_tokens"].as_u64(),
        output_tokens: usage["completion_tokens"].as_u64(),
    }
}

/// An OpenAI error body: (type, message, code).
pub fn openai_error(body: &[u8]) -> (String, String, Value) {
    let error = json(std::str::from_utf8(body).unwrap());
    assert!(error["error"]["param"].is_null(), "{error}");
    (
        str_of(&error, "/error/type").to_string(),
        str_of(&error, "/error/message").to_string(),
        error["error"]["code"].clone(),
    )
}

// ------------------------------------------------------------------------ Anthropic

/// An Anthropic Messages stream, as `anthropic`'s `accumulate_event` reads it, and
/// stricter: names match types, blocks are numbered from 0 and each is stopped before
/// the next starts, `message_delta` and `message_stop` end it.
pub fn anthropic_stream(body: &[u8]) -> Streamed {
    #[derive(PartialEq)]
    enum Stage {
        Start,
        Content,
        Delta,
        Stopped,
    }
    let events = sse_events(body);
    let mut streamed = Streamed {
        events: events.len(),
        ..Streamed::default()
    };
    let message = &mut streamed.message;
    let mut stage = Stage::Start;
    // The open block's index and type, and the JSON of a tool_use block being streamed.
    let mut open: Option<(usize, String)> = None;
    let mut blocks = 0;
    let mut partial_json = String::new();
    for (i, (name, data)) in events.iter().enumerate() {
        let event = json(data);
        let kind = str_of(&event, "/type");
        assert_eq!(name.as_deref(), Some(kind), "event name and type differ");
        if kind == "error" {
            assert_eq!(i, events.len() - 1, "events after the error");
            str_of(&event, "/error/type");
            str_of(&event, "/error/message");
            streamed.error = Some(event["error"].clone());
            return streamed;
        }
        if kind == "ping" {
            continue;
        }
        match kind {
            "message_start" => {
                assert!(stage == Stage::Start, "message_start must come first, once");
                let start = &event["message"];
                assert_eq!(start["type"], "message");
                assert_eq!(start["role"], "assistant");
                assert_eq!(start["content"], serde_json::json!([]));
                message.id = str_of(start, "/id").to_string();
                assert!(message.id.starts_with("msg_"), "id {}", message.id);
                message.model = str_of(start, "/model").to_string();
                message.input_tokens = Some(
                    start["usage"]["input_tokens"]
                        .as_u64()
                        .expect("input_tokens"),
                );
                stage = Stage::Content;
            }
            "content_block_start" => {
                assert!(
                    stage == Stage::Content,
                    "block outside the message: {event}"
                );
                assert!(
                    open.is_none(),
                    "a block started before the last one stopped"
                );
                let index = event["index"].as_u64().unwrap() as usize;
                assert_eq!(index, blocks, "blocks are numbered from 0");
                blocks += 1;
                let block = &event["content_block"];
                let block_type = str_of(block, "/type").to_string();
                match block_type.as_str() {
                    "text" => message.text.push_str(str_of(block, "/text")),
                    "tool_use" => {
                        assert_eq!(block["input"], serde_json::json!({}));
                        message.tool_calls.push(ToolCall {
                            id: str_of(block, "/id").to_string(),
                            name: str_of(block, "/name").to_string(),
                            arguments: Value::Null,
                        });
                        partial_json.clear();
                    }
                    other => panic!("unexpected block type {other}"),
                }
                open = Some((index, block_type));
            }
            "content_block_delta" => {
                let (index, block_type) = open.as_ref().expect("delta outside a block");
                assert_eq!(event["index"].as_u64().unwrap() as usize, *index);
                let delta = &event["delta"];
                match (str_of(delta, "/type"), block_type.as_str()) {
                    ("text_delta", "text") => message.text.push_str(str_of(delta, "/text")),
                    ("input_json_delta", "tool_use") => {
                        partial_json.push_str(str_of(delta, "/partial_json"))
                    }
                    (delta, block) => panic!("{delta} in a {block} block"),
                }
            }
            "content_block_stop" => {
                let (index, block_type) = open.take().expect("stop outside a block");
                assert_eq!(event["index"].as_u64().unwrap() as usize, index);
                if block_type == "tool_use" {
                    let input = if partial_json.is_empty() {
                        "{}"
                    } else {
                        &partial_json
                    };
                    message.tool_calls.last_mut().unwrap().arguments = json(input);
                }
            }
            "message_delta" => {
                assert!(
                    stage == Stage::Content && open.is_none(),
                    "message_delta with a block open"
                );
                message.finish = str_of(&event, "/delta/stop_reason").to_string();
                let usage = &event["usage"];
                message.output_tokens =
                    Some(usage["output_tokens"].as_u64().expect("output_tokens"));
                if let Some(input) = usage.get("input_tokens").and_then(Value::as_u64) {
                    message.input_tokens = Some(input);
                }
                stage = Stage::Delta;
            }
            "message_stop" => {
                assert!(stage == Stage::Delta, "message_stop before message_delta");
                stage = Stage::Stopped;
            }
            other => panic!("unknown event {other}"),
        }
    }
    assert!(
        stage == Stage::Stopped,
        "the stream does not end with message_stop"
    );
    streamed
}

/// A whole Anthropic message.
pub fn anthropic_response(body: &[u8]) -> Message {
    let response = json(std::str::from_utf8(body).unwrap());
    assert_eq!(response["type"], "message", "{response}");
    assert_eq!(response["role"], "assistant");
    let mut message = Message {
        id: str_of(&response, "/id").to_string(),
        model: str_of(&response, "/model").to_string(),
        finish: str_of(&response, "/stop_reason").to_string(),
        input_tokens: response["usage"]["input_tokens"].as_u64(),
        output_tokens: response["usage"]["output_tokens"].as_u64(),
        ..Message::default()
    };
    assert!(message.id.starts_with("msg_"));
    for block in response["content"].as_array().expect("content") {
        match str_of(block, "/type") {
            "text" => message.text.push_str(str_of(block, "/text")),
            "tool_use" => {
                assert!(block["input"].is_object(), "{block}");
                message.tool_calls.push(ToolCall {
                    id: str_of(block, "/id").to_string(),
                    name: str_of(block, "/name").to_string(),
                    arguments: block["input"].clone(),
                });
            }
            other => panic!("unexpected block {other}"),
        }
    }
    message
}

/// An Anthropic error body: (type, message).
pub fn anthropic_error(body: &[u8]) -> (String, String) {
    let error = json(std::str::from_utf8(body).unwrap());
    assert_eq!(error["type"], "error", "{error}");
    (
        str_of(&error, "/error/type").to_string(),
        str_of(&error, "/error/message").to_string(),
    )
}

// ------------------------------------------------------------------------ Ollama

/// An Ollama NDJSON stream, as `ollama`'s `_stream` reads it: every line a `ChatResponse`
/// (model, created_at, message with role), the last `done: true`.
pub fn ollama_stream(body: &[u8]) -> Streamed {
    let text = std::str::from_utf8(body).expect("the stream is UTF-8");
    assert!(text.ends_with('\n'), "unterminated last line");
    let lines: Vec<&str> = text.lines().collect();
    let mut streamed = Streamed {
        events: lines.len(),
        ..Streamed::default()
    };
    let mut done = false;
    for (i, line) in lines.iter().enumerate() {
        assert!(!done, "lines after done");
        let part = json(line);
        if let Some(error) = part.get("error") {
            assert_eq!(i, lines.len() - 1, "lines after the error");
            streamed.error = Some(error.clone());
            return streamed;
        }
        done = ollama_part(&part, &mut streamed.message, i == 0);
    }
    assert!(done, "no done: true line");
    streamed
}

/// A whole Ollama chat response.
pub fn ollama_response(body: &[u8]) -> Message {
    let part = json(std::str::from_utf8(body).unwrap());
    let mut message = Message::default();
    assert!(ollama_part(&part, &mut message, true), "done: true");
    message
}

/// Adds one response object to `message`; true when it is the last (`done: true`).
fn ollama_part(part: &Value, message: &mut Message, first: bool) -> bool {
    let model = str_of(part, "/model");
    if first {
        message.model = model.to_string();
    } else {
        assert_eq!(model, message.model);
    }
    str_of(part, "/created_at");
    assert_eq!(part["message"]["role"], "assistant", "{part}");
    message.text.push_str(str_of(part, "/message/content"));
    for call in part["message"]
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let arguments = call["function"]["arguments"].clone();
        assert!(arguments.is_object(), "{call}");
        message.tool_calls.push(ToolCall {
            id: String::new(),
            name: str_of(call, "/function/name").to_string(),
            arguments,
        });
    }
    let done = part["done"].as_bool().expect("done");
    if done {
        message.finish = str_of(part, "/done_reason").to_string();
        message.input_tokens = part["prompt_eval_count"].as_u64();
        message.output_tokens = part["eval_count"].as_u64();
    }
    done
}

/// An Ollama error body's message.
pub fn ollama_error(body: &[u8]) -> String {
    let error = json(std::str::from_utf8(body).unwrap());
    str_of(&error, "/error").to_string()
}
