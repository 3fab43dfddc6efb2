//! Status assertions on the controller's `/api/v1/status` document, after upstream's
//! `conformance/utils/kubernetes` helpers. Each check is a pure function of one document:
//! `Ok` when it holds, `Err(why not yet)` otherwise; the runner polls it to a deadline.

use serde_json::Value;

use crate::manifests::CONTROLLER_NAME;
use crate::model::{
    AttachedListenerSets, ExpectedCondition, ExpectedListener, GatewayListeners,
    ListenerConditions, ListenerSetListenerConditions, ListenerSetListeners,
    ListenerSetRoutesAccepted, NsName, ObjectRef, PolicyCondition, RouteParents, RoutesAccepted,
};

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// `{"items": [{apiVersion, kind, namespace, name, generation, status}], "errors": [...]}`.
#[derive(Debug, Clone)]
pub struct StatusDoc(pub Value);

impl StatusDoc {
    pub fn item(&self, kind: &str, nn: &NsName) -> Option<&Value> {
        // Cluster-scoped objects (GatewayClass) may come with an empty or no namespace.
        self.0["items"].as_array()?.iter().find(|i| {
            i["kind"] == kind
                && i["namespace"].as_str().unwrap_or_default() == nn.namespace
                && i["name"] == nn.name.as_str()
        })
    }

    fn require(&self, kind: &str, nn: &NsName) -> Result<&Value, String> {
        self.item(kind, nn)
            .ok_or_else(|| format!("no status for {kind} {nn}{}", self.errors_suffix()))
    }

    /// The controller's load errors, appended to messages when there are any.
    pub fn errors_suffix(&self) -> String {
        match self.0["errors"].as_array() {
            Some(errors) if !errors.is_empty() => format!(
                " (controller load errors: {})",
                Value::Array(errors.clone())
            ),
            _ => String::new(),
        }
    }
}

pub(crate) fn array(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// `ConditionsHaveLatestObservedGeneration`.
pub(crate) fn latest_generation(
    item: &Value,
    conditions: &[Value],
    what: &str,
) -> Result<(), String> {
    let generation = item["generation"].as_i64().unwrap_or(0);
    let stale: Vec<String> = conditions
        .iter()
        .filter(|c| c["observedGeneration"].as_i64().unwrap_or(0) != generation)
        .map(|c| format!("{} (generation {})", c["type"], c["observedGeneration"]))
        .collect();
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected observedGeneration {generation} on every condition, stale: {}",
            stale.join(", ")
        ))
    }
}

/// `findConditionInList`: same type, and status/reason equal unless expected empty.
pub fn has_condition(conditions: &[Value], want: &ExpectedCondition) -> bool {
    conditions.iter().any(|c| {
        c["type"] == want.type_.as_str()
            && (want.status.is_empty() || c["status"] == want.status.as_str())
            && (want.reason.is_empty() || c["reason"] == want.reason.as_str())
    })
}

/// `conditionsMatch`: every expected condition is present.
fn conditions_match(actual: &[Value], expected: &[ExpectedCondition]) -> Result<(), String> {
    if actual.len() < expected.len() {
        return Err(format!(
            "expected at least {} conditions, got {}",
            expected.len(),
            actual.len()
        ));
    }
    match expected.iter().find(|e| !has_condition(actual, e)) {
        None => Ok(()),
        Some(missing) => Err(format!(
            "no condition {} status={:?} reason={:?} in {}",
            missing.type_,
            missing.status,
            missing.reason,
            Value::Array(actual.to_vec())
        )),
    }
}

fn condition(type_: &str, status: &str, reason: &str) -> ExpectedCondition {
    ExpectedCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
    }
}

/// `WaitForGatewayAddress`: the first address with a type, once the Gateway's conditions
/// are current.
pub fn gateway_address(doc: &StatusDoc, gateway: &NsName) -> Result<String, String> {
    let item = doc.require("Gateway", gateway)?;
    latest_generation(item, array(&item["status"]["conditions"]), "Gateway")?;
    array(&item["status"]["addresses"])
        .iter()
        .find(|a| a["type"].is_string())
        .and_then(|a| a["value"].as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("Gateway {gateway} has no address in status"))
}

