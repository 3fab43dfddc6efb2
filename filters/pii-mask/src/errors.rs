//! The 400 a rejected request gets, in the error format of the client's API. It names
//! the kinds of personal data found, never the data.
//!
//! - OpenAI (and unknown APIs): `{"error": {"message", "type": "invalid_request_error",
//!   "param": null, "code": "pii_detected"}}`
//! - Anthropic: `{"type": "error", "error": {"type": "invalid_request_error", "message"}}`
//! - Ollama: `{"error": "message"}`

use serde::Serialize;

use crate::api::Api;

pub const STATUS: u16 = 400;
pub const CONTENT_TYPE: &str = "application/json";

/// The error message for findings of these detectors (by name).
pub fn message(kinds: &[&str]) -> String {
    format!(
        "The request was blocked because it contains personal data: {}.",
        kinds.join(", ")
    )
}

/// The body of the rejection, in `api`'s error format.
pub fn rejection_body(api: Option<Api>, kinds: &[&str]) -> Vec<u8> {
    let message = message(kinds);
    let body = match api {
        Some(Api::OpenAi) | None => serde_json::to_vec(&OpenAiError {
            error: OpenAiErrorBody {
                message: &message,
                kind: "invalid_request_error",
                param: None,
                code: "pii_detected",
            },
        }),
        Some(Api::Anthropic) => serde_json::to_vec(&AnthropicError {
            kind: "error",
            error: AnthropicErrorBody {
                kind: "invalid_request_error",
                message: &message,
            },
        }),
        Some(Api::Ollama) => serde_json::to_vec(&OllamaError { error: &message }),
    };
    // Plain structs of strings always serialize.
    body.unwrap_or_default()
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorBody<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: &'static str,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicErrorBody<'a>,
}

#[derive(Serialize)]
struct AnthropicErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct OllamaError<'a> {
    error: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn body(api: Option<Api>) -> Value {
        serde_json::from_slice(&rejection_body(api, &["email", "credit_card"])).unwrap()
    }

    #[test]
    fn each_api_gets_its_error_shape() {
        let message =
            "The request was blocked because it contains personal data: email, credit_card.";
        let openai = json!({"error": {"message": message, "type": "invalid_request_error",
            "param": null, "code": "pii_detected"}});
        assert_eq!(body(Some(Api::OpenAi)), openai);
        assert_eq!(body(None), openai);
        assert_eq!(
            body(Some(Api::Anthropic)),
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
        );
        assert_eq!(body(Some(Api::Ollama)), json!({"error": message}));
    }
}
