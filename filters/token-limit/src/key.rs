//! Whose budget a request spends: its key, read from a header or the body, and hashed
//! before it names a counter.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where a request's budget key comes from (`key.type` in the configuration). A request
/// without one spends the budget shared by every such request: the empty key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The first value of this header (lower-case name), trimmed.
    Header(String),
    /// The client's API key: `Authorization: Bearer <key>`, else `x-api-key` (Anthropic),
    /// else `api-key` (Azure OpenAI).
    ApiKey,
    /// The body's `user` (OpenAI), else its `metadata.user_id` (Anthropic).
    User,
    /// The body's `model`.
    Model,
}

impl KeySource {
    /// The key of a request whose headers `header` reads and whose body is `body` (`None`
    /// when it is not JSON or was too large to read).
    pub fn value(&self, header: impl Fn(&str) -> Option<String>, body: Option<&Value>) -> String {
        let text = |pointer: &str| {
            body.and_then(|body| body.pointer(pointer))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let key = match self {
            KeySource::Header(name) => header(name),
            KeySource::ApiKey => header("authorization")
                .and_then(|value| bearer_token(&value).map(str::to_owned))
                .or_else(|| header("x-api-key"))
                .or_else(|| header("api-key")),
            KeySource::User => text("/user").or_else(|| text("/metadata/user_id")),
            KeySource::Model => text("/model"),
        };
        key.map(|key| key.trim().to_owned()).unwrap_or_default()
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The SHA-256 of a key, in lower-case hex: what names its counters, so raw API keys and
/// user ids never reach a counter store.
pub fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn header_keys_are_the_trimmed_first_value() {
        let source = KeySource::Header("x-tenant".into());
        assert_eq!(
            source.value(headers(&[("x-tenant", " team-a ")]), None),
            "team-a"
        );
        assert_eq!(source.value(headers(&[("x-other", "b")]), None), "");
    }

    #[test]
    fn api_keys_come_from_bearer_then_x_api_key_then_api_key() {
        let key = |pairs: &[(&str, &str)]| KeySource::ApiKey.value(headers(pairs), None);
        assert_eq!(key(&[("authorization", "Bearer sk-1")]), "sk-1");
        assert_eq!(key(&[("authorization", "bearer  sk-2 ")]), "sk-2");
        assert_eq!(
            key(&[("authorization", "Bearer sk-1"), ("x-api-key", "ak-1")]),
            "sk-1"
        );
        assert_eq!(
            key(&[
                ("authorization", "Basic dXNlcjpwdw=="),
                ("x-api-key", "ak-1")
            ]),
            "ak-1"
        );
        assert_eq!(key(&[("x-api-key", "ak-1"), ("api-key", "az-1")]), "ak-1");
        assert_eq!(key(&[("api-key", "az-1")]), "az-1");
        assert_eq!(key(&[("authorization", "Bearer")]), "");
        assert_eq!(key(&[]), "");
    }

    #[test]
    fn user_and_model_keys_come_from_the_body() {
        let none = headers(&[]);
        let openai = json!({"model": "gpt-4o", "user": "u-1", "messages": []});
        let anthropic = json!({"model": "claude", "metadata": {"user_id": "u-2"}});
        assert_eq!(KeySource::User.value(&none, Some(&openai)), "u-1");
        assert_eq!(KeySource::User.value(&none, Some(&anthropic)), "u-2");
        assert_eq!(KeySource::User.value(&none, Some(&json!({"user": 7}))), "");
        assert_eq!(KeySource::User.value(&none, None), "");
        assert_eq!(KeySource::Model.value(&none, Some(&openai)), "gpt-4o");
        assert_eq!(KeySource::Model.value(&none, Some(&json!([1]))), "");
    }

    #[test]
    fn hashes_are_sha256_hex_and_never_contain_the_key() {
        assert_eq!(
            hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let key = "sk-proj-0123456789";
        assert!(!hash(key).contains(key));
        assert_ne!(hash("team-a"), hash("team-b"));
    }
}
