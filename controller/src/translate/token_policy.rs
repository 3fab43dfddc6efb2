//! TokenPolicies (`gateway.nantian.dev/v1alpha1`) → the built-in token-limit filter at the
//! front of every LLM rule (a rule whose backend is an AIService) they cover.
//!
//! A policy covers the LLM rules of the HTTPRoutes it targets (or the one rule its
//! `sectionName` names), of the AIServices it targets, and of the routes attached to the
//! Gateways it targets (or to the listener its `sectionName` names; a rule attached to
//! several listeners of that Gateway is covered on all of them). Policies on different
//! targets stack: a rule covered by a Gateway's policy and its route's answers to both.
//! Two policies on the same target (and section) conflict: the older one wins, ties by
//! name, and the other is not accepted (Conflicted) and applied nowhere.
//!
//! The filter is first in the rule's chain, so it refuses before anything else runs and,
//! on the way back, sees the usage the backend's ai-adapter reported. Every binding of one
//! policy shares the counter scope `tokenpolicy/<namespace>/<name>`: a key's budget is one
//! across all its targets and survives configuration changes; with `storage.type: redis`
//! it is shared by every gateway host through that Redis server.

use std::collections::{BTreeMap, BTreeSet};

use nantian_proto::config;
use serde::Serialize;

use super::listener::GATEWAY_GROUP;
use super::policy::policy_reason;
use super::{GatewayIr, ObjectStatus, TOKEN_LIMIT, TranslateOptions, accepted_status, filter};
use crate::crd::{self, KeyType, OnLimit, RateLimitKey, StorageType, TokenLimits, TokenPolicy};
use crate::model::{AI_SERVICE, Key, MetaExt, Resources, TOKEN_POLICY};
use crate::status::{Problem, reason};

/// The token-limit filter's per-call budget: parsing and estimating a 4 MiB prompt took
/// about 96 ms measured.
const TOKEN_LIMIT_TIMEOUT_MILLIS: u32 = 250;
/// Its memory: a whole request body (up to the host's 4 MiB) and its parse.
const TOKEN_LIMIT_MAX_MEMORY: u64 = 64 << 20;

/// What a policy targets, in its own namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Gateway(String, Option<String>),
    HttpRoute(String, Option<String>),
    AiService(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, name, section) = match self {
            Target::Gateway(name, section) => ("Gateway", name, section),
            Target::HttpRoute(name, section) => ("HTTPRoute", name, section),
            Target::AiService(name) => (AI_SERVICE, name, &None),
        };
        match section {
            Some(section) => write!(f, "{kind} {name} section {section}"),
            None => write!(f, "{kind} {name}"),
        }
    }
}

/// Every TokenPolicy, checked, with the ones that apply.
#[derive(Debug, Default)]
pub(super) struct TokenPolicies {
    by_key: BTreeMap<Key, Verdict>,
}

#[derive(Debug)]
struct Verdict {
    generation: i64,
    /// Accepted: the filter to bind and what it covers; else why not.
    outcome: Result<Applied, Problem>,
    /// Targets that do not exist (named in an accepted policy's message).
    missing: Vec<Target>,
}

#[derive(Debug)]
struct Applied {
    targets: Vec<Target>,
    filter: FilterConfig,
    counters: config::CounterStore,
}

/// The token-limit component's configuration (shared contract with `filters/token-limit`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct FilterConfig {
    /// `<namespace>/<name>`, in refusals' attributes and the host's rejection metric.
    policy: String,
    limits: TokenLimits,
    #[serde(skip_serializing_if = "Option::is_none")]
    burst: Option<u64>,
    key: RateLimitKey,
    on_limit: OnLimit,
}

/// A policy checked on its own: the targets of it that exist and what it applies, or why
/// it is not accepted.
type Checked = Result<(Vec<Target>, Applied), Problem>;

