//! Route rules (HTTPRoute or GRPCRoute, see [`RouteSource`]) → `config::Route`s (one per
//! rule), with the backends and filter modules they use, independent of which Gateway
//! they attach to.

use std::collections::{BTreeMap, BTreeSet};

use gateway_api::experimental::httproutes::{
    HttpRouteRulesBackendRefs, HttpRouteRulesFiltersRequestMirror, HttpRouteRulesMatches,
    HttpRouteRulesMatchesHeadersType as HeaderType, HttpRouteRulesMatchesMethod as Method,
    HttpRouteRulesMatchesPathType as PathType, HttpRouteRulesMatchesQueryParamsType as QueryType,
    HttpRouteRulesTimeouts,
};
use nantian_proto::config;

use super::ai_service::{self, AiRefError, AiServices};
use super::listener::{GRPC_ROUTE, HTTP_ROUTE, TCP_ROUTE, TLS_ROUTE, UDP_ROUTE};
use super::policy::BackendPolicies;
use super::source::RouteSource;
use super::{TranslateOptions, backend, backend_lb, filter, retry};
use crate::model::{Key, Resources};
use crate::status::{Problem, combine, reason};

pub(super) struct RulesOutcome {
    /// One per rule, `listeners` still empty; none when the route is unsupported.
    pub routes: Vec<config::Route>,
    pub backends: Vec<config::Backend>,
    /// The Services of those backends (namespace, name).
    pub services: BTreeSet<Key>,
    pub modules: Vec<config::FilterModule>,
    /// Set when the route uses something Nantian does not implement: the route is then
    /// not accepted (UnsupportedValue) and none of its rules is programmed.
    pub unsupported: Option<Problem>,
    pub resolved_refs: Result<(), Problem>,
}

