//! `Route` (one HTTPRoute rule) → [`RouteSpec`]: matches, filters and backend refs.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use nantian_proto::config as pb;
use nantian_wasm::CounterScope;
use regex::Regex;

use crate::ai::AiServiceSpec;
use crate::config::{
    BackendRefSpec, ConfigError, FilterSpec, GrpcRank, HeaderMatch, MatchSpec, MirrorSpec,
    PathMatch, PathModifier, QueryMatch, RedirectSpec, RetrySpec, RewriteSpec, RouteSpec, Scheme,
    StreamKind, Timeouts, ValueMatch, WasmFilterSpec, invalid,
};
use crate::hostname::Hostname;
use crate::session::SessionSpec;

impl TryFrom<&pb::Route> for RouteSpec {
    type Error = ConfigError;

    fn try_from(pb: &pb::Route) -> Result<Self, ConfigError> {
        let hostnames = pb
            .hostnames
            .iter()
            .map(|h| Hostname::parse(h))
            .collect::<Result<_, _>>()?;
        let mut matches: Vec<MatchSpec> = pb
            .matches
            .iter()
            .map(MatchSpec::try_from)
            .collect::<Result<_, _>>()?;
        let (grpc, stream) = match pb.kind.as_str() {
            "" | "HTTPRoute" => (false, None),
            "GRPCRoute" => (true, None),
            "TLSRoute" => (false, Some(StreamKind::Tls)),
            "TCPRoute" => (false, Some(StreamKind::Tcp)),
            "UDPRoute" => (false, Some(StreamKind::Udp)),
            other => {
                return Err(ConfigError::Unsupported {
                    field: "route kind",
                    value: other.to_string(),
                });
            }
        };
        if matches.iter().any(|m| m.grpc.is_some() != grpc) {
            return Err(invalid(
                "route match",
                &pb.name,
                "gRPC method matches belong to GRPCRoute rules only, and every match of one",
            ));
        }
        if stream.is_some() && (!matches.is_empty() || !pb.filters.is_empty()) {
            return Err(invalid(
                "route",
                &pb.name,
                "a TLSRoute, TCPRoute or UDPRoute rule has no matches or filters: it is chosen by SNI or listener alone",
            ));
        }
        if matches.is_empty() {
            matches.push(MatchSpec {
                path: PathMatch::Prefix("/".into()),
                headers: Vec::new(),
                query: Vec::new(),
                method: None,
                grpc: grpc.then(GrpcRank::default),
            });
        }
        let filters = convert_filters(&pb.filters)?;
        check_prefix_rewrite(&filters, &matches)?;
        let backends: Vec<BackendRefSpec> = pb
            .backends
            .iter()
            .map(|b| {
                let filters = convert_filters(&b.filters)?;
                check_prefix_rewrite(&filters, &matches)?;
                Ok(BackendRefSpec {
                    backend: (!b.backend.is_empty()).then(|| b.backend.clone()),
                    weight: b.weight,
                    filters,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let millis = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
        let timeouts = Timeouts {
            request: millis(pb.request_timeout_millis),
            backend_request: millis(pb.backend_request_timeout_millis),
        };
        let session = pb
            .session_persistence
            .as_ref()
            .map(|s| SessionSpec::try_from(s).map(Arc::new))
            .transpose()?;
        let retry = pb.retry.as_ref().map(retry_spec).transpose()?;
        let ai = match &pb.ai {
            None => None,
            Some(_) if grpc || stream.is_some() || !backends.is_empty() => {
                return Err(invalid(
                    "route",
                    &pb.name,
                    "an AIService is the only backend of an HTTPRoute rule",
                ));
            }
            Some(ai) => {
                let spec = AiServiceSpec::decode(ai, |filters| {
                    let filters = convert_filters(filters)?;
                    check_prefix_rewrite(&filters, &matches)?;
                    Ok(filters)
                })?;
                Some(Arc::new(spec))
            }
        };
        Ok(RouteSpec {
            ai,
            timeouts,
            session,
            retry,
            name: pb.name.as_str().into(),
            namespace: pb.route_namespace.clone(),
            route_name: pb.route_name.clone(),
            rule_index: pb.rule_index,
            creation_timestamp: pb.creation_timestamp,
            listeners: pb.listeners.clone(),
            hostnames,
            matches,
            filters,
            backends,
            grpc,
            stream,
        })
    }
}

/// The most retries one rule may ask for: beyond this a retry storm, not resilience.
const MAX_RETRY_ATTEMPTS: u32 = 10;

fn retry_spec(pb: &pb::RouteRetry) -> Result<RetrySpec, ConfigError> {
    let mut codes = pb
        .codes
        .iter()
        .map(|&code| match u16::try_from(code) {
            Ok(code @ 400..=599) => Ok(code),
            _ => Err(ConfigError::Invalid {
                field: "retry code",
                value: code.to_string(),
                reason: "not an HTTP error status (400-599)".into(),
            }),
        })
        .collect::<Result<Vec<u16>, _>>()?;
    codes.sort_unstable();
    codes.dedup();
    if pb.attempts > MAX_RETRY_ATTEMPTS {
        return Err(ConfigError::Invalid {
            field: "retry attempts",
            value: pb.attempts.to_string(),
            reason: format!("more than {MAX_RETRY_ATTEMPTS}"),
        });
    }
    Ok(RetrySpec {
        codes: codes.into(),
        attempts: pb.attempts,
        backoff: Duration::from_millis(pb.backoff_millis),
    })
}

/// Gateway API: ReplacePrefixMatch only makes sense when every match is a PathPrefix.
fn check_prefix_rewrite(filters: &[FilterSpec], matches: &[MatchSpec]) -> Result<(), ConfigError> {
    let uses_prefix_rewrite = filters.iter().any(|f| match f {
        FilterSpec::Redirect(r) => matches!(r.path, Some(PathModifier::ReplacePrefixMatch(_))),
        FilterSpec::Rewrite(r) => matches!(r.path, Some(PathModifier::ReplacePrefixMatch(_))),
        FilterSpec::Wasm(_) | FilterSpec::Mirror(_) => false,
    });
    if uses_prefix_rewrite
        && !matches
            .iter()
            .all(|m| matches!(m.path, PathMatch::Prefix(_)))
    {
        return Err(invalid(
            "redirect path",
            "ReplacePrefixMatch",
            "requires every match of the rule to be a PathPrefix match",
        ));
    }
    Ok(())
}

impl TryFrom<&pb::RouteMatch> for MatchSpec {
    type Error = ConfigError;

    fn try_from(pb: &pb::RouteMatch) -> Result<Self, ConfigError> {
        let (path, grpc) = match (&pb.grpc_method, &pb.path) {
            (Some(g), None) => {
                let (path, rank) = grpc_path(g)?;
                (path, Some(rank))
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "route match",
                    "path",
                    "a gRPC method match has no path match",
                ));
            }
            (None, None) => (PathMatch::Prefix("/".into()), None),
            (None, Some(p)) => (PathMatch::try_from(p)?, None),
        };
        let mut headers: Vec<HeaderMatch> = Vec::with_capacity(pb.headers.len());
        for h in &pb.headers {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|e| invalid("header name", &h.name, e))?;
            // Gateway API: of entries with equivalent names only the first counts.
            if headers.iter().all(|seen| seen.name != name) {
                headers.push(HeaderMatch {
                    name,
                    value: value_match(&h.r#type, &h.value)?,
                });
            }
        }
        let mut query: Vec<QueryMatch> = Vec::with_capacity(pb.query_params.len());
        for q in &pb.query_params {
            if q.name.is_empty() {
                return Err(invalid("query parameter name", "", "must not be empty"));
            }
            if query.iter().all(|seen| *seen.name != *q.name) {
                query.push(QueryMatch {
                    name: q.name.as_str().into(),
                    value: value_match(&q.r#type, &q.value)?,
                });
            }
        }
        let method = match pb.method.as_str() {
            "" => None,
            m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE"
            | "PATCH") => {
                Some(Method::from_bytes(m.as_bytes()).map_err(|e| invalid("method", m, e))?)
            }
            other => {
                return Err(ConfigError::Unsupported {
                    field: "method",
                    value: other.to_string(),
                });
            }
        };
        Ok(MatchSpec {
            path,
            headers,
            query,
            method,
            grpc,
        })
    }
}

/// A GRPCRoute method match as a match on the gRPC path `/<service>/<method>`, and its
/// rank. Exact: service and method → that path; service only → every method of it (a
/// segment-aware prefix); method only → that method of any service; neither → every
/// request. RegularExpression: each part a pattern (absent: any).
fn grpc_path(g: &pb::GrpcMethodMatch) -> Result<(PathMatch, GrpcRank), ConfigError> {
    let rank = GrpcRank {
        service_len: g.service.len(),
        method_len: g.method.len(),
    };
    let any = "[^/]+";
    let path = match g.r#type.as_str() {
        "Exact" | "" => {
            for part in [&g.service, &g.method] {
                if part.contains('/') {
                    return Err(invalid("gRPC method match", part, "must not contain '/'"));
                }
            }
            match (g.service.is_empty(), g.method.is_empty()) {
                (false, false) => PathMatch::Exact(format!("/{}/{}", g.service, g.method).into()),
                (false, true) => PathMatch::Prefix(format!("/{}", g.service).into()),
                (true, false) => PathMatch::Regex(full_match_regex(&format!(
                    "/{any}/{}",
                    regex::escape(&g.method)
                ))?),
                (true, true) => PathMatch::Prefix("/".into()),
            }
        }
        "RegularExpression" => {
            let part = |p: &str| {
                if p.is_empty() {
                    any.to_string()
                } else {
                    format!("(?:{p})")
                }
            };
            PathMatch::Regex(full_match_regex(&format!(
                "/{}/{}",
                part(&g.service),
                part(&g.method)
            ))?)
        }
        other => {
            return Err(ConfigError::Unsupported {
                field: "gRPC method match type",
                value: other.to_string(),
            });
        }
    };
    Ok((path, rank))
}

impl TryFrom<&pb::PathMatch> for PathMatch {
    type Error = ConfigError;

