//! Errors in each API's shape: the provider's error bodies read leniently into one
//! [`ApiError`], and written back in the client's shape.
//!
//! - OpenAI: `{"error": {"message", "type", "param": null, "code"}}`
//! - Anthropic: `{"type": "error", "error": {"type", "message"}}`
//! - Ollama: `{"error": "message"}`

use serde::Serialize;
use serde_json::Value;

use crate::api::Api;

/// What went wrong, in terms every API has a name for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RequestTooLarge,
    RateLimit,
    /// The provider failed (a 5xx), or sent something unreadable.
    Api,
    /// The provider is overloaded (Anthropic's 529).
    Overloaded,
    Timeout,
}

impl ErrorKind {
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            401 => ErrorKind::Authentication,
            403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            413 => ErrorKind::RequestTooLarge,
            429 => ErrorKind::RateLimit,
            503 | 529 => ErrorKind::Overloaded,
            504 => ErrorKind::Timeout,
            500..=599 => ErrorKind::Api,
            _ => ErrorKind::InvalidRequest,
        }
    }

    /// The kind an error `type` names, for the names precise enough to trust over the
    /// status (Anthropic's, which OpenAI shares in part).
    fn from_type_name(name: &str) -> Option<ErrorKind> {
        Some(match name {
            "invalid_request_error" => ErrorKind::InvalidRequest,
            "authentication_error" => ErrorKind::Authentication,
            "permission_error" => ErrorKind::Permission,
            "not_found_error" => ErrorKind::NotFound,
            "request_too_large" => ErrorKind::RequestTooLarge,
            "rate_limit_error" | "insufficient_quota" => ErrorKind::RateLimit,
            "api_error" | "server_error" => ErrorKind::Api,
            "overloaded_error" => ErrorKind::Overloaded,
            "timeout_error" => ErrorKind::Timeout,
            _ => return None,
        })
    }

    fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::RequestTooLarge => {
                "invalid_request_error"
            }
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Api | ErrorKind::Overloaded | ErrorKind::Timeout => "server_error",
        }
    }

    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Api => "api_error",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::Timeout => "timeout_error",
        }
    }
}

/// An error, whoever reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// OpenAI's machine-readable `code`, when the provider gave one (or we have one).
    pub code: Option<String>,
}