pub(super) fn translate_rules(
    res: &Resources,
    opts: &TranslateOptions,
    policies: &BackendPolicies,
    ai_services: &AiServices,
    route: &RouteSource,
) -> RulesOutcome {
    let route_ns = route.namespace.as_str();
    let mut routes = Vec::new();
    let mut backends = BTreeMap::new();
    let mut services = BTreeSet::new();
    let mut modules = BTreeMap::new();
    let mut unsupported = Vec::new();
    let mut ref_problems = Vec::new();

    for (index, source) in route.rules.iter().enumerate() {
        let rule = &source.rule;
        let label = match &rule.name {
            Some(name) => format!("rule {index} ({name})"),
            None => format!("rule {index}"),
        };
        let mut fail = |message: String| unsupported.push(format!("{label}: {message}"));

        let matches = match &source.matches {
            Ok(m) => m.clone(),
            Err(message) => {
                fail(message.clone());
                Vec::new()
            }
        };
        let (request_timeout_millis, backend_request_timeout_millis) =
            match timeouts(rule.timeouts.as_ref()) {
                Ok(t) => t,
                Err(message) => {
                    fail(message);
                    (0, 0)
                }
            };
        let retry = retry::translate(rule.retry.as_ref()).unwrap_or_else(|message| {
            fail(message);
            None
        });
        let mut mirror_backend = |m: &HttpRouteRulesFiltersRequestMirror| {
            let bref = HttpRouteRulesBackendRefs {
                group: m.backend_ref.group.clone(),
                kind: m.backend_ref.kind.clone(),
                name: m.backend_ref.name.clone(),
                namespace: m.backend_ref.namespace.clone(),
                port: m.backend_ref.port,
                ..Default::default()
            };
            match backend::resolve(res, policies, route, &bref) {
                Ok(resolved) => {
                    let b = resolved.backend;
                    let name = b.name.clone();
                    services.insert(resolved.service);
                    backends.insert(b.name.clone(), b);
                    Some(name)
                }
                Err(problem) => {
                    // The primary traffic still flows; only the mirror is left out.
                    ref_problems.push(problem);
                    None
                }
            }
        };
        let mut filters = filter::rule_filters(
            opts,
            rule.filters.as_deref().unwrap_or_default(),
            &matches,
            &mut modules,
            &mut mirror_backend,
        )
        .unwrap_or_else(|messages| {
            messages.into_iter().for_each(&mut fail);
            Vec::new()
        });

        let mut backend_refs = Vec::new();
        let mut ai = None;
        let brefs = rule.backend_refs.as_deref().unwrap_or_default();
        // An AIService is served only as an HTTPRoute rule's one backend.
        let lone_ai_service =
            route.kind == HTTP_ROUTE && brefs.len() == 1 && ai_service::is_ref(&brefs[0]);
        for bref in brefs {
            let bfilters = filter::backend_filters(
                opts,
                bref.filters.as_deref().unwrap_or_default(),
                &mut modules,
            )
            .unwrap_or_else(|message| {
                fail(format!("backendRef {}: {message}", bref.name));
                Vec::new()
            });
            let weight = u32::try_from(bref.weight.unwrap_or(1)).unwrap_or(0);
            if ai_service::is_ref(bref) {
                // Weight 0 sends it nothing: its modules are not needed.
                let mut unused = BTreeMap::new();
                let outcome = if lone_ai_service {
                    let modules = if weight > 0 {
                        &mut modules
                    } else {
                        &mut unused
                    };
                    ai_services.for_rule(res, opts, route, bref, &bfilters, modules)
                } else {
                    Err(AiRefError::Unresolved(ai_service::misplaced(route, bref)))
                };
                match outcome {
                    Ok(rule_ai) if weight > 0 => {
                        backends.extend(rule_ai.backends.into_iter().map(|b| (b.name.clone(), b)));
                        ai = Some(rule_ai.ai);
                        // Ahead of the route's own filters: a PII mask sees the client's
                        // request as it came, and the answer as it leaves.
                        filters.splice(0..0, rule_ai.rule_filters);
                        continue;
                    }
                    Ok(_) => {}
                    Err(AiRefError::Unresolved(problem)) => ref_problems.push(problem),
                    Err(AiRefError::Unsupported(message)) => fail(message),
                }
                // As for an unresolved Service: kept with an empty name, answered 500.
                backend_refs.push(config::BackendRef {
                    backend: String::new(),
                    weight,
                    filters: Vec::new(),
                });
                continue;
            }
            match backend::resolve(res, policies, route, bref) {
                Ok(resolved) => {
                    let b = resolved.backend;
                    services.insert(resolved.service);
                    backend_refs.push(config::BackendRef {
                        backend: b.name.clone(),
                        weight,
                        filters: bfilters,
                    });
                    backends.insert(b.name.clone(), b);
                }
                Err(problem) => {
                    // Kept with an empty name: its share of the traffic is answered 500.
                    backend_refs.push(config::BackendRef {
                        backend: String::new(),
                        weight,
                        filters: Vec::new(),
                    });
                    ref_problems.push(problem);
                }
            }
        }

        // GRPCRoute rules have no sessionPersistence in v1.5.1: always None for them.
        let session_persistence = rule.session_persistence.as_ref().and_then(|sp| {
            backend_lb::rule_session_persistence(sp, &backend_lb::cookie_path(&matches))
                .map_err(&mut fail)
                .ok()
        });
        routes.push(config::Route {
            name: format!(
                "{}/{route_ns}/{}/rule/{index}",
                ir_prefix(route),
                route.name
            ),
            route_namespace: route_ns.to_string(),
            route_name: route.name.clone(),
            rule_index: u32::try_from(index).unwrap_or(u32::MAX),
            rule_name: rule.name.clone().unwrap_or_default(),
            creation_timestamp: route.creation_seconds,
            listeners: Vec::new(),
            hostnames: route.hostnames.clone(),
            matches,
            filters,
            backends: backend_refs,
            request_timeout_millis,
            backend_request_timeout_millis,
            session_persistence,
            retry,
            ai,
            kind: if route.kind == HTTP_ROUTE {
                String::new()
            } else {
                route.kind.to_string()
            },
        });
    }

    let unsupported = (!unsupported.is_empty())
        .then(|| Problem::new(reason::UNSUPPORTED_VALUE, unsupported.join("; ")));
    if unsupported.is_some() {
        routes.clear();
        backends.clear();
        modules.clear();
        services.clear();
    }
    RulesOutcome {
        routes,
        backends: backends.into_values().collect(),
        services,
        modules: modules.into_values().collect(),
        unsupported,
        resolved_refs: combine(ref_problems),
    }
}

/// The IR name prefix of a route's rules: `route/...` for HTTPRoutes (as before GRPCRoutes
/// existed), `grpcroute/...`, `tlsroute/...`, `tcproute/...` and `udproute/...` for the
/// other kinds, so
/// two routes of different kinds and one name stay apart.
fn ir_prefix(route: &RouteSource) -> &'static str {
    match route.kind {
        GRPC_ROUTE => "grpcroute",
        TLS_ROUTE => "tlsroute",
        TCP_ROUTE => "tcproute",
        UDP_ROUTE => "udproute",
        _ => "route",
    }
}

