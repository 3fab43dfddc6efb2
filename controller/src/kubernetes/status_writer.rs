//! Writes the translator's statuses back to the API server with server-side apply.
//!
//! - Nothing is written when the object's live status already says the same thing (a
//!   restart, or a re-translation that changed nothing, costs reads, not writes).
//! - `lastTransitionTime` is carried over from the live status for conditions that did
//!   not change, so times say when a condition really transitioned.
//! - Route `status.parents` and policy `status.ancestors` are shared with other
//!   controllers: the lists are atomic in the CRDs, so the entry list written is the live
//!   one with only our own entries (by `controllerName`) replaced.
//! - An object we wrote for before and that no longer has a status from us (a route
//!   detached from our Gateways) gets our entries removed.
//! - Conditions that turn bad, or good again, are also published as Events (`events`),
//!   once the batch of status writes is done (they are not what other readers wait for).

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tracing::{debug, warn};

use super::events::{self, ObjectTransitions, StatusEvents};
use super::kinds::{self, WatchedKind};
use crate::status;
use crate::translate::ObjectStatus;

pub const FIELD_MANAGER: &str = "nantian";

/// (kind, namespace, name)
type ObjectKey = (String, String, String);

/// Status writes in flight at once.
const WRITES_IN_FLIGHT: usize = 16;

/// The status lists other controllers write entries into.
const SHARED_LISTS: &[&str] = &["parents", "ancestors"];

/// What writing one object's status did.
struct Applied {
    wrote: bool,
    /// The Events to publish about it.
    events: Option<ObjectTransitions>,
}

impl Applied {
    const NOTHING: Applied = Applied {
        wrote: false,
        events: None,
    };
}

pub struct StatusWriter {
    client: Client,
    controller_name: String,
    /// What we last wrote (or found already there), per object: skips the read when a
    /// re-translation produces the same status again.
    written: BTreeMap<ObjectKey, Value>,
    events: Option<StatusEvents>,
}

impl StatusWriter {
    pub fn new(client: Client, controller_name: impl Into<String>) -> Self {
        StatusWriter {
            client,
            controller_name: controller_name.into(),
            written: BTreeMap::new(),
            events: None,
        }
    }

    /// Also publishes Events for conditions that turn bad or recover.
    pub fn with_events(mut self, events: StatusEvents) -> Self {
        self.events = Some(events);
        self
    }

    /// Forgets what was written: the next [`StatusWriter::write`] compares every status
    /// with the live one again (someone else may have changed it).
    pub fn recheck_all(&mut self) {
        self.written.clear();
    }

    /// Brings every object's status in line with `statuses`. Returns how many objects
    /// were patched. Errors are logged per object and retried on the next call.
    pub async fn write(&mut self, statuses: &[ObjectStatus]) -> usize {
        let key = |object: &ObjectStatus| {
            (
                object.kind.clone(),
                object.namespace.clone(),
                object.name.clone(),
            )
        };
        let current: BTreeSet<ObjectKey> = statuses.iter().map(key).collect();
        let pending: Vec<ObjectStatus> = statuses
            .iter()
            .filter(|object| self.written.get(&key(object)) != Some(&object.status))
            .cloned()
            .collect();
        // A few writes in flight at once: thousands of routes accepted after a start
        // would otherwise take a round trip each, one after the other.
        let this = &*self;
        let results: Vec<(ObjectStatus, Result<Applied, kube::Error>)> =
            futures::stream::iter(pending)
                .map(|object| this.apply_owned(object))
                .buffer_unordered(WRITES_IN_FLIGHT)
                .collect()
                .await;
        let mut patched = 0;
        let mut events = Vec::new();
        for (object, result) in results {
            match result {
                Ok(applied) => {
                    patched += usize::from(applied.wrote);
                    events.extend(applied.events);
                    self.written.insert(key(&object), object.status);
                }
                Err(e) => warn!(
                    kind = %object.kind, namespace = %object.namespace, name = %object.name,
                    error = %e, "cannot write status"
                ),
            }
        }
        let gone: Vec<ObjectKey> = self
            .written
            .keys()
            .filter(|k| !current.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            match self.forget(&key).await {
                Ok(wrote) => {
                    patched += usize::from(wrote);
                    self.written.remove(&key);
                }
                Err(e) => warn!(kind = %key.0, namespace = %key.1, name = %key.2, error = %e,
                    "cannot remove our status entries"),
            }
        }
        if let Some(publisher) = &self.events {
            futures::stream::iter(&events)
                .for_each_concurrent(WRITES_IN_FLIGHT, |found| publisher.publish(found))
                .await;
        }
        patched
    }

