//! What each API's client makes of a response stream: the stream is read the way the
//! official SDKs read it (`openai`, `anthropic`, `ollama`), at least as strictly — every
//! event parses, indexes and event names are consistent, the sequence is well-formed and
//! properly ended. Panics say what is wrong.
//!
//! Shared by the crate's unit tests (`#[path]`) and the component tests (`mod common`).

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;

/// A stream as a client sees it.
#[derive(Debug, Default)]
pub struct Streamed {
    /// The text of the first choice / the text blocks / the message, as accumulated.
    pub text: String,
    /// The text as it was when the stream said the text was over (OpenAI finish reason,
    /// Anthropic `content_block_stop`, Ollama `done`): nothing may come after.
    pub text_at_end: Option<String>,
    /// Anthropic: the accumulated `partial_json` of each tool-use block.
    pub tool_json: Vec<String>,
    /// The events (SSE) or lines (NDJSON), as received.
    pub events: Vec<String>,
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} is not a string in {value}"))
}

/// SSE events as (raw block, event name, data): every event ends with a blank line;
/// comments are skipped.
fn sse_events(body: &[u8]) -> Vec<(String, Option<String>, String)> {
    let text = std::str::from_utf8(body).expect("the stream is UTF-8");
    assert!(
        text.ends_with("\n\n"),
        "unterminated event at the end: {text:?}"
    );
    let mut events = Vec::new();
    for block in text.split_inclusive("\n\n") {
        let mut name = None;
        let mut data: Vec<&str> = Vec::new();
        for line in block.trim_end_matches('\n').split('\n') {
            if line.starts_with(':') {
                continue;
            } else if let Some(value) = line.strip_prefix("event: ") {
                assert!(name.is_none(), "two event names in {block:?}");
                name = Some(value.to_string());
            } else if let Some(value) = line.strip_prefix("data: ") {
                data.push(value);
            } else {
                panic!("unexpected SSE line {line:?} in {block:?}");
            }
        }
        if data.is_empty() {
            assert!(name.is_none(), "event without data: {block:?}");
            continue;
        }
        events.push((block.to_string(), name, data.join("\n")));
    }
    events
}

/// An OpenAI `chat.completion.chunk` stream (`openai`'s `Stream` and
/// `ChatCompletionStreamState`): chunks of one id, ending in `data: [DONE]`.
pub fn openai_stream(body: &[u8]) -> Streamed {
    let events = sse_events(body);
    let (last, rest) = events.split_last().expect("an empty stream");
    assert_eq!(last.2, "[DONE]", "the stream does not end with [DONE]");
    assert!(last.1.is_none());
    let mut texts: BTreeMap<u64, String> = BTreeMap::new();
    let mut finished: BTreeMap<u64, String> = BTreeMap::new();
    let mut id: Option<String> = None;
    let mut streamed = Streamed::default();
    for (raw, name, data) in rest {
        assert!(name.is_none(), "OpenAI events have no names: {raw:?}");
        assert_ne!(data, "[DONE]", "[DONE] before the end");
        let chunk = json(data);
        assert_eq!(str_at(&chunk, "/object"), "chat.completion.chunk", "{data}");
        let chunk_id = str_at(&chunk, "/id").to_string();
        assert_eq!(id.get_or_insert(chunk_id.clone()), &chunk_id, "ids differ");
        str_at(&chunk, "/model");
        let choices = chunk["choices"].as_array().expect("choices is an array");
        for choice in choices {
            let index = choice["index"].as_u64().expect("a choice index");
            let delta = choice.get("delta").expect("a choice delta");
            assert!(delta.is_object(), "{data}");
            match delta.get("content") {
                None | Some(Value::Null) => {}
                Some(Value::String(content)) => {
                    assert!(
                        !finished.contains_key(&index),
                        "content after the finish reason of choice {index}: {data}"
                    );
                    texts.entry(index).or_default().push_str(content);
                }
                Some(other) => panic!("content is {other}"),
            }
            match &choice["finish_reason"] {
                Value::Null => {}
                Value::String(_) => {
                    let text = texts.get(&index).cloned().unwrap_or_default();
                    assert!(finished.insert(index, text).is_none(), "finished twice");
                }
                other => panic!("finish_reason is {other}"),
            }
        }
        streamed.events.push(raw.clone());
    }
    streamed.events.push(last.0.clone());
    streamed.text = texts.get(&0).cloned().unwrap_or_default();
    streamed.text_at_end = finished.get(&0).cloned();
    streamed
}