/// `timeouts.request` and `timeouts.backendRequest` in milliseconds, 0 for none (unset or
/// "0s", which the spec says disables the timeout). A backendRequest longer than the
/// request timeout is invalid (the CRD's CEL rule says so; standalone mode has no API
/// server to enforce it).
fn timeouts(t: Option<&HttpRouteRulesTimeouts>) -> Result<(u64, u64), String> {
    let Some(t) = t else { return Ok((0, 0)) };
    let parse = |field: &str, value: &Option<String>| match value {
        None => Ok(0),
        Some(v) => parse_duration_millis(v)
            .ok_or_else(|| format!("timeouts.{field} {v:?} is not a Gateway API duration")),
    };
    let request = parse("request", &t.request)?;
    let backend = parse("backendRequest", &t.backend_request)?;
    if request > 0 && backend > request {
        return Err(format!(
            "timeouts.backendRequest ({backend} ms) must not be longer than timeouts.request ({request} ms)"
        ));
    }
    Ok((request, backend))
}

/// A GEP-2257 duration (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`, e.g. "1h30m", "500ms") in
/// milliseconds.
pub(super) fn parse_duration_millis(text: &str) -> Option<u64> {
    let mut rest = text;
    let mut total = 0u64;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_millis, unit_len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else {
            return None;
        };
        rest = &rest[unit_len..];
        total += number * unit_millis;
        parts += 1;
    }
    (1..=4).contains(&parts).then_some(total)
}

/// Matches with Gateway API defaults filled in: no matches means one PathPrefix "/"
/// match; a path without type or value is PathPrefix "/"; header and query matches are
/// Exact unless said otherwise. Regular expressions must compile.
pub(super) fn translate_matches(
    matches: &[HttpRouteRulesMatches],
) -> Result<Vec<config::RouteMatch>, String> {
    if matches.is_empty() {
        return Ok(vec![config::RouteMatch {
            path: Some(prefix_root()),
            ..Default::default()
        }]);
    }
    let mut out = Vec::new();
    for m in matches {
        let path = match &m.path {
            None => prefix_root(),
            Some(p) => {
                let type_ = match p.r#type.as_ref().unwrap_or(&PathType::PathPrefix) {
                    PathType::Exact => "Exact",
                    PathType::PathPrefix => "PathPrefix",
                    PathType::RegularExpression => "RegularExpression",
                };
                let value = p.value.clone().unwrap_or_else(|| "/".to_string());
                if type_ == "RegularExpression" {
                    check_regex("path", &value)?;
                }
                config::PathMatch {
                    r#type: type_.to_string(),
                    value,
                }
            }
        };
        let mut headers = Vec::new();
        for h in m.headers.iter().flatten() {
            let regex = matches!(h.r#type, Some(HeaderType::RegularExpression));
            if regex {
                check_regex(&format!("header {}", h.name), &h.value)?;
            }
            headers.push(value_match(regex, &h.name, &h.value));
        }
        let mut query_params = Vec::new();
        for q in m.query_params.iter().flatten() {
            let regex = matches!(q.r#type, Some(QueryType::RegularExpression));
            if regex {
                check_regex(&format!("query parameter {}", q.name), &q.value)?;
            }
            query_params.push(value_match(regex, &q.name, &q.value));
        }
        out.push(config::RouteMatch {
            path: Some(path),
            headers,
            query_params,
            method: m
                .method
                .as_ref()
                .map(method_name)
                .unwrap_or_default()
                .to_string(),
            grpc_method: None,
        });
    }
    Ok(out)
}

fn prefix_root() -> config::PathMatch {
    config::PathMatch {
        r#type: "PathPrefix".to_string(),
        value: "/".to_string(),
    }
}

pub(super) fn value_match(regex: bool, name: &str, value: &str) -> config::ValueMatch {
    config::ValueMatch {
        r#type: if regex { "RegularExpression" } else { "Exact" }.to_string(),
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// RegularExpression syntax is implementation-specific; Nantian's is the regex crate's, so
/// patterns are checked here instead of failing on the host.
pub(super) fn check_regex(what: &str, pattern: &str) -> Result<(), String> {
    regex::Regex::new(pattern).map(|_| ()).map_err(|e| {
        // The parser's message draws a caret under the pattern over several lines; a
        // condition message keeps only its last line, the actual complaint.
        let message = e.to_string();
        let complaint = message.lines().last().unwrap_or_default().trim();
        let complaint = complaint.strip_prefix("error: ").unwrap_or(complaint);
        format!("{what}: invalid regular expression {pattern:?}: {complaint}")
    })
}

fn method_name(m: &Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_api_durations_parse_to_milliseconds() {
        assert_eq!(parse_duration_millis("500ms"), Some(500));
        assert_eq!(parse_duration_millis("0s"), Some(0));
        assert_eq!(parse_duration_millis("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_millis("1m1s1ms"), Some(61_001));
        for bad in [
            "",
            "10",
            "1.5s",
            "100000s",
            "1d",
            "1s1s1s1s1s",
            "10 seconds",
            "-1s",
        ] {
            assert_eq!(parse_duration_millis(bad), None, "{bad:?}");
        }
    }
}