/// `GatewayAndHTTPRoutesMustBeAccepted`: the Gateway has an address, each route has an
/// Accepted parent for it (per listener name given), every listener is ResolvedRefs,
/// Accepted and Programmed.
pub fn routes_accepted(doc: &StatusDoc, step: &RoutesAccepted) -> Result<(), String> {
    gateway_address(doc, &step.gateway)?;
    let accepted = [condition("Accepted", "True", "Accepted")];
    // Upstream expects one parent per listener name (one for the whole Gateway when none
    // is named); the section name itself is not compared, so one check covers them all.
    let kind = step.kind.as_str();
    for route in &step.routes {
        let item = doc.require(kind, route)?;
        let parents = array(&item["status"]["parents"]);
        for parent in parents {
            latest_generation(
                item,
                array(&parent["conditions"]),
                &format!("{kind} {route}"),
            )?;
        }
        let namespace_required = route.namespace != step.gateway.namespace;
        find_parent(parents, &step.gateway, &accepted, namespace_required)
            .map_err(|e| format!("{kind} {route}: {e}"))?;
    }
    let gateway = doc.require("Gateway", &step.gateway)?;
    let required = [
        condition("ResolvedRefs", "True", ""),
        condition("Accepted", "True", ""),
        condition("Programmed", "True", ""),
    ];
    for listener in array(&gateway["status"]["listeners"]) {
        conditions_match(array(&listener["conditions"]), &required).map_err(|e| {
            format!(
                "Gateway {} listener {}: {e}",
                step.gateway, listener["name"]
            )
        })?;
    }
    Ok(())
}

/// `parentsForRouteMatch` for one expected parent (`parentRefTo(gateway)`).
fn find_parent(
    parents: &[Value],
    gateway: &NsName,
    conditions: &[ExpectedCondition],
    namespace_required: bool,
) -> Result<(), String> {
    find_parent_of_kind(parents, "Gateway", gateway, conditions, namespace_required)
}

/// `parentsForRouteMatch` for one expected parent of `kind` (`Gateway` or `ListenerSet`).
fn find_parent_of_kind(
    parents: &[Value],
    kind: &str,
    gateway: &NsName,
    conditions: &[ExpectedCondition],
    namespace_required: bool,
) -> Result<(), String> {
    let mut last_mismatch = format!("no parent for {kind} {gateway}");
    for parent in parents {
        let r = &parent["parentRef"];
        if parent["controllerName"] != CONTROLLER_NAME {
            last_mismatch = format!("controllerName {} is not ours", parent["controllerName"]);
            continue;
        }
        if r["group"] != GATEWAY_GROUP || r["kind"] != kind || r["name"] != gateway.name.as_str() {
            continue;
        }
        let namespace = r["namespace"].as_str();
        if namespace != Some(gateway.namespace.as_str())
            && (namespace_required || namespace.is_some())
        {
            last_mismatch = format!(
                "parentRef namespace {:?}, want {:?}",
                namespace, gateway.namespace
            );
            continue;
        }
        match conditions_match(array(&parent["conditions"]), conditions) {
            Ok(()) => return Ok(()),
            Err(e) => last_mismatch = e,
        }
    }
    Err(last_mismatch)
}

/// `HTTPRouteMustHaveCondition` (`TLSRouteMustHaveCondition` with `kind` TLSRoute): some
/// parent naming the Gateway has the condition.
pub fn route_condition(
    doc: &StatusDoc,
    kind: &str,
    route: &NsName,
    gateway: &NsName,
    want: &ExpectedCondition,
) -> Result<(), String> {
    let item = doc.require(kind, route)?;
    let parents = array(&item["status"]["parents"]);
    for parent in parents {
        latest_generation(
            item,
            array(&parent["conditions"]),
            &format!("{kind} {route}"),
        )?;
    }
    let found = parents.iter().any(|p| {
        let r = &p["parentRef"];
        r["name"] == gateway.name.as_str()
            && r["namespace"]
                .as_str()
                .is_none_or(|ns| ns == gateway.namespace)
            && has_condition(array(&p["conditions"]), want)
    });
    if found {
        Ok(())
    } else {
        Err(format!(
            "{kind} {route} has no {} status={:?} reason={:?} for Gateway {gateway}; parents: {}",
            want.type_,
            want.status,
            want.reason,
            Value::Array(parents.to_vec())
        ))
    }
}

/// `HTTPRouteMustHaveParents`.
pub fn route_parents(doc: &StatusDoc, step: &RouteParents) -> Result<(), String> {
    let item = doc.require(&step.kind, &step.route)?;
    let parents = array(&item["status"]["parents"]);
    for parent in parents {
        latest_generation(
            item,
            array(&parent["conditions"]),
            &format!("{} {}", step.kind, step.route),
        )?;
    }
    for expected in &step.parents {
        find_parent(
            parents,
            &expected.gateway,
            &expected.conditions,
            step.namespace_required,
        )
        .map_err(|e| format!("{} {}: {e}", step.kind, step.route))?;
    }
    Ok(())
}

