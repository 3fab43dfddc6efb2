//! AIServices (`gateway.nantian.dev/v1alpha1`): each is checked once per translation
//! ([`resolve`]), which gives its status, then becomes the `Route.ai` of every HTTPRoute
//! rule whose only backendRef names it ([`AiServices::for_rule`]).
//!
//! Each of its backends becomes a Backend resource of its own,
//! `backend/aiservice/<namespace>/<name>/<backend>`: the endpoint URL's host (a DNS name the
//! host resolves when connecting, or an IP address) and port, with TLS verified against
//! the system's roots for `https`. Requests reach it through the built-in ai-adapter
//! filter, configured with the backend's provider and the URL's path.
//!
//! An AIService the API server's schema would have refused (standalone mode has no CEL),
//! or whose credentials or endpoints are unusable, is not accepted (reason Invalid, the
//! message naming each problem); routes naming it get `ResolvedRefs=False
//! BackendNotFound` with that message, and their rule no `ai`: the host answers 500.
//!
//! An AIService with `piiMask` puts the built-in pii-mask filter first among the own
//! filters of every rule that uses it ([`pii_mask`]).

use std::collections::BTreeMap;

use gateway_api::experimental::httproutes::HttpRouteRulesBackendRefs;
use k8s_openapi::api::core::v1::Secret;
use nantian_proto::config;
use serde::Serialize;

use super::listener::{GATEWAY_GROUP, HTTP_ROUTE};
use super::source::RouteSource;
use super::{
    AI_ADAPTER, ObjectStatus, TranslateOptions, accepted_status, ai_endpoint, backend_lb, filter,
    reference_grant,
};
use crate::crd::{self, AIService, AIServiceBackend, AffinityType, Provider};
use crate::model::{AI_SERVICE, Key, MetaExt, Resources};
use crate::status::{Problem, reason};

mod pii_mask;

/// The ai-adapter's linear-memory cap (the host's ceiling, 64 MiB).
const ADAPTER_MAX_MEMORY: u64 = 64 << 20;

/// The ai-adapter's per-call budget: a 4 MiB request's parse, translation and token
/// estimate take up to 50 ms measured, more on a busy machine.
const ADAPTER_TIMEOUT_MILLIS: u32 = 250;

/// Whether a backendRef names an AIService.
pub(super) fn is_ref(bref: &HttpRouteRulesBackendRefs) -> bool {
    bref.group.as_deref() == Some(crd::GROUP) && bref.kind.as_deref() == Some(AI_SERVICE)
}

/// Why an AIService backendRef where it cannot be (beside other backendRefs, or on a route
/// kind other than HTTPRoute) is not resolved.
pub(super) fn misplaced(route: &RouteSource, bref: &HttpRouteRulesBackendRefs) -> Problem {
    let name = &bref.name;
    let message = if route.kind == HTTP_ROUTE {
        format!("backendRef {name}: an AIService must be a rule's only backendRef")
    } else {
        format!(
            "backendRef {name}: an AIService can only be the backend of an HTTPRoute rule, not of a {}",
            route.kind
        )
    };
    Problem::new(reason::INVALID_KIND, message)
}

/// Every AIService, checked.
#[derive(Debug, Default)]
pub(super) struct AiServices {
    by_key: BTreeMap<Key, Verdict>,
}

#[derive(Debug)]
struct Verdict {
    generation: i64,
    resolved: Result<Resolved, Problem>,
}

/// A valid AIService, ready for the rules that name it.
#[derive(Debug)]
struct Resolved {
    /// Its backends' filters are left empty: each rule adds its own.
    ir: config::AiService,
    /// The Backend resources its backends name, in the same order.
    backends: Vec<config::Backend>,
    /// The ai-adapter's configuration for each backend, in the same order.
    adapters: Vec<AdapterConfig>,
    /// The pii-mask filter's configuration, when it has `piiMask`.
    pii_mask: Option<pii_mask::PiiMaskConfig>,
}

/// The ai-adapter component's configuration (shared contract with the filter).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AdapterConfig {
    provider: &'static str,
    base_path: String,
}

/// What a rule whose only backendRef is an AIService gets.
pub(super) struct RuleAi {
    pub ai: config::AiService,
    pub backends: Vec<config::Backend>,
    /// Filters to run before the rule's own (the PII mask), in order.
    pub rule_filters: Vec<config::RouteFilter>,
}

