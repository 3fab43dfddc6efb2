//! The mock LLM providers behind `nantian-ai-mock`: OpenAI Chat Completions, Anthropic
//! Messages and Ollama's native chat API, each on its real paths and in its real wire format
//! (byte for byte in the streams), so the official SDKs parse them as they parse the real
//! services. What they answer is deterministic ([`reply`]), so a test can assert it:
//!
//! - text: `"<name> (<provider>) heard: <last user text>"`, plus `" [N image(s)]"` when
//!   images were sent; streamed as one delta per whitespace-separated word (with its
//!   trailing whitespace, so the deltas concatenate to the text);
//! - with tools and a user turn last: a call of the first tool with `{"text": <last user
//!   text>}`; after a tool result: `"<name> (<provider>) got tool result: <result>"`;
//! - usage: input tokens = whitespace-separated words of every message text (and the
//!   system prompt), output tokens = words of the reply (of the arguments' JSON for a call).
//!
//! The requested model switches behaviour ([`reply::Behaviour`]): `fail-NNN` answers status
//! NNN with the provider's error body (`fail-429` with `retry-after: 1`), a model containing
//! `hold` stops a stream after its first delta until `POST /_mock/release`, one containing
//! `slow` waits 50 ms between stream chunks. `GET /_mock/requests` lists what was received
//! ([`request_log`]). [`process::AiMockProcess`] runs the binary for tests and
//! [`sdk::run_sdk_client`] drives it (or a gateway in front of it) with the official Python
//! SDKs through `tests/ai/client.py`.

#![forbid(unsafe_code)]

pub mod anthropic;
pub mod ollama;
pub mod openai;
pub mod process;
pub mod reply;
pub mod request_log;
pub mod sdk;
pub mod server;
pub mod service;
pub mod stream;

pub use process::AiMockProcess;
pub use server::{AiMockServer, MockConfig};

/// Which API a mock speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// OpenAI Chat Completions: `POST /v1/chat/completions`, `GET /v1/models`.
    Openai,
    /// Anthropic Messages: `POST /v1/messages`.
    Anthropic,
    /// Ollama's native API: `POST /api/chat`, `GET /api/tags`.
    Ollama,
}

impl Provider {
    /// The name on the command line and in the replies: `openai`, `anthropic`, `ollama`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Ollama => "ollama",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