/// `HTTPRouteMustHaveNoAcceptedParents`: no parents (seen on two polls in a row, since
/// "not written yet" looks the same), or exactly one that is not Accepted.
pub fn route_no_accepted_parents(
    doc: &StatusDoc,
    kind: &str,
    route: &NsName,
    empty_seen: &mut bool,
) -> Result<(), String> {
    let item = doc.require(kind, route)?;
    let parents = array(&item["status"]["parents"]);
    match parents {
        [] if *empty_seen => Ok(()),
        [] => {
            *empty_seen = true;
            Err(format!("{kind} {route} has no parents yet; confirming"))
        }
        [parent] => {
            latest_generation(
                item,
                array(&parent["conditions"]),
                &format!("{kind} {route}"),
            )?;
            conditions_match(
                array(&parent["conditions"]),
                &[condition("Accepted", "False", "")],
            )
            .map_err(|e| format!("{kind} {route}: {e}"))
        }
        _ => Err(format!(
            "{kind} {route} has {} parents, want at most one",
            parents.len()
        )),
    }
}

/// `GatewayStatusMustHaveListeners` (`gatewayListenersMatch`).
pub fn gateway_listeners(doc: &StatusDoc, step: &GatewayListeners) -> Result<(), String> {
    object_listeners(doc, "Gateway", &step.gateway, &step.listeners)
}

/// `ListenerSetStatusMustHaveListeners` (`listenerSetListenersMatch`, which compares like
/// `gatewayListenersMatch`).
pub fn listener_set_listeners(doc: &StatusDoc, step: &ListenerSetListeners) -> Result<(), String> {
    object_listeners(doc, "ListenerSet", &step.listener_set, &step.listeners)
}

/// The object's conditions are current and its `status.listeners` are exactly `expected`
/// by name, each with the expected supportedKinds among its own (none expected: none
/// there), the same attachedRoutes and the expected conditions among its own.
fn object_listeners(
    doc: &StatusDoc,
    kind: &str,
    nn: &NsName,
    expected: &[ExpectedListener],
) -> Result<(), String> {
    let item = doc.require(kind, nn)?;
    latest_generation(item, array(&item["status"]["conditions"]), kind)?;
    let actual = array(&item["status"]["listeners"]);
    let gw = format!("{kind} {nn}");
    if actual.len() != expected.len() {
        return Err(format!(
            "{gw}: expected {} listeners in status, got {}",
            expected.len(),
            actual.len()
        ));
    }
    for want in expected {
        let got = actual
            .iter()
            .find(|l| l["name"] == want.name.as_str())
            .ok_or_else(|| format!("{gw}: no status for listener {}", want.name))?;
        let kinds = array(&got["supportedKinds"]);
        if want.supported_kinds.is_empty() && !kinds.is_empty() {
            return Err(format!(
                "{gw} listener {}: expected no supportedKinds",
                want.name
            ));
        }
        for kind in &want.supported_kinds {
            let group = kind.group.as_deref().unwrap_or(GATEWAY_GROUP);
            let found = kinds.iter().any(|k| {
                k["group"].as_str().unwrap_or(GATEWAY_GROUP) == group
                    && k["kind"] == kind.kind.as_str()
            });
            if !found {
                return Err(format!(
                    "{gw} listener {}: {group}/{} not in supportedKinds {}",
                    want.name,
                    kind.kind,
                    Value::Array(kinds.to_vec())
                ));
            }
        }
        if got["attachedRoutes"].as_i64() != Some(want.attached_routes) {
            return Err(format!(
                "{gw} listener {}: expected attachedRoutes {}, got {}",
                want.name, want.attached_routes, got["attachedRoutes"]
            ));
        }
        conditions_match(array(&got["conditions"]), &want.conditions)
            .map_err(|e| format!("{gw} listener {}: {e}", want.name))?;
    }
    Ok(())
}

/// `GatewayMustHaveAttachedListeners`: the Gateway's conditions are current and
/// `status.attachedListenerSets` (absent: 0) is the count.
pub fn attached_listener_sets(doc: &StatusDoc, step: &AttachedListenerSets) -> Result<(), String> {
    let gw = &step.gateway;
    let item = doc.require("Gateway", gw)?;
    latest_generation(item, array(&item["status"]["conditions"]), "Gateway")?;
    let attached = item["status"]["attachedListenerSets"].as_i64().unwrap_or(0);
    if attached == step.count {
        Ok(())
    } else {
        Err(format!(
            "Gateway {gw}: attachedListenerSets is {attached}, want {}",
            step.count
        ))
    }
}

