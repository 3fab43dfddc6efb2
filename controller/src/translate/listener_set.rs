//! ListenerSets: more listeners for a Gateway, declared in other objects (possibly in
//! other namespaces), merged into the Gateway when its `allowedListeners` admits them.
//!
//! The merged list keeps the spec's precedence: the Gateway's own listeners, then
//! ListenerSets oldest first, then by namespace/name. A ListenerSet listener that is
//! indistinct from one earlier in that order is Conflicted and not programmed; the
//! earlier one is left alone. Routes reach ListenerSet listeners only through a parentRef
//! to the ListenerSet, and Gateway parentRefs only reach the Gateway's own listeners.

use gateway_api::gateways::{
    Gateway, GatewayAllowedListenersNamespacesFrom as From, GatewayListeners,
    GatewayListenersAllowedRoutesNamespacesSelector,
};
use gateway_api::listenersets::ListenerSet;
use serde::Serialize;

use super::conflict::mark_conflicts;
use super::listener::{GATEWAY_GROUP, ListenerOrigin, ListenerState};
use super::selector::LabelSelector;
use super::{GATEWAY_API_VERSION, ObjectStatus};
use crate::model::{Key, MetaExt, Resources};
use crate::status::{Condition, ListenerStatus, Problem, kind, reason, sorted};

pub(super) const LISTENER_SET: &str = "ListenerSet";

mod set_reason {
    pub const NOT_ALLOWED: &str = "NotAllowed";
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    pub const PARENT_NOT_ACCEPTED: &str = "ParentNotAccepted";
}

/// One ListenerSet whose parentRef names a Gateway of ours.
#[derive(Clone, Debug)]
pub(super) struct ListenerSetState {
    pub key: Key,
    pub generation: i64,
    /// Err: not admitted by the Gateway's allowedListeners (its listeners are not merged).
    pub allowed: Result<(), Problem>,
}

/// The namespaces whose ListenerSets a Gateway's `allowedListeners` admits.
enum Admitted {
    Same(String),
    All,
    Selector(LabelSelector),
}

impl Admitted {
    /// `None` when the Gateway admits no ListenerSets (the default, and an invalid
    /// selector).
    fn of(gw: &Gateway) -> Option<Self> {
        let namespaces = gw.spec.allowed_listeners.as_ref()?.namespaces.as_ref()?;
        match namespaces.from.as_ref()? {
            From::None => None,
            From::Same => Some(Admitted::Same(gw.namespace().to_string())),
            From::All => Some(Admitted::All),
            From::Selector => {
                let selector: GatewayListenersAllowedRoutesNamespacesSelector =
                    serde_json::to_value(namespaces.selector.as_ref()?)
                        .and_then(serde_json::from_value)
                        .ok()?;
                LabelSelector::parse(&selector).ok().map(Admitted::Selector)
            }
        }
    }

    fn admits(&self, res: &Resources, namespace: &str) -> bool {
        match self {
            Admitted::Same(gateway_ns) => namespace == gateway_ns,
            Admitted::All => true,
            Admitted::Selector(selector) => selector.matches(&res.namespace_labels(namespace)),
        }
    }
}

/// The ListenerSets naming `gw` as parent, in precedence order, with the listeners of
/// the admitted ones appended to `listeners` (which holds the Gateway's own, conflicts
/// already marked).
pub(super) fn merge(
    res: &Resources,
    gw: &Gateway,
    listeners: &mut Vec<ListenerState>,
) -> Vec<ListenerSetState> {
    let gw_key = (gw.namespace().to_string(), gw.name().to_string());
    let mut sets: Vec<&ListenerSet> = res
        .listener_sets
        .values()
        .filter(|set| parent_of(set) == Some(gw_key.clone()))
        .collect();
    sets.sort_by(|a, b| {
        (a.creation_seconds(), a.namespace(), a.name()).cmp(&(
            b.creation_seconds(),
            b.namespace(),
            b.name(),
        ))
    });
    let admitted = Admitted::of(gw);
    let mut out = Vec::new();
    for set in sets {
        let key = (set.namespace().to_string(), set.name().to_string());
        let allowed = match &admitted {
            Some(admitted) if admitted.admits(res, set.namespace()) => Ok(()),
            _ => Err(Problem::new(
                set_reason::NOT_ALLOWED,
                format!(
                    "Gateway {}/{} does not allow ListenerSets from namespace {}",
                    gw_key.0,
                    gw_key.1,
                    set.namespace()
                ),
            )),
        };
        if allowed.is_ok() {
            let mut own: Vec<ListenerState> = set
                .spec
                .listeners
                .iter()
                .filter_map(as_gateway_listener)
                .map(|l| {
                    ListenerState::build(
                        res,
                        ListenerOrigin::ListenerSet(key.clone()),
                        set.namespace(),
                        &l,
                    )
                })
                .collect();
            // Listeners that take precedence (the Gateway's, earlier sets') first; then the
            // set's own that are left must be distinct among themselves.
            for listener in &mut own {
                listener.conflict = conflict_with_earlier(listener, listeners);
            }
            mark_conflicts(&mut own);
            listeners.extend(own);
        }
        out.push(ListenerSetState {
            key,
            generation: set.generation(),
            allowed,
        });
    }
    out
}

