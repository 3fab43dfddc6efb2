//! Kubernetes Events for status conditions that went wrong, or right again.
//!
//! Every status write compares our conditions with the live ones. A condition that turns
//! bad (an HTTPRoute's `ResolvedRefs=False BackendNotFound`, a listener's
//! `Conflicted=True`) is published as a Warning on the object, with the condition's reason
//! and message, so `kubectl describe` and `kubectl events` show it where users look. A bad
//! condition turning good again is a Normal event. Conditions that start out good (the
//! thousands of routes Accepted after a start) make no event: they would only be noise.
//!
//! Events go through kube's [`Recorder`], which folds repeats into a series. Publishing is
//! best effort: a failure is logged and never holds up the status write.

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::Value;
use tracing::debug;

use k8s_openapi::api::core::v1::ObjectReference;

/// Condition types for which `True` is the bad state.
const TRUE_IS_BAD: &[&str] = &[
    "Conflicted",
    "OverlappingTLSConfig",
    "InsecureFrontendValidationMode",
];

/// An event's note is at most 1 kB.
const MAX_NOTE: usize = 1024;

/// One condition of one object (or of one of its listeners or parents) that changed in a
/// way worth an event.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// Which part of the status: empty for the object's own conditions, else e.g.
    /// `listener http` or `parent web/http`.
    pub scope: String,
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub bad: bool,
}

/// The transitions from `live` to `desired` (our part of a status, as the translator made
/// it): conditions that are bad and were not so before, and bad ones that became good.
/// `is_ours` picks our entries out of the live shared lists.
pub fn transitions(
    live: &Value,
    desired: &Value,
    is_ours: impl Fn(&Value) -> bool,
) -> Vec<Transition> {
    let mut out = Vec::new();
    compare(&mut out, "", &live["conditions"], &desired["conditions"]);
    for listener in entries(desired, "listeners") {
        let name = listener["name"].as_str().unwrap_or_default();
        let before = entries(live, "listeners").find(|l| l["name"] == listener["name"]);
        compare(
            &mut out,
            &format!("listener {name}"),
            before.map_or(&Value::Null, |l| &l["conditions"]),
            &listener["conditions"],
        );
    }
    for (list, reference) in [("parents", "parentRef"), ("ancestors", "ancestorRef")] {
        for entry in entries(desired, list) {
            let target = &entry[reference];
            let before =
                entries(live, list).find(|e| is_ours(e) && same_reference(&e[reference], target));
            compare(
                &mut out,
                &format!("{} {}", &list[..list.len() - 1], describe(target)),
                before.map_or(&Value::Null, |e| &e["conditions"]),
                &entry["conditions"],
            );
        }
    }
    out
}

fn entries<'a>(status: &'a Value, list: &str) -> impl Iterator<Item = &'a Value> {
    status[list].as_array().into_iter().flatten()
}

fn compare(out: &mut Vec<Transition>, scope: &str, live: &Value, desired: &Value) {
    for condition in desired.as_array().into_iter().flatten() {
        let field = |c: &Value, name: &str| c[name].as_str().unwrap_or_default().to_string();
        let type_ = field(condition, "type");
        let status = field(condition, "status");
        let bad = (status == "True") == TRUE_IS_BAD.contains(&type_.as_str());
        let before = live
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == condition["type"]);
        let worth_it = match before {
            // Bad, and not this same bad as before.
            Some(b) if bad => {
                b["status"] != condition["status"] || b["reason"] != condition["reason"]
            }
            None => bad,
            // Good again after being bad.
            Some(b) => b["status"] != condition["status"],
        };
        if worth_it {
            out.push(Transition {
                scope: scope.to_string(),
                type_,
                status,
                reason: field(condition, "reason"),
                message: field(condition, "message"),
                bad,
            });
        }
    }
}

/// A parentRef or ancestorRef equal to another, defaults aside.
fn same_reference(a: &Value, b: &Value) -> bool {
    ["group", "kind", "namespace", "name", "sectionName", "port"]
        .iter()
        .all(|k| a[k] == b[k])
}

fn describe(reference: &Value) -> String {
    let mut text = String::new();
    if let Some(ns) = reference["namespace"].as_str() {
        text.push_str(ns);
        text.push('/');
    }
    text.push_str(reference["name"].as_str().unwrap_or_default());
    if let Some(section) = reference["sectionName"].as_str() {
        text.push('/');
        text.push_str(section);
    }
    text
}

/// Publishes transitions as Events on the objects they belong to.
#[derive(Clone)]
pub struct StatusEvents {
    recorder: Recorder,
}

