//! BackendLBPolicy and XBackendTrafficPolicy: how the host picks a Service's endpoints
//! (a Nantian extension, in annotations) and its session persistence; and the
//! `sessionPersistence` of HTTPRoute rules, which shares the conversion.
//!
//! Both kinds mean the same here; two policies on one Service conflict whatever their
//! kinds. The algorithm is not part of Gateway API's schema, so it travels in annotations,
//! which an API server keeps whatever the CRD version:
//! - `gateway.nantian.dev/load-balancer`: RoundRobin (default), LeastRequest, Random or
//!   ConsistentHash;
//! - `gateway.nantian.dev/hash-on` (ConsistentHash only): SourceIP (default),
//!   Header:<name>, Cookie:<name> or QueryParam:<name>.
//!
//! A policy with anything invalid is not accepted (reason Invalid, the message names the
//! field or annotation) and applies nothing: its Services keep the defaults.

use std::collections::{BTreeMap, BTreeSet};

use gateway_api::experimental::httproutes::HttpRouteRulesSessionPersistence;
use nantian_proto::config;

use super::policy::{PolicyObject, policy_reason, policy_status, precedence, service_target};
use super::rule::parse_duration_millis;
use super::{ObjectStatus, TranslateOptions};
use crate::lb_policy::{BACKEND_LB_POLICY, LbPolicy, SessionPersistence, X_BACKEND_TRAFFIC_POLICY};
use crate::model::{Key, MetaExt, Resources};
use crate::status::{Condition, Problem, kind, reason, sorted};

pub const LOAD_BALANCER_ANNOTATION: &str = "gateway.nantian.dev/load-balancer";
pub const HASH_ON_ANNOTATION: &str = "gateway.nantian.dev/hash-on";
/// The cookie or header name when a sessionPersistence names none.
pub const DEFAULT_SESSION_NAME: &str = "nantian-session";

