//! Driving the built component the way the gateway does for an AIService backend: the
//! request head, the whole body as one chunk, then the upstream response's head and its
//! body in chunks, all on one instance. Build it first:
//! `cargo build --profile filter --target wasm32-wasip2 -p nantian-filter-ai-adapter`.

#![allow(dead_code)]

pub mod clients;

use std::sync::OnceLock;

use bytes::Bytes;
use nantian_filter_testing::{BoundFilter, FilterUnderTest};
use nantian_wasm::{Attributes, BodyAction, HeadersAction, LocalResponse};
use serde_json::Value;

pub use clients::{Message, Streamed};

/// The three APIs, as the configuration names them, with each one's client path.
pub const OPENAI: Api = Api {
    name: "openai",
    path: "/v1/chat/completions",
};
pub const ANTHROPIC: Api = Api {
    name: "anthropic",
    path: "/v1/messages",
};
pub const OLLAMA: Api = Api {
    name: "ollama",
    path: "/api/chat",
};
pub const APIS: [Api; 3] = [OPENAI, ANTHROPIC, OLLAMA];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Api {
    pub name: &'static str,
    pub path: &'static str,
}

impl Api {
    /// The provider's endpoint path with the base paths [`adapter`] configures.
    pub fn upstream_path(self) -> &'static str {
        match self.name {
            "openai" => "/v1/chat/completions",
            "anthropic" => "/v1/messages",
            _ => "/ollama/api/chat",
        }
    }

    /// The file name prefix of this API's fixtures.
    pub fn fixture(self, what: &str) -> Vec<u8> {
        fixture(&format!("{}_{what}", self.name))
    }

    pub fn stream_content_type(self) -> &'static str {
        if self == OLLAMA {
            "application/x-ndjson"
        } else {
            "text/event-stream"
        }
    }

    /// What this API's client makes of a stream.
    pub fn read_stream(self, body: &[u8]) -> Streamed {
        match self.name {
            "openai" => clients::openai_stream(body),
            "anthropic" => clients::anthropic_stream(body),
            _ => clients::ollama_stream(body),
        }
    }

    /// What this API's client makes of a whole response.
    pub fn read_response(self, body: &[u8]) -> Message {
        match self.name {
            "openai" => clients::openai_response(body),
            "anthropic" => clients::anthropic_response(body),
            _ => clients::ollama_response(body),
        }
    }

    /// An error body in this API's shape: (type, message); Ollama has no type.
    pub fn read_error(self, body: &[u8]) -> (Option<String>, String) {
        match self.name {
            "openai" => {
                let (kind, message, _) = clients::openai_error(body);
                (Some(kind), message)
            }
            "anthropic" => {
                let (kind, message) = clients::anthropic_error(body);
                (Some(kind), message)
            }
            _ => (None, clients::ollama_error(body)),
        }
    }
}

/// A file of `tests/fixtures`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

fn component() -> &'static FilterUnderTest {
    static COMPONENT: OnceLock<FilterUnderTest> = OnceLock::new();
    COMPONENT.get_or_init(|| FilterUnderTest::built("nantian-filter-ai-adapter").unwrap())
}

/// The adapter bound for `provider`, with the base paths real endpoints have
/// (`https://api.openai.com/v1`, `https://api.anthropic.com`, an Ollama behind `/ollama`).
pub fn adapter(provider: Api) -> BoundFilter {
    let base_path = match provider.name {
        "openai" => "/v1/",
        "anthropic" => "",
        _ => "/ollama",
    };
    bind(&format!(
        r#"{{"provider": "{}", "basePath": "{base_path}", "defaultMaxTokens": 1024}}"#,
        provider.name
    ))
    .unwrap()
}

/// The call budget the controller gives the adapter (its `timeout_millis`): a 4 MiB
/// request is translated and estimated in one call.
pub const ADAPTER_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);

pub fn bind(config: &str) -> Result<BoundFilter, nantian_filter_testing::WasmError> {
    component().bind_with(nantian_filter_testing::BindingSpec {
        display_name: "ai-adapter".into(),
        config: config.as_bytes().to_vec(),
        timeout: Some(ADAPTER_TIMEOUT),
        max_memory: Some(64 << 20),
    })
}

/// A client's POST to `path`, with the headers SDKs send.
pub fn post(path: &str, body: &[u8]) -> http::Request<Bytes> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .header("accept-encoding", "gzip, deflate, br")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .body(Bytes::copy_from_slice(body))
        .unwrap()
}

/// The upstream's answer: head, and body chunks.
pub struct Upstream {
    pub status: u16,
    pub content_type: &'static str,
    pub chunks: Vec<Bytes>,
}

