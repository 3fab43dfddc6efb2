//! HTTPRoute filters → `config::RouteFilter`s.
//!
//! Header modifiers and CORS run as built-in Wasm components; redirects and URL rewrites
//! are native (they depend on the match that selected the rule), and so are request
//! mirrors (they need the host's upstream pools). Everything else is reported as
//! unsupported (Err with a message naming it).

use std::collections::BTreeMap;

use gateway_api::experimental::httproutes::{
    HttpRouteRulesBackendRefsFilters, HttpRouteRulesFilters, HttpRouteRulesFiltersCors,
    HttpRouteRulesFiltersRequestMirror, HttpRouteRulesFiltersRequestRedirect,
    HttpRouteRulesFiltersRequestRedirectPathType as RedirectPathType,
    HttpRouteRulesFiltersRequestRedirectScheme as Scheme, HttpRouteRulesFiltersType as FilterType,
    HttpRouteRulesFiltersUrlRewrite, HttpRouteRulesFiltersUrlRewritePathType as RewritePathType,
};
use nantian_proto::config;
use nantian_proto::config::route_filter::Kind;
use serde::{Deserialize, Serialize};

use super::{CORS, HEADER_MODIFIER, TranslateOptions, cors};

/// The header-modifier component's configuration (shared contract with
/// `filters/header-modifier`): `{"request": {...}}` or `{"response": {...}}`.
#[derive(Debug, Default, Serialize)]
struct HeaderModifierConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<HeaderOps>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<HeaderOps>,
}

