//! Token accounting for the host and later filters: the request's prompt estimate, the
//! text the response generated, and the request attributes that report them (see the
//! crate doc, "Token accounting").

use nantian_llm_tokens as tokens;
use serde_json::Value;

use crate::api::Api;
use crate::canonical::{ChatResponse, Part, StreamEvent, Usage};

/// The model the client asked for (its request's `model`), set at the end of the request.
pub const MODEL: &str = "ai.model";
/// The BPE estimate of the prompt's tokens, set at the end of the request.
pub const ESTIMATED_INPUT_TOKENS: &str = "ai.estimated_input_tokens";
/// The prompt's tokens, set at the end of the response.
pub const INPUT_TOKENS: &str = "ai.input_tokens";
/// The generated tokens, set at the end of the response.
pub const OUTPUT_TOKENS: &str = "ai.output_tokens";
/// Where the response's counts come from: [`Source::Provider`] or [`Source::Estimate`].
pub const USAGE_SOURCE: &str = "ai.usage_source";

/// Generated text kept for counting (the same budget as prompts'): past this, further
/// bytes are only measured and their tokens extrapolated from the kept text's ratio.
const GENERATED_KEPT_BYTES: usize = tokens::EXACT_COUNT_BYTES;

/// The longest `ai.model` value: longer names are cut (no model has one).
const MAX_MODEL_BYTES: usize = 256;

/// What the request says, for the attributes and the response's estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEstimate {
    /// The model the client named; empty when it named none.
    pub model: String,
    pub input_tokens: u64,
}

/// Reads the client's request body (`None` if it is not JSON) and estimates its prompt.
pub fn estimate_request(client: Api, body: &[u8]) -> Option<RequestEstimate> {
    let request: Value = serde_json::from_slice(body).ok()?;
    let mut model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // An attribute value past the host's limit (4 KiB) would trap the call.
    if model.len() > MAX_MODEL_BYTES {
        let mut cut = MAX_MODEL_BYTES;
        while !model.is_char_boundary(cut) {
            cut -= 1;
        }
        model.truncate(cut);
    }
    let api = match client {
        Api::OpenAi => tokens::Api::OpenAi,
        Api::Anthropic => tokens::Api::Anthropic,
        Api::Ollama => tokens::Api::Ollama,
    };
    Some(RequestEstimate {
        model,
        input_tokens: tokens::estimate_request_json(api, &request),
    })
}

/// The text a response generated (text, and tool calls' names and arguments), kept to
/// count its tokens in case the provider reports no usage.
#[derive(Debug, Default)]
pub struct Generated {
    text: String,
    /// Bytes past [`GENERATED_KEPT_BYTES`], not kept.
    skipped_bytes: u64,
}

impl Generated {
    pub fn push(&mut self, text: &str) {
        let room = GENERATED_KEPT_BYTES.saturating_sub(self.text.len());
        if text.len() <= room {
            self.text.push_str(text);
            return;
        }
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(&text[..cut]);
        self.skipped_bytes += (text.len() - cut) as u64;
    }

    /// Takes what a stream event generated.
    pub fn event(&mut self, event: &StreamEvent<'_>) {
        match event {
            StreamEvent::Text(text) => self.push(text),
            StreamEvent::ToolCallStart { name, .. } => self.push(name),
            StreamEvent::ToolCallArguments(json) => self.push(json),
            _ => {}
        }
    }

    /// Takes what a whole response generated.
    pub fn response(&mut self, response: &ChatResponse) {
        for part in &response.content {
            match part {
                Part::Text(text) => self.push(text),
                Part::ToolCall(call) => {
                    self.push(&call.name);
                    self.push(&call.arguments.to_string());
                }
                Part::Image(_) | Part::ToolResult(_) => {}
            }
        }
    }

    /// The generated tokens, by BPE count.
    pub fn tokens(&self) -> u64 {
        let counted = tokens::count_text(&self.text);
        if self.skipped_bytes == 0 || self.text.is_empty() {
            return counted;
        }
        let kept = self.text.len() as u64;
        counted + (counted * self.skipped_bytes).div_ceil(kept)
    }
}

/// Where the reported counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The provider reported both counts.
    Provider,
    /// At least one count is this filter's estimate.
    Estimate,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Provider => "provider",
            Source::Estimate => "estimate",
        }
    }
}