/// Why a rule gets no `ai`.
pub(super) enum AiRefError {
    /// The reference is not resolved: the route's ResolvedRefs condition says why.
    Unresolved(Problem),
    /// The ai-adapter module is not available: the route is not accepted.
    Unsupported(String),
}

/// Checks every AIService.
pub(super) fn resolve(res: &Resources) -> AiServices {
    let by_key = res
        .ai_services
        .iter()
        .map(|(key, svc)| {
            let verdict = Verdict {
                generation: svc.generation(),
                resolved: resolve_one(res, svc),
            };
            (key.clone(), verdict)
        })
        .collect();
    AiServices { by_key }
}

impl AiServices {
    /// One status per AIService: Accepted, or Invalid naming every problem.
    pub fn statuses(&self, statuses: &mut Vec<ObjectStatus>) {
        for (key, verdict) in &self.by_key {
            let outcome = verdict.resolved.as_ref().map(|_| ()).map_err(Clone::clone);
            statuses.push(accepted_status(
                AI_SERVICE,
                key,
                verdict.generation,
                &outcome,
                "AIService is accepted",
            ));
        }
    }

    /// The `ai` of a rule of `route` whose only backendRef is `bref` (an AIService), with
    /// `backend_filters` (the backendRef's own) run after each backend's ai-adapter.
    pub fn for_rule(
        &self,
        res: &Resources,
        opts: &TranslateOptions,
        route: &RouteSource,
        bref: &HttpRouteRulesBackendRefs,
        backend_filters: &[config::RouteFilter],
        modules: &mut BTreeMap<String, config::FilterModule>,
    ) -> Result<RuleAi, AiRefError> {
        let route_ns = route.namespace.as_str();
        let ns = bref.namespace.as_deref().unwrap_or(route_ns);
        let name = bref.name.as_str();
        let permitted = reference_grant::permits(
            res,
            &reference_grant::From {
                group: GATEWAY_GROUP,
                kind: route.kind,
                namespace: route_ns,
            },
            &reference_grant::To {
                group: crd::GROUP,
                kind: AI_SERVICE,
                namespace: ns,
                name,
            },
        );
        if !permitted {
            return Err(AiRefError::Unresolved(Problem::new(
                reason::REF_NOT_PERMITTED,
                format!(
                    "backendRef to AIService {ns}/{name} is not permitted: no ReferenceGrant in namespace {ns} allows {}s from namespace {route_ns}",
                    route.kind
                ),
            )));
        }
        let not_found = |message: String| {
            AiRefError::Unresolved(Problem::new(reason::BACKEND_NOT_FOUND, message))
        };
        let verdict = self
            .by_key
            .get(&(ns.to_string(), name.to_string()))
            .ok_or_else(|| not_found(format!("AIService {ns}/{name} not found")))?;
        let resolved = verdict.resolved.as_ref().map_err(|problem| {
            not_found(format!(
                "AIService {ns}/{name} is not accepted: {}",
                problem.message
            ))
        })?;
        let mut ai = resolved.ir.clone();
        for (backend, adapter) in ai.backends.iter_mut().zip(&resolved.adapters) {
            let mut adapter = filter::builtin_wasm(opts, AI_ADAPTER, AI_ADAPTER, adapter, modules)
                .map_err(|message| {
                    AiRefError::Unsupported(format!("backendRef {name}: {message}"))
                })?;
            // The adapter holds a whole request (up to the host's 4 MiB) and its
            // translation at once: give it the engine's memory ceiling.
            if let config::route_filter::Kind::Wasm(wasm) = &mut adapter {
                wasm.max_memory_bytes = ADAPTER_MAX_MEMORY;
                wasm.timeout_millis = ADAPTER_TIMEOUT_MILLIS;
            }
            backend.filters = std::iter::once(config::RouteFilter {
                kind: Some(adapter),
            })
            .chain(backend_filters.iter().cloned())
            .collect();
        }
        let rule_filters = match &resolved.pii_mask {
            Some(config) => vec![
                pii_mask::rule_filter(opts, ns, name, config, modules).map_err(|message| {
                    AiRefError::Unsupported(format!("backendRef {name}: {message}"))
                })?,
            ],
            None => Vec::new(),
        };
        Ok(RuleAi {
            ai,
            backends: resolved.backends.clone(),
            rule_filters,
        })
    }
}

