//! The request body the provider gets: translated when the client speaks another API,
//! else the client's own bytes.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use crate::api::Api;
use crate::codec;
use crate::config::Config;
use crate::error::ApiError;
use crate::wire::parse_request;

/// The body to send upstream, and what the response phases need to know of the request.
#[derive(Debug, PartialEq)]
pub struct PreparedRequest {
    pub body: Vec<u8>,
    /// The client asked for a streamed response.
    pub stream: bool,
    /// The client wants the token usage at the end of its stream.
    pub stream_usage: bool,
}

/// What a request in the provider's own API must have, read without building it: the
/// body then passes on untouched, fields this filter does not know included.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "model")]
    _model: String,
    #[serde(rename = "messages")]
    _messages: Vec<IgnoredAny>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<EnvelopeStreamOptions>,
}

#[derive(Deserialize)]
struct EnvelopeStreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Prepares the client's whole request `body` for the configured provider. The error is
/// the 400 to answer the client with.
pub fn prepare(client: Api, config: &Config, body: Vec<u8>) -> Result<PreparedRequest, ApiError> {
    if client == config.provider {
        return pass_through(client, body);
    }
    let request = codec::decode_request(client, &body)?;
    // The client's bytes are no longer needed; free them before the new body is built.
    drop(body);
    Ok(PreparedRequest {
        body: codec::encode_request(&request, config)?,
        stream: request.stream,
        stream_usage: request.stream_usage,
    })
}

fn pass_through(api: Api, body: Vec<u8>) -> Result<PreparedRequest, ApiError> {
    let envelope: Envelope = parse_request(&body)?;
    let stream = envelope.stream.unwrap_or(api.streams_by_default());
    let include_usage = envelope
        .stream_options
        .and_then(|options| options.include_usage)
        .unwrap_or(false);
    let body = if api == Api::OpenAi && stream && !include_usage {
        with_stream_usage(&body)?
    } else {
        body
    };
    Ok(PreparedRequest {
        body,
        stream,
        // Anthropic and Ollama always report usage in their streams.
        stream_usage: api != Api::OpenAi || include_usage,
    })
}

/// The OpenAI request with `stream_options.include_usage: true`, so the stream reports
/// its token usage (which the client's response then leaves out again).
fn with_stream_usage(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let mut request: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("invalid request body: {e}")))?;
    let options = request
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    if let Value::Object(options) = options {
        options.insert("include_usage".into(), Value::Bool(true));
    }
    Ok(serde_json::to_vec(&request).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(provider: Api) -> Config {
        Config {
            provider,
            base_path: String::new(),
            default_max_tokens: 333,
        }
    }

    fn body(value: Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    #[test]
    fn same_api_passes_the_bytes_untouched() {
        let original = br#"{"model":"claude","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"thinking":{"type":"enabled"},"stream":true}"#;
        let prepared = prepare(Api::Anthropic, &config(Api::Anthropic), original.to_vec()).unwrap();
        assert_eq!(prepared.body, original);
        assert!(prepared.stream && prepared.stream_usage);

        let ollama = br#"{"model":"llama3.2","messages":[],"format":"json"}"#;
        let prepared = prepare(Api::Ollama, &config(Api::Ollama), ollama.to_vec()).unwrap();
        assert_eq!(prepared.body, ollama);
        assert!(prepared.stream, "Ollama streams by default");
    }

    #[test]
    fn openai_streams_always_ask_for_usage_and_remember_who_asked() {
        let original = body(json!({"model": "gpt-4o", "messages": [], "stream": true,
            "stream_options": {"other": 1}, "logprobs": true}));
        let prepared = prepare(Api::OpenAi, &config(Api::OpenAi), original).unwrap();
        let sent: Value = serde_json::from_slice(&prepared.body).unwrap();
        assert_eq!(
            sent,
            json!({"model": "gpt-4o", "messages": [], "stream": true,
                "stream_options": {"other": 1, "include_usage": true}, "logprobs": true})
        );
        assert!(prepared.stream && !prepared.stream_usage);

        let asked = br#"{"model":"gpt-4o","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#;
        let prepared = prepare(Api::OpenAi, &config(Api::OpenAi), asked.to_vec()).unwrap();
        assert_eq!(prepared.body, asked);
        assert!(prepared.stream_usage);

        let whole = br#"{"model":"gpt-4o","messages":[]}"#;
        let prepared = prepare(Api::OpenAi, &config(Api::OpenAi), whole.to_vec()).unwrap();
        assert_eq!(prepared.body, whole);
        assert!(!prepared.stream);
    }

    #[test]
    fn other_apis_are_translated() {
        let openai = body(json!({"model": "claude", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}));
        let prepared = prepare(Api::OpenAi, &config(Api::Anthropic), openai).unwrap();
        let sent: Value = serde_json::from_slice(&prepared.body).unwrap();
        assert_eq!(
            sent,
            json!({"model": "claude", "max_tokens": 333, "stream": true,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
        );
        assert!(prepared.stream && !prepared.stream_usage);
    }

    #[test]
    fn unreadable_requests_are_refused_either_way() {
        for provider in [Api::OpenAi, Api::Anthropic] {
            for (bad, expected) in [
                (&b"{\"model\": 1"[..], "invalid request body"),
                (b"\"text\"", "must be a JSON object"),
                (br#"{"model":"m"}"#, "missing field `messages`"),
                (br#"{"messages":[]}"#, "missing field `model`"),
                (br#"{"model":"m","messages":{}}"#, "invalid type: map"),
            ] {
                let err = prepare(Api::OpenAi, &config(provider), bad.to_vec()).unwrap_err();
                assert!(
                    err.message.contains(expected),
                    "{provider:?} {bad:?}: {err:?}"
                );
            }
        }
    }
}
