//! Runs a request's filters: rule filters, then the picked backend's, in spec order.
//!
//! A [`FilterRun`] holds the Wasm instances checked out for one request. Request-header
//! phases run in order as the chain is walked (a filter's instance is taken from its
//! binding's pool when reached); response-header phases run in reverse order over the
//! filters that let the request through; body phases run per chunk, only for filters that
//! asked for them (see `filter_body`). A failing filter answers 500 under FailClosed and is
//! skipped for the rest of the request under FailOpen; either way it is counted and logged.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, request, response};
use http_body_util::{BodyExt, Full};
use nantian_wasm::{
    ActiveFilter, BodyAction, FilterBinding, FilterError, HeadersAction, LocalResponse, Phases,
};
use smallvec::SmallVec;
use tracing::warn;

use crate::config::{PathModifier, RedirectSpec, RewriteSpec, Scheme};
use crate::hostname::strip_port;
use crate::metrics::{FilterMetrics, Phase};
use crate::mirror::MirrorStep;
use crate::redirect::{RedirectRequest, location, replace_prefix};
use crate::upstream::{BoxError, ProxyBody};

/// A Wasm filter bound with its configuration, ready to run.
pub struct WasmStep {
    pub name: Arc<str>,
    pub binding: Arc<FilterBinding>,
    /// Where the chain runs this step: the guest's phases plus the header phases with
    /// declared header changes (which the host makes without entering the guest).
    pub phases: Phases,
    /// The phases that call into the guest: timed in the metrics.
    pub guest_phases: Phases,
    pub fail_open: bool,
    pub metrics: FilterMetrics,
}

/// One entry of a rule's or backend ref's filter list.
#[derive(Clone)]
pub enum ChainStep {
    Wasm(Arc<WasmStep>),
    Redirect(Arc<RedirectSpec>),
    Rewrite(Arc<RewriteSpec>),
    Mirror(Arc<MirrorStep>),
}

/// What a redirect needs beyond the request itself.
#[derive(Debug, Clone, Copy)]
pub struct RedirectContext<'a> {
    pub scheme: Scheme,
    pub listener_port: u16,
    pub matched_prefix: Option<&'a str>,
}

pub enum Flow {
    Continue,
    Respond(Response<ProxyBody>),
}

struct Running {
    step: Arc<WasmStep>,
    active: ActiveFilter,
    /// Failed under FailOpen: skipped from now on.
    disabled: bool,
}

/// The filters of one request that have started, in request order. Inline up to two:
/// most routes have one or two filters, and this is built per request.
#[derive(Default)]
pub struct FilterRun {
    running: SmallVec<[Running; 2]>,
    /// RequestMirror filters that picked this request.
    pub mirrors: SmallVec<[Arc<MirrorStep>; 1]>,
}

impl FilterRun {
    /// Request-header phases of `steps`, in order. A redirect or a filter's `Respond`
    /// ends the walk with that response.
    pub fn request_headers(
        &mut self,
        steps: &[ChainStep],
        req: &mut request::Parts,
        redirect: &RedirectContext<'_>,
    ) -> Flow {
        for step in steps {
            let wasm = match step {
                ChainStep::Redirect(spec) => {
                    return Flow::Respond(redirect_response(spec, req, redirect));
                }
                ChainStep::Rewrite(spec) => {
                    rewrite(spec, req, redirect.matched_prefix);
                    continue;
                }
                ChainStep::Mirror(mirror) => {
                    if mirror.sample() {
                        self.mirrors.push(mirror.clone());
                    }
                    continue;
                }
                ChainStep::Wasm(wasm) => wasm,
            };
            let mut active = match wasm.binding.start() {
                Ok(active) => active,
                Err(e) => match failure(wasm, Phase::RequestHeaders, &e) {
                    Some(resp) => return Flow::Respond(resp),
                    None => continue,
                },
            };
            if wasm.phases.request_headers {
                match timed(
                    wasm,
                    wasm.guest_phases.request_headers,
                    Phase::RequestHeaders,
                    || active.on_request_headers(req),
                ) {
                    Ok(HeadersAction::Continue) => {}
                    Ok(HeadersAction::Respond(local)) => {
                        return Flow::Respond(local_response(local));
                    }
                    Err(e) => match failure(wasm, Phase::RequestHeaders, &e) {
                        Some(resp) => return Flow::Respond(resp),
                        None => continue,
                    },
                }
            }
            self.running.push(Running {
                step: wasm.clone(),
                active,
                disabled: false,
            });
        }
        Flow::Continue
    }

    /// Adds the filters `later` started after this run's (an AIService backend's filters,
    /// run once the backend was chosen), so response phases unwind through both.
    pub fn append(&mut self, later: FilterRun) {
        self.running.extend(later.running);
        self.mirrors.extend(later.mirrors);
    }

