//! The binding's configuration, written by the controller for each AIService backend:
//!
//! ```json
//! {"provider": "anthropic", "basePath": "/anthropic", "defaultMaxTokens": 4096}
//! ```
//!
//! - `provider` (required): the backend's API, `openai`, `anthropic` or `ollama`.
//! - `basePath`: the path of the backend's endpoint URL (`https://api.openai.com/v1` has
//!   `/v1`), which the API's endpoint is appended to; empty or absent for none.
//! - `defaultMaxTokens`: the `max_tokens` sent to Anthropic (which requires it) when the
//!   client gave no limit; 4096 when absent.
//!
//! Unknown keys are rejected, so a misspelt key is a rejected configuration rather than
//! a setting silently ignored.

use serde::Deserialize;

use crate::api::Api;

const DEFAULT_MAX_TOKENS: u64 = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    provider: Api,
    #[serde(default)]
    base_path: String,
    #[serde(default)]
    default_max_tokens: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The backend's API.
    pub provider: Api,
    /// Empty, or `/…` without a trailing slash.
    pub base_path: String,
    pub default_max_tokens: u64,
}

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        let fields: Fields = serde_json::from_slice(bytes)
            .map_err(|e| format!("ai-adapter config is not valid: {e}"))?;
        Ok(Config {
            provider: fields.provider,
            base_path: base_path(&fields.base_path)?,
            default_max_tokens: match fields.default_max_tokens {
                None => DEFAULT_MAX_TOKENS,
                Some(0) => return Err("defaultMaxTokens must be at least 1".into()),
                Some(n) => n,
            },
        })
    }
}

/// Normalises `basePath` to empty or `/segment/…` without a trailing slash, so joining
/// it with an endpoint (`/v1/messages`) never doubles or drops a slash.
fn base_path(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    // It becomes part of the request line: a query, fragment, space or control character
    // there would change the request's meaning or make it invalid.
    if let Some(bad) = trimmed
        .chars()
        .find(|c| matches!(c, '?' | '#') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "basePath {raw:?} must be a plain path (found {bad:?})"
        ));
    }
    Ok(format!("/{trimmed}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_provider_and_normalises_the_base_path() {
        let config = Config::parse(br#"{"provider":"openai","basePath":"/v1/"}"#).unwrap();
        assert_eq!(
            config,
            Config {
                provider: Api::OpenAi,
                base_path: "/v1".into(),
                default_max_tokens: 4096
            }
        );
        let config =
            Config::parse(br#"{"provider":"anthropic","basePath":"","defaultMaxTokens":1024}"#)
                .unwrap();
        assert_eq!(config.provider, Api::Anthropic);
        assert_eq!(config.base_path, "");
        assert_eq!(config.default_max_tokens, 1024);
        let config = Config::parse(br#"{"provider":"ollama","basePath":"ollama"}"#).unwrap();
        assert_eq!(
            (config.provider, config.base_path.as_str()),
            (Api::Ollama, "/ollama")
        );
        assert_eq!(
            Config::parse(br#"{"provider":"ollama","basePath":"/"}"#)
                .unwrap()
                .base_path,
            ""
        );
    }

    #[test]
    fn rejects_bad_configurations() {
        for (bad, expected) in [
            (r#"{"provider":"gemini"}"#, "unknown variant"),
            (r#"{"provider":"OpenAI"}"#, "unknown variant"),
            (r#"{}"#, "missing field `provider`"),
            (
                r#"{"provider":"openai","base_path":"/v1"}"#,
                "unknown field",
            ),
            (
                r#"{"provider":"openai","basePath":"/v1?x=1"}"#,
                "plain path",
            ),
            (r#"{"provider":"openai","basePath":"/a b"}"#, "plain path"),
            (
                r#"{"provider":"openai","defaultMaxTokens":0}"#,
                "at least 1",
            ),
            (
                r#"{"provider":"openai","defaultMaxTokens":-5}"#,
                "not valid",
            ),
            ("[]", "not valid"),
            ("", "not valid"),
        ] {
            let err = Config::parse(bad.as_bytes()).unwrap_err();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }
}
