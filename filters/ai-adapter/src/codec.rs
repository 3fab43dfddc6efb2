//! Each API's codecs behind one switch: requests and whole responses in and out, and the
//! stream decoder and encoder of each.

use crate::api::Api;
use crate::canonical::{ChatRequest, ChatResponse, StreamEvent};
use crate::config::Config;
use crate::error::ApiError;
use crate::ids::ResponseContext;
use crate::{anthropic, ollama, openai};

/// Reads a client's request in its API.
pub fn decode_request(api: Api, body: &[u8]) -> Result<ChatRequest, ApiError> {
    match api {
        Api::OpenAi => openai::decode_request(body),
        Api::Anthropic => anthropic::decode_request(body),
        Api::Ollama => ollama::decode_request(body),
    }
}

/// Writes the request for the provider. Fails when the request asks for something the
/// provider cannot take at all.
pub fn encode_request(request: &ChatRequest, config: &Config) -> Result<Vec<u8>, ApiError> {
    Ok(match config.provider {
        Api::OpenAi => openai::encode_request(request),
        Api::Anthropic => anthropic::encode_request(request, config.default_max_tokens),
        Api::Ollama => ollama::encode_request(request)?,
    })
}

/// Reads a provider's whole response; the error says what is wrong with it.
pub fn decode_response(
    api: Api,
    body: &[u8],
    ctx: &ResponseContext,
) -> Result<ChatResponse, String> {
    match api {
        Api::OpenAi => openai::decode_response(body, ctx),
        Api::Anthropic => anthropic::decode_response(body),
        Api::Ollama => ollama::decode_response(body, ctx),
    }
}

/// Writes a whole response for the client.
pub fn encode_response(api: Api, response: &ChatResponse, ctx: &ResponseContext) -> Vec<u8> {
    match api {
        Api::OpenAi => openai::encode_response(response, ctx),
        Api::Anthropic => anthropic::encode_response(response, ctx),
        Api::Ollama => ollama::encode_response(response, ctx),
    }
}

/// Reads a provider's stream, one frame's data at a time.
pub enum StreamDecoder {
    OpenAi(openai::StreamDecoder),
    Anthropic(anthropic::StreamDecoder),
    Ollama(ollama::StreamDecoder),
}

impl StreamDecoder {
    pub fn new(provider: Api, ctx: ResponseContext) -> Self {
        match provider {
            Api::OpenAi => StreamDecoder::OpenAi(openai::StreamDecoder::new(ctx)),
            Api::Anthropic => StreamDecoder::Anthropic(anthropic::StreamDecoder),
            Api::Ollama => StreamDecoder::Ollama(ollama::StreamDecoder::new(ctx)),
        }
    }

    pub fn decode(&mut self, data: &str, emit: &mut dyn FnMut(StreamEvent<'_>)) {
        match self {
            StreamDecoder::OpenAi(decoder) => decoder.decode(data, emit),
            StreamDecoder::Anthropic(decoder) => decoder.decode(data, emit),
            StreamDecoder::Ollama(decoder) => decoder.decode(data, emit),
        }
    }
}

/// Writes a client's stream from canonical events.
pub enum StreamEncoder {
    OpenAi(openai::StreamEncoder),
    Anthropic(anthropic::StreamEncoder),
    Ollama(ollama::StreamEncoder),
}

impl StreamEncoder {
    /// `include_usage`: whether an OpenAI client asked for the usage chunk.
    pub fn new(client: Api, ctx: ResponseContext, include_usage: bool) -> Self {
        match client {
            Api::OpenAi => StreamEncoder::OpenAi(openai::StreamEncoder::new(ctx, include_usage)),
            Api::Anthropic => StreamEncoder::Anthropic(anthropic::StreamEncoder::new(ctx)),
            Api::Ollama => StreamEncoder::Ollama(ollama::StreamEncoder::new(ctx)),
        }
    }

    pub fn encode(&mut self, event: StreamEvent<'_>, out: &mut Vec<u8>) {
        match self {
            StreamEncoder::OpenAi(encoder) => encoder.encode(event, out),
            StreamEncoder::Anthropic(encoder) => encoder.encode(event, out),
            StreamEncoder::Ollama(encoder) => encoder.encode(event, out),
        }
    }

    /// Whether the client's stream is complete (ended, or ended by an error).
    pub fn is_done(&self) -> bool {
        match self {
            StreamEncoder::OpenAi(encoder) => encoder.is_done(),
            StreamEncoder::Anthropic(encoder) => encoder.is_done(),
            StreamEncoder::Ollama(encoder) => encoder.is_done(),
        }
    }
}