    /// Whether any started filter still has work once the request head is forwarded.
    pub fn needs_more_phases(&self) -> bool {
        self.running.iter().any(|r| {
            let p = r.step.phases;
            p.request_body || p.response_headers || p.response_body
        })
    }

    pub fn has_request_body_phase(&self) -> bool {
        self.running.iter().any(|r| r.step.phases.request_body)
    }

    pub fn has_response_body_phase(&self) -> bool {
        self.running.iter().any(|r| r.step.phases.response_body)
    }

    /// Response-header phases in reverse order. `Some` replaces the response.
    pub fn response_headers(
        &mut self,
        req: &mut request::Parts,
        resp: &mut response::Parts,
    ) -> Option<Response<ProxyBody>> {
        for r in self.running.iter_mut().rev() {
            if r.disabled || !r.step.phases.response_headers {
                continue;
            }
            let guest = r.step.guest_phases.response_headers;
            match timed(&r.step, guest, Phase::ResponseHeaders, || {
                r.active.on_response_headers(req, resp)
            }) {
                Ok(HeadersAction::Continue) => {}
                Ok(HeadersAction::Respond(local)) => return Some(local_response(local)),
                Err(e) => match failure(&r.step, Phase::ResponseHeaders, &e) {
                    Some(replacement) => return Some(replacement),
                    None => r.disabled = true,
                },
            }
        }
        None
    }

    /// One request-body chunk through the request-body filters, in order. `Err` is the
    /// response to give instead (a filter answered, or failed closed).
    pub fn request_chunk(
        &mut self,
        req: &mut request::Parts,
        mut data: Bytes,
        end_of_stream: bool,
    ) -> Result<Bytes, Box<Response<ProxyBody>>> {
        for r in self.running.iter_mut() {
            if r.disabled || !r.step.phases.request_body {
                continue;
            }
            if data.is_empty() && !end_of_stream {
                break; // held back by an earlier filter
            }
            let chunk = data.clone();
            match timed(&r.step, true, Phase::RequestBody, || {
                r.active.on_request_body(req, chunk, end_of_stream)
            }) {
                Ok(BodyAction::Continue) => {}
                Ok(BodyAction::Replace(bytes)) => data = bytes,
                Ok(BodyAction::Respond(local)) => return Err(Box::new(local_response(local))),
                Err(e) => match failure(&r.step, Phase::RequestBody, &e) {
                    Some(resp) => return Err(Box::new(resp)),
                    None => r.disabled = true,
                },
            }
        }
        Ok(data)
    }

    /// One response-body chunk through the response-body filters, in reverse order. The
    /// response head is already on its way, so a `Respond` or a FailClosed failure can
    /// only abort the body.
    pub fn response_chunk(
        &mut self,
        req: &mut request::Parts,
        resp: &mut response::Parts,
        mut data: Bytes,
        end_of_stream: bool,
    ) -> Result<Bytes, BoxError> {
        for r in self.running.iter_mut().rev() {
            if r.disabled || !r.step.phases.response_body {
                continue;
            }
            if data.is_empty() && !end_of_stream {
                break;
            }
            let chunk = data.clone();
            let result = timed(&r.step, true, Phase::ResponseBody, || {
                r.active.on_response_body(req, resp, chunk, end_of_stream)
            });
            match result {
                Ok(BodyAction::Continue) => {}
                Ok(BodyAction::Replace(bytes)) => data = bytes,
                Ok(BodyAction::Respond(_)) => {
                    warn!(filter = %r.step.name, "filter answered during the response body; the head was already sent, aborting");
                    return Err(format!(
                        "filter {} answered after the response head was sent",
                        r.step.name
                    )
                    .into());
                }
                Err(e) => {
                    if failure(&r.step, Phase::ResponseBody, &e).is_some() {
                        return Err(format!("filter {} failed: {e}", r.step.name).into());
                    }
                    r.disabled = true;
                }
            }
        }
        Ok(data)
    }
}

/// Runs a phase; a call into the guest (`guest`) is counted and timed, declared header
/// changes alone are not (they cost the host a few header-map operations).
fn timed<T>(step: &WasmStep, guest: bool, phase: Phase, call: impl FnOnce() -> T) -> T {
    if !guest {
        return call();
    }
    let started = Instant::now();
    let out = call();
    step.metrics.call(phase, started.elapsed());
    out
}

/// Counts and logs a failure; FailClosed → the 500 to answer, FailOpen → `None` (skip).
fn failure(step: &WasmStep, phase: Phase, err: &FilterError) -> Option<Response<ProxyBody>> {
    step.metrics.error(err.kind());
    warn!(filter = %step.name, ?phase, kind = err.kind(), fail_open = step.fail_open, "wasm filter failed: {err}");
    (!step.fail_open).then(|| status_response(StatusCode::INTERNAL_SERVER_ERROR, "filter failed\n"))
}