    fn try_from(pb: &pb::PathMatch) -> Result<Self, ConfigError> {
        let must_be_absolute = |v: &str| {
            if v.starts_with('/') {
                Ok(())
            } else {
                Err(invalid("path", v, "must start with '/'"))
            }
        };
        match pb.r#type.as_str() {
            "Exact" => {
                must_be_absolute(&pb.value)?;
                Ok(PathMatch::Exact(pb.value.as_str().into()))
            }
            // Gateway API's default type; an empty value is its default "/".
            "PathPrefix" | "" => {
                let value = if pb.value.is_empty() {
                    "/"
                } else {
                    pb.value.as_str()
                };
                must_be_absolute(value)?;
                Ok(PathMatch::Prefix(value.into()))
            }
            "RegularExpression" => Ok(PathMatch::Regex(full_match_regex(&pb.value)?)),
            other => Err(ConfigError::Unsupported {
                field: "path match type",
                value: other.to_string(),
            }),
        }
    }
}

fn value_match(kind: &str, value: &str) -> Result<ValueMatch, ConfigError> {
    match kind {
        "Exact" | "" => Ok(ValueMatch::Exact(value.into())),
        "RegularExpression" => Ok(ValueMatch::Regex(full_match_regex(value)?)),
        other => Err(ConfigError::Unsupported {
            field: "value match type",
            value: other.to_string(),
        }),
    }
}