/// The longest provider body text quoted in an error message.
const MAX_QUOTED_BODY: usize = 1000;

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            code: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::InvalidRequest, message)
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Reads a provider's error body, whatever its shape: any of the three APIs', the
    /// `{"message"}` / `{"detail"}` of other servers, or plain text.
    pub fn from_provider(status: u16, body: &[u8]) -> ApiError {
        let fallback_kind = ErrorKind::from_status(status);
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("the backend answered with status {status}")
            } else {
                truncate(text, MAX_QUOTED_BODY).to_string()
            };
            return ApiError::new(fallback_kind, message);
        };
        ApiError::from_value(&value, fallback_kind).unwrap_or_else(|| {
            ApiError::new(
                fallback_kind,
                truncate(&value.to_string(), MAX_QUOTED_BODY).to_string(),
            )
        })
    }

    /// An error object found in a JSON value (a body, or an error event of a stream):
    /// its `error` member, else a top-level `message` or `detail`.
    pub fn from_value(value: &Value, fallback_kind: ErrorKind) -> Option<ApiError> {
        if let Some(member) = value.get("error") {
            return ApiError::from_error_member(member, fallback_kind);
        }
        let message = value
            .get("message")
            .or_else(|| value.get("detail"))
            .and_then(Value::as_str)?;
        Some(ApiError::new(fallback_kind, message))
    }

    /// An `error` member: an object with `message`, `type` and `code` (OpenAI,
    /// Anthropic), or the message itself (Ollama).
    pub fn from_error_member(member: &Value, fallback_kind: ErrorKind) -> Option<ApiError> {
        let text = |name: &str| member.get(name).and_then(Value::as_str);
        match member {
            Value::String(message) => Some(ApiError::new(fallback_kind, message.clone())),
            Value::Object(_) => {
                let kind = text("type")
                    .and_then(ErrorKind::from_type_name)
                    .unwrap_or(fallback_kind);
                Some(ApiError {
                    kind,
                    message: text("message")?.to_string(),
                    code: text("code").map(str::to_string),
                })
            }
            _ => None,
        }
    }

    /// The error as the body `client` expects.
    pub fn to_body(&self, client: Api) -> Vec<u8> {
        let body = match client {
            Api::OpenAi => serde_json::to_vec(&OpenAiError {
                error: OpenAiErrorBody {
                    message: &self.message,
                    kind: self.kind.openai_type(),
                    param: None,
                    code: self.code.as_deref(),
                },
            }),
            Api::Anthropic => serde_json::to_vec(&AnthropicError {
                kind: "error",
                error: AnthropicErrorBody {
                    kind: self.kind.anthropic_type(),
                    message: &self.message,
                },
            }),
            Api::Ollama => serde_json::to_vec(&OllamaError {
                error: &self.message,
            }),
        };
        // Serializing these plain structs cannot fail.
        body.unwrap_or_default()
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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
    code: Option<&'a str>,
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

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn reads_each_apis_error_shape() {
        let openai = ApiError::from_provider(
            429,
            br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(openai.kind, ErrorKind::RateLimit);
        assert_eq!(openai.message, "Rate limit reached");
        assert_eq!(openai.code.as_deref(), Some("rate_limit_exceeded"));

        let anthropic = ApiError::from_provider(
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(anthropic.kind, ErrorKind::Overloaded);
        assert_eq!(anthropic.message, "Overloaded");

        let ollama = ApiError::from_provider(404, br#"{"error":"model \"llama9\" not found"}"#);
        assert_eq!(ollama.kind, ErrorKind::NotFound);
        assert_eq!(ollama.message, r#"model "llama9" not found"#);

        let other = ApiError::from_provider(422, br#"{"detail":"bad field"}"#);
        assert_eq!(
            (other.kind, other.message.as_str()),
            (ErrorKind::InvalidRequest, "bad field")
        );
    }

    #[test]
    fn unreadable_bodies_keep_their_text_or_status() {
        let html = ApiError::from_provider(502, b"<html>Bad Gateway</html>");
        assert_eq!(html.kind, ErrorKind::Api);
        assert_eq!(html.message, "<html>Bad Gateway</html>");
        let empty = ApiError::from_provider(500, b"");
        assert_eq!(empty.message, "the backend answered with status 500");
        let long = ApiError::from_provider(500, "é".repeat(1000).as_bytes());
        assert!(long.message.len() <= MAX_QUOTED_BODY);
        let no_message = ApiError::from_provider(400, br#"{"oops":true}"#);
        assert_eq!(no_message.message, r#"{"oops":true}"#);
    }

    #[test]
    fn writes_each_clients_shape() {
        let error = ApiError::new(ErrorKind::Authentication, "invalid x-api-key");
        assert_eq!(
            json(&error.to_body(Api::OpenAi)),
            serde_json::json!({"error": {"message": "invalid x-api-key",
                "type": "authentication_error", "param": null, "code": null}})
        );
        assert_eq!(
            json(&error.to_body(Api::Anthropic)),
            serde_json::json!({"type": "error", "error": {"type": "authentication_error",
                "message": "invalid x-api-key"}})
        );
        assert_eq!(
            json(&error.to_body(Api::Ollama)),
            serde_json::json!({"error": "invalid x-api-key"})
        );
    }

    #[test]
    fn kinds_map_to_each_apis_names() {
        for (status, openai, anthropic) in [
            (400, "invalid_request_error", "invalid_request_error"),
            (401, "authentication_error", "authentication_error"),
            (403, "permission_error", "permission_error"),
            (404, "invalid_request_error", "not_found_error"),
            (429, "rate_limit_error", "rate_limit_error"),
            (500, "server_error", "api_error"),
            (529, "server_error", "overloaded_error"),
        ] {
            let kind = ErrorKind::from_status(status);
            assert_eq!(kind.openai_type(), openai, "{status}");
            assert_eq!(kind.anthropic_type(), anthropic, "{status}");
        }
    }
}
