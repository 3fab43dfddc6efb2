//! One routed request, start to finish: rule filters (request headers) → weighted backend
//! pick → the backend ref's filters → upstream → response filters (reverse order) → client.
//! Bodies stream in both directions; a WebSocket handshake becomes a byte tunnel.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::header::CONTENT_LENGTH;
use http::{Request, Response, StatusCode, request};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use smallvec::SmallVec;
use tokio::time::Instant;
use tracing::debug;

use crate::config::{PathMatch, Scheme};
use crate::filter_body::{Direction, FilteredBody, SharedRun, lock};
use crate::filter_chain::{FilterRun, Flow, RedirectContext, status_response};
use crate::forwarding::{
    ClientIp, is_websocket_upgrade, prepare_request_headers, strip_hop_by_hop,
};
use crate::mirror;
use crate::pick;
use crate::retry;
use crate::router::Candidate;
use crate::snapshot::Rule;
use crate::timeout::{DeadlineBody, backend_deadline};
use crate::upstream::{BoxError, ProxyBody, Upstream, UpstreamError};

/// A request the router matched, with what it matched.
pub struct ProxyRequest<'a> {
    pub rule: &'a Rule,
    pub candidate: &'a Candidate,
    pub listener_port: u16,
    pub client: SocketAddr,
    /// The same address as `X-Forwarded-For` adds it.
    pub client_ip: &'a ClientIp,
    /// How the client reached us: `https` on HTTPS listeners.
    pub scheme: Scheme,
}

impl ProxyRequest<'_> {
    /// What a redirect or rewrite filter needs to know about how this request matched.
    pub(crate) fn redirect_context(&self) -> RedirectContext<'_> {
        RedirectContext {
            scheme: self.scheme,
            listener_port: self.listener_port,
            matched_prefix: match &self.candidate.spec.path {
                PathMatch::Prefix(prefix) => Some(prefix),
                PathMatch::Exact(_) | PathMatch::Regex(_) => None,
            },
        }
    }
}