/// Compiled once per snapshot; anchored so the pattern must cover the whole value.
fn full_match_regex(pattern: &str) -> Result<Regex, ConfigError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| ConfigError::Regex {
        pattern: pattern.to_string(),
        source: Box::new(e),
    })
}

fn convert_filters(filters: &[pb::RouteFilter]) -> Result<Vec<FilterSpec>, ConfigError> {
    let mut out = Vec::with_capacity(filters.len());
    for f in filters {
        let spec = match &f.kind {
            Some(pb::route_filter::Kind::RequestRedirect(r)) => {
                if out.iter().any(|s| matches!(s, FilterSpec::Redirect(_))) {
                    return Err(ConfigError::Conflict(
                        "more than one RequestRedirect filter".into(),
                    ));
                }
                FilterSpec::Redirect(Arc::new(RedirectSpec::try_from(r)?))
            }
            Some(pb::route_filter::Kind::Wasm(w)) => FilterSpec::Wasm(WasmFilterSpec::try_from(w)?),
            Some(pb::route_filter::Kind::RequestMirror(m)) => {
                if m.denominator == 0 || m.numerator > m.denominator {
                    return Err(invalid(
                        "mirror share",
                        format!("{}/{}", m.numerator, m.denominator),
                        "must be a fraction between 0 and 1",
                    ));
                }
                FilterSpec::Mirror(MirrorSpec {
                    backend: m.backend.clone(),
                    numerator: m.numerator,
                    denominator: m.denominator,
                })
            }
            Some(pb::route_filter::Kind::UrlRewrite(r)) => {
                if out.iter().any(|s| matches!(s, FilterSpec::Rewrite(_))) {
                    return Err(ConfigError::Conflict(
                        "more than one URLRewrite filter".into(),
                    ));
                }
                FilterSpec::Rewrite(Arc::new(RewriteSpec {
                    hostname: exact_hostname("rewrite hostname", &r.hostname)?,
                    path: path_modifier("rewrite path", r.path.as_ref())?,
                }))
            }
            None => return Err(invalid("filter", "", "has no kind")),
        };
        out.push(spec);
    }
    Ok(out)
}