/// `ListenerSetListenersMustHaveConditions` for one listener: the set's conditions are
/// current and that listener's status includes every condition.
pub fn listener_set_listener_conditions(
    doc: &StatusDoc,
    step: &ListenerSetListenerConditions,
) -> Result<(), String> {
    let ls = &step.listener_set;
    let item = doc.require("ListenerSet", ls)?;
    latest_generation(item, array(&item["status"]["conditions"]), "ListenerSet")?;
    listener_has_conditions(
        item,
        &format!("ListenerSet {ls}"),
        &step.listener,
        &step.conditions,
    )
}

/// `RoutesAndParentMustBeAccepted` for a ListenerSet: each route has current parent
/// conditions and an Accepted parent naming the set (`RouteMustHaveParents`), then the set's
/// conditions are current and every listener of it is ResolvedRefs, Accepted and Programmed
/// (`ListenerSetListenersMustHaveConditions`).
pub fn listener_set_routes_accepted(
    doc: &StatusDoc,
    step: &ListenerSetRoutesAccepted,
) -> Result<(), String> {
    let ls = &step.listener_set;
    let accepted = [condition("Accepted", "True", "Accepted")];
    for route in &step.routes {
        let item = doc.require("HTTPRoute", route)?;
        let parents = array(&item["status"]["parents"]);
        for parent in parents {
            latest_generation(
                item,
                array(&parent["conditions"]),
                &format!("HTTPRoute {route}"),
            )?;
        }
        let namespace_required = route.namespace != ls.namespace;
        find_parent_of_kind(parents, "ListenerSet", ls, &accepted, namespace_required)
            .map_err(|e| format!("HTTPRoute {route}: {e}"))?;
    }
    let item = doc.require("ListenerSet", ls)?;
    latest_generation(item, array(&item["status"]["conditions"]), "ListenerSet")?;
    let required = [
        condition("ResolvedRefs", "True", ""),
        condition("Accepted", "True", ""),
        condition("Programmed", "True", ""),
    ];
    for listener in array(&item["status"]["listeners"]) {
        for want in &required {
            if !has_condition(array(&listener["conditions"]), want) {
                return Err(format!(
                    "ListenerSet {ls} doesn't have {} condition set to {} on {} listener: {}",
                    want.type_, want.status, listener["name"], listener["conditions"]
                ));
            }
        }
    }
    Ok(())
}

/// The conditions an object's status carries: a route's per parent, a policy's per
/// ancestor, others' own.
fn all_conditions(kind: &str, item: &Value) -> Vec<Value> {
    let per = |entries: &Value| -> Vec<Value> {
        array(entries)
            .iter()
            .flat_map(|p| array(&p["conditions"]).iter().cloned())
            .collect()
    };
    match kind {
        "HTTPRoute" | "GRPCRoute" => per(&item["status"]["parents"]),
        "BackendTLSPolicy" => per(&item["status"]["ancestors"]),
        _ => array(&item["status"]["conditions"]).to_vec(),
    }
}

/// `BackendTLSPolicyMustHaveCondition`: every ancestor's conditions are current, and an
/// ancestor naming the Gateway (its namespace, when set, the Gateway's) has the condition.
pub fn policy_condition(doc: &StatusDoc, step: &PolicyCondition) -> Result<(), String> {
    let policy = &step.policy;
    let item = doc.require("BackendTLSPolicy", policy)?;
    let ancestors = array(&item["status"]["ancestors"]);
    for ancestor in ancestors {
        latest_generation(
            item,
            array(&ancestor["conditions"]),
            &format!("BackendTLSPolicy {policy}"),
        )?;
    }
    let gateway = &step.gateway;
    let found = ancestors.iter().any(|a| {
        let r = &a["ancestorRef"];
        r["name"] == gateway.name.as_str()
            && r["namespace"]
                .as_str()
                .is_none_or(|ns| ns == gateway.namespace)
            && has_condition(array(&a["conditions"]), &step.condition)
    });
    if found {
        Ok(())
    } else {
        let want = &step.condition;
        Err(format!(
            "BackendTLSPolicy {policy} has no {} status={:?} reason={:?} for Gateway {gateway}; ancestors: {}",
            want.type_,
            want.status,
            want.reason,
            Value::Array(ancestors.to_vec())
        ))
    }
}

