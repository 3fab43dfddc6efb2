//! Status shapes the translator writes (Gateway API v1 spelling) and condition builders.
//!
//! Conditions leave `lastTransitionTime` out: the translator is a pure function and its
//! golden files must not depend on the clock. Whoever publishes a status (the admin API,
//! the Kubernetes status writer) stamps it with [`stamp_transition_times`].

use serde::Serialize;
use serde_json::Value;

/// Condition types.
pub mod kind {
    pub const ACCEPTED: &str = "Accepted";
    pub const PROGRAMMED: &str = "Programmed";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const CONFLICTED: &str = "Conflicted";
}

/// Condition reasons, as the Gateway API spec names them.
pub mod reason {
    pub const ACCEPTED: &str = "Accepted";
    pub const PROGRAMMED: &str = "Programmed";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const INVALID: &str = "Invalid";
    pub const NO_CONFLICTS: &str = "NoConflicts";
    // Gateway
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    pub const UNSUPPORTED_ADDRESS: &str = "UnsupportedAddress";
    pub const ADDRESS_NOT_ASSIGNED: &str = "AddressNotAssigned";
    pub const ADDRESS_NOT_USABLE: &str = "AddressNotUsable";
    pub const NO_RESOURCES: &str = "NoResources";
    pub const INVALID_PARAMETERS: &str = "InvalidParameters";
    // Listener
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    pub const PROTOCOL_CONFLICT: &str = "ProtocolConflict";
    pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";
    // Route
    pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
    pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    pub const INVALID_KIND: &str = "InvalidKind";
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    // Shared
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
}

/// Why something is not fine: a spec reason and a human message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Problem {
            reason,
            message: message.into(),
        }
    }
}

/// Ok when there are no problems, else the first problem's reason with every message.
pub fn combine(problems: Vec<Problem>) -> Result<(), Problem> {
    match problems.first() {
        None => Ok(()),
        Some(first) => Err(Problem::new(
            first.reason,
            problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

/// A metav1.Condition without lastTransitionTime (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True" or "False".
    pub status: String,
    pub reason: String,
    pub message: String,
    pub observed_generation: i64,
}

impl Condition {
    pub fn new(
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
        generation: i64,
    ) -> Self {
        Condition {
            type_: type_.to_string(),
            status: if status { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            observed_generation: generation,
        }
    }

    /// True with `ok_reason` when `outcome` is Ok, else False with the problem's reason.
    pub fn from_outcome(
        type_: &str,
        outcome: &Result<(), Problem>,
        ok_reason: &str,
        ok_message: &str,
        generation: i64,
    ) -> Self {
        match outcome {
            Ok(()) => Condition::new(type_, true, ok_reason, ok_message, generation),
            Err(p) => Condition::new(type_, false, p.reason, p.message.clone(), generation),
        }
    }
}

/// Sorts conditions by type, so output does not depend on the order they were built in.
pub fn sorted(mut conditions: Vec<Condition>) -> Vec<Condition> {
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    conditions
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassStatus {
    pub conditions: Vec<Condition>,
    pub supported_features: Vec<SupportedFeature>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SupportedFeature {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    pub addresses: Vec<GatewayAddress>,
    pub conditions: Vec<Condition>,
    pub listeners: Vec<ListenerStatus>,
    /// Only for Gateways whose allowedListeners admits ListenerSets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_listener_sets: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GatewayAddress {
    #[serde(rename = "type")]
    pub type_: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    pub supported_kinds: Vec<RouteGroupKind>,
    pub attached_routes: i32,
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RouteGroupKind {
    pub group: String,
    pub kind: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteStatus {
    pub parents: Vec<RouteParentStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentRef,
    pub controller_name: String,
    pub conditions: Vec<Condition>,
}

/// A route's parentRef as written, with group and kind defaulted as the API server would.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    pub group: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// Adds `lastTransitionTime: now` to every condition (any object under a `conditions`
/// array) in `status` that has none, e.g. `now = "2025-01-01T00:00:00Z"`.
/// Copies `lastTransitionTime` from `before` into the conditions of `after` that did not
/// change (same type and status at the same place), so a re-translation that changes
/// nothing keeps the times the conditions really transitioned at.
pub fn carry_transition_times(before: &Value, after: &mut Value) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (key, value) in a.iter_mut() {
                let Some(old) = b.get(key) else { continue };
                if key == "conditions"
                    && let (Value::Array(old), Value::Array(new)) = (old, &mut *value)
                {
                    for cond in new.iter_mut().filter_map(Value::as_object_mut) {
                        let same = old.iter().find(|o| {
                            o.get("type") == cond.get("type")
                                && o.get("status") == cond.get("status")
                        });
                        if let Some(time) = same.and_then(|o| o.get("lastTransitionTime")) {
                            cond.insert("lastTransitionTime".into(), time.clone());
                        }
                    }
                } else {
                    carry_transition_times(old, value);
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for (old, new) in b.iter().zip(a.iter_mut()) {
                carry_transition_times(old, new);
            }
        }
        _ => {}
    }
}

pub fn stamp_transition_times(status: &mut Value, now: &str) {
    match status {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key == "conditions"
                    && let Value::Array(conditions) = value
                {
                    for condition in conditions.iter_mut().filter_map(Value::as_object_mut) {
                        condition
                            .entry("lastTransitionTime")
                            .or_insert_with(|| Value::String(now.to_string()));
                    }
                } else {
                    stamp_transition_times(value, now);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                stamp_transition_times(item, now);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod carry_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unchanged_conditions_keep_their_time_changed_ones_get_now() {
        let before = json!({"parents": [{"conditions": [
            {"type": "Accepted", "status": "True", "lastTransitionTime": "T0"},
            {"type": "ResolvedRefs", "status": "True", "lastTransitionTime": "T0"}]}]});
        let mut after = json!({"parents": [{"conditions": [
            {"type": "Accepted", "status": "True"},
            {"type": "ResolvedRefs", "status": "False"}]}]});
        carry_transition_times(&before, &mut after);
        stamp_transition_times(&mut after, "T1");
        let c = &after["parents"][0]["conditions"];
        assert_eq!(c[0]["lastTransitionTime"], "T0");
        assert_eq!(c[1]["lastTransitionTime"], "T1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_outcome_maps_ok_and_problem() {
        let ok = Condition::from_outcome(kind::ACCEPTED, &Ok(()), reason::ACCEPTED, "fine", 3);
        assert_eq!(ok.status, "True");
        assert_eq!(ok.reason, "Accepted");
        assert_eq!(ok.observed_generation, 3);
        let bad = Condition::from_outcome(
            kind::ACCEPTED,
            &Err(Problem::new(reason::NO_MATCHING_PARENT, "no listener")),
            reason::ACCEPTED,
            "fine",
            3,
        );
        assert_eq!(bad.status, "False");
        assert_eq!(bad.reason, "NoMatchingParent");
        assert_eq!(bad.message, "no listener");
    }

    #[test]
    fn stamping_fills_nested_conditions_and_keeps_existing_times() {
        let mut status = serde_json::json!({
            "conditions": [{"type": "Accepted"}],
            "listeners": [{"conditions": [
                {"type": "Programmed"},
                {"type": "Accepted", "lastTransitionTime": "old"}
            ]}]
        });
        stamp_transition_times(&mut status, "now");
        assert_eq!(status["conditions"][0]["lastTransitionTime"], "now");
        assert_eq!(
            status["listeners"][0]["conditions"][0]["lastTransitionTime"],
            "now"
        );
        assert_eq!(
            status["listeners"][0]["conditions"][1]["lastTransitionTime"],
            "old"
        );
    }
}
