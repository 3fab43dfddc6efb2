//! Prompt estimates from a client's request body, in each API's own JSON: what a filter
//! can compute without translating the request.
//!
//! Everything unknown is skipped rather than refused: the estimate is for accounting,
//! the provider judges the request.

use serde_json::Value;

use crate::Api;
use crate::prompt::PromptEstimator;

/// The prompt tokens of a chat request of `api` (its JSON body: an object with
/// `messages`, and the API's `system` and `tools`), estimated with o200k_base as
/// [`PromptEstimator`] counts. Anything but an object counts as an empty prompt.
pub fn estimate_request_json(api: Api, request: &Value) -> u64 {
    let mut estimate = PromptEstimator::new();
    match api {
        Api::OpenAi => openai(&mut estimate, request),
        Api::Anthropic => anthropic(&mut estimate, request),
        Api::Ollama => ollama(&mut estimate, request),
    }
    estimate.total()
}

/// [`estimate_request_json`] on a request body's bytes; `None` when they are not JSON.
pub fn estimate_request_body(api: Api, body: &[u8]) -> Option<u64> {
    let request: Value = serde_json::from_slice(body).ok()?;
    Some(estimate_request_json(api, &request))
}

fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn array_of<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

// OpenAI Chat Completions.

fn openai(estimate: &mut PromptEstimator, request: &Value) {
    for message in array_of(request, "messages") {
        estimate.message(str_of(message, "role").unwrap_or(""));
        if let Some(name) = str_of(message, "name") {
            estimate.name(name);
        }
        openai_content(estimate, message.get("content"));
        if let Some(refusal) = str_of(message, "refusal") {
            estimate.text(refusal);
        }
        for call in array_of(message, "tool_calls") {
            if let Some(function) = call.get("function") {
                openai_function_call(estimate, function);
            }
        }
        // The deprecated single function call.
        if let Some(function) = message.get("function_call") {
            openai_function_call(estimate, function);
        }
    }
    for tool in array_of(request, "tools") {
        openai_tool(estimate, tool);
    }
    // The deprecated `functions`.
    for function in array_of(request, "functions") {
        openai_tool(estimate, function);
    }
}

fn openai_content(estimate: &mut PromptEstimator, content: Option<&Value>) {
    match content {
        Some(Value::String(text)) => {
            estimate.text(text);
        }
        Some(Value::Array(parts)) => {
            for part in parts {
                match str_of(part, "type") {
                    Some("text") => {
                        estimate.text(str_of(part, "text").unwrap_or(""));
                    }
                    Some("image_url") => {
                        let detail = part.get("image_url").and_then(|i| str_of(i, "detail"));
                        estimate.image(detail == Some("low"));
                    }
                    Some("refusal") => {
                        estimate.text(str_of(part, "refusal").unwrap_or(""));
                    }
                    // Audio and files: their size is unknown here.
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn openai_function_call(estimate: &mut PromptEstimator, function: &Value) {
    let name = str_of(function, "name").unwrap_or("");
    match function.get("arguments") {
        Some(Value::String(arguments)) => estimate.tool_call(name, arguments),
        Some(other) => estimate.tool_call(name, &other.to_string()),
        None => estimate.tool_call(name, ""),
    };
}

/// An OpenAI (or Ollama) tool: `{"type": "function", "function": {…}}` or the function
/// itself.
pub(crate) fn openai_tool(estimate: &mut PromptEstimator, tool: &Value) {
    let function = tool.get("function").unwrap_or(tool);
    estimate.tool(
        str_of(function, "name").unwrap_or(""),
        str_of(function, "description"),
        function.get("parameters").unwrap_or(&Value::Null),
    );
}

// Anthropic Messages.

fn anthropic(estimate: &mut PromptEstimator, request: &Value) {
    match request.get("system") {
        Some(Value::String(text)) => {
            estimate.message("system").text(text);
        }
        Some(Value::Array(blocks)) => {
            estimate.message("system");
            anthropic_blocks(estimate, blocks);
        }
        _ => {}
    }
    for message in array_of(request, "messages") {
        estimate.message(str_of(message, "role").unwrap_or(""));
        match message.get("content") {
            Some(Value::String(text)) => {
                estimate.text(text);
            }
            Some(Value::Array(blocks)) => anthropic_blocks(estimate, blocks),
            _ => {}
        }
    }
    for tool in array_of(request, "tools") {
        match tool.get("input_schema") {
            Some(schema) => estimate.tool(
                str_of(tool, "name").unwrap_or(""),
                str_of(tool, "description"),
                schema,
            ),
            // A server tool (`web_search_…`): the provider defines it.
            None => estimate.text(str_of(tool, "name").unwrap_or("")),
        };
    }
}

fn anthropic_blocks(estimate: &mut PromptEstimator, blocks: &[Value]) {
    for block in blocks {
        match str_of(block, "type") {
            Some("text") => {
                estimate.text(str_of(block, "text").unwrap_or(""));
            }
            Some("image") => {
                estimate.image(false);
            }
            Some("tool_use" | "server_tool_use") => {
                let name = str_of(block, "name").unwrap_or("");
                let input = block.get("input").map(Value::to_string).unwrap_or_default();
                estimate.tool_call(name, &input);
            }
            Some("tool_result") => match block.get("content") {
                Some(Value::String(text)) => {
                    estimate.text(text);
                }
                Some(Value::Array(inner)) => anthropic_blocks(estimate, inner),
                _ => {}
            },
            Some("thinking") => {
                estimate.text(str_of(block, "thinking").unwrap_or(""));
            }
            Some("document") => {
                // A plain-text document's text; a PDF's size is unknown here.
                if let Some(source) = block.get("source")
                    && str_of(source, "type") == Some("text")
                {
                    estimate.text(str_of(source, "data").unwrap_or(""));
                }
            }
            _ => {}
        }
    }
}

// Ollama chat.

fn ollama(estimate: &mut PromptEstimator, request: &Value) {
    for message in array_of(request, "messages") {
        estimate.message(str_of(message, "role").unwrap_or(""));
        if let Some(text) = str_of(message, "content") {
            estimate.text(text);
        }
        if let Some(thinking) = str_of(message, "thinking") {
            estimate.text(thinking);
        }
        for _ in array_of(message, "images") {
            estimate.image(false);
        }
        for call in array_of(message, "tool_calls") {
            if let Some(function) = call.get("function") {
                openai_function_call(estimate, function);
            }
        }
    }
    for tool in array_of(request, "tools") {
        openai_tool(estimate, tool);
    }
}