/// Checks every TokenPolicy and settles conflicts between policies on one target.
pub(super) fn resolve(res: &Resources, opts: &TranslateOptions) -> TokenPolicies {
    let mut checked: BTreeMap<Key, (i64, Checked)> = BTreeMap::new();
    for (key, policy) in &res.token_policies {
        let outcome = check(policy).and_then(|applied| {
            if opts.filter_modules.contains_key(TOKEN_LIMIT) {
                Ok(applied)
            } else {
                Err(Problem::new(
                    reason::INVALID,
                    "this gateway has no token-limit filter module (token-limit.wasm), which TokenPolicies need",
                ))
            }
        });
        let outcome = outcome.map(|applied| {
            let present = applied
                .targets
                .iter()
                .filter(|t| exists(res, &key.0, t))
                .cloned()
                .collect::<Vec<_>>();
            (present, applied)
        });
        checked.insert(key.clone(), (policy.creation_seconds(), outcome));
    }

    // Precedence on each present target: the oldest policy, then by namespace/name.
    let mut holders: BTreeMap<(String, Target), (i64, Key)> = BTreeMap::new();
    for (key, (created, outcome)) in &checked {
        let Ok((present, _)) = outcome else { continue };
        for target in present {
            let claim = (*created, key.clone());
            holders
                .entry((key.0.clone(), target.clone()))
                .and_modify(|held| {
                    if claim < *held {
                        *held = claim.clone();
                    }
                })
                .or_insert(claim);
        }
    }

    let by_key = checked
        .into_iter()
        .map(|(key, (_, outcome))| {
            let generation = res.token_policies[&key].generation();
            let verdict = match outcome {
                Err(problem) => Verdict {
                    generation,
                    outcome: Err(problem),
                    missing: Vec::new(),
                },
                Ok((present, applied)) => {
                    let missing: Vec<Target> = applied
                        .targets
                        .iter()
                        .filter(|t| !present.contains(t))
                        .cloned()
                        .collect();
                    let lost: Vec<String> = present
                        .iter()
                        .filter_map(|t| {
                            let (_, winner) = &holders[&(key.0.clone(), t.clone())];
                            (*winner != key)
                                .then(|| format!("{t} (held by TokenPolicy {})", winner.1))
                        })
                        .collect();
                    let outcome = if present.is_empty() {
                        Err(Problem::new(
                            policy_reason::TARGET_NOT_FOUND,
                            format!(
                                "no target exists: {}",
                                join(applied.targets.iter().map(Target::to_string))
                            ),
                        ))
                    } else if !lost.is_empty() {
                        Err(Problem::new(
                            policy_reason::CONFLICTED,
                            format!(
                                "an older TokenPolicy already targets {}; this one is not applied",
                                lost.join(", ")
                            ),
                        ))
                    } else {
                        Ok(Applied {
                            targets: present,
                            ..applied
                        })
                    };
                    Verdict {
                        generation,
                        outcome,
                        missing,
                    }
                }
            };
            (key, verdict)
        })
        .collect();
    TokenPolicies { by_key }
}

impl TokenPolicies {
    /// One status per TokenPolicy: Accepted, or why not (Invalid, TargetNotFound,
    /// Conflicted).
    pub fn statuses(&self, statuses: &mut Vec<ObjectStatus>) {
        for (key, verdict) in &self.by_key {
            let ok_message = if verdict.missing.is_empty() {
                "TokenPolicy is accepted".to_string()
            } else {
                format!(
                    "TokenPolicy is accepted; these targets do not exist: {}",
                    join(verdict.missing.iter().map(Target::to_string))
                )
            };
            let outcome = verdict.outcome.as_ref().map(|_| ()).map_err(Clone::clone);
            statuses.push(accepted_status(
                TOKEN_POLICY,
                key,
                verdict.generation,
                &outcome,
                &ok_message,
            ));
        }
    }