/// (namespace, name, kind): kinds differ only when names are equal.
type PolicyId = (String, String, &'static str);

#[derive(Debug, Default)]
pub(super) struct LbPolicies {
    /// By Service (namespace, name).
    applied: BTreeMap<Key, config::LoadBalancing>,
    verdicts: BTreeMap<PolicyId, Verdict>,
}

#[derive(Debug)]
struct Verdict {
    api_version: &'static str,
    generation: i64,
    services: BTreeSet<Key>,
    accepted: Result<(), Problem>,
}

impl LbPolicies {
    /// The load balancing of every port of Service `namespace/name`, if a policy says.
    pub fn for_service(&self, namespace: &str, name: &str) -> Option<&config::LoadBalancing> {
        self.applied.get(&(namespace.to_string(), name.to_string()))
    }

    /// One status per policy (see [`policy_status`]).
    pub fn statuses(
        &self,
        opts: &TranslateOptions,
        reached: &BTreeMap<Key, BTreeSet<Key>>,
        statuses: &mut Vec<ObjectStatus>,
    ) {
        for ((ns, name, kind_name), verdict) in &self.verdicts {
            let g = verdict.generation;
            let conditions = sorted(vec![Condition::from_outcome(
                kind::ACCEPTED,
                &verdict.accepted,
                reason::ACCEPTED,
                "Policy is accepted",
                g,
            )]);
            let object = PolicyObject {
                api_version: verdict.api_version,
                kind: kind_name,
                namespace: ns,
                name,
                generation: g,
            };
            statuses.push(policy_status(
                opts,
                reached,
                object,
                &verdict.services,
                conditions,
            ));
        }
    }
}

/// Resolves every policy of both kinds: its settings, conflicts, and its condition.
pub(super) fn resolve(res: &Resources) -> LbPolicies {
    let mut out = LbPolicies::default();
    let mut by_target: BTreeMap<Key, Vec<(i64, PolicyId)>> = BTreeMap::new();
    let mut settings: BTreeMap<PolicyId, config::LoadBalancing> = BTreeMap::new();
    let kinds = [
        (
            BACKEND_LB_POLICY,
            "gateway.networking.k8s.io/v1alpha2",
            &res.backend_lb_policies,
        ),
        (
            X_BACKEND_TRAFFIC_POLICY,
            "gateway.networking.x-k8s.io/v1alpha1",
            &res.backend_traffic_policies,
        ),
    ];
    for (kind_name, api_version, policies) in kinds {
        for ((ns, name), policy) in policies {
            let id: PolicyId = (ns.clone(), name.clone(), kind_name);
            let (services, mut accepted) = targets(res, policy);
            match load_balancing(policy) {
                Ok(lb) => {
                    settings.insert(id.clone(), lb);
                }
                Err(problem) => accepted = Err(problem),
            }
            // Only a valid policy competes for its Services: a broken one must not
            // displace a working one.
            if accepted.is_ok() {
                for service in &services {
                    by_target
                        .entry(service.clone())
                        .or_default()
                        .push((policy.creation_seconds(), id.clone()));
                }
            }
            out.verdicts.insert(
                id,
                Verdict {
                    api_version,
                    generation: policy.generation(),
                    services,
                    accepted,
                },
            );
        }
    }
    let mut winners: BTreeMap<Key, PolicyId> = BTreeMap::new();
    for (service, candidates) in by_target {
        let Some((winner, losers)) = precedence(candidates) else {
            continue;
        };
        for loser in losers {
            if let Some(verdict) = out.verdicts.get_mut(&loser) {
                verdict.accepted = Err(Problem::new(
                    policy_reason::CONFLICTED,
                    format!(
                        "{} {}/{} takes precedence for Service {}/{}",
                        winner.2, winner.0, winner.1, service.0, service.1
                    ),
                ));
            }
        }
        winners.insert(service, winner);
    }
    // A policy that lost on one Service is not in force on its others either: it is not
    // accepted as a whole.
    for (service, winner) in winners {
        let in_force = out
            .verdicts
            .get(&winner)
            .is_some_and(|v| v.accepted.is_ok());
        if let (true, Some(lb)) = (in_force, settings.get(&winner)) {
            out.applied.insert(service, lb.clone());
        }
    }
    out
}

/// The Services a policy targets, and Accepted as far as its targets go.
fn targets(res: &Resources, policy: &LbPolicy) -> (BTreeSet<Key>, Result<(), Problem>) {
    let ns = policy.namespace();
    let mut services = BTreeSet::new();
    let mut accepted = Ok(());
    for target in &policy.spec.target_refs {
        match service_target(res, ns, &target.group, &target.kind, &target.name) {
            Ok(service) => {
                services.insert(service);
            }
            Err(problem) => accepted = accepted.and(Err(problem)),
        }
    }
    (services, accepted)
}

/// The annotations and `spec.sessionPersistence` → the host's settings.
fn load_balancing(policy: &LbPolicy) -> Result<config::LoadBalancing, Problem> {
    let annotations = policy.meta().annotations.clone().unwrap_or_default();
    let mut problems = Vec::new();
    let algorithm = match annotations
        .get(LOAD_BALANCER_ANNOTATION)
        .map(String::as_str)
    {
        None => "RoundRobin",
        Some(a @ ("RoundRobin" | "LeastRequest" | "Random" | "ConsistentHash")) => a,
        Some(other) => {
            problems.push(format!(
                "annotation {LOAD_BALANCER_ANNOTATION}: {other:?} is not one of RoundRobin, LeastRequest, Random, ConsistentHash"
            ));
            "RoundRobin"
        }
    };
    let hash_on = annotations.get(HASH_ON_ANNOTATION).map(String::as_str);
    let hash_on = match (algorithm, hash_on) {
        ("ConsistentHash", None) => "SourceIP".to_string(),
        ("ConsistentHash", Some(h)) => match valid_hash_on(h) {
            true => h.to_string(),
            false => {
                problems.push(format!(
                    "annotation {HASH_ON_ANNOTATION}: {h:?} is not SourceIP, Header:<name>, Cookie:<name> or QueryParam:<name>"
                ));
                String::new()
            }
        },
        (_, Some(_)) => {
            problems.push(format!(
                "annotation {HASH_ON_ANNOTATION} needs {LOAD_BALANCER_ANNOTATION}: ConsistentHash"
            ));
            String::new()
        }
        (_, None) => String::new(),
    };
    let session_persistence = policy
        .spec
        .session_persistence
        .as_ref()
        .map(|sp| session_persistence(sp, "/"))
        .transpose()
        .unwrap_or_else(|message| {
            problems.push(message);
            None
        });
    if !problems.is_empty() {
        return Err(Problem::new(reason::INVALID, problems.join("; ")));
    }
    Ok(config::LoadBalancing {
        algorithm: algorithm.to_string(),
        hash_on,
        session_persistence,
    })
}

fn valid_hash_on(text: &str) -> bool {
    match text.split_once(':') {
        None => text == "SourceIP",
        Some(("Header" | "Cookie" | "QueryParam", name)) => is_token(name),
        Some(_) => false,
    }
}

/// An RFC 9110 token: what header and cookie names are made of.
pub(super) fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A sessionPersistence with its defaults (Cookie, [`DEFAULT_SESSION_NAME`], a session
/// cookie) → the host's settings; `cookie_path` scopes the cookie. Err says what is wrong.
/// An HTTPRoute rule's `sessionPersistence` (the experimental type, the same fields):
/// read through the policy's type so that both are checked by one function.
pub(super) fn rule_session_persistence(
    sp: &HttpRouteRulesSessionPersistence,
    cookie_path: &str,
) -> Result<config::SessionPersistence, String> {
    let sp: SessionPersistence = serde_json::to_value(sp)
        .and_then(serde_json::from_value)
        .map_err(|e| format!("sessionPersistence: {e}"))?;
    session_persistence(&sp, cookie_path)
}

pub(super) fn session_persistence(
    sp: &SessionPersistence,
    cookie_path: &str,
) -> Result<config::SessionPersistence, String> {
    let mut problems = Vec::new();
    let type_ = sp.type_.as_deref().unwrap_or("Cookie");
    if !matches!(type_, "Cookie" | "Header") {
        problems.push(format!(
            "sessionPersistence.type {type_:?} is not Cookie or Header"
        ));
    }
    let session_name = sp
        .session_name
        .clone()
        .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string());
    if !is_token(&session_name) || session_name.len() > 128 {
        problems.push(format!(
            "sessionPersistence.sessionName {session_name:?} is not a valid {} name",
            type_.to_ascii_lowercase()
        ));
    }
    let mut seconds = |field: &str, value: &Option<String>| match value {
        None => 0,
        Some(text) => match parse_duration_millis(text) {
            // Tokens count whole seconds; a part of one is one.
            Some(ms) => ms.div_ceil(1000),
            None => {
                problems.push(format!(
                    "sessionPersistence.{field} {text:?} is not a duration like 1h or 30s"
                ));
                0
            }
        },
    };
    let absolute_timeout_seconds = seconds("absoluteTimeout", &sp.absolute_timeout);
    let idle_timeout_seconds = seconds("idleTimeout", &sp.idle_timeout);
    let lifetime = sp
        .cookie_config
        .as_ref()
        .and_then(|c| c.lifetime_type.as_deref());
    let cookie_lifetime = match (type_, lifetime) {
        (_, None) => String::new(),
        ("Cookie", Some(l @ ("Session" | "Permanent"))) => l.to_string(),
        ("Cookie", Some(other)) => {
            problems.push(format!(
                "sessionPersistence.cookieConfig.lifetimeType {other:?} is not Session or Permanent"
            ));
            String::new()
        }
        (_, Some(_)) => {
            problems
                .push("sessionPersistence.cookieConfig can only be set with type Cookie".into());
            String::new()
        }
    };
    if cookie_lifetime == "Permanent" && sp.absolute_timeout.is_none() {
        problems.push(
            "sessionPersistence.absoluteTimeout must be set when cookieConfig.lifetimeType is Permanent"
                .into(),
        );
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(config::SessionPersistence {
        r#type: type_.to_string(),
        session_name,
        absolute_timeout_seconds,
        idle_timeout_seconds,
        cookie_lifetime: if type_ == "Cookie" && cookie_lifetime.is_empty() {
            "Session".to_string()
        } else {
            cookie_lifetime
        },
        cookie_path: if type_ == "Cookie" {
            cookie_path.to_string()
        } else {
            String::new()
        },
    })
}

/// The Path attribute of a rule's session cookie: the longest path every match of the
/// rule lies under (cut at a `/`), so the cookie goes wherever the rule does and no
/// further; `/` when a match is a regular expression.
pub(super) fn cookie_path(matches: &[config::RouteMatch]) -> String {
    let mut common: Option<&str> = None;
    for m in matches {
        let Some(path) = &m.path else {
            return "/".into();
        };
        if path.r#type == "RegularExpression" || !path.value.starts_with('/') {
            return "/".into();
        }
        let value = path.value.as_str();
        common = Some(match common {
            None => value,
            Some(c) => {
                let n = c
                    .bytes()
                    .zip(value.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                &c[..n]
            }
        });
    }
    let Some(common) = common else {
        return "/".into();
    };
    // A shared partial segment ("/app" of "/apple" and "/application") is no path.
    let all_whole = matches.iter().all(|m| {
        m.path.as_ref().is_some_and(|p| {
            p.value.len() == common.len() || p.value.as_bytes().get(common.len()) == Some(&b'/')
        })
    });
    let path = if all_whole {
        common
    } else {
        &common[..common.rfind('/').unwrap_or(0)]
    };
    match path.trim_end_matches('/') {
        "" => "/".into(),
        p => p.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(value: &str) -> config::RouteMatch {
        config::RouteMatch {
            path: Some(config::PathMatch {
                r#type: "PathPrefix".into(),
                value: value.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cookie_paths_cover_every_match_and_no_more() {
        assert_eq!(cookie_path(&[prefix("/")]), "/");
        assert_eq!(cookie_path(&[prefix("/cart/")]), "/cart");
        assert_eq!(
            cookie_path(&[prefix("/cart"), prefix("/cart/items")]),
            "/cart"
        );
        assert_eq!(
            cookie_path(&[prefix("/apple"), prefix("/application")]),
            "/"
        );
        assert_eq!(cookie_path(&[prefix("/a/b/x"), prefix("/a/b/y")]), "/a/b");
        let regex = config::RouteMatch {
            path: Some(config::PathMatch {
                r#type: "RegularExpression".into(),
                value: "/x.*".into(),
            }),
            ..Default::default()
        };
        assert_eq!(cookie_path(&[regex]), "/");
    }

    #[test]
    fn session_persistence_defaults_and_checks() {
        let sp = SessionPersistence::default();
        let out = session_persistence(&sp, "/").unwrap();
        assert_eq!(out.r#type, "Cookie");
        assert_eq!(out.session_name, DEFAULT_SESSION_NAME);
        assert_eq!(out.cookie_lifetime, "Session");
        let permanent_without_timeout = SessionPersistence {
            cookie_config: Some(crate::lb_policy::CookieConfig {
                lifetime_type: Some("Permanent".into()),
            }),
            ..Default::default()
        };
        assert!(session_persistence(&permanent_without_timeout, "/").is_err());
        let header_with_cookie_config = SessionPersistence {
            type_: Some("Header".into()),
            ..permanent_without_timeout.clone()
        };
        assert!(session_persistence(&header_with_cookie_config, "/").is_err());
        let fraction = SessionPersistence {
            idle_timeout: Some("1500ms".into()),
            ..Default::default()
        };
        assert_eq!(
            session_persistence(&fraction, "/")
                .unwrap()
                .idle_timeout_seconds,
            2
        );
    }
}