/// `...MustHaveLatestConditions`: status was written for `generation` (the object's current
/// one) and every condition says so.
pub fn latest_conditions(
    doc: &StatusDoc,
    object: &ObjectRef,
    generation: i64,
) -> Result<(), String> {
    let item = doc.require(&object.kind, &object.ns_name())?;
    let seen = item["generation"].as_i64().unwrap_or(0);
    if seen != generation {
        return Err(format!(
            "{object}: status is for generation {seen}, want {generation}"
        ));
    }
    latest_generation(
        item,
        &all_conditions(&object.kind, item),
        &object.to_string(),
    )
}

/// `GatewayMustHaveCondition` / `gwcMustBeAccepted`: the object's own conditions are
/// current and include `want`.
pub fn object_condition(
    doc: &StatusDoc,
    object: &ObjectRef,
    want: &ExpectedCondition,
) -> Result<(), String> {
    let item = doc.require(&object.kind, &object.ns_name())?;
    let conditions = array(&item["status"]["conditions"]);
    latest_generation(item, conditions, &object.to_string())?;
    if has_condition(conditions, want) {
        Ok(())
    } else {
        Err(format!(
            "{object}: no condition {} status={:?} reason={:?} in {}",
            want.type_,
            want.status,
            want.reason,
            Value::Array(conditions.to_vec())
        ))
    }
}

/// `NamespacesMustBeReady` for Gateways: each one in `namespaces` has conditions for its
/// current generation, Accepted and Programmed among them.
pub fn namespaces_ready(doc: &StatusDoc, namespaces: &[String]) -> Result<(), String> {
    let gateways = array(&doc.0["items"]).iter().filter(|i| {
        i["kind"] == "Gateway" && namespaces.iter().any(|ns| i["namespace"] == ns.as_str())
    });
    for item in gateways {
        let what = format!(
            "Gateway {}/{}",
            item["namespace"].as_str().unwrap_or_default(),
            item["name"].as_str().unwrap_or_default()
        );
        let conditions = array(&item["status"]["conditions"]);
        latest_generation(item, conditions, &what)?;
        for type_ in ["Accepted", "Programmed"] {
            if !has_condition(conditions, &condition(type_, "True", "")) {
                return Err(format!("{what} not {type_} yet{}", doc.errors_suffix()));
            }
        }
    }
    Ok(())
}

/// `GatewayListenerMustHaveConditions`: the listener's status includes every condition
/// (upstream does not ask for current conditions here).
pub fn listener_conditions(doc: &StatusDoc, step: &ListenerConditions) -> Result<(), String> {
    let gw = &step.gateway;
    let item = doc.require("Gateway", gw)?;
    listener_has_conditions(
        item,
        &format!("Gateway {gw}"),
        &step.listener,
        &step.conditions,
    )
}

/// The named listener in `item`'s status (a Gateway or a ListenerSet, `owner` for
/// messages) has every condition in `want`.
fn listener_has_conditions(
    item: &Value,
    owner: &str,
    listener_name: &str,
    want: &[ExpectedCondition],
) -> Result<(), String> {
    let listener = array(&item["status"]["listeners"])
        .iter()
        .find(|l| l["name"] == listener_name)
        .ok_or_else(|| format!("Listener {listener_name} not found in {owner} Status"))?;
    let actual = array(&listener["conditions"]);
    match want.iter().find(|c| !has_condition(actual, c)) {
        None => Ok(()),
        Some(missing) => Err(format!(
            "{owner} doesn't have {} condition with reason {:?} set to {:?} on {listener_name} listener: {}",
            missing.type_,
            missing.reason,
            missing.status,
            Value::Array(actual.to_vec())
        )),
    }
}