/// The texts of every choice of an OpenAI stream, by index.
pub fn openai_choices(body: &[u8]) -> BTreeMap<u64, String> {
    let mut texts = BTreeMap::new();
    for (_, _, data) in sse_events(body) {
        if data == "[DONE]" {
            continue;
        }
        for choice in json(&data)["choices"].as_array().unwrap() {
            if let Some(content) = choice["delta"]["content"].as_str() {
                texts
                    .entry(choice["index"].as_u64().unwrap())
                    .or_insert_with(String::new)
                    .push_str(content);
            }
        }
    }
    texts
}

/// An Anthropic Messages stream (`anthropic`'s `MessageStream`): named events, the
/// name equal to the data's type, blocks started, filled and stopped in order.
pub fn anthropic_stream(body: &[u8]) -> Streamed {
    let events = sse_events(body);
    let mut streamed = Streamed::default();
    let mut blocks: Vec<(String, bool)> = Vec::new(); // (type, stopped)
    let mut texts: BTreeMap<usize, String> = BTreeMap::new();
    let mut state = "start";
    for (raw, name, data) in &events {
        let event = json(data);
        let kind = str_at(&event, "/type");
        assert_eq!(
            name.as_deref(),
            Some(kind),
            "event name and type differ: {raw:?}"
        );
        match kind {
            "message_start" => {
                assert_eq!(state, "start", "message_start twice");
                state = "message";
            }
            "ping" => {}
            "content_block_start" => {
                assert_eq!(state, "message", "{raw:?}");
                let index = event["index"].as_u64().unwrap() as usize;
                assert_eq!(index, blocks.len(), "blocks are numbered in order");
                assert!(
                    blocks.iter().all(|(_, stopped)| *stopped),
                    "a block is open"
                );
                let block_type = str_at(&event, "/content_block/type").to_string();
                if block_type == "text" {
                    texts.insert(index, str_at(&event, "/content_block/text").to_string());
                }
                blocks.push((block_type, false));
            }
            "content_block_delta" => {
                let index = event["index"].as_u64().unwrap() as usize;
                let (block_type, stopped) = &blocks[index];
                assert!(!stopped, "a delta after content_block_stop: {raw:?}");
                match str_at(&event, "/delta/type") {
                    "text_delta" => {
                        assert_eq!(block_type, "text");
                        texts
                            .get_mut(&index)
                            .unwrap()
                            .push_str(str_at(&event, "/delta/text"));
                    }
                    "input_json_delta" => {
                        assert_eq!(block_type, "tool_use");
                        while streamed.tool_json.len() <= index {
                            streamed.tool_json.push(String::new());
                        }
                        streamed.tool_json[index].push_str(str_at(&event, "/delta/partial_json"));
                    }
                    other => panic!("unexpected delta type {other}"),
                }
            }
            "content_block_stop" => {
                let index = event["index"].as_u64().unwrap() as usize;
                assert!(!blocks[index].1, "stopped twice");
                blocks[index].1 = true;
                if index == 0 {
                    streamed.text_at_end = texts.get(&0).cloned();
                }
            }
            "message_delta" => {
                assert!(
                    blocks.iter().all(|(_, stopped)| *stopped),
                    "a block is open"
                );
                assert_eq!(state, "message");
                state = "delta";
            }
            "message_stop" => {
                assert_eq!(state, "delta", "message_stop without message_delta");
                state = "stopped";
            }
            other => panic!("unexpected event {other}"),
        }
        streamed.events.push(raw.clone());
    }
    assert_eq!(
        state, "stopped",
        "the stream does not end with message_stop"
    );
    streamed.text = texts.into_values().collect();
    streamed
}

/// An Ollama chat NDJSON stream (`ollama`'s `chat(stream=True)`): lines of one model,
/// the last one `done: true`.
pub fn ollama_stream(body: &[u8]) -> Streamed {
    let text = std::str::from_utf8(body).expect("the stream is UTF-8");
    assert!(text.ends_with('\n'), "the last line is unterminated");
    let mut streamed = Streamed::default();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (position, raw) in lines.iter().enumerate() {
        let line = json(raw.trim_end());
        str_at(&line, "/model");
        streamed.text.push_str(str_at(&line, "/message/content"));
        let done = line["done"].as_bool().expect("done is a bool");
        assert_eq!(
            done,
            position == lines.len() - 1,
            "done only on the last line: {raw}"
        );
        if done {
            streamed.text_at_end = Some(streamed.text.clone());
        }
        streamed.events.push(raw.to_string());
    }
    streamed
}
