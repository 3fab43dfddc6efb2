//! Which LLM API a request speaks (from its path) and what kind of body a message has
//! (from its content type).

/// An LLM chat API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI Chat Completions (`…/chat/completions`).
    OpenAi,
    /// Anthropic Messages (`…/messages`).
    Anthropic,
    /// Ollama chat (`…/api/chat`).
    Ollama,
}

impl Api {
    /// The API of a request, from the end of its path (clients put their own prefixes in
    /// front; the query does not count). `None` for any other path.
    pub fn from_path(path_and_query: &str) -> Option<Api> {
        let path = path_and_query
            .split_once('?')
            .map_or(path_and_query, |(path, _)| path);
        let path = path.strip_suffix('/').unwrap_or(path);
        if path.ends_with("/chat/completions") {
            Some(Api::OpenAi)
        } else if path.ends_with("/api/chat") {
            Some(Api::Ollama)
        } else if path.ends_with("/messages") {
            Some(Api::Anthropic)
        } else {
            None
        }
    }
}

/// How a body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// JSON or other text: read whole.
    Text,
    /// Server-sent events.
    Sse,
    /// Newline-delimited JSON.
    Ndjson,
    /// Binary or form data (images, audio, multipart uploads): not scanned.
    Opaque,
}

impl BodyKind {
    /// The kind of a body with this `content-type` (none: text).
    pub fn of(content_type: Option<&str>) -> BodyKind {
        let Some(content_type) = content_type else {
            return BodyKind::Text;
        };
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "" => BodyKind::Text,
            "text/event-stream" => BodyKind::Sse,
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines" => BodyKind::Ndjson,
            "application/json" | "application/x-www-form-urlencoded" => BodyKind::Text,
            _ if mime.starts_with("text/") || mime.ends_with("+json") => BodyKind::Text,
            _ => BodyKind::Opaque,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_comes_from_the_end_of_the_path() {
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
            ("/v1/messages/count_tokens", None),
            ("/x?path=/v1/messages", None),
        ] {
            assert_eq!(Api::from_path(path), api, "{path}");
        }
    }

    #[test]
    fn body_kinds_come_from_the_content_type() {
        for (content_type, kind) in [
            (None, BodyKind::Text),
            (Some("application/json"), BodyKind::Text),
            (Some("Application/JSON; charset=utf-8"), BodyKind::Text),
            (Some("application/problem+json"), BodyKind::Text),
            (Some("text/plain"), BodyKind::Text),
            (Some("text/event-stream; charset=utf-8"), BodyKind::Sse),
            (Some("application/x-ndjson"), BodyKind::Ndjson),
            (Some("multipart/form-data; boundary=x"), BodyKind::Opaque),
            (Some("application/octet-stream"), BodyKind::Opaque),
            (Some("audio/mpeg"), BodyKind::Opaque),
        ] {
            assert_eq!(BodyKind::of(content_type), kind, "{content_type:?}");
        }
    }
}
