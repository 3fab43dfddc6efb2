//! The listener of a mock (HTTP/1.1 and h2c on one port, like the echo backend), the
//! `/_mock/` control endpoints, and the dispatch to the provider's API.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::request_log::{LoggedRequest, RequestLog};
use super::stream::{self, Body, Release};
use super::{Provider, anthropic, ollama, openai};

/// The largest request body a mock reads (images come base64-encoded).
const MAX_BODY: usize = 64 << 20;
/// The prefix of the test-control endpoints, which are neither logged nor authenticated.
pub const CONTROL_PREFIX: &str = "/_mock/";

/// What a mock is.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub provider: Provider,
    /// The key clients must present (`Authorization: Bearer`; Anthropic: that or `x-api-key`);
    /// `None` accepts any request.
    pub api_key: Option<String>,
    /// Names the mock in its replies: `"<name> (<provider>) heard: …"`.
    pub name: String,
}

/// Shared by every request of a mock.
#[derive(Debug)]
pub struct State {
    pub config: MockConfig,
    pub log: RequestLog,
    pub release: Arc<Release>,
}

impl State {
    pub fn new(config: MockConfig) -> Self {
        Self {
            config,
            log: RequestLog::default(),
            release: Arc::new(Release::default()),
        }
    }
}

/// A bound mock, ready to serve.
pub struct AiMockServer {
    listener: TcpListener,
    state: Arc<State>,
}

impl AiMockServer {
    /// Binds `addr` (port 0 picks a free port: see [`AiMockServer::local_addr`]).
    pub async fn bind(addr: SocketAddr, config: MockConfig) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            state: Arc::new(State::new(config)),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then drops every connection.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30));
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);
        let mut connections = JoinSet::new();
        let accepting = async {
            loop {
                let stream = match self.listener.accept().await {
                    Ok((stream, _peer)) => stream,
                    Err(err) => {
                        eprintln!("accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Stream chunks go out as written: no Nagle delay between deltas.
                let _ = stream.set_nodelay(true);
                let state = self.state.clone();
                let builder = builder.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(req, state).await) }
                    });
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        };
        tokio::select! {
            () = accepting => {}
            () = shutdown => {}
        }
        connections.shutdown().await;
    }
}

/// Answers one request: a control endpoint, or the provider's API (logged first).
pub async fn handle(req: Request<Incoming>, state: Arc<State>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            return stream::json(
                StatusCode::BAD_REQUEST,
                &json!({ "error": format!("reading the request body: {err}") }),
            );
        }
    };
    if parts.uri.path().starts_with(CONTROL_PREFIX) {
        return control(&parts, &state);
    }
    state.log.push(LoggedRequest::new(&parts, &body));
    match state.config.provider {
        Provider::Openai => openai::handle(&parts, &body, &state),
        Provider::Anthropic => anthropic::handle(&parts, &body, &state),
        Provider::Ollama => ollama::handle(&parts, &body, &state),
    }
}

/// `GET`/`DELETE /_mock/requests`, `POST /_mock/release`, `GET /_mock/held`.
fn control(parts: &http::request::Parts, state: &State) -> Response<Body> {
    let path = parts.uri.path();
    let ok = |value: serde_json::Value| stream::json(StatusCode::OK, &value);
    match (&parts.method, &path[CONTROL_PREFIX.len()..]) {
        (&Method::GET, "requests") => {
            ok(serde_json::to_value(state.log.snapshot()).unwrap_or(serde_json::Value::Null))
        }
        (&Method::DELETE, "requests") => {
            let cleared = state.log.snapshot().len();
            state.log.clear();
            ok(json!({ "cleared": cleared }))
        }
        (&Method::POST, "release") => ok(json!({ "released": state.release.release() })),
        (&Method::GET, "held") => ok(json!({ "held": state.release.held() })),
        _ => stream::json(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("no mock control endpoint {} {path}", parts.method) }),
        ),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(parts: &http::request::Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A header's value as text.
pub fn header<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name)?.to_str().ok()
}

/// Sets a header on a response (the value must be valid: ids and fixed strings).
pub fn set_header(response: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(value) = http::HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// The body of an API request as a JSON object, or why not.
pub enum JsonBody {
    Object(serde_json::Map<String, serde_json::Value>),
    /// Not JSON at all, with serde's error.
    Invalid(String),
    /// Valid JSON, but not an object.
    NotObject,
}

pub fn parse_body(body: &[u8]) -> JsonBody {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => JsonBody::Object(map),
        Ok(_) => JsonBody::NotObject,
        Err(err) => JsonBody::Invalid(err.to_string()),
    }
}
