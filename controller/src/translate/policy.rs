//! What the backend policies (BackendTLSPolicy, BackendLBPolicy and XBackendTrafficPolicy)
//! share: precedence between policies on one target, the reasons the spec gives their
//! conditions, and a PolicyStatus with one ancestor per Gateway of ours whose routes reach
//! a Service the policy targets.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::backend_lb::LbPolicies;
use super::backend_tls::BackendTlsPolicies;
use super::listener::GATEWAY_GROUP;
use super::{ObjectStatus, TranslateOptions};
use crate::model::{Key, Resources};
use crate::status::{Condition, Problem, reason};

/// Reasons the spec defines for policy conditions.
pub(super) mod policy_reason {
    pub const CONFLICTED: &str = "Conflicted";
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
}

/// Every backend policy, resolved before routes so that backendRefs pick them up.
#[derive(Debug, Default)]
pub(super) struct BackendPolicies {
    pub tls: BackendTlsPolicies,
    pub lb: LbPolicies,
}

/// The Service a policy's targetRef in namespace `ns` names, or why it cannot be targeted
/// (a non-Service kind is Invalid; a missing Service is TargetNotFound).
pub(super) fn service_target(
    res: &Resources,
    ns: &str,
    group: &str,
    kind: &str,
    name: &str,
) -> Result<Key, Problem> {
    if !group.is_empty() || kind != "Service" {
        return Err(Problem::new(
            reason::INVALID,
            format!("targetRef {group}/{kind} {name}: only core Services can be targeted"),
        ));
    }
    let key = (ns.to_string(), name.to_string());
    if !res.services.contains_key(&key) {
        return Err(Problem::new(
            policy_reason::TARGET_NOT_FOUND,
            format!("targetRef Service {ns}/{name} not found"),
        ));
    }
    Ok(key)
}

/// Policies on one target in precedence order: the oldest first, then by name (the key's
/// order). Returns the winner and the others.
pub(super) fn precedence<K: Ord>(mut candidates: Vec<(i64, K)>) -> Option<(K, Vec<K>)> {
    candidates.sort();
    let mut keys = candidates.into_iter().map(|(_, key)| key);
    let winner = keys.next()?;
    Some((winner, keys.collect()))
}

/// Which policy object a status is for.
pub(super) struct PolicyObject<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub generation: i64,
}

/// The policy's status: `conditions` under one ancestor per Gateway whose routes reach
/// one of `services` (`reached`: the Services each Gateway's routes reach), whether or
/// not the policy won there: a Conflicted one must say so to those Gateways.
pub(super) fn policy_status(
    opts: &TranslateOptions,
    reached: &BTreeMap<Key, BTreeSet<Key>>,
    object: PolicyObject<'_>,
    services: &BTreeSet<Key>,
    conditions: Vec<Condition>,
) -> ObjectStatus {
    let ancestors = reached
        .iter()
        .filter(|(_, reached)| !reached.is_disjoint(services))
        .map(|((gw_ns, gw_name), _)| PolicyAncestorStatus {
            ancestor_ref: AncestorRef {
                group: GATEWAY_GROUP.to_string(),
                kind: "Gateway".to_string(),
                namespace: gw_ns.clone(),
                name: gw_name.clone(),
            },
            controller_name: opts.controller_name.clone(),
            conditions: conditions.clone(),
        })
        .collect();
    ObjectStatus {
        api_version: object.api_version.to_string(),
        kind: object.kind.to_string(),
        namespace: object.namespace.to_string(),
        name: object.name.to_string(),
        generation: object.generation,
        status: serde_json::to_value(PolicyStatus { ancestors }).unwrap_or_default(),
    }
}

#[derive(Serialize)]
struct PolicyStatus {
    ancestors: Vec<PolicyAncestorStatus>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyAncestorStatus {
    ancestor_ref: AncestorRef,
    controller_name: String,
    conditions: Vec<Condition>,
}

#[derive(Serialize)]
struct AncestorRef {
    group: String,
    kind: String,
    namespace: String,
    name: String,
}