/// The counts reported at the end of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub source: Source,
}

/// Each count as the provider reported it, else estimated: the input from the request,
/// the output from the generated text (counted only when needed).
pub fn report(usage: Usage, estimated_input: u64, generated: &Generated) -> Reported {
    let source = if usage.input_tokens.is_some() && usage.output_tokens.is_some() {
        Source::Provider
    } else {
        Source::Estimate
    };
    Reported {
        input_tokens: usage.input_tokens.unwrap_or(estimated_input),
        output_tokens: usage.output_tokens.unwrap_or_else(|| generated.tokens()),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::canonical::ToolCall;

    #[test]
    fn requests_give_their_model_and_estimate() {
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}]}"#;
        let estimate = estimate_request(Api::OpenAi, body).unwrap();
        // 3 per message + "user" (1) + "hello world" (2) + 3 priming.
        assert_eq!(
            estimate,
            RequestEstimate {
                model: "gpt-4o".into(),
                input_tokens: 9
            }
        );
        let anthropic = br#"{"model":"claude","system":"hello world","messages":[]}"#;
        // The system prompt is a message: 3 + "system" (1) + 2, and 3 priming.
        assert_eq!(
            estimate_request(Api::Anthropic, anthropic)
                .unwrap()
                .input_tokens,
            9
        );
        assert_eq!(estimate_request(Api::Ollama, b"not json"), None);
        let long = format!(r#"{{"model":"{}","messages":[]}}"#, "é".repeat(200));
        let model = estimate_request(Api::Ollama, long.as_bytes())
            .unwrap()
            .model;
        assert_eq!(model, "é".repeat(128));
    }

    #[test]
    fn generated_text_counts_text_and_tool_calls() {
        let mut generated = Generated::default();
        generated.event(&StreamEvent::Text(Cow::Borrowed("hello")));
        generated.event(&StreamEvent::Text(Cow::Borrowed(" world")));
        assert_eq!(generated.tokens(), 2);
        generated.event(&StreamEvent::ToolCallStart {
            id: Cow::Borrowed("c1"),
            name: Cow::Borrowed("get_weather"),
        });
        generated.event(&StreamEvent::ToolCallArguments(Cow::Borrowed(
            r#"{"city":"Paris"}"#,
        )));
        let mut whole = Generated::default();
        whole.response(&ChatResponse {
            content: vec![
                Part::Text("hello world".into()),
                Part::ToolCall(ToolCall {
                    id: "c1".into(),
                    name: "get_weather".into(),
                    arguments: serde_json::json!({"city": "Paris"}),
                }),
            ],
            ..ChatResponse::default()
        });
        assert_eq!(whole.tokens(), generated.tokens());
        assert!(generated.tokens() > 2);
    }

    #[test]
    fn long_outputs_are_extrapolated_past_the_kept_text() {
        let mut generated = Generated::default();
        let word = "token ";
        let words = 2 * GENERATED_KEPT_BYTES / word.len();
        for _ in 0..words {
            generated.push(word);
        }
        assert_eq!(generated.text.len(), GENERATED_KEPT_BYTES);
        let tokens = generated.tokens();
        // One token per word (" token" is one token, and "token" the first).
        let expected = words as u64;
        assert!(
            tokens.abs_diff(expected) <= 2,
            "{tokens} for {expected} words"
        );
    }

    #[test]
    fn provider_counts_win_and_gaps_are_estimated() {
        let mut generated = Generated::default();
        generated.push("hello world");
        let both = Usage {
            input_tokens: Some(10),
            output_tokens: Some(20),
            cached_input_tokens: None,
        };
        assert_eq!(
            report(both, 7, &generated),
            Reported {
                input_tokens: 10,
                output_tokens: 20,
                source: Source::Provider
            }
        );
        assert_eq!(
            report(Usage::default(), 7, &generated),
            Reported {
                input_tokens: 7,
                output_tokens: 2,
                source: Source::Estimate
            }
        );
        let input_only = Usage {
            input_tokens: Some(10),
            ..Usage::default()
        };
        assert_eq!(
            report(input_only, 7, &generated),
            Reported {
                input_tokens: 10,
                output_tokens: 2,
                source: Source::Estimate
            }
        );
    }
}
