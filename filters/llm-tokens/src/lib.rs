//! Token counts for LLM traffic, small enough for a filter component
//! (`wasm32-wasip2`): exact BPE counts of text with `o200k_base` (the encoding of
//! GPT-4o, GPT-4.1, GPT-5 and the o-series; vocabulary from `tiktoken-rs`), and
//! estimates of a chat request's prompt tokens.
//!
//! - [`count_text`]: the tokens of a text, exactly as OpenAI's tokenizer splits it.
//! - [`PromptEstimator`] / [`estimate_prompt`]: a prompt's tokens from its parts —
//!   messages (3 tokens each plus role, name and content), images, earlier tool calls
//!   and tool definitions — plus 3 tokens priming the reply, as OpenAI's cookbook counts
//!   them (which matches the API's `prompt_tokens` for GPT-4o).
//! - [`estimate_request_json`]: the same from a client's request body in any of the
//!   three chat APIs ([`Api`]), so a filter (a token budget, say) can estimate a request
//!   without translating it; the ai-adapter reports this very number.
//!
//! For Anthropic and Ollama models the count is an estimate: their tokenizers are not
//! o200k, though for English text and code they land within roughly 10–20 % of it.
//!
//! # Cost
//!
//! The vocabulary (199,998 tokens) is not built at run time: `build.rs` lays it out as
//! static tables (a hash table of ranks over the tokens' bytes, 4.4 MB of data in the
//! component), taken from tiktoken-rs, which embeds OpenAI's `o200k_base.tiktoken`. The
//! counts are tiktoken's (tested against tiktoken-rs on a varied corpus); building
//! tiktoken-rs' own encoder instead would take over half a second and ~30 MB in every
//! Wasm instance. Nor is the pre-tokenizing pattern compiled: it is written out as code
//! over static Unicode tables (`pretokenize.rs`), so a new instance counts at once.
//!
//! Counting runs at about 60 MB/s natively with the tables in the CPU's caches, far less
//! once other work has evicted them (each lookup then misses several times): the counts
//! of recently seen short pieces are kept per thread (per Wasm instance), 96 KB, so that
//! recurring words and repeated prompts skip the tables. Prompt estimates count the
//! first [`EXACT_COUNT_BYTES`] exactly and extrapolate the rest. Images count a
//! fixed [`IMAGE_TOKENS`]: their size is not read.
#![forbid(unsafe_code)]

mod bpe;
mod json;
mod pretokenize;
mod prompt;
mod vocab_hash;

pub use bpe::O200K_PATTERN;
pub use json::{estimate_request_body, estimate_request_json};
pub use prompt::{
    EXACT_COUNT_BYTES, IMAGE_TOKENS, LOW_DETAIL_IMAGE_TOKENS, PromptEstimator, REPLY_PRIMING,
    TOKENS_PER_MESSAGE, TOKENS_PER_NAME, TOKENS_PER_TOOL_CALL, estimate_prompt,
};

/// A chat API, as a client's request body is written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI Chat Completions (`messages`, `tools`).
    OpenAi,
    /// Anthropic Messages (`system`, `messages` of content blocks, `tools`).
    Anthropic,
    /// Ollama chat (`messages` with `images` and `tool_calls`, `tools`).
    Ollama,
}

impl Api {
    /// The API by its configuration name: `openai`, `anthropic` or `ollama`.
    pub fn from_name(name: &str) -> Option<Api> {
        match name {
            "openai" => Some(Api::OpenAi),
            "anthropic" => Some(Api::Anthropic),
            "ollama" => Some(Api::Ollama),
            _ => None,
        }
    }
}

/// The tokens of `text` in o200k_base, as tiktoken counts them. Special tokens
/// (`<|endoftext|>`) count as the plain text they are.
pub fn count_text(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    bpe::count(text)
}

#[cfg(test)]
mod tests;