pub async fn forward<B>(p: ProxyRequest<'_>, req: Request<B>) -> Response<ProxyBody>
where
    B: Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    if let Some(ai) = &p.rule.ai {
        // Boxed: only LLM routes pay for the AI path's future.
        return Box::pin(crate::ai::forward(p, ai, req)).await;
    }
    // The request timeout counts from here: the request has arrived and been routed.
    let request_deadline = p.rule.timeouts.request.map(|t| Instant::now() + t);
    let (mut parts, body) = req.into_parts();
    let redirect = p.redirect_context();
    let mut run = FilterRun::default();
    if let Flow::Respond(resp) = run.request_headers(&p.rule.filters, &mut parts, &redirect) {
        return respond_locally(run, parts, resp);
    }
    let Some(mut pick) = pick::pick(p.rule, &parts, p.client.ip()) else {
        return respond_locally(
            run,
            parts,
            internal_error("the route has no usable backend\n"),
        );
    };
    if let Flow::Respond(resp) = run.request_headers(&pick.choice.filters, &mut parts, &redirect) {
        return respond_locally(run, parts, resp);
    }
    let Some(upstream) = &pick.choice.upstream else {
        return respond_locally(run, parts, internal_error("invalid backend reference\n"));
    };

    let websocket = is_websocket_upgrade(parts.version, &parts.headers);
    let client_upgrade = websocket
        .then(|| parts.extensions.remove::<OnUpgrade>())
        .flatten();
    prepare_request_headers(
        &mut parts.headers,
        parts.uri.authority(),
        p.client_ip,
        p.scheme.as_str(),
        websocket,
    );
    // A protocol switch cannot be copied; every other request picked by a mirror is.
    let mirrors = if client_upgrade.is_none() {
        std::mem::take(&mut run.mirrors)
    } else {
        SmallVec::new()
    };

    // Filters with later phases share their run with the bodies and the response; with
    // none, their instances go back before waiting upstream.
    let filter_request_body = run.has_request_body_phase() && !body.is_end_stream();
    let shared = if run.needs_more_phases() {
        Some(SharedRun::new(run, copy_request_head(&parts)))
    } else {
        drop(run);
        None
    };
    let mut body = match &shared {
        Some(shared) if filter_request_body => {
            // Filters may change the length; hyper chunks the body instead.
            parts.headers.remove(CONTENT_LENGTH);
            FilteredBody::new(body, shared.clone(), Direction::Request).boxed_unsync()
        }
        // A request without a body (most GETs) forwards an empty one: no box, no polling.
        _ if body.is_end_stream() => ProxyBody::default(),
        _ => box_body(body),
    };
    if !mirrors.is_empty() {
        body = mirror::start(&mirrors, &parts, body);
    }
    let mut result = match &p.rule.retry {
        // Boxed: only retried routes pay for the retry loop's future.
        Some(retry) if client_upgrade.is_none() => {
            let send = retry::send_with_retries(
                upstream,
                pick.endpoint,
                parts,
                body,
                retry,
                &p.rule.timeouts,
                request_deadline,
                &p.rule.metrics,
            );
            Box::pin(send).await
        }
        _ => {
            let deadline = backend_deadline(&p.rule.timeouts, request_deadline);
            // One await of the upstream for every other case: each call site would add
            // the size of the send future to this one, which is moved several times per
            // request.
            send_within(
                upstream,
                pick.endpoint,
                Request::from_parts(parts, body),
                deadline,
            )
            .await
        }
    };
    if let Ok(resp) = &mut result {
        pick.stamp(resp.headers_mut());
    }
    let Some(shared) = shared else {
        return match result {
            Ok(resp) => upstream_response(resp, client_upgrade, None),
            Err(e) => e.response(),
        };
    };
    // A request-body filter that answered wins over whatever the upstream said.
    if let Some(local) = lock(&shared).local_response.take() {
        return local;
    }
    match result {
        Ok(resp) => upstream_response(resp, client_upgrade, Some(&shared)),
        Err(e) => failure_response(&e, &shared),
    }
}

/// The gateway's answer when no upstream response came, through the response-header
/// phases of the filters that ran.
pub(crate) fn failure_response(e: &SendError, shared: &Mutex<SharedRun>) -> Response<ProxyBody> {
    let (mut head, body) = e.response().into_parts();
    let mut guard = lock(shared);
    let SharedRun { run, request, .. } = &mut *guard;
    match run.response_headers(request, &mut head) {
        Some(replacement) => replacement,
        None => Response::from_parts(head, body),
    }
}

/// Runs the response-header phases of the filters that already ran on a response the
/// gateway made itself (redirect, filter answer, 500), then returns it.
pub(crate) fn respond_locally(
    mut run: FilterRun,
    mut req: request::Parts,
    resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let (mut head, body) = resp.into_parts();
    match run.response_headers(&mut req, &mut head) {
        Some(replacement) => replacement,
        None => Response::from_parts(head, body),
    }
}

/// Cleans the upstream response, runs the response filters (if any), and wires up the
/// WebSocket tunnel when the upstream switched protocols.
pub(crate) fn upstream_response(
    mut resp: Response<ProxyBody>,
    client_upgrade: Option<OnUpgrade>,
    shared: Option<&Arc<Mutex<SharedRun>>>,
) -> Response<ProxyBody> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    match (switching, client_upgrade) {
        (true, Some(client)) => tunnel(client, hyper::upgrade::on(&mut resp)),
        (true, None) => {
            // Only WebSocket handshakes are proxied; anything else can't switch here.
            debug!("upstream switched protocols for a request that did not ask to");
            return status_response(StatusCode::BAD_GATEWAY, "unexpected protocol switch\n");
        }
        (false, _) => {}
    }
    strip_hop_by_hop(resp.headers_mut(), switching);
    let (mut head, body) = resp.into_parts();
    let Some(shared) = shared else {
        return Response::from_parts(head, body);
    };
    let mut guard = lock(shared);
    let SharedRun {
        run,
        request,
        response,
        ..
    } = &mut *guard;
    if let Some(replacement) = run.response_headers(request, &mut head) {
        return replacement;
    }
    if !run.has_response_body_phase() || body.is_end_stream() || switching {
        return Response::from_parts(head, body);
    }
    head.headers.remove(CONTENT_LENGTH);
    *response = Some(copy_response_head(&head));
    drop(guard);
    Response::from_parts(
        head,
        FilteredBody::new(body, shared.clone(), Direction::Response).boxed_unsync(),
    )
}