impl Upstream {
    /// `body` in chunks of `size` bytes.
    pub fn new(status: u16, content_type: &'static str, body: &[u8], size: usize) -> Self {
        Upstream {
            status,
            content_type,
            chunks: nantian_filter_testing::chunks_of(body, size),
        }
    }

    pub fn json(body: &[u8]) -> Self {
        Upstream::new(200, "application/json", body, body.len().max(1))
    }
}

/// What happened to one exchange.
pub struct Call {
    /// The request as sent upstream; `None` when the filter answered it.
    pub forwarded: Option<http::Request<Bytes>>,
    /// The response the client gets.
    pub response: http::Response<Bytes>,
    /// What each upstream body chunk became (empty when held back).
    pub outputs: Vec<Bytes>,
    /// The filter replaced the response with its own (a 502).
    pub replaced: bool,
    /// The request's attributes after the last phase.
    pub attributes: Attributes,
}

impl Call {
    pub fn forwarded_json(&self) -> Value {
        json(self.forwarded.as_ref().expect("forwarded").body())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap())
    }

    pub fn body(&self) -> &[u8] {
        self.response.body()
    }

    /// An attribute the filter set on the request, by the end of the exchange.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name)
    }

    /// An attribute the filter had set by the end of the request phases.
    pub fn request_attribute(&self, name: &str) -> Option<&str> {
        let extensions = self.forwarded.as_ref()?.extensions();
        extensions.get::<Attributes>()?.get(name)
    }
}

/// The attributes kept in a request's extensions (none set: empty).
pub fn attributes(extensions: &http::Extensions) -> Attributes {
    extensions.get::<Attributes>().cloned().unwrap_or_default()
}

fn local(local: LocalResponse) -> http::Response<Bytes> {
    let mut builder = http::Response::builder().status(local.status);
    for (name, value) in &local.headers {
        builder = builder.header(name, value);
    }
    builder.body(local.body).unwrap()
}

/// Runs `request` through the request phases and, unless the filter answers it,
/// `upstream` through the response phases, on one instance. A local answer goes through
/// the response-head phase too, as the gateway does (the filter must leave it alone).
pub fn call(bound: &BoundFilter, request: http::Request<Bytes>, upstream: Upstream) -> Call {
    call_chunked(bound, request, None, upstream)
}

/// [`call`] with the request body delivered in chunks of `request_chunk` bytes.
pub fn call_chunked(
    bound: &BoundFilter,
    request: http::Request<Bytes>,
    request_chunk: Option<usize>,
    upstream: Upstream,
) -> Call {
    let mut active = bound.binding().start().unwrap();
    let (mut parts, body) = request.into_parts();
    let answered = |active: &mut nantian_wasm::ActiveFilter,
                    parts: &mut http::request::Parts,
                    answer: LocalResponse| {
        let response = local(answer);
        let (mut head, body) = response.into_parts();
        let before = head.clone();
        let action = active.on_response_headers(parts, &mut head).unwrap();
        assert_eq!(action, HeadersAction::Continue);
        assert_eq!(
            head.status, before.status,
            "the filter changed its own answer"
        );
        assert_eq!(
            head.headers, before.headers,
            "the filter changed its own answer"
        );
        Call {
            forwarded: None,
            response: http::Response::from_parts(head, body),
            outputs: Vec::new(),
            replaced: false,
            attributes: attributes(&parts.extensions),
        }
    };
    if let HeadersAction::Respond(answer) = active.on_request_headers(&mut parts).unwrap() {
        return answered(&mut active, &mut parts, answer);
    }
    let chunks = match request_chunk {
        Some(size) => nantian_filter_testing::chunks_of(&body, size),
        None => vec![body],
    };
    let mut sent = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i == chunks.len() - 1;
        match active
            .on_request_body(&mut parts, chunk.clone(), last)
            .unwrap()
        {
            BodyAction::Continue => sent.extend_from_slice(chunk),
            BodyAction::Replace(bytes) => sent.extend_from_slice(&bytes),
            BodyAction::Respond(answer) => return answered(&mut active, &mut parts, answer),
        }
    }
    let forwarded = http::Request::from_parts(parts.clone(), Bytes::from(sent));
    let total: usize = upstream.chunks.iter().map(Bytes::len).sum();
    let (mut head, ()) = http::Response::builder()
        .status(upstream.status)
        .header("content-type", upstream.content_type)
        .header("content-length", total)
        .header("x-request-id", "req-1")
        .body(())
        .unwrap()
        .into_parts();
    if let HeadersAction::Respond(answer) =
        active.on_response_headers(&mut parts, &mut head).unwrap()
    {
        return Call {
            forwarded: Some(forwarded),
            response: local(answer),
            outputs: Vec::new(),
            replaced: true,
            attributes: attributes(&parts.extensions),
        };
    }
    let mut outputs = Vec::new();
    let count = upstream.chunks.len();
    for (i, chunk) in upstream.chunks.into_iter().enumerate() {
        let last = i == count - 1;
        match active
            .on_response_body(&mut parts, &mut head, chunk.clone(), last)
            .unwrap()
        {
            BodyAction::Continue => outputs.push(chunk),
            BodyAction::Replace(bytes) => outputs.push(bytes),
            BodyAction::Respond(answer) => {
                return Call {
                    forwarded: Some(forwarded),
                    response: local(answer),
                    outputs,
                    replaced: true,
                    attributes: attributes(&parts.extensions),
                };
            }
        }
    }
    let body: Vec<u8> = outputs.iter().flat_map(|b| b.iter().copied()).collect();
    Call {
        forwarded: Some(forwarded),
        response: http::Response::from_parts(head, Bytes::from(body)),
        outputs,
        replaced: false,
        attributes: attributes(&parts.extensions),
    }
}