    /// Puts a token-limit filter for each accepted policy covering it at the front of every
    /// LLM rule of `ir`.
    pub fn apply(&self, opts: &TranslateOptions, ir: &mut GatewayIr) {
        let mut modules = BTreeMap::new();
        for route in ir.routes.iter_mut() {
            let Some(ai) = &route.ai else { continue };
            let covering: Vec<(&Key, &Applied)> = self
                .by_key
                .iter()
                .filter_map(|(key, v)| v.outcome.as_ref().ok().map(|a| (key, a)))
                .filter(|(key, applied)| {
                    applied
                        .targets
                        .iter()
                        .any(|t| covers(t, &key.0, &ir.namespace, &ir.name, route, &ai.name))
                })
                .collect();
            let mut front = Vec::new();
            for (_, applied) in covering {
                // Only serializing the configuration could fail, and it cannot: resolve()
                // checked that the module exists.
                if let Ok(kind) = binding(opts, applied, &mut modules) {
                    front.push(config::RouteFilter { kind: Some(kind) });
                }
            }
            if !front.is_empty() {
                route.filters.splice(0..0, front);
            }
        }
        for module in modules.into_values() {
            if !ir.modules.iter().any(|m| m.name == module.name) {
                ir.modules.push(module);
            }
        }
    }
}

/// The token-limit binding of one policy.
fn binding(
    opts: &TranslateOptions,
    applied: &Applied,
    modules: &mut BTreeMap<String, config::FilterModule>,
) -> Result<config::route_filter::Kind, String> {
    let display_name = format!("TokenPolicy {}", applied.filter.policy);
    let mut kind =
        filter::builtin_wasm(opts, TOKEN_LIMIT, &display_name, &applied.filter, modules)?;
    if let config::route_filter::Kind::Wasm(wasm) = &mut kind {
        wasm.timeout_millis = TOKEN_LIMIT_TIMEOUT_MILLIS;
        wasm.max_memory_bytes = TOKEN_LIMIT_MAX_MEMORY;
        // A limiter that fails lets traffic through rather than take the API down; the
        // filter itself admits when its counter store is unreachable.
        wasm.fail_policy = "FailOpen".to_string();
        wasm.counters = Some(applied.counters.clone());
    }
    Ok(kind)
}

/// Whether `target` (of a policy in `policy_ns`) covers `route` served by Gateway
/// `gw_ns/gw_name` through AIService `ai_name` (`aiservice/<namespace>/<name>`).
fn covers(
    target: &Target,
    policy_ns: &str,
    gw_ns: &str,
    gw_name: &str,
    route: &config::Route,
    ai_name: &str,
) -> bool {
    match target {
        Target::Gateway(name, section) => {
            policy_ns == gw_ns
                && name == gw_name
                && section.as_ref().is_none_or(|section| {
                    let listener = format!("listener/{gw_ns}/{gw_name}/{section}");
                    route.listeners.contains(&listener)
                })
        }
        Target::HttpRoute(name, section) => {
            route.kind.is_empty()
                && route.route_namespace == policy_ns
                && route.route_name == *name
                && section.as_ref().is_none_or(|s| route.rule_name == *s)
        }
        Target::AiService(name) => ai_name == format!("aiservice/{policy_ns}/{name}"),
    }
}

fn exists(res: &Resources, ns: &str, target: &Target) -> bool {
    let key = |name: &str| (ns.to_string(), name.to_string());
    match target {
        Target::Gateway(name, _) => res.gateways.contains_key(&key(name)),
        Target::HttpRoute(name, _) => res.http_routes.contains_key(&key(name)),
        Target::AiService(name) => res.ai_services.contains_key(&key(name)),
    }
}