/// One AIService → its IR, or every problem it has.
fn resolve_one(res: &Resources, svc: &AIService) -> Result<Resolved, Problem> {
    let (ns, name) = (svc.namespace(), svc.name());
    let spec = &svc.spec;
    let mut problems = Vec::new();
    if spec.backends.is_empty() {
        problems.push("lists no backends".to_string());
    }
    let mut index: BTreeMap<&str, u32> = BTreeMap::new();
    for (i, b) in spec.backends.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        if index.insert(b.name.as_str(), i).is_some() {
            problems.push(format!("backend name {} is used twice", b.name));
        }
    }
    let mut backends = Vec::new();
    let mut resources = Vec::new();
    let mut adapters = Vec::new();
    for b in &spec.backends {
        match backend(res, ns, name, b) {
            Ok((ai_backend, resource, adapter)) => {
                backends.push(ai_backend);
                resources.push(resource);
                adapters.push(adapter);
            }
            Err(message) => problems.push(format!("backend {}: {message}", b.name)),
        }
    }
    let mut indexes = |what: &str, names: &[String]| -> Vec<u32> {
        names
            .iter()
            .filter_map(|n| {
                let i = index.get(n.as_str()).copied();
                if i.is_none() {
                    problems.push(format!("{what} names backend {n}, which is not listed"));
                }
                i
            })
            .collect()
    };
    let mut routing = Vec::new();
    let mut bad_models = Vec::new();
    for (i, r) in spec.routing.iter().enumerate() {
        let what = format!("routing[{i}] (model {:?})", r.model);
        if !model_pattern(&r.model) {
            bad_models.push(format!(
                "{what}: a model is an exact name, a prefix ending in *, or *"
            ));
        }
        if r.backends.is_empty() {
            bad_models.push(format!("{what} names no backends"));
        }
        routing.push(config::AiModelRoute {
            model: r.model.clone(),
            backends: indexes(&what, &r.backends),
        });
    }
    let fallback = indexes("fallback", &spec.fallback);
    problems.extend(bad_models);
    let sticky_key = sticky_key(spec.session_affinity.as_ref()).unwrap_or_else(|message| {
        problems.push(message);
        String::new()
    });
    let pii_mask = pii_mask::resolve(spec).unwrap_or_else(|messages| {
        problems.extend(messages);
        None
    });
    if !problems.is_empty() {
        return Err(Problem::new(reason::INVALID, problems.join("; ")));
    }
    Ok(Resolved {
        ir: config::AiService {
            name: format!("aiservice/{ns}/{name}"),
            backends,
            routing,
            fallback,
            max_request_bytes: 0,
            sticky_key,
        },
        backends: resources,
        adapters,
        pii_mask,
    })
}

/// One backend of AIService `ns/name` → its IR, its Backend resource and its ai-adapter
/// configuration.
fn backend(
    res: &Resources,
    ns: &str,
    name: &str,
    b: &AIServiceBackend,
) -> Result<(config::AiBackend, config::Backend, AdapterConfig), String> {
    let endpoint =
        ai_endpoint::parse(&b.endpoint).map_err(|e| format!("endpoint {:?} {e}", b.endpoint))?;
    let (auth_header, auth_value) = credential(res, ns, b)?;
    let provider = match b.provider {
        Provider::OpenAI => "openai",
        Provider::Anthropic => "anthropic",
        Provider::Ollama => "ollama",
    };
    let resource = config::Backend {
        name: format!("backend/aiservice/{ns}/{name}/{}", b.name),
        protocol: "http".to_string(),
        endpoints: vec![config::Endpoint {
            address: endpoint.host.clone(),
            port: u32::from(endpoint.port),
        }],
        tls: endpoint.tls.then(|| config::BackendTls {
            hostname: endpoint.host.clone(),
            system_roots: true,
            ..Default::default()
        }),
        load_balancing: None,
    };
    let ai_backend = config::AiBackend {
        name: b.name.clone(),
        provider: provider.to_string(),
        backend: resource.name.clone(),
        models: b.models.clone(),
        weight: b.weight,
        authority: endpoint.authority,
        auth_header,
        auth_value,
        filters: Vec::new(),
    };
    let adapter = AdapterConfig {
        provider,
        base_path: endpoint.base_path,
    };
    Ok((ai_backend, resource, adapter))
}

