//! Which backend and endpoint one request goes to: a live session token wins, else the
//! rule's weighted backend pick and the backend's load balancer; and the token to hand
//! back when a session starts or its idle clock restarts.
//!
//! The rule's session persistence (HTTPRoute `sessionPersistence`) replaces the picked
//! backend's own (BackendLBPolicy / XBackendTrafficPolicy) for the rule's traffic; under
//! the rule's, a session also sticks to its backend among the rule's backendRefs.

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, request};

use crate::balancer::PickContext;
use crate::session::{SessionSpec, Token, now_seconds};
use crate::snapshot::{BackendChoice, Rule};
use crate::upstream::Upstream;

/// Where a request goes.
pub struct Pick<'r> {
    pub choice: &'r BackendChoice,
    /// An index into the backend's endpoints; `None` when it has none (or the reference
    /// is invalid).
    pub endpoint: Option<usize>,
    /// A header for the response: a new or refreshed session token.
    pub issue: Option<(HeaderName, HeaderValue)>,
}

impl Pick<'_> {
    /// Adds the session token (if any) to the upstream's response.
    pub fn stamp(&mut self, headers: &mut HeaderMap) {
        if let Some((name, value)) = self.issue.take() {
            headers.append(name, value);
        }
    }
}

/// `None` when the rule has no backend to pick.
pub fn pick<'r>(rule: &'r Rule, parts: &request::Parts, client_ip: IpAddr) -> Option<Pick<'r>> {
    let now = now_seconds();
    let ctx = PickContext {
        headers: &parts.headers,
        uri: &parts.uri,
        client_ip: Some(client_ip),
    };
    if let Some(spec) = rule.session.as_deref()
        && let Some(pick) = resume(spec, rule, &parts.headers, now)
    {
        return Some(pick);
    }
    let choice = rule.backends.pick()?;
    let Some(upstream) = choice.upstream.as_deref() else {
        return Some(Pick {
            choice,
            endpoint: None,
            issue: None,
        });
    };
    let Some(spec) = rule.session.as_deref().or(upstream.session().map(|s| &**s)) else {
        return Some(Pick {
            choice,
            endpoint: upstream.balance(Some(&ctx)),
            issue: None,
        });
    };
    if rule.session.is_none()
        && let Some((endpoint, issue)) = live_endpoint(spec, upstream, &parts.headers, now)
    {
        return Some(Pick {
            choice,
            endpoint: Some(endpoint),
            issue,
        });
    }
    // No session, or its endpoint is gone or it expired: a fresh one.
    let endpoint = upstream.balance(Some(&ctx));
    let issue = endpoint.and_then(|i| {
        let token = Token {
            endpoint: upstream.endpoint_id(i)?,
            issued: now,
            last_seen: now,
        };
        Some(spec.issue(&upstream.session_key()?.seal(&token), &token, now))
    });
    Some(Pick {
        choice,
        endpoint,
        issue,
    })
}

/// A rule-level session: the backend among the rule's that holds the token's endpoint.
fn resume<'r>(
    spec: &SessionSpec,
    rule: &'r Rule,
    headers: &HeaderMap,
    now: u64,
) -> Option<Pick<'r>> {
    rule.backends.iter().find_map(|choice| {
        let upstream = choice.upstream.as_deref()?;
        let (endpoint, issue) = live_endpoint(spec, upstream, headers, now)?;
        Some(Pick {
            choice,
            endpoint: Some(endpoint),
            issue,
        })
    })
}

/// The endpoint of `upstream` that the request's live token names, and the refreshed
/// token when an idle timeout needs its last-seen time moved on.
fn live_endpoint(
    spec: &SessionSpec,
    upstream: &Upstream,
    headers: &HeaderMap,
    now: u64,
) -> Option<(usize, Option<(HeaderName, HeaderValue)>)> {
    let key = upstream.session_key()?;
    let token = key.open(spec.find(headers)?)?;
    if !spec.is_live(&token, now) {
        return None;
    }
    let endpoint = upstream.endpoint_by_id(token.endpoint)?;
    // Refreshed at most once a second: the token only counts whole seconds.
    let issue = (spec.idle_timeout.is_some() && token.last_seen < now).then(|| {
        let refreshed = Token {
            last_seen: now,
            ..token
        };
        spec.issue(&key.seal(&refreshed), &refreshed, now)
    });
    Some((endpoint, issue))
}
