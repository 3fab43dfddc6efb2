//! A prompt's token estimate, built up from its parts: messages (role, name, texts,
//! images, tool calls) and tool definitions.

use serde_json::Value;

use crate::count_text;

/// Prompt text counted exactly before the rest is extrapolated (see
/// [`PromptEstimator`]): about 8 ms of counting in a filter instance.
pub const EXACT_COUNT_BYTES: usize = 32 << 10;

/// Tokens around every message (`<|start|>{role}<|message|>…<|end|>` less the role).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens a message's `name` adds besides its own.
pub const TOKENS_PER_NAME: u64 = 1;
/// Tokens priming the reply (`<|start|>assistant<|message|>`), once per prompt.
pub const REPLY_PRIMING: u64 = 3;
/// An image of unknown size: OpenAI's count for a 1024×1024 image at high detail
/// (85 + 4 tiles × 170). Anthropic charges about (width × height) / 750, so 1.4 tokens
/// per 1,000 pixels: 1,398 for 1024×1024.
pub const IMAGE_TOKENS: u64 = 765;
/// An image sent with `detail: low` (OpenAI's fixed count).
pub const LOW_DETAIL_IMAGE_TOKENS: u64 = 85;
/// Tokens around a tool call in the conversation (besides its name and arguments).
pub const TOKENS_PER_TOOL_CALL: u64 = 3;

// How OpenAI renders tool definitions for GPT-4o, as the OpenAI cookbook measured it
// against the API ("How to count tokens with tiktoken", section 7).
const FUNCTION_INIT: u64 = 7;
const PROPERTIES_INIT: u64 = 3;
const PROPERTY_KEY: u64 = 3;
/// Enum lists cost 3 less than their items suggest.
const ENUM_INIT_SAVING: u64 = 3;
const ENUM_ITEM: u64 = 3;
const FUNCTIONS_END: u64 = 12;

/// A prompt's token count, estimated part by part in the order the parts come:
/// [`message`](Self::message) starts a message, the calls after it add to that message.
///
/// The counts follow how OpenAI renders a conversation (its cookbook's
/// `num_tokens_from_messages` and `num_tokens_for_tools`, which match the API's
/// `prompt_tokens` exactly for GPT-4o): 3 tokens per message plus its role, name and
/// content, 3 for the reply priming, and tool definitions as name, description and one
/// line per parameter. Other providers' tokenizers differ: for them it is an estimate.
///
/// Counting costs time (about 4 MB/s in a Wasm instance): the first
/// [`EXACT_COUNT_BYTES`] of text are counted exactly, and the tokens of any text past
/// them are extrapolated from the ratio of tokens to bytes of the counted text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptEstimator {
    tokens: u64,
    has_tools: bool,
    /// Bytes still to count exactly.
    exact_left: usize,
    counted_bytes: u64,
    counted_tokens: u64,
    /// Text past the exact budget, extrapolated at the end.
    uncounted_bytes: u64,
}

impl Default for PromptEstimator {
    fn default() -> Self {
        PromptEstimator::with_exact_bytes(EXACT_COUNT_BYTES)
    }
}

impl PromptEstimator {
    pub fn new() -> Self {
        PromptEstimator::default()
    }

    /// An estimator that counts the first `exact_bytes` of text exactly.
    pub fn with_exact_bytes(exact_bytes: usize) -> Self {
        PromptEstimator {
            tokens: 0,
            has_tools: false,
            exact_left: exact_bytes,
            counted_bytes: 0,
            counted_tokens: 0,
            uncounted_bytes: 0,
        }
    }

    /// Counts `text` within the exact budget, and measures the rest.
    fn add(&mut self, text: &str) {
        let mut cut = text.len().min(self.exact_left);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let tokens = count_text(&text[..cut]);
        self.tokens += tokens;
        self.counted_tokens += tokens;
        self.counted_bytes += cut as u64;
        self.exact_left -= cut;
        self.uncounted_bytes += (text.len() - cut) as u64;
    }

    /// Starts a message from `role` (`system`, `user`, `assistant`, `tool`, …).
    pub fn message(&mut self, role: &str) -> &mut Self {
        self.tokens += TOKENS_PER_MESSAGE;
        self.add(role);
        self
    }

    /// The message's `name` (OpenAI's participant names).
    pub fn name(&mut self, name: &str) -> &mut Self {
        self.tokens += TOKENS_PER_NAME;
        self.add(name);
        self
    }