/// An optional exact hostname (empty: none).
fn exact_hostname(field: &'static str, h: &str) -> Result<Option<Box<str>>, ConfigError> {
    match h {
        "" => Ok(None),
        h => match Hostname::parse(h)? {
            Hostname::Exact(exact) => Ok(Some(exact)),
            Hostname::Wildcard(_) => Err(invalid(field, h, "must not be a wildcard")),
        },
    }
}

fn path_modifier(
    field: &'static str,
    m: Option<&pb::PathModifier>,
) -> Result<Option<PathModifier>, ConfigError> {
    let Some(m) = m else { return Ok(None) };
    Ok(Some(match m.r#type.as_str() {
        "ReplaceFullPath" if m.value.starts_with('/') => {
            PathModifier::ReplaceFullPath(m.value.as_str().into())
        }
        "ReplacePrefixMatch" if m.value.is_empty() || m.value.starts_with('/') => {
            PathModifier::ReplacePrefixMatch(m.value.as_str().into())
        }
        "ReplaceFullPath" | "ReplacePrefixMatch" => {
            return Err(invalid(field, &m.value, "must start with '/'"));
        }
        other => {
            return Err(ConfigError::Unsupported {
                field: "path modifier",
                value: other.to_string(),
            });
        }
    }))
}

impl TryFrom<&pb::RequestRedirect> for RedirectSpec {
    type Error = ConfigError;

    fn try_from(pb: &pb::RequestRedirect) -> Result<Self, ConfigError> {
        let scheme = match pb.scheme.as_str() {
            "" => None,
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            other => {
                return Err(ConfigError::Unsupported {
                    field: "redirect scheme",
                    value: other.to_string(),
                });
            }
        };
        let hostname = exact_hostname("redirect hostname", &pb.hostname)?;
        let port = match pb.port {
            0 => None,
            p => Some(
                u16::try_from(p).map_err(|_| invalid("redirect port", p, "must be 1..=65535"))?,
            ),
        };
        let path = path_modifier("redirect path", pb.path.as_ref())?;
        let status = match pb.status_code {
            0 => 302,
            s @ (301 | 302 | 303 | 307 | 308) => s as u16,
            other => {
                return Err(ConfigError::Unsupported {
                    field: "redirect status code",
                    value: other.to_string(),
                });
            }
        };
        Ok(RedirectSpec {
            scheme,
            hostname,
            port,
            path,
            status,
        })
    }
}

impl TryFrom<&pb::WasmFilter> for WasmFilterSpec {
    type Error = ConfigError;

    fn try_from(pb: &pb::WasmFilter) -> Result<Self, ConfigError> {
        let fail_open = match pb.fail_policy.as_str() {
            "" | "FailClosed" => false,
            "FailOpen" => true,
            other => {
                return Err(ConfigError::Unsupported {
                    field: "fail policy",
                    value: other.to_string(),
                });
            }
        };
        if pb.module.is_empty() {
            return Err(invalid(
                "wasm filter module",
                "",
                "must name a FilterModule",
            ));
        }
        Ok(WasmFilterSpec {
            display_name: if pb.display_name.is_empty() {
                Arc::from(pb.module.as_str())
            } else {
                Arc::from(pb.display_name.as_str())
            },
            module: pb.module.clone(),
            config: pb.config.as_bytes().to_vec(),
            fail_open,
            timeout: (pb.timeout_millis > 0)
                .then(|| Duration::from_millis(pb.timeout_millis.into())),
            max_memory: (pb.max_memory_bytes > 0).then_some(pb.max_memory_bytes),
            counters: pb.counters.as_ref().map(counter_scope).transpose()?,
        })
    }
}

/// A filter's counter store. The Redis URL is checked when the filter is bound (an invalid
/// one fails the binding, naming the routes using it).
fn counter_scope(pb: &pb::CounterStore) -> Result<CounterScope, ConfigError> {
    if pb.scope.is_empty() {
        return Err(invalid(
            "wasm filter counters scope",
            "",
            "must name the counters (e.g. the policy they belong to)",
        ));
    }
    Ok(CounterScope {
        scope: pb.scope.clone(),
        redis_url: (!pb.redis_url.is_empty()).then(|| pb.redis_url.clone()),
    })
}