/// A response produced by the gateway itself.
pub fn status_response(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(full_body(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp.extensions_mut()
        .insert(crate::grpc_reply::LocalReply(body));
    resp
}

pub fn full_body(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The wasm crate has already checked status and headers; anything invalid is skipped.
fn local_response(local: LocalResponse) -> Response<ProxyBody> {
    let mut resp = Response::new(full_body(local.body));
    *resp.status_mut() =
        StatusCode::from_u16(local.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in local.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

/// Applies a URLRewrite to the request about to be forwarded: the new hostname becomes
/// the `Host` (and the URI's authority, which HTTP/2 forwarding uses); the path is
/// replaced whole or by its matched prefix, keeping the query.
fn rewrite(spec: &RewriteSpec, req: &mut request::Parts, matched_prefix: Option<&str>) {
    if let Some(host) = &spec.hostname
        && let Ok(value) = HeaderValue::from_str(host)
    {
        req.headers.insert(http::header::HOST, value);
        if req.uri.authority().is_some() {
            let mut parts = req.uri.clone().into_parts();
            parts.authority = host.parse().ok();
            if let Ok(uri) = http::Uri::from_parts(parts) {
                req.uri = uri;
            }
        }
    }
    let path = match (&spec.path, matched_prefix) {
        (None, _) => return,
        (Some(PathModifier::ReplaceFullPath(full)), _) => full.to_string(),
        (Some(PathModifier::ReplacePrefixMatch(replacement)), Some(prefix)) => {
            replace_prefix(req.uri.path(), prefix, replacement)
        }
        // Validation ties ReplacePrefixMatch to PathPrefix matches.
        (Some(PathModifier::ReplacePrefixMatch(_)), None) => return,
    };
    let path_and_query = match req.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = req.uri.clone().into_parts();
    match path_and_query.parse() {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return,
    }
    if let Ok(uri) = http::Uri::from_parts(parts) {
        req.uri = uri;
    }
}

fn redirect_response(
    spec: &RedirectSpec,
    req: &request::Parts,
    ctx: &RedirectContext<'_>,
) -> Response<ProxyBody> {
    let authority = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("");
    let target = location(
        spec,
        &RedirectRequest {
            scheme: ctx.scheme,
            host: strip_port(authority),
            path: req.uri.path(),
            query: req.uri.query(),
            listener_port: ctx.listener_port,
            matched_prefix: ctx.matched_prefix,
        },
    );
    let mut resp = Response::new(ProxyBody::default());
    *resp.status_mut() = StatusCode::from_u16(spec.status).unwrap_or(StatusCode::FOUND);
    match HeaderValue::from_str(&target) {
        Ok(value) => {
            resp.headers_mut().insert(http::header::LOCATION, value);
        }
        Err(_) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "cannot build a redirect for this request\n",
            );
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: &str) -> request::Parts {
        let mut req = http::Request::builder().uri(uri);
        if !host.is_empty() {
            req = req.header(http::header::HOST, host);
        }
        req.body(()).unwrap().into_parts().0
    }

    fn spec(hostname: Option<&str>, path: Option<PathModifier>) -> RewriteSpec {
        RewriteSpec {
            hostname: hostname.map(Into::into),
            path,
        }
    }

    #[test]
    fn rewrites_replace_the_path_and_keep_the_query() {
        let mut req = parts("/prefix/one/two?x=1", "gw");
        let prefix = spec(None, Some(PathModifier::ReplacePrefixMatch("/one".into())));
        rewrite(&prefix, &mut req, Some("/prefix/one"));
        assert_eq!(req.uri, "/one/two?x=1");
        let mut req = parts("/strip", "gw");
        let strip = spec(None, Some(PathModifier::ReplacePrefixMatch("/".into())));
        rewrite(&strip, &mut req, Some("/strip"));
        assert_eq!(req.uri, "/");
        let mut req = parts("/full/a?y=2", "gw");
        let full = spec(None, Some(PathModifier::ReplaceFullPath("/b".into())));
        rewrite(&full, &mut req, None);
        assert_eq!(req.uri, "/b?y=2");
        assert_eq!(req.headers[http::header::HOST], "gw");
    }

    #[test]
    fn a_hostname_rewrite_replaces_host_and_the_uri_authority() {
        let mut req = parts("/p", "gw.example:8080");
        rewrite(&spec(Some("svc.internal"), None), &mut req, None);
        assert_eq!(req.headers[http::header::HOST], "svc.internal");
        assert_eq!(req.uri, "/p");
        // HTTP/2: the authority is in the URI, and forwarding takes it from there.
        let mut req = parts("http://gw.example/p?q", "");
        rewrite(&spec(Some("svc.internal"), None), &mut req, None);
        assert_eq!(req.uri, "http://svc.internal/p?q");
        assert_eq!(req.headers[http::header::HOST], "svc.internal");
    }
}