/// Copies bytes both ways between the client and the upstream once both sides upgraded.
fn tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(e) => {
                debug!("websocket upgrade failed: {e}");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            debug!("websocket tunnel closed: {e}");
        }
    });
}

/// Why no upstream response came back.
pub(crate) enum SendError {
    Upstream(UpstreamError),
    TimedOut,
    /// The client's body could not be read (held for a retry).
    ClientBody(BoxError),
}

impl SendError {
    fn response(&self) -> Response<ProxyBody> {
        match self {
            SendError::Upstream(e) => upstream_error(e),
            SendError::ClientBody(e) => {
                debug!("request body could not be read: {e}");
                status_response(StatusCode::BAD_REQUEST, "request body could not be read\n")
            }
            SendError::TimedOut => {
                status_response(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout\n")
            }
        }
    }
}

/// Sends to the upstream; with a deadline, the response head must arrive before it (else
/// 504) and the body is cut off at it.
pub(crate) async fn send_within(
    upstream: &Upstream,
    endpoint: Option<usize>,
    req: Request<ProxyBody>,
    deadline: Option<Instant>,
) -> Result<Response<ProxyBody>, SendError> {
    // One `send` future for both cases: every call site would add its size to the
    // request's future, which is moved several times per request.
    let send = upstream.send_to(endpoint, req);
    let send = std::pin::pin!(send);
    let Some(deadline) = deadline else {
        return send.await.map_err(SendError::Upstream);
    };
    match tokio::time::timeout_at(deadline, send).await {
        Ok(Ok(resp)) => Ok(resp.map(|body| DeadlineBody::wrap(body, deadline))),
        Ok(Err(e)) => Err(SendError::Upstream(e)),
        Err(_) => {
            debug!(backend = %upstream.name, "upstream request timed out");
            Err(SendError::TimedOut)
        }
    }
}

fn upstream_error(e: &UpstreamError) -> Response<ProxyBody> {
    debug!("upstream request failed: {e}");
    match e.status() {
        StatusCode::SERVICE_UNAVAILABLE => {
            status_response(StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable\n")
        }
        status => status_response(status, "upstream request failed\n"),
    }
}

fn internal_error(why: &'static str) -> Response<ProxyBody> {
    status_response(StatusCode::INTERNAL_SERVER_ERROR, why)
}

fn box_body<B>(body: B) -> ProxyBody
where
    B: Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// The request head as forwarded, for filters that run after it left (of its extensions,
/// only the filters' attributes).
pub(crate) fn copy_request_head(parts: &request::Parts) -> request::Parts {
    let mut copy = Request::new(());
    *copy.method_mut() = parts.method.clone();
    *copy.uri_mut() = parts.uri.clone();
    *copy.version_mut() = parts.version;
    *copy.headers_mut() = parts.headers.clone();
    // Filters' attributes travel with the request (the response phases read them).
    if let Some(attributes) = parts.extensions.get::<nantian_wasm::Attributes>() {
        copy.extensions_mut().insert(attributes.clone());
    }
    copy.into_parts().0
}

fn copy_response_head(parts: &http::response::Parts) -> http::response::Parts {
    let mut copy = Response::new(());
    *copy.status_mut() = parts.status;
    *copy.version_mut() = parts.version;
    *copy.headers_mut() = parts.headers.clone();
    copy.into_parts().0
}