    fn api(&self, kind: &WatchedKind, namespace: &str) -> Api<DynamicObject> {
        let resource = kind.api_resource();
        if kind.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        }
    }

    async fn apply_owned(
        &self,
        object: ObjectStatus,
    ) -> (ObjectStatus, Result<Applied, kube::Error>) {
        let result = self.apply(&object).await;
        (object, result)
    }

    /// Writes one object's status unless the live one already matched.
    async fn apply(&self, object: &ObjectStatus) -> Result<Applied, kube::Error> {
        let Some(kind) = kinds::WATCHED.iter().find(|k| k.kind == object.kind) else {
            return Ok(Applied::NOTHING);
        };
        let api = self.api(kind, &object.namespace);
        let Some(live) = api.get_opt(&object.name).await? else {
            return Ok(Applied::NOTHING);
        };
        let live_status = live.data.get("status").cloned().unwrap_or(Value::Null);
        let mut desired = object.status.clone();
        self.carry_times(&live_status, &mut desired);
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .to_string();
        status::stamp_transition_times(&mut desired, &now);
        self.merge_shared_lists(&live_status, &mut desired);
        if covers(&live_status, &desired) {
            debug!(kind = %object.kind, name = %object.name, "status unchanged");
            return Ok(Applied::NOTHING);
        }
        self.patch(&api, kind, &object.name, desired).await?;
        let events = self.events.as_ref().and_then(|_| {
            let found = events::transitions(&live_status, &object.status, |e| self.is_ours(e));
            (!found.is_empty())
                .then(|| ObjectTransitions::new(&live, &api_version(kind), kind.kind, found))
        });
        Ok(Applied {
            wrote: true,
            events,
        })
    }

    /// Removes our entries from an object's shared status lists.
    async fn forget(&self, key: &ObjectKey) -> Result<bool, kube::Error> {
        let Some(kind) = kinds::WATCHED.iter().find(|k| k.kind == key.0) else {
            return Ok(false);
        };
        let api = self.api(kind, &key.1);
        let Some(live) = api.get_opt(&key.2).await? else {
            return Ok(false);
        };
        let live_status = live.data.get("status").cloned().unwrap_or(Value::Null);
        let Some(list) = SHARED_LISTS.iter().find(|l| live_status.get(**l).is_some()) else {
            return Ok(false);
        };
        let mut desired = json!({ *list: [] });
        self.merge_shared_lists(&live_status, &mut desired);
        if covers(&live_status, &desired) {
            return Ok(false);
        }
        self.patch(&api, kind, &key.2, desired).await?;
        Ok(true)
    }

    async fn patch(
        &self,
        api: &Api<DynamicObject>,
        kind: &WatchedKind,
        name: &str,
        status: Value,
    ) -> Result<(), kube::Error> {
        let body = json!({
            "apiVersion": api_version(kind),
            "kind": kind.kind,
            "metadata": {"name": name},
            "status": status,
        });
        // Forced: the shared lists are atomic, so taking them over from another manager
        // is expected (their entries are kept in the list we write).
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch_status(name, &params, &Patch::Apply(&body))
            .await
            .map(|_| ())
    }

    fn is_ours(&self, entry: &Value) -> bool {
        entry.get("controllerName").and_then(Value::as_str) == Some(self.controller_name.as_str())
    }

    /// Carries transition times from the live status: for shared lists, from our own
    /// live entries in order (other controllers' entries would shift the positions).
    fn carry_times(&self, live: &Value, desired: &mut Value) {
        let mut before = live.clone();
        for list in SHARED_LISTS {
            if let Some(Value::Array(entries)) = before.get_mut(*list) {
                entries.retain(|e| self.is_ours(e));
            }
        }
        status::carry_transition_times(&before, desired);
    }

    /// Puts other controllers' live entries in front of ours in every shared list.
    fn merge_shared_lists(&self, live: &Value, desired: &mut Value) {
        for list in SHARED_LISTS {
            let Some(Value::Array(ours)) = desired.get_mut(*list) else {
                continue;
            };
            let mut merged: Vec<Value> = live
                .get(*list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|e| !self.is_ours(e))
                .cloned()
                .collect();
            merged.append(ours);
            *ours = merged;
        }
    }
}

