//! One LLM request through an AIService: the rule's filters, the whole body read, the
//! backend its model routes to, and — when that backend cannot answer (connection
//! failure, timeout, 429, 5xx) before anything reached the client — the next fallback.
//!
//! Each attempt starts the backend's own filters (the ai-adapter, which translates the
//! client's API into the backend's and its answer back) on the original body, so a
//! fallback to a backend of another provider is translated for that provider.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;
use tracing::debug;

use super::models::models_response;
use super::observe::{ObservedBody, Observer};
use super::select::{AiService, RoutingFields};
use crate::filter_body::SharedRun;
use crate::filter_chain::{FilterRun, Flow, full_body, status_response};
use crate::forwarding::prepare_request_headers;
use crate::proxy::{
    ProxyRequest, SendError, copy_request_head, failure_response, respond_locally, send_within,
    upstream_response,
};
use crate::timeout::backend_deadline;
use crate::upstream::{BoxError, ProxyBody};

/// Credential headers a client may send to an LLM API. The backend's own credential
/// replaces them: a client's key is never forwarded upstream.
const CLIENT_CREDENTIALS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

/// The attributes a token limit sets on a request it refuses: the limit that was spent
/// and the policy's `<namespace>/<name>`.
const RATE_LIMITED: &str = "ai.rate_limited";
const RATE_LIMIT_POLICY: &str = "ai.rate_limit_policy";

pub async fn forward<B>(p: ProxyRequest<'_>, ai: &AiService, req: Request<B>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let arrived = Instant::now();
    let request_deadline = p.rule.timeouts.request.map(|t| arrived + t);
    let (mut parts, body) = req.into_parts();
    let redirect = p.redirect_context();
    let mut run = FilterRun::default();
    if let Flow::Respond(resp) = run.request_headers(&p.rule.filters, &mut parts, &redirect) {
        return respond_locally(run, parts, resp);
    }
    if parts.method == Method::GET && parts.uri.path().ends_with("/models") {
        return respond_locally(run, parts, models_response(ai));
    }
    let body = match read_body(body, ai.max_request_bytes, request_deadline).await {
        Ok(body) => body,
        Err(resp) => return respond_locally(run, parts, resp),
    };
    // The rule's own body filters (a PII mask, a token limit) see the client's request.
    let body = if run.has_request_body_phase() {
        match run.request_chunk(&mut parts, body, true) {
            Ok(body) => body,
            Err(answer) => {
                count_rejection(ai, &parts);
                return respond_locally(run, parts, *answer);
            }
        }
    } else {
        body
    };
    let fields = RoutingFields::read(&body);
    let attempts = ai.attempts(&fields, &parts.headers);
    if attempts.is_empty() {
        let resp = status_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "no AI backend serves this model\n",
        );
        return respond_locally(run, parts, resp);
    }
    prepare_request_headers(
        &mut parts.headers,
        parts.uri.authority(),
        p.client_ip,
        p.scheme.as_str(),
        false,
    );
    for name in CLIENT_CREDENTIALS {
        parts.headers.remove(name);
    }
    // The client's URI may carry its own authority (HTTP/2); the backend's replaces it.
    parts.uri = origin_form(&parts.uri);

    let last = attempts.len() - 1;
    for (n, &index) in attempts.iter().enumerate() {
        let backend = &ai.backends[index];
        let mut head = copy_request_head(&parts);
        if let Ok(host) = HeaderValue::from_str(backend.authority.as_str()) {
            head.headers.insert(HOST, host);
        }
        if let Some((name, value)) = &backend.auth {
            head.headers.insert(name.clone(), value.clone());
        }
        let mut attempt = FilterRun::default();
        if let Flow::Respond(resp) = attempt.request_headers(&backend.filters, &mut head, &redirect)
        {
            run.append(attempt);
            return respond_locally(run, parts, resp);
        }
        let sent = if attempt.has_request_body_phase() {
            match attempt.request_chunk(&mut head, body.clone(), true) {
                Ok(sent) => sent,
                Err(answer) => {
                    run.append(attempt);
                    return respond_locally(run, parts, *answer);
                }
            }
        } else {
            body.clone()
        };
        head.headers.remove(CONTENT_LENGTH);
        head.headers
            .insert(CONTENT_LENGTH, HeaderValue::from(sent.len()));
        let forwarded = copy_request_head(&head);
        let deadline = backend_deadline(&p.rule.timeouts, request_deadline);
        let endpoint = backend.upstream.balance(None);
        let result = send_within(
            &backend.upstream,
            endpoint,
            Request::from_parts(head, full_body(sent)),
            deadline,
        )
        .await;
        if n < last && should_fall_back(&result) {
            debug!(service = %ai.name, backend = %backend.name, "AI backend failed; falling back");
            backend.series.fallbacks.inc();
            continue;
        }
        run.append(attempt);
        let shared = SharedRun::new(run, forwarded);
        let resp = match result {
            Ok(resp) => upstream_response(resp, None, Some(&shared)),
            Err(e) => failure_response(&e, &shared),
        };
        let series = &backend.series;
        let model = series.model(fields.model.as_deref().unwrap_or(""));
        series.answered(model, resp.status().as_u16());
        let observer = Observer {
            started: arrived,
            timed: resp.status().is_success(),
            first_token: series.first_token.clone(),
            inter_token: series.inter_token.clone(),
            input_tokens: model.input.clone(),
            output_tokens: model.output.clone(),
            shared,
        };
        return resp.map(|body| ObservedBody::new(body, observer).boxed_unsync());
    }
    unreachable!("the last attempt always returns")
}