/// The Gateway a ListenerSet's parentRef names, if it is a Gateway.
pub(super) fn parent_of(set: &ListenerSet) -> Option<Key> {
    let parent = &set.spec.parent_ref;
    let group = parent.group.as_deref().unwrap_or(GATEWAY_GROUP);
    let kind_ = parent.kind.as_deref().unwrap_or("Gateway");
    (group == GATEWAY_GROUP && kind_ == "Gateway").then(|| {
        (
            parent
                .namespace
                .clone()
                .unwrap_or_else(|| set.namespace().to_string()),
            parent.name.clone(),
        )
    })
}

/// A ListenerSet listener has the shape of a Gateway listener.
fn as_gateway_listener<T: Serialize>(listener: &T) -> Option<GatewayListeners> {
    serde_json::to_value(listener)
        .and_then(serde_json::from_value)
        .ok()
}

/// Why `listener` is indistinct from a programmed listener that takes precedence.
fn conflict_with_earlier(listener: &ListenerState, earlier: &[ListenerState]) -> Option<Problem> {
    let host = |l: &ListenerState| l.hostname.clone().unwrap_or_default().to_ascii_lowercase();
    for other in earlier.iter().filter(|o| o.conflict.is_none()) {
        if other.port != listener.port {
            continue;
        }
        // UDP has ports of its own: it shares a port with the TCP protocols.
        if (other.protocol == "UDP") != (listener.protocol == "UDP") {
            continue;
        }
        // Any other protocol on a port already taken conflicts: the set's listener loses
        // to the one that came first.
        if other.protocol != listener.protocol {
            return Some(Problem::new(
                reason::PROTOCOL_CONFLICT,
                format!(
                    "port {} is already used with protocol {}",
                    listener.port, other.protocol
                ),
            ));
        }
        if other.protocol == listener.protocol && host(other) == host(listener) {
            return Some(Problem::new(
                reason::HOSTNAME_CONFLICT,
                format!(
                    "a listener that takes precedence already has port {} and this hostname",
                    listener.port
                ),
            ));
        }
    }
    None
}

#[derive(Serialize)]
struct SetStatus {
    conditions: Vec<Condition>,
    listeners: Vec<ListenerStatus>,
}

impl ListenerSetState {
    /// Its status: Accepted and Programmed, and one entry per merged listener.
    /// `parent_accepted`: the Gateway's own acceptance.
    pub fn status(
        &self,
        listeners: &[ListenerState],
        parent_accepted: &Result<(), Problem>,
    ) -> ObjectStatus {
        let g = self.generation;
        let origin = ListenerOrigin::ListenerSet(self.key.clone());
        let own: Vec<&ListenerState> = listeners.iter().filter(|l| l.origin == origin).collect();
        let accepted = self
            .allowed
            .clone()
            .and_then(|()| {
                parent_accepted.clone().map_err(|p| {
                    Problem::new(
                        set_reason::PARENT_NOT_ACCEPTED,
                        format!("the parent Gateway is not accepted: {}", p.message),
                    )
                })
            })
            .and_then(|()| {
                if own.iter().any(|l| l.is_programmed()) {
                    Ok(())
                } else {
                    Err(Problem::new(
                        set_reason::LISTENERS_NOT_VALID,
                        "no valid listeners",
                    ))
                }
            });
        let conditions = sorted(vec![
            Condition::from_outcome(
                kind::ACCEPTED,
                &accepted,
                reason::ACCEPTED,
                "ListenerSet is accepted",
                g,
            ),
            Condition::from_outcome(
                kind::PROGRAMMED,
                &accepted,
                reason::PROGRAMMED,
                "ListenerSet is programmed",
                g,
            ),
        ]);
        let status = SetStatus {
            conditions,
            listeners: own.iter().map(|l| l.status(g)).collect(),
        };
        ObjectStatus {
            api_version: GATEWAY_API_VERSION.to_string(),
            kind: LISTENER_SET.to_string(),
            namespace: self.key.0.clone(),
            name: self.key.1.clone(),
            generation: g,
            status: serde_json::to_value(status).unwrap_or_default(),
        }
    }

    /// Attached in the sense of the Gateway's `attachedListenerSets`.
    pub fn is_attached(&self, listeners: &[ListenerState]) -> bool {
        let origin = ListenerOrigin::ListenerSet(self.key.clone());
        self.allowed.is_ok()
            && listeners
                .iter()
                .any(|l| l.origin == origin && l.is_programmed())
    }
}