/// `GatewayMustHaveZeroRoutes`: no listener status, or one listener with nothing attached.
pub fn gateway_zero_routes(doc: &StatusDoc, gateway: &NsName) -> Result<(), String> {
    let item = doc.require("Gateway", gateway)?;
    latest_generation(item, array(&item["status"]["conditions"]), "Gateway")?;
    match array(&item["status"]["listeners"]) {
        [] => Ok(()),
        [one] if one["attachedRoutes"].as_i64() == Some(0) => Ok(()),
        listeners => Err(format!(
            "Gateway {gateway}: want zero listeners or one with zero routes, got {}",
            Value::Array(listeners.to_vec())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::from_yaml;
    use serde_json::json;

    fn nn(s: &str) -> NsName {
        s.parse().unwrap()
    }

    fn doc() -> StatusDoc {
        StatusDoc(json!({"items": [
            {"kind": "Gateway", "namespace": "infra", "name": "gw", "generation": 1, "status": {
                "addresses": [{"type": "IPAddress", "value": "127.0.100.1"}],
                "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 1}],
                "listeners": [{"name": "http", "attachedRoutes": 1,
                    "supportedKinds": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}],
                    "conditions": [
                        {"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 1},
                        {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "observedGeneration": 1},
                        {"type": "Programmed", "status": "True", "reason": "Programmed", "observedGeneration": 1}]}]}},
            {"kind": "HTTPRoute", "namespace": "web", "name": "r", "generation": 2, "status": {"parents": [
                {"parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": "infra", "name": "gw"},
                 "controllerName": CONTROLLER_NAME,
                 "conditions": [
                    {"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 2},
                    {"type": "ResolvedRefs", "status": "False", "reason": "RefNotPermitted", "observedGeneration": 2}]}]}}
        ], "errors": []}))
    }

    #[test]
    fn listener_conditions_are_found_by_type_status_and_reason() {
        let step = |listener: &str, status: &str, reason: &str| -> ListenerConditions {
            from_yaml(&format!(
                "gateway: infra/gw\nlistener: {listener}\nconditions:\n- {{type: Accepted, status: 'True'}}\n- {{type: ResolvedRefs, status: '{status}', reason: '{reason}'}}"
            ))
            .unwrap()
        };
        listener_conditions(&doc(), &step("http", "True", "")).unwrap();
        listener_conditions(&doc(), &step("http", "True", "ResolvedRefs")).unwrap();
        let err = listener_conditions(&doc(), &step("http", "False", "")).unwrap_err();
        assert!(err.contains("ResolvedRefs condition"), "{err}");
        let err = listener_conditions(&doc(), &step("https", "True", "")).unwrap_err();
        assert!(err.contains("Listener https not found"), "{err}");
    }

    #[test]
    fn accepted_routes_and_address() {
        assert_eq!(
            gateway_address(&doc(), &nn("infra/gw")).unwrap(),
            "127.0.100.1"
        );
        let step: RoutesAccepted = from_yaml("{gateway: infra/gw, routes: [web/r]}").unwrap();
        routes_accepted(&doc(), &step).unwrap();
        let missing: RoutesAccepted =
            from_yaml("{gateway: infra/gw, routes: [web/other]}").unwrap();
        assert!(
            routes_accepted(&doc(), &missing)
                .unwrap_err()
                .contains("no status for HTTPRoute web/other")
        );
    }

    #[test]
    fn route_conditions_match_status_and_reason() {
        let want = condition("ResolvedRefs", "False", "RefNotPermitted");
        route_condition(&doc(), "HTTPRoute", &nn("web/r"), &nn("infra/gw"), &want).unwrap();
        let wrong = condition("ResolvedRefs", "True", "");
        assert!(
            route_condition(&doc(), "HTTPRoute", &nn("web/r"), &nn("infra/gw"), &wrong).is_err()
        );
        assert!(
            route_condition(&doc(), "HTTPRoute", &nn("web/r"), &nn("infra/other"), &want).is_err()
        );
    }

    #[test]
    fn stale_conditions_do_not_count() {
        let mut d = doc();
        d.0["items"][1]["generation"] = json!(3);
        let want = condition("Accepted", "True", "");
        let err =
            route_condition(&d, "HTTPRoute", &nn("web/r"), &nn("infra/gw"), &want).unwrap_err();
        assert!(err.contains("stale"), "{err}");
    }

    #[test]
    fn parents_need_the_namespace_when_required() {
        let step: RouteParents = from_yaml(
            "{route: web/r, namespaceRequired: true, parents: [{gateway: infra/gw, conditions: [{type: Accepted, status: 'True'}]}]}",
        )
        .unwrap();
        route_parents(&doc(), &step).unwrap();
        let mut d = doc();
        d.0["items"][1]["status"]["parents"][0]["parentRef"]
            .as_object_mut()
            .unwrap()
            .remove("namespace");
        assert!(route_parents(&d, &step).is_err());
    }

    #[test]
    fn no_accepted_parents_needs_two_empty_looks_or_one_rejected_parent() {
        let mut d = doc();
        let mut seen = false;
        assert!(
            route_no_accepted_parents(&d, "HTTPRoute", &nn("web/r"), &mut seen).is_err(),
            "accepted parent"
        );
        d.0["items"][1]["status"]["parents"] = json!([]);
        assert!(route_no_accepted_parents(&d, "HTTPRoute", &nn("web/r"), &mut seen).is_err());
        assert!(route_no_accepted_parents(&d, "HTTPRoute", &nn("web/r"), &mut seen).is_ok());
    }

    #[test]
    fn latest_conditions_need_the_current_generation_everywhere() {
        let route = ObjectRef {
            kind: "HTTPRoute".into(),
            namespace: "web".into(),
            name: "r".into(),
        };
        latest_conditions(&doc(), &route, 2).unwrap();
        assert!(
            latest_conditions(&doc(), &route, 3)
                .unwrap_err()
                .contains("generation 2, want 3")
        );
        let mut d = doc();
        d.0["items"][1]["status"]["parents"][0]["conditions"][1]["observedGeneration"] = json!(1);
        assert!(
            latest_conditions(&d, &route, 2)
                .unwrap_err()
                .contains("stale")
        );
    }

    /// A policy with ancestors `same-namespace` (Accepted) and `other` (Conflicted).
    fn policy_doc() -> StatusDoc {
        let ancestor = |name: &str, namespace: Option<&str>, status: &str, reason: &str| {
            let mut r = json!({"group": GATEWAY_GROUP, "kind": "Gateway", "name": name});
            if let Some(ns) = namespace {
                r["namespace"] = json!(ns);
            }
            json!({"ancestorRef": r, "controllerName": CONTROLLER_NAME, "conditions": [
                {"type": "Accepted", "status": status, "reason": reason, "observedGeneration": 2},
                {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "observedGeneration": 2}]})
        };
        StatusDoc(json!({"items": [
            {"kind": "BackendTLSPolicy", "namespace": "infra", "name": "p", "generation": 2,
             "status": {"ancestors": [
                ancestor("same-namespace", Some("infra"), "True", "Accepted"),
                ancestor("other", None, "False", "Conflicted")]}}
        ]}))
    }

    fn policy_step(gateway: &str, status: &str, reason: &str) -> PolicyCondition {
        from_yaml(&format!(
            "{{policy: infra/p, gateway: {gateway}, condition: {{type: Accepted, status: '{status}', reason: '{reason}'}}}}"
        ))
        .unwrap()
    }

    #[test]
    fn policy_conditions_are_per_ancestor_gateway() {
        let doc = policy_doc();
        policy_condition(
            &doc,
            &policy_step("infra/same-namespace", "True", "Accepted"),
        )
        .unwrap();
        policy_condition(&doc, &policy_step("infra/same-namespace", "True", "")).unwrap();
        let err =
            policy_condition(&doc, &policy_step("infra/same-namespace", "False", "")).unwrap_err();
        assert!(err.contains("for Gateway infra/same-namespace"), "{err}");
        // An ancestorRef without a namespace matches a Gateway of any namespace.
        policy_condition(&doc, &policy_step("web/other", "False", "Conflicted")).unwrap();
        assert!(policy_condition(&doc, &policy_step("web/same-namespace", "True", "")).is_err());
        assert!(policy_condition(&doc, &policy_step("infra/missing", "True", "")).is_err());
    }

    #[test]
    fn policy_conditions_must_all_be_current() {
        let mut doc = policy_doc();
        doc.0["items"][0]["status"]["ancestors"][1]["conditions"][1]["observedGeneration"] =
            json!(1);
        let err =
            policy_condition(&doc, &policy_step("infra/same-namespace", "True", "")).unwrap_err();
        assert!(err.contains("stale: \"ResolvedRefs\""), "{err}");
        let policy = ObjectRef {
            kind: "BackendTLSPolicy".into(),
            namespace: "infra".into(),
            name: "p".into(),
        };
        assert!(
            latest_conditions(&doc, &policy, 2)
                .unwrap_err()
                .contains("stale")
        );
        latest_conditions(&policy_doc(), &policy, 2).unwrap();
        let missing = policy_condition(
            &StatusDoc(json!({"items": []})),
            &policy_step("infra/g", "", ""),
        );
        assert!(
            missing
                .unwrap_err()
                .contains("no status for BackendTLSPolicy infra/p")
        );
    }

    #[test]
    fn object_conditions_and_cluster_scoped_items() {
        let mut d = doc();
        d.0["items"].as_array_mut().unwrap().push(json!({
            "kind": "GatewayClass", "name": "gc", "generation": 1,
            "status": {"conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 1}]}
        }));
        let class = ObjectRef {
            kind: "GatewayClass".into(),
            namespace: String::new(),
            name: "gc".into(),
        };
        object_condition(&d, &class, &condition("Accepted", "", "")).unwrap();
        assert!(object_condition(&d, &class, &condition("Accepted", "False", "")).is_err());
    }

    #[test]
    fn listeners_compare_count_kinds_routes_and_conditions() {
        let step: GatewayListeners = from_yaml(
            "{gateway: infra/gw, listeners: [{name: http, attachedRoutes: 1, supportedKinds: [{kind: HTTPRoute}], conditions: [{type: Accepted, status: 'True'}]}]}",
        )
        .unwrap();
        gateway_listeners(&doc(), &step).unwrap();
        let two: GatewayListeners = from_yaml(
            "{gateway: infra/gw, listeners: [{name: http, attachedRoutes: 2, supportedKinds: [{kind: HTTPRoute}]}]}",
        )
        .unwrap();
        assert!(
            gateway_listeners(&doc(), &two)
                .unwrap_err()
                .contains("attachedRoutes 2, got 1")
        );
        assert!(gateway_zero_routes(&doc(), &nn("infra/gw")).is_err());
    }

    #[test]
    fn ready_namespaces_have_accepted_and_programmed_gateways() {
        let mut d = doc();
        let ns = |n: &str| vec![n.to_string()];
        namespaces_ready(&d, &ns("web")).unwrap();
        let not_yet = namespaces_ready(&d, &ns("infra")).unwrap_err();
        assert!(not_yet.contains("infra/gw not Programmed"), "{not_yet}");
        let conditions = d.0["items"][0]["status"]["conditions"]
            .as_array_mut()
            .unwrap();
        conditions.push(json!({"type": "Programmed", "status": "True", "reason": "Programmed", "observedGeneration": 1}));
        namespaces_ready(&d, &ns("infra")).unwrap();
        d.0["items"][0]["generation"] = json!(2);
        let stale = namespaces_ready(&d, &ns("infra")).unwrap_err();
        assert!(stale.contains("observedGeneration 2"), "{stale}");
    }

    fn listener_set_doc() -> StatusDoc {
        let accepted = json!([
            {"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 1},
            {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "observedGeneration": 1},
            {"type": "Programmed", "status": "True", "reason": "Programmed", "observedGeneration": 1}]);
        StatusDoc(json!({"items": [
            {"kind": "Gateway", "namespace": "infra", "name": "gw", "generation": 1, "status": {
                "attachedListenerSets": 1,
                "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 1}]}},
            {"kind": "ListenerSet", "namespace": "infra", "name": "ls", "generation": 1, "status": {
                "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 1}],
                "listeners": [{"name": "one", "attachedRoutes": 1,
                    "supportedKinds": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}],
                    "conditions": accepted}]}},
            {"kind": "HTTPRoute", "namespace": "web", "name": "r", "generation": 1, "status": {"parents": [
                {"parentRef": {"group": GATEWAY_GROUP, "kind": "ListenerSet", "namespace": "infra", "name": "ls"},
                 "controllerName": CONTROLLER_NAME,
                 "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 1}]}]}}
        ]}))
    }

    #[test]
    fn listener_sets_attach_and_carry_routes() {
        let d = listener_set_doc();
        let count = |n: i64| -> AttachedListenerSets {
            from_yaml(&format!("{{gateway: infra/gw, count: {n}}}")).unwrap()
        };
        attached_listener_sets(&d, &count(1)).unwrap();
        let err = attached_listener_sets(&d, &count(0)).unwrap_err();
        assert!(err.contains("attachedListenerSets is 1, want 0"), "{err}");

        let routes: ListenerSetRoutesAccepted =
            from_yaml("{listenerSet: infra/ls, routes: [web/r]}").unwrap();
        listener_set_routes_accepted(&d, &routes).unwrap();
        let mut gateway_parent = d.clone();
        gateway_parent.0["items"][2]["status"]["parents"][0]["parentRef"]["kind"] =
            json!("Gateway");
        assert!(listener_set_routes_accepted(&gateway_parent, &routes).is_err());

        let listeners: ListenerSetListeners = from_yaml(
            "{listenerSet: infra/ls, listeners: [{name: one, attachedRoutes: 1, supportedKinds: [{kind: HTTPRoute}], conditions: [{type: Programmed, status: 'True'}]}]}",
        )
        .unwrap();
        listener_set_listeners(&d, &listeners).unwrap();
        let conditions: ListenerSetListenerConditions = from_yaml(
            "{listenerSet: infra/ls, listener: one, conditions: [{type: Conflicted, status: 'True'}]}",
        )
        .unwrap();
        let err = listener_set_listener_conditions(&d, &conditions).unwrap_err();
        assert!(err.contains("doesn't have Conflicted"), "{err}");
    }
}