impl StatusEvents {
    /// `controller` names the reporting controller (our controllerName), `instance` this
    /// replica.
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        let reporter = Reporter {
            controller: controller.to_string(),
            instance: Some(instance.to_string()),
        };
        StatusEvents {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes one event per transition of one object.
    pub async fn publish(&self, found: &ObjectTransitions) {
        for transition in &found.transitions {
            let event = Event {
                type_: if transition.bad {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: if transition.reason.is_empty() {
                    transition.type_.clone()
                } else {
                    transition.reason.clone()
                },
                note: Some(note(transition)),
                action: "UpdateStatus".to_string(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &found.object).await {
                debug!(kind = ?found.object.kind, name = ?found.object.name, error = %e,
                    "cannot publish an event");
            }
        }
    }
}

/// The transitions of one object's status, with the object they are about.
#[derive(Debug)]
pub struct ObjectTransitions {
    pub object: ObjectReference,
    pub transitions: Vec<Transition>,
}

impl ObjectTransitions {
    /// `transitions` about `object` (as read before the status write).
    pub fn new(
        object: &kube::api::DynamicObject,
        api_version: &str,
        kind: &str,
        transitions: Vec<Transition>,
    ) -> Self {
        let meta = object.meta();
        ObjectTransitions {
            object: ObjectReference {
                api_version: Some(api_version.to_string()),
                kind: Some(kind.to_string()),
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                ..Default::default()
            },
            transitions,
        }
    }
}

fn note(t: &Transition) -> String {
    let mut text = if t.scope.is_empty() {
        format!("{}={}: {}", t.type_, t.status, t.message)
    } else {
        format!("{}: {}={}: {}", t.scope, t.type_, t.status, t.message)
    };
    if text.len() > MAX_NOTE {
        let mut end = MAX_NOTE - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ours(entry: &Value) -> bool {
        entry["controllerName"] == "nantian"
    }

    fn summary(found: &[Transition]) -> Vec<String> {
        found
            .iter()
            .map(|t| {
                format!(
                    "{}|{}={}|{}|{}",
                    t.scope, t.type_, t.status, t.reason, t.bad
                )
            })
            .collect()
    }

    #[test]
    fn conditions_that_start_out_good_make_no_event() {
        let desired = json!({"conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted"},
            {"type": "Programmed", "status": "True", "reason": "Programmed"}]});
        assert!(transitions(&Value::Null, &desired, ours).is_empty());
        assert!(transitions(&desired, &desired, ours).is_empty());
    }

    #[test]
    fn a_bad_condition_is_a_warning_once_and_recovery_is_normal() {
        let bad = json!({"parents": [{"controllerName": "nantian",
            "parentRef": {"name": "web", "sectionName": "http"},
            "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted"},
                {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound", "message": "no Service nope"}]}]});
        assert_eq!(
            summary(&transitions(&Value::Null, &bad, ours)),
            ["parent web/http|ResolvedRefs=False|BackendNotFound|true"]
        );
        assert!(
            transitions(&bad, &bad, ours).is_empty(),
            "the same bad state again"
        );
        let good = json!({"parents": [{"controllerName": "nantian",
            "parentRef": {"name": "web", "sectionName": "http"},
            "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted"},
                {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"}]}]});
        assert_eq!(
            summary(&transitions(&bad, &good, ours)),
            ["parent web/http|ResolvedRefs=True|ResolvedRefs|false"]
        );
    }

    #[test]
    fn another_controllers_entry_for_the_same_parent_is_not_ours() {
        let live = json!({"parents": [{"controllerName": "other",
            "parentRef": {"name": "web"},
            "conditions": [{"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners"}]}]});
        let desired = json!({"parents": [{"controllerName": "nantian",
            "parentRef": {"name": "web"},
            "conditions": [{"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners"}]}]});
        assert_eq!(
            summary(&transitions(&live, &desired, ours)),
            ["parent web|Accepted=False|NotAllowedByListeners|true"]
        );
    }

    #[test]
    fn listener_conflicts_are_bad_when_true() {
        let desired = json!({"listeners": [{"name": "http", "conditions": [
            {"type": "Conflicted", "status": "True", "reason": "HostnameConflict"},
            {"type": "Accepted", "status": "True", "reason": "Accepted"}]}]});
        let live = json!({"listeners": [{"name": "http", "conditions": [
            {"type": "Conflicted", "status": "False", "reason": "NoConflicts"},
            {"type": "Accepted", "status": "True", "reason": "Accepted"}]}]});
        assert_eq!(
            summary(&transitions(&live, &desired, ours)),
            ["listener http|Conflicted=True|HostnameConflict|true"]
        );
    }

    #[test]
    fn notes_are_cut_to_a_kilobyte_on_a_character_boundary() {
        let t = Transition {
            scope: String::new(),
            type_: "Accepted".into(),
            status: "False".into(),
            reason: "Invalid".into(),
            message: "é".repeat(2000),
            bad: true,
        };
        let text = note(&t);
        assert!(
            text.len() <= MAX_NOTE && text.ends_with("..."),
            "{}",
            text.len()
        );
    }
}
