//! The three LLM APIs: which one a client speaks (from its request path), and where and
//! how each one is reached.

use serde::Deserialize;

/// An LLM chat API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// OpenAI Chat Completions (`POST /v1/chat/completions`), and the many servers that
    /// copy it.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic Messages (`POST /v1/messages`).
    Anthropic,
    /// Ollama's native chat (`POST /api/chat`).
    Ollama,
}

/// The content type of a whole JSON body, in every API.
pub const JSON: &str = "application/json";

impl Api {
    /// The API a client speaks, from the path it called (the query is ignored). Clients
    /// put their own prefix in front (`/v1`, `/openai/v1`, a route prefix), so only the
    /// end of the path counts.
    pub fn from_client_path(path_and_query: &str) -> Option<Api> {
        let path = path_and_query
            .split_once('?')
            .map_or(path_and_query, |(path, _)| path);
        let path = path.strip_suffix('/').unwrap_or(path);
        if path.ends_with("/chat/completions") {
            Some(Api::OpenAi)
        } else if path.ends_with("/messages") {
            Some(Api::Anthropic)
        } else if path.ends_with("/api/chat") {
            Some(Api::Ollama)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
            Api::Ollama => "ollama",
        }
    }

    /// The endpoint path below the provider's base path.
    fn endpoint(self) -> &'static str {
        match self {
            Api::OpenAi => "/chat/completions",
            Api::Anthropic => "/v1/messages",
            Api::Ollama => "/api/chat",
        }
    }

    /// The path (and the client's query) to send to this provider, whose endpoint URL has
    /// the path `base_path` (normalised: empty, or `/…` without a trailing slash).
    pub fn upstream_path(self, base_path: &str, client_path_and_query: &str) -> String {
        let query = client_path_and_query
            .split_once('?')
            .map(|(_, query)| query);
        let mut path = format!("{base_path}{}", self.endpoint());
        if let Some(query) = query {
            path.push('?');
            path.push_str(query);
        }
        path
    }

    /// The content type of this API's streamed responses.
    pub fn stream_content_type(self) -> &'static str {
        match self {
            Api::OpenAi | Api::Anthropic => "text/event-stream",
            Api::Ollama => "application/x-ndjson",
        }
    }

    /// Whether a stream flag absent from a request means streaming (Ollama's default).
    pub fn streams_by_default(self) -> bool {
        self == Api::Ollama
    }

    /// Whether this API's streams are server-sent events (else NDJSON).
    pub fn streams_sse(self) -> bool {
        self != Api::Ollama
    }

    /// A response status the client's API does not know, replaced by its nearest
    /// equivalent (Anthropic's 529 "overloaded" is a 503 to anyone else).
    pub fn client_status(self, status: u16) -> u16 {
        match (self, status) {
            (Api::OpenAi | Api::Ollama, 529) => 503,
            _ => status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_api_comes_from_the_end_of_the_path() {
        for (path, api) in [
            ("/v1/chat/completions", Some(Api::OpenAi)),
            ("/openai/v1/chat/completions?x=1", Some(Api::OpenAi)),
            ("/chat/completions/", Some(Api::OpenAi)),
            ("/v1/messages", Some(Api::Anthropic)),
            ("/anthropic/v1/messages?beta=true", Some(Api::Anthropic)),
            ("/api/chat", Some(Api::Ollama)),
            ("/ollama/api/chat", Some(Api::Ollama)),
            ("/v1/completions", None),
            ("/v1/embeddings", None),
            ("/api/generate", None),
            ("/v1/messages/count_tokens", None),
            ("/x?path=/v1/messages", None),
        ] {
            assert_eq!(Api::from_client_path(path), api, "{path}");
        }
    }

    #[test]
    fn upstream_paths_join_base_endpoint_and_query() {
        assert_eq!(
            Api::OpenAi.upstream_path("/v1", "/chat/completions"),
            "/v1/chat/completions"
        );
        assert_eq!(
            Api::Anthropic.upstream_path("", "/x/chat/completions?a=1&b=2"),
            "/v1/messages?a=1&b=2"
        );
        assert_eq!(
            Api::Ollama.upstream_path("/ollama", "/v1/messages"),
            "/ollama/api/chat"
        );
    }

    #[test]
    fn only_anthropic_clients_see_529() {
        assert_eq!(Api::OpenAi.client_status(529), 503);
        assert_eq!(Api::Ollama.client_status(529), 503);
        assert_eq!(Api::Anthropic.client_status(529), 529);
        assert_eq!(Api::OpenAi.client_status(429), 429);
    }
}
