//! One request in, one response out, with the routes of the conformance echo server:
//! `/health`, `/status/<code>`, WebSocket upgrades, and the JSON echo for everything
//! else; plus [`BENCH_PATH`], a fixed small body for the benchmark.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::delay::{delay_param, parse_go_duration};
use super::request_log::{RequestLog, log_request};
use super::response::{EchoResponse, TlsAssertions, header_map_to_echo};
use super::websocket::server as websocket;

/// Answered with [`BENCH_BODY`] on every listener, before any other routing, so the
/// benchmark measures the proxies and not the echo's JSON encoding.
pub const BENCH_PATH: &str = "/bench";
/// The benchmark response body (`text/plain`).
pub const BENCH_BODY: &[u8] = b"nantian-echo bench\n";

/// Where the backend runs, reported in every echo (the conformance suite checks `pod`
/// and `namespace` to tell backends apart).
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub pod: String,
}

/// What one listener serves with.
#[derive(Debug)]
pub struct Site {
    pub context: Context,
    /// The listener's port, reported as `httpPort`.
    pub http_port: String,
    /// Like the conformance server's h2c port: HTTP/1 requests get `400`.
    pub h2c_only: bool,
    pub request_log: RequestLog,
}

/// What the handler knows of the connection a request came on.
#[derive(Debug)]
pub struct Connection {
    /// The client's address, for the request log.
    pub peer: SocketAddr,
    /// The TLS session, for connections to an HTTPS listener.
    pub tls: Option<Arc<TlsAssertions>>,
}

pub type EchoBody = Full<Bytes>;

/// The request handler; never fails, errors become responses.
pub async fn handle(
    req: Request<Incoming>,
    site: Arc<Site>,
    connection: Arc<Connection>,
) -> Result<Response<EchoBody>, Infallible> {
    if site.request_log == RequestLog::Stdout {
        log_request(&request_target(&req), connection.peer);
    }
    if req.uri().path() == BENCH_PATH {
        return Ok(bench_response());
    }
    if site.h2c_only {
        if req.version() != Version::HTTP_2 {
            return Ok(text(StatusCode::BAD_REQUEST, "Expected h2c request"));
        }
        return Ok(echo(req, &site, &connection).await);
    }
    if websocket::is_upgrade_request(&req) {
        return Ok(websocket::accept(req));
    }
    // The conformance server collapses "//" before routing (but echoes the raw target).
    let path = req.uri().path();
    let routed: Cow<'_, str> = if path.contains("//") {
        Cow::Owned(path.replace("//", "/"))
    } else {
        Cow::Borrowed(path)
    };
    match routed.as_ref() {
        "/health" => Ok(text(StatusCode::OK, "OK")),
        // Upstream serves WebSocket only here; a plain request is a failed handshake.
        "/ws" => Ok(text(StatusCode::BAD_REQUEST, "Bad Request")),
        status_path if status_path.starts_with("/status/") => Ok(status(&req)),
        _ => Ok(echo(req, &site, &connection).await),
    }
}