/// Checks what the API server's schema would (standalone mode has no CEL); every problem
/// is named.
fn check(policy: &TokenPolicy) -> Result<Applied, Problem> {
    let spec = &policy.spec;
    let mut problems = Vec::new();
    let mut targets = Vec::new();
    if spec.target_refs.is_empty() || spec.target_refs.len() > 16 {
        problems.push("targetRefs must name 1 to 16 targets".to_string());
    }
    for t in &spec.target_refs {
        let section = t.section_name.clone();
        let target = match (t.group.as_str(), t.kind.as_str()) {
            (GATEWAY_GROUP, "Gateway") => Target::Gateway(t.name.clone(), section),
            (GATEWAY_GROUP, "HTTPRoute") => Target::HttpRoute(t.name.clone(), section),
            (crd::GROUP, AI_SERVICE) if section.is_none() => Target::AiService(t.name.clone()),
            (crd::GROUP, AI_SERVICE) => {
                problems.push(format!(
                    "targetRef AIService {}: an AIService has no sections",
                    t.name
                ));
                continue;
            }
            (group, kind) => {
                problems.push(format!(
                    "targetRef {group}/{kind} {}: only Gateways, HTTPRoutes and AIServices can be targeted",
                    t.name
                ));
                continue;
            }
        };
        if targets.contains(&target) {
            problems.push(format!("targetRef {target} is named twice"));
        }
        targets.push(target);
    }
    let limits = &spec.limits;
    let set = [
        ("tokensPerMinute", limits.tokens_per_minute),
        ("tokensPerHour", limits.tokens_per_hour),
        ("tokensPerDay", limits.tokens_per_day),
        ("requestsPerMinute", limits.requests_per_minute),
    ];
    if set.iter().all(|(_, v)| v.is_none()) {
        problems.push(
            "limits: set at least one of tokensPerMinute, tokensPerHour, tokensPerDay and requestsPerMinute"
                .to_string(),
        );
    }
    for (field, value) in set {
        if value == Some(0) {
            problems.push(format!("limits.{field} must be at least 1"));
        }
    }
    if spec.burst == Some(0) {
        problems.push("burst must be at least 1".to_string());
    }
    // The token-limit filter refuses this configuration: burst deepens the per-minute bucket.
    if spec.burst.is_some() && limits.tokens_per_minute.is_none() {
        problems.push("burst needs limits.tokensPerMinute (it deepens that bucket)".to_string());
    }
    match (spec.key.type_, &spec.key.header) {
        (KeyType::Header, Some(header)) if !is_header_name(header) => {
            problems.push(format!("key.header {header:?} is not a valid header name"));
        }
        (KeyType::Header, None) => {
            problems.push("key.header is required when key.type is header".to_string())
        }
        (KeyType::Header, Some(_)) => {}
        (_, Some(_)) => {
            problems.push("key.header is allowed only when key.type is header".to_string())
        }
        (_, None) => {}
    }
    let on_limit = spec.on_limit.clone().unwrap_or_default();
    if !(400..=599).contains(&on_limit.status_code) {
        problems.push(format!(
            "onLimit.statusCode {} is not between 400 and 599",
            on_limit.status_code
        ));
    }
    if on_limit.message.as_ref().is_some_and(|m| m.len() > 1024) {
        problems.push("onLimit.message is longer than 1024 bytes".to_string());
    }
    let redis_url = match &spec.storage {
        None => String::new(),
        Some(storage) => match (storage.type_, &storage.redis) {
            (StorageType::Local, None) => String::new(),
            (StorageType::Local, Some(_)) => {
                problems.push("storage.redis is allowed only when storage.type is redis".into());
                String::new()
            }
            (StorageType::Redis, None) => {
                problems.push("storage.redis is required when storage.type is redis".into());
                String::new()
            }
            (StorageType::Redis, Some(redis)) => {
                let url = redis.url.as_str();
                let valid = (url.starts_with("redis://") || url.starts_with("rediss://"))
                    && !url.chars().any(char::is_whitespace)
                    && url.len() <= 2048;
                if !valid {
                    problems.push(format!(
                        "storage.redis.url {url:?} is not a redis:// or rediss:// URL"
                    ));
                }
                url.to_string()
            }
        },
    };
    if !problems.is_empty() {
        return Err(Problem::new(reason::INVALID, problems.join("; ")));
    }
    let (ns, name) = (policy.namespace(), policy.name());
    Ok(Applied {
        targets,
        filter: FilterConfig {
            policy: format!("{ns}/{name}"),
            limits: spec.limits.clone(),
            burst: spec.burst,
            key: spec.key.clone(),
            on_limit,
        },
        counters: config::CounterStore {
            scope: format!("tokenpolicy/{ns}/{name}"),
            redis_url,
        },
    })
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn join(items: impl Iterator<Item = String>) -> String {
    items
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(", ")
}