fn api_version(kind: &WatchedKind) -> String {
    if kind.group.is_empty() {
        kind.version.to_string()
    } else {
        format!("{}/{}", kind.group, kind.version)
    }
}

/// True when every field of `desired` is in `live` with the same value (fields only the
/// live status has, such as ones another manager owns, don't count).
fn covers(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d
            .iter()
            .all(|(k, v)| l.get(k).is_some_and(|lv| covers(lv, v)) || v.is_null()),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(a, b)| covers(a, b))
        }
        _ => live == desired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> StatusWriter {
        // A client is not needed for the pure helpers; build one that is never used.
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        StatusWriter::new(
            Client::try_from(config).unwrap(),
            "gateway.nantian.dev/controller",
        )
    }

    #[tokio::test]
    async fn other_controllers_parent_entries_are_kept_and_ours_replaced() {
        let w = writer();
        let live = json!({"parents": [
            {"controllerName": "example.com/other", "parentRef": {"name": "theirs"}},
            {"controllerName": "gateway.nantian.dev/controller", "parentRef": {"name": "old"}},
        ]});
        let mut desired = json!({"parents": [
            {"controllerName": "gateway.nantian.dev/controller", "parentRef": {"name": "new"}},
        ]});
        w.merge_shared_lists(&live, &mut desired);
        let names: Vec<&str> = desired["parents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["parentRef"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["theirs", "new"]);
    }

    #[tokio::test]
    async fn transition_times_come_from_our_own_live_entries() {
        let w = writer();
        let live = json!({"parents": [
            {"controllerName": "example.com/other", "conditions": [
                {"type": "Accepted", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]},
            {"controllerName": "gateway.nantian.dev/controller", "conditions": [
                {"type": "Accepted", "status": "True", "lastTransitionTime": "2021-01-01T00:00:00Z"}]},
        ]});
        let mut desired = json!({"parents": [
            {"controllerName": "gateway.nantian.dev/controller", "conditions": [
                {"type": "Accepted", "status": "True"}]},
        ]});
        w.carry_times(&live, &mut desired);
        assert_eq!(
            desired["parents"][0]["conditions"][0]["lastTransitionTime"],
            "2021-01-01T00:00:00Z"
        );
    }

    #[test]
    fn covers_ignores_fields_only_the_live_status_has() {
        let live = json!({"conditions": [{"type": "A", "status": "True", "x": 1}], "extra": 2});
        assert!(covers(
            &live,
            &json!({"conditions": [{"type": "A", "status": "True"}]})
        ));
        assert!(!covers(
            &live,
            &json!({"conditions": [{"type": "A", "status": "False"}]})
        ));
        assert!(!covers(
            &live,
            &json!({"conditions": [{"type": "A", "status": "True"}, {"type": "B"}]})
        ));
    }
}