    /// Text of the message: content, a tool result, reasoning sent back.
    pub fn text(&mut self, text: &str) -> &mut Self {
        self.add(text);
        self
    }

    /// An image of the message; `low_detail` for OpenAI's `detail: low`.
    pub fn image(&mut self, low_detail: bool) -> &mut Self {
        self.tokens += if low_detail {
            LOW_DETAIL_IMAGE_TOKENS
        } else {
            IMAGE_TOKENS
        };
        self
    }

    /// A tool call the assistant made earlier in the conversation, with its arguments as
    /// JSON text.
    pub fn tool_call(&mut self, name: &str, arguments: &str) -> &mut Self {
        self.tokens += TOKENS_PER_TOOL_CALL;
        self.add(name);
        self.add(arguments);
        self
    }

    /// A JSON value sent as it is (tool call arguments as an object, structured
    /// content): its compact JSON text.
    pub fn json(&mut self, value: &Value) -> &mut Self {
        match value {
            Value::String(text) => self.text(text),
            Value::Null => self,
            other => self.text(&other.to_string()),
        }
    }

    /// A tool (function) the model may call: `parameters` is its JSON Schema.
    ///
    /// Counted as OpenAI renders it: the name and description, then for each top-level
    /// property its name, type, description and enum values. Whatever else the schema
    /// says (nested objects, `items`, `anyOf`, `$defs`, …) is counted as its JSON text.
    pub fn tool(&mut self, name: &str, description: Option<&str>, parameters: &Value) -> &mut Self {
        self.has_tools = true;
        let description = description.unwrap_or("");
        let description = description.strip_suffix('.').unwrap_or(description);
        self.tokens += FUNCTION_INIT;
        self.add(&format!("{name}:{description}"));
        let Value::Object(schema) = parameters else {
            return self;
        };
        for (key, value) in schema {
            match key.as_str() {
                "type" | "required" | "properties" | "additionalProperties" => {}
                _ => {
                    self.json(value);
                }
            }
        }
        let Some(Value::Object(properties)) = schema.get("properties") else {
            return self;
        };
        if properties.is_empty() {
            return self;
        }
        self.tokens += PROPERTIES_INIT;
        for (key, property) in properties {
            self.property(key, property);
        }
        self
    }

    fn property(&mut self, key: &str, property: &Value) {
        self.tokens += PROPERTY_KEY;
        let Value::Object(property) = property else {
            self.add(key);
            return;
        };
        let kind = match property.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            Some(Value::Array(kinds)) => kinds
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("|"),
            _ => String::new(),
        };
        let description = property
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
        let description = description.strip_suffix('.').unwrap_or(description);
        self.add(&format!("{key}:{kind}:{description}"));
        if let Some(Value::Array(items)) = property.get("enum") {
            self.tokens = self.tokens.saturating_sub(ENUM_INIT_SAVING);
            for item in items {
                self.tokens += ENUM_ITEM;
                self.json(item);
            }
        }
        for (name, value) in property {
            if !matches!(name.as_str(), "type" | "description" | "enum") {
                self.add(name);
                self.json(value);
            }
        }
    }

    /// The prompt's tokens: the parts so far, the reply priming and, with tools, the end
    /// of their definitions.
    pub fn total(&self) -> u64 {
        let tools_end = if self.has_tools { FUNCTIONS_END } else { 0 };
        self.tokens + self.extrapolated() + REPLY_PRIMING + tools_end
    }

    /// The tokens of the text past the exact budget, at the counted text's ratio (or 4
    /// bytes a token, if nothing was counted).
    fn extrapolated(&self) -> u64 {
        if self.uncounted_bytes == 0 {
            0
        } else if self.counted_bytes == 0 {
            self.uncounted_bytes.div_ceil(4)
        } else {
            (self.uncounted_bytes * self.counted_tokens).div_ceil(self.counted_bytes)
        }
    }
}

/// A prompt's tokens from plain parts: `messages` as (role, text) in order (a system
/// prompt is a `system` message) and `tools` as OpenAI function definitions
/// (`{"name", "description", "parameters"}`, or wrapped as `{"type": "function",
/// "function": {…}}`).
pub fn estimate_prompt<'a>(
    messages: impl IntoIterator<Item = (&'a str, &'a str)>,
    tools: impl IntoIterator<Item = &'a Value>,
) -> u64 {
    let mut estimate = PromptEstimator::new();
    for (role, text) in messages {
        estimate.message(role).text(text);
    }
    for tool in tools {
        crate::json::openai_tool(&mut estimate, tool);
    }
    estimate.total()
}