/// set, add and remove, always all three (possibly empty) so the filter needs no defaults.
/// Deserializes from either Gateway API modifier type (they share one shape).
#[derive(Debug, Default, Serialize, Deserialize)]
struct HeaderOps {
    #[serde(default)]
    set: Vec<NameValue>,
    #[serde(default)]
    add: Vec<NameValue>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct NameValue {
    name: String,
    value: String,
}

/// A rule's filters, in the order written; Err lists every filter that can't be served.
/// `matches` are the rule's (defaulted) matches: ReplacePrefixMatch redirects need every
/// one to be a PathPrefix match.
/// `mirror_backend` resolves a RequestMirror's backendRef to a snapshot backend name;
/// `None` when it cannot be resolved (it records why), and the mirror is left out.
pub(super) fn rule_filters(
    opts: &TranslateOptions,
    filters: &[HttpRouteRulesFilters],
    matches: &[config::RouteMatch],
    modules: &mut BTreeMap<String, config::FilterModule>,
    mirror_backend: &mut dyn FnMut(&HttpRouteRulesFiltersRequestMirror) -> Option<String>,
) -> Result<Vec<config::RouteFilter>, Vec<String>> {
    let mut out = Vec::new();
    // Every unsupported filter is named, not just the first.
    let mut errors = Vec::new();
    for f in filters {
        let kind = match f.r#type {
            FilterType::RequestHeaderModifier => header_modifier(
                opts,
                "RequestHeaderModifier",
                true,
                &f.request_header_modifier,
                modules,
            ),
            FilterType::ResponseHeaderModifier => header_modifier(
                opts,
                "ResponseHeaderModifier",
                false,
                &f.response_header_modifier,
                modules,
            ),
            FilterType::RequestRedirect => redirect(f.request_redirect.as_ref(), matches),
            FilterType::UrlRewrite => url_rewrite(f.url_rewrite.as_ref(), matches),
            FilterType::RequestMirror => match f.request_mirror.as_ref() {
                None => Err("filter RequestMirror has no requestMirror settings".to_string()),
                Some(m) => match mirror_backend(m) {
                    Some(backend) => mirror(m, backend),
                    None => continue,
                },
            },
            FilterType::Cors => cors_filter(opts, f.cors.as_ref(), modules),
            ref other => Err(format!("filter {} is not supported", type_name(other))),
        };
        match kind {
            Ok(kind) => out.push(config::RouteFilter { kind: Some(kind) }),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Filters on one backendRef: header modifiers only. Err names the first unsupported one.
pub(super) fn backend_filters(
    opts: &TranslateOptions,
    filters: &[HttpRouteRulesBackendRefsFilters],
    modules: &mut BTreeMap<String, config::FilterModule>,
) -> Result<Vec<config::RouteFilter>, String> {
    let mut out = Vec::new();
    for f in filters {
        // The backendRef filter types mirror the rule filter types field for field; going
        // through JSON lets one converter serve both.
        let f: HttpRouteRulesFilters = serde_json::to_value(f)
            .and_then(serde_json::from_value)
            .map_err(|e| format!("filter could not be read: {e}"))?;
        match f.r#type {
            FilterType::RequestHeaderModifier | FilterType::ResponseHeaderModifier => {
                out.extend(
                    rule_filters(opts, std::slice::from_ref(&f), &[], modules, &mut |_| None)
                        .map_err(|errors| errors.join("; "))?,
                );
            }
            ref other => {
                return Err(format!(
                    "filter {} is not supported on a backendRef",
                    type_name(other)
                ));
            }
        }
    }
    Ok(out)
}

fn type_name(t: &FilterType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{t:?}"))
}

fn header_modifier<T: Serialize>(
    opts: &TranslateOptions,
    display_name: &str,
    request: bool,
    modifier: &Option<T>,
    modules: &mut BTreeMap<String, config::FilterModule>,
) -> Result<Kind, String> {
    let ops: HeaderOps = match modifier {
        None => HeaderOps::default(),
        Some(m) => serde_json::to_value(m)
            .and_then(serde_json::from_value)
            .map_err(|e| format!("filter {display_name} could not be read: {e}"))?,
    };
    let config = if request {
        HeaderModifierConfig {
            request: Some(ops),
            response: None,
        }
    } else {
        HeaderModifierConfig {
            request: None,
            response: Some(ops),
        }
    };
    builtin_wasm(opts, HEADER_MODIFIER, display_name, &config, modules)
}

fn cors_filter(
    opts: &TranslateOptions,
    settings: Option<&HttpRouteRulesFiltersCors>,
    modules: &mut BTreeMap<String, config::FilterModule>,
) -> Result<Kind, String> {
    let settings = settings.ok_or("filter CORS has no cors settings")?;
    let config = cors::config(settings).map_err(|e| format!("filter CORS: {e}"))?;
    builtin_wasm(opts, CORS, "CORS", &config, modules)
}

/// A WasmFilter running the built-in module `filter` with `config` as its JSON, the
/// module added to the Gateway's `modules`.
pub(super) fn builtin_wasm(
    opts: &TranslateOptions,
    filter: &str,
    display_name: &str,
    config: &impl Serialize,
    modules: &mut BTreeMap<String, config::FilterModule>,
) -> Result<Kind, String> {
    let module = opts.filter_modules.get(filter).ok_or_else(|| {
        format!(
            "filter {display_name} needs the built-in {filter} filter module, which is not available"
        )
    })?;
    modules.insert(module.name.clone(), module.clone());
    Ok(Kind::Wasm(config::WasmFilter {
        display_name: display_name.to_string(),
        module: module.name.clone(),
        config: serde_json::to_string(config).map_err(|e| e.to_string())?,
        fail_policy: "FailClosed".to_string(),
        timeout_millis: 0,
        max_memory_bytes: 0,
        counters: None,
    }))
}

/// A RequestMirror to `backend`: `percent`, else `fraction` (denominator 100 by
/// default), else every request.
fn mirror(m: &HttpRouteRulesFiltersRequestMirror, backend: String) -> Result<Kind, String> {
    let (numerator, denominator) = match (&m.percent, &m.fraction) {
        (Some(_), Some(_)) => {
            return Err("RequestMirror sets both percent and fraction".to_string());
        }
        (Some(percent), None) => (*percent, 100),
        (None, Some(f)) => (f.numerator, f.denominator.unwrap_or(100)),
        (None, None) => (1, 1),
    };
    if denominator < 1 || numerator < 0 || numerator > denominator {
        return Err(format!(
            "RequestMirror share {numerator}/{denominator} is not a fraction between 0 and 1"
        ));
    }
    Ok(Kind::RequestMirror(config::RequestMirror {
        backend,
        numerator: u32::try_from(numerator).unwrap_or(0),
        denominator: u32::try_from(denominator).unwrap_or(1),
    }))
}

/// A URLRewrite: the Host and path the request is forwarded with. ReplacePrefixMatch has
/// the same constraint as for redirects.
fn url_rewrite(
    r: Option<&HttpRouteRulesFiltersUrlRewrite>,
    matches: &[config::RouteMatch],
) -> Result<Kind, String> {
    let r = r.ok_or("filter URLRewrite has no urlRewrite settings")?;
    let path = match &r.path {
        None => None,
        Some(p) => Some(match p.r#type {
            RewritePathType::ReplaceFullPath => config::PathModifier {
                r#type: "ReplaceFullPath".to_string(),
                value: p.replace_full_path.clone().unwrap_or_default(),
            },
            RewritePathType::ReplacePrefixMatch => {
                if !all_prefix_matches(matches) {
                    return Err(
                        "URLRewrite ReplacePrefixMatch needs every match of the rule to be a PathPrefix match"
                            .to_string(),
                    );
                }
                config::PathModifier {
                    r#type: "ReplacePrefixMatch".to_string(),
                    value: p.replace_prefix_match.clone().unwrap_or_default(),
                }
            }
        }),
    };
    Ok(Kind::UrlRewrite(config::UrlRewrite {
        hostname: r.hostname.clone().unwrap_or_default(),
        path,
    }))
}

fn all_prefix_matches(matches: &[config::RouteMatch]) -> bool {
    matches
        .iter()
        .all(|m| m.path.as_ref().is_some_and(|p| p.r#type == "PathPrefix"))
}

const REDIRECT_CODES: &[i64] = &[301, 302, 303, 307, 308];

fn redirect(
    r: Option<&HttpRouteRulesFiltersRequestRedirect>,
    matches: &[config::RouteMatch],
) -> Result<Kind, String> {
    let r = r.ok_or("filter RequestRedirect has no requestRedirect settings")?;
    let status_code = r.status_code.unwrap_or(302);
    if !REDIRECT_CODES.contains(&status_code) {
        return Err(format!(
            "RequestRedirect statusCode {status_code} is not supported"
        ));
    }
    let path = match &r.path {
        None => None,
        Some(p) => Some(match p.r#type {
            RedirectPathType::ReplaceFullPath => config::PathModifier {
                r#type: "ReplaceFullPath".to_string(),
                value: p.replace_full_path.clone().unwrap_or_default(),
            },
            RedirectPathType::ReplacePrefixMatch => {
                if !all_prefix_matches(matches) {
                    return Err(
                        "RequestRedirect ReplacePrefixMatch needs every match of the rule to be a PathPrefix match"
                            .to_string(),
                    );
                }
                config::PathModifier {
                    r#type: "ReplacePrefixMatch".to_string(),
                    value: p.replace_prefix_match.clone().unwrap_or_default(),
                }
            }
        }),
    };
    Ok(Kind::RequestRedirect(config::RequestRedirect {
        scheme: match r.scheme {
            None => String::new(),
            Some(Scheme::Http) => "http".to_string(),
            Some(Scheme::Https) => "https".to_string(),
        },
        hostname: r.hostname.clone().unwrap_or_default(),
        port: r.port.and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
        path,
        status_code: u32::try_from(status_code).unwrap_or(302),
    }))
}