/// A token limit that refused the request says so in its attributes (see wit/README.md).
fn count_rejection(ai: &AiService, parts: &http::request::Parts) {
    let Some(attributes) = parts.extensions.get::<nantian_wasm::Attributes>() else {
        return;
    };
    if let Some(limit) = attributes.get(RATE_LIMITED) {
        let policy = attributes.get(RATE_LIMIT_POLICY).unwrap_or_default();
        ai.rejections.rejected(policy, limit);
    }
}

/// A failure the next backend may not have: the connection, a timeout, rate limiting or
/// a server error. Any other answer (a 400, a 401) is the client's to see.
fn should_fall_back(result: &Result<Response<ProxyBody>, SendError>) -> bool {
    match result {
        Ok(resp) => {
            let status = resp.status();
            status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
        }
        Err(SendError::Upstream(_) | SendError::TimedOut) => true,
        Err(SendError::ClientBody(_)) => false,
    }
}

/// Reads the whole request body: routing needs its `model`, and every attempt sends it.
async fn read_body<B>(
    body: B,
    limit: usize,
    deadline: Option<Instant>,
) -> Result<Bytes, Response<ProxyBody>>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let collect = Limited::new(body, limit).collect();
    let collected = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, collect).await {
            Ok(collected) => collected,
            Err(_) => {
                return Err(status_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "request timeout\n",
                ));
            }
        },
        None => collect.await,
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than this AI route accepts",
        )),
        Err(e) => {
            debug!("LLM request body could not be read: {e}");
            Err(status_response(
                StatusCode::BAD_REQUEST,
                "request body could not be read\n",
            ))
        }
    }
}

/// An error the gateway gives before any backend's adapter ran, in the shape OpenAI,
/// Anthropic and Ollama clients all print (each looks for `error`, with a message in it
/// or as it).
fn json_error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "type": "error",
        "error": {"message": message, "type": "invalid_request_error"},
    });
    let mut resp = Response::new(full_body(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The path and query alone: the backend's authority goes in `Host`.
fn origin_form(uri: &http::Uri) -> http::Uri {
    match uri.path_and_query() {
        Some(pq) => http::Uri::from(pq.clone()),
        None => http::Uri::from_static("/"),
    }
}