/// The credential header and value a backend's `auth` asks for; empty without `auth`.
/// Messages never include the key.
fn credential(res: &Resources, ns: &str, b: &AIServiceBackend) -> Result<(String, String), String> {
    let Some(auth) = &b.auth else {
        return Ok((String::new(), String::new()));
    };
    let (secret_name, key_name) = (&auth.secret_ref.name, &auth.secret_ref.key);
    let secret = res
        .secrets
        .get(&(ns.to_string(), secret_name.clone()))
        .ok_or_else(|| format!("Secret {ns}/{secret_name} not found"))?;
    let which = format!("key {key_name} of Secret {ns}/{secret_name}");
    let bytes = secret_value(secret, key_name)
        .ok_or_else(|| format!("Secret {ns}/{secret_name} has no key {key_name}"))?;
    let key = std::str::from_utf8(&bytes).map_err(|_| format!("{which} is not UTF-8 text"))?;
    // `echo key > file` and editors leave a newline at the end; it is no part of the key.
    let key = key.trim_end_matches(['\n', '\r']);
    if key.is_empty() {
        return Err(format!("{which} is empty"));
    }
    if key.bytes().any(|c| (c < b' ' && c != b'\t') || c == 0x7f) {
        return Err(format!(
            "{which} holds control characters, which no header can carry"
        ));
    }
    Ok(match (&auth.header, b.provider) {
        (Some(header), _) if !backend_lb::is_token(header) => {
            return Err(format!("auth.header {header:?} is not a header name"));
        }
        (Some(header), _) => (header.to_ascii_lowercase(), key.to_string()),
        (None, Provider::Anthropic) => ("x-api-key".to_string(), key.to_string()),
        (None, Provider::OpenAI | Provider::Ollama) => {
            ("authorization".to_string(), format!("Bearer {key}"))
        }
    })
}

/// A Secret key's bytes: `data` (already base64-decoded), else `stringData`.
fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(bytes.0.clone());
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|text| text.as_bytes().to_vec())
}

/// The CRD's model pattern: `^[^*\s]*\*?$`, not empty.
fn model_pattern(model: &str) -> bool {
    let body = model.strip_suffix('*').unwrap_or(model);
    !model.is_empty() && !body.contains('*') && !model.chars().any(char::is_whitespace)
}

/// `sessionAffinity` → the IR's sticky key: a lower-cased header name, "user", or empty.
fn sticky_key(affinity: Option<&crd::SessionAffinity>) -> Result<String, String> {
    let Some(affinity) = affinity else {
        return Ok(String::new());
    };
    match (affinity.type_, &affinity.header) {
        (AffinityType::Header, Some(header)) if backend_lb::is_token(header) => {
            Ok(header.to_ascii_lowercase())
        }
        (AffinityType::Header, Some(header)) => Err(format!(
            "sessionAffinity.header {header:?} is not a header name"
        )),
        (AffinityType::Header, None) => {
            Err("sessionAffinity.header is required when type is header".to_string())
        }
        (AffinityType::User, None) => Ok("user".to_string()),
        (AffinityType::User, Some(_)) => {
            Err("sessionAffinity.header is allowed only when type is header".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_patterns_are_the_crds() {
        for good in ["*", "gpt-4o", "gpt-4*", "claude-3-5-sonnet@2024"] {
            assert!(model_pattern(good), "{good}");
        }
        for bad in ["", "gpt*4", "**", "gpt 4", "*gpt"] {
            assert!(!model_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn sticky_keys() {
        let affinity = |type_, header: Option<&str>| crd::SessionAffinity {
            type_,
            header: header.map(str::to_string),
        };
        assert_eq!(sticky_key(None), Ok(String::new()));
        assert_eq!(
            sticky_key(Some(&affinity(AffinityType::Header, Some("X-Session")))),
            Ok("x-session".to_string())
        );
        assert_eq!(
            sticky_key(Some(&affinity(AffinityType::User, None))),
            Ok("user".to_string())
        );
        assert!(sticky_key(Some(&affinity(AffinityType::Header, None))).is_err());
        assert!(sticky_key(Some(&affinity(AffinityType::User, Some("x")))).is_err());
        assert!(sticky_key(Some(&affinity(AffinityType::Header, Some("a b")))).is_err());
    }
}