/// The same request with `"stream": stream`.
pub fn with_stream(body: &[u8], stream: bool) -> Vec<u8> {
    let mut request = json(body);
    request["stream"] = Value::Bool(stream);
    serde_json::to_vec(&request).unwrap()
}

/// What a provider fixture says, in canonical terms.
pub struct Expected {
    pub text: &'static str,
    /// (name, arguments as JSON) of each tool call.
    pub tools: &'static [(&'static str, &'static str)],
    /// Whether it stopped to call tools (else it was done).
    pub tool_use: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

pub const TEXT: &str = "The capital of France is Paris — \"la Ville Lumière\".\n";
pub const PARIS: &str = r#"{"location":"Paris, France","unit":"celsius"}"#;
pub const ROME: &str = r#"{"location":"Rome, Italy","unit":"celsius"}"#;

pub const TEXT_ANSWER: Expected = Expected {
    text: TEXT,
    tools: &[],
    tool_use: false,
    input_tokens: 19,
    output_tokens: 14,
};

/// What the `*_response_tools.json` fixtures say.
pub fn tools_answer(provider: Api) -> Expected {
    match provider.name {
        "anthropic" => Expected {
            text: "I'll check the weather in Paris and Rome.",
            tools: &[("get_weather", PARIS), ("get_weather", ROME)],
            tool_use: true,
            input_tokens: 82,
            output_tokens: 49,
        },
        _ => Expected {
            text: "",
            tools: &[("get_weather", PARIS), ("get_weather", ROME)],
            tool_use: true,
            input_tokens: 82,
            output_tokens: 49,
        },
    }
}

/// What the `*_stream_tools` fixtures say.
pub fn streamed_tools_answer(provider: Api) -> Expected {
    match provider.name {
        "anthropic" => Expected {
            text: "Okay, let's check the weather for Paris, France:",
            tools: &[("get_weather", PARIS)],
            tool_use: true,
            input_tokens: 472,
            output_tokens: 89,
        },
        _ => tools_answer(provider),
    }
}

/// Checks a client's message against what the provider said.
pub fn assert_message(client: Api, expected: &Expected, message: &Message, what: &str) {
    assert_eq!(message.text, expected.text, "{what}: text");
    let tools: Vec<(String, Value)> = message
        .tool_calls
        .iter()
        .map(|call| (call.name.clone(), call.arguments.clone()))
        .collect();
    let expected_tools: Vec<(String, Value)> = expected
        .tools
        .iter()
        .map(|(name, arguments)| (name.to_string(), json(arguments.as_bytes())))
        .collect();
    assert_eq!(tools, expected_tools, "{what}: tool calls");
    if client != OLLAMA {
        for call in &message.tool_calls {
            assert!(!call.id.is_empty(), "{what}: tool call ids");
        }
    }
    let finish = match (client.name, expected.tool_use) {
        ("openai", true) => "tool_calls",
        ("anthropic", true) => "tool_use",
        ("anthropic", false) => "end_turn",
        _ => "stop",
    };
    assert_eq!(message.finish, finish, "{what}: finish reason");
    assert_eq!(
        message.input_tokens,
        Some(expected.input_tokens),
        "{what}: input tokens"
    );
    assert_eq!(
        message.output_tokens,
        Some(expected.output_tokens),
        "{what}: output tokens"
    );
    assert!(!message.model.is_empty(), "{what}: model");
}