fn bench_response() -> Response<EchoBody> {
    let mut response = Response::new(Full::new(Bytes::from_static(BENCH_BODY)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<EchoBody> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `/status/<3 digits>` (the whole target, so a query makes it a `400`) answers with that
/// status and no body. 1xx codes are informational in Go, which then sends `200`.
fn status<B>(req: &Request<B>) -> Response<EchoBody> {
    let code = request_target(req)
        .strip_prefix("/status/")
        .filter(|digits| digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .map(|code| {
            if code.is_informational() {
                StatusCode::OK
            } else {
                code
            }
        })
        .unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = Response::new(Full::default());
    *response.status_mut() = code;
    response
}

/// Go's `RequestURI`: the target as sent; HTTP/2's `:path`.
fn request_target<B>(req: &Request<B>) -> Cow<'_, str> {
    let uri = req.uri();
    if req.version() != Version::HTTP_2 && uri.scheme().is_some() {
        return Cow::Owned(uri.to_string());
    }
    Cow::Borrowed(uri.path_and_query().map_or("/", |pq| pq.as_str()))
}

async fn echo(req: Request<Incoming>, site: &Site, connection: &Connection) -> Response<EchoBody> {
    let path = request_target(&req).into_owned();
    let (parts, mut body) = req.into_parts();
    // Drain the body so the connection stays reusable; its content is not echoed.
    while let Some(Ok(_)) = body.frame().await {}

    let delay = parts.uri.query().and_then(delay_param).unwrap_or("");
    if !delay.is_empty() {
        match parse_go_duration(delay) {
            Some(wait) => tokio::time::sleep(wait).await,
            None => {
                let message = format!("time: invalid duration {delay:?}");
                return json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &serde_json::json!({ "message": message }),
                    None,
                );
            }
        }
    }

    let http2 = parts.version == Version::HTTP_2;
    let host = parts
        .uri
        .authority()
        .map(|authority| authority.as_str())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or_default();
    let echoed = EchoResponse {
        path,
        host: host.to_owned(),
        method: parts.method.as_str().to_owned(),
        proto: proto_name(parts.version).to_owned(),
        headers: header_map_to_echo(&parts.headers, http2),
        http_port: site.http_port.clone(),
        namespace: site.context.namespace.clone(),
        ingress: site.context.ingress.clone(),
        service: site.context.service.clone(),
        pod: site.context.pod.clone(),
        tls: connection.tls.as_deref().cloned(),
    };
    json(StatusCode::OK, &echoed, Some(&parts.headers))
}

fn proto_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn json(
    status: StatusCode,
    value: &impl serde::Serialize,
    request_headers: Option<&HeaderMap>,
) -> Response<EchoBody> {
    let body = serde_json::to_vec(value).expect("echo documents always serialize");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(request_headers) = request_headers {
        apply_echo_set_header(request_headers, headers);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `X-Echo-Set-Header: name:value,name2:value2` sets those response headers; a name given
/// twice gets its values joined with `,`. Entries without a valid name are skipped (the
/// conformance suite sends an empty value when it expects no extra headers).
pub fn apply_echo_set_header(request_headers: &HeaderMap, response_headers: &mut HeaderMap) {
    for list in request_headers.get_all("x-echo-set-header") {
        let Ok(list) = list.to_str() else { continue };
        for entry in list.split(',') {
            let (name, value) = entry.trim().split_once(':').unwrap_or((entry.trim(), ""));
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            let value = value.trim();
            let joined = match response_headers.get(&name).map(|v| v.to_str()) {
                Some(Ok(existing)) => Cow::Owned(format!("{existing},{value}")),
                _ => Cow::Borrowed(value),
            };
            if let Ok(value) = HeaderValue::from_str(&joined) {
                response_headers.insert(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_headers(values: &[&str]) -> HeaderMap {
        let mut request = HeaderMap::new();
        for value in values {
            request.append("x-echo-set-header", value.parse().unwrap());
        }
        let mut response = HeaderMap::new();
        apply_echo_set_header(&request, &mut response);
        response
    }

    #[test]
    fn echo_set_header_sets_trims_and_joins() {
        let response = set_headers(&["X-Foo: value1, X-Bar:two", "x-foo:again"]);
        assert_eq!(response["x-foo"], "value1,again");
        assert_eq!(response["x-bar"], "two");
        assert!(set_headers(&[""]).is_empty());
        assert!(set_headers(&["bad name:x"]).is_empty());
    }

    #[test]
    fn status_path_must_be_exactly_three_digits() {
        let code = |target: &str| status(&Request::get(target).body(()).unwrap()).status();
        assert_eq!(code("/status/503"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code("/status/204"), StatusCode::NO_CONTENT);
        assert_eq!(code("/status/100"), StatusCode::OK);
        assert_eq!(code("/status/50"), StatusCode::BAD_REQUEST);
        assert_eq!(code("/status/503?x=1"), StatusCode::BAD_REQUEST);
        assert_eq!(code("/status/abc"), StatusCode::BAD_REQUEST);
    }
}
