//! Driving the built component the way an AI route does: the rule's request phases with
//! the whole body, then the response head, the ai-adapter's usage report (the adapter
//! runs before this filter on the way back), and the response body. A local answer goes
//! through the response-head phase only, as the gateway's does. Build it first:
//! `cargo build --profile filter --target wasm32-wasip2 -p nantian-filter-token-limit`.

#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use nantian_filter_testing::{BindingSpec, BoundFilter, CounterScope, FilterUnderTest, WasmError};
use nantian_wasm::{ActiveFilter, Attributes, BodyAction, HeadersAction, LocalResponse};
use serde_json::Value;

/// The call budget the controller should give the filter: `init` compiles the
/// tokenizer's pattern and a 4 MiB prompt is estimated in one call (as for the adapter).
pub const TIMEOUT: Duration = Duration::from_millis(250);

fn component() -> &'static FilterUnderTest {
    static COMPONENT: OnceLock<FilterUnderTest> = OnceLock::new();
    COMPONENT.get_or_init(|| FilterUnderTest::built("nantian-filter-token-limit").unwrap())
}

/// The filter bound to `config`, with the limits the controller should set.
pub fn bind(config: &str) -> Result<BoundFilter, WasmError> {
    component().bind_with(spec(config))
}

/// [`bind`] with the counters kept under `scope` (as the controller binds a policy).
pub fn bind_in(config: &str, scope: CounterScope) -> Result<BoundFilter, WasmError> {
    component().bind_with_counters(spec(config), scope)
}

fn spec(config: &str) -> BindingSpec {
    BindingSpec {
        display_name: "token-limit".into(),
        config: config.as_bytes().to_vec(),
        timeout: Some(TIMEOUT),
        max_memory: Some(64 << 20),
    }
}

/// What the upstream (through the adapter) answers.
#[derive(Clone, Copy)]
pub struct Upstream {
    pub status: u16,
    /// The adapter's report at the end of the body: input, output, source.
    pub usage: Option<(u64, u64, &'static str)>,
    /// A local answer (the adapter refusing the request): no body phase.
    pub local: bool,
}

pub const OK: Upstream = Upstream {
    status: 200,
    usage: None,
    local: false,
};

impl Upstream {
    pub fn used(input: u64, output: u64) -> Upstream {
        Upstream {
            usage: Some((input, output, "provider")),
            ..OK
        }
    }
}

/// One exchange through the filter.
pub struct Call {
    /// The request as forwarded; `None` when the filter refused it.
    pub forwarded: Option<http::Request<Bytes>>,
    /// What the client gets.
    pub response: http::Response<Bytes>,
    pub attributes: Attributes,
}

impl Call {
    pub fn refused(&self) -> bool {
        self.forwarded.is_none()
    }

    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let value = self.response.headers().get(name)?;
        Some(value.to_str().unwrap())
    }

    pub fn header_u64(&self, name: &str) -> u64 {
        let value = self.header(name);
        let value = value.unwrap_or_else(|| panic!("no {name}: {:?}", self.response));
        value.parse().unwrap()
    }

    pub fn json(&self) -> Value {
        let body = self.response.body();
        serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name)
    }
}

/// A client's POST of `body` to `path`, with `headers`.
pub fn post(path: &str, headers: &[(&str, &str)], body: &Value) -> http::Request<Bytes> {
    let mut request = http::Request::post(path).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Bytes::from(body.to_string())).unwrap()
}

pub fn call(bound: &BoundFilter, request: http::Request<Bytes>, upstream: Upstream) -> Call {
    let (parts, body) = request.into_parts();
    call_chunked(
        bound,
        http::Request::from_parts(parts, ()),
        vec![body],
        upstream,
    )
}

/// [`call`] with the request body in `chunks` (at least one).
pub fn call_chunked(
    bound: &BoundFilter,
    request: http::Request<()>,
    chunks: Vec<Bytes>,
    upstream: Upstream,
) -> Call {
    let mut active = bound.binding().start().unwrap();
    let (mut parts, ()) = request.into_parts();
    let headers = active.on_request_headers(&mut parts).unwrap();
    assert_eq!(headers, HeadersAction::Continue);
    let mut sent = Vec::new();
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        match active
            .on_request_body(&mut parts, chunk.clone(), i == last)
            .unwrap()
        {
            BodyAction::Continue => sent.extend_from_slice(&chunk),
            BodyAction::Replace(bytes) => sent.extend_from_slice(&bytes),
            BodyAction::Respond(answer) => {
                let response = local_answer(&mut active, &mut parts, answer);
                return Call {
                    forwarded: None,
                    response,
                    attributes: attributes(&parts),
                };
            }
        }
    }
    let forwarded = http::Request::from_parts(parts.clone(), Bytes::from(sent));
    let body = Bytes::from_static(br#"{"id": "chatcmpl-1"}"#);
    let (mut head, ()) = http::Response::builder()
        .status(upstream.status)
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts();
    let action = active.on_response_headers(&mut parts, &mut head).unwrap();
    assert_eq!(action, HeadersAction::Continue);
    if !upstream.local {
        if let Some((input, output, source)) = upstream.usage {
            let report = parts.extensions.get_or_insert_default::<Attributes>();
            report.set("ai.input_tokens", &input.to_string()).unwrap();
            report.set("ai.output_tokens", &output.to_string()).unwrap();
            report.set("ai.usage_source", source).unwrap();
        }
        let action = active
            .on_response_body(&mut parts, &mut head, body.clone(), true)
            .unwrap();
        assert_eq!(action, BodyAction::Continue);
    }
    Call {
        forwarded: Some(forwarded),
        response: http::Response::from_parts(head, body),
        attributes: attributes(&parts),
    }
}

/// The filter's own answer through its response-head phase, which must leave it alone.
fn local_answer(
    active: &mut ActiveFilter,
    parts: &mut http::request::Parts,
    answer: LocalResponse,
) -> http::Response<Bytes> {
    let mut builder = http::Response::builder().status(answer.status);
    for (name, value) in &answer.headers {
        builder = builder.header(name, value);
    }
    let (mut head, body) = builder.body(answer.body).unwrap().into_parts();
    let before = head.clone();
    let action = active.on_response_headers(parts, &mut head).unwrap();
    assert_eq!(action, HeadersAction::Continue);
    assert_eq!(
        head.headers, before.headers,
        "the filter changed its own answer"
    );
    http::Response::from_parts(head, body)
}

fn attributes(parts: &http::request::Parts) -> Attributes {
    parts
        .extensions
        .get::<Attributes>()
        .cloned()
        .unwrap_or_default()
}
