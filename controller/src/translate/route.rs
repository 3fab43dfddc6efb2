//! Stage 3: routes of every kind (HTTP, GRPC, TLS, TCP, UDP) — attach each parentRef to our Gateways'
//! listeners, hand the translated rules to the Gateways they attached to, and write the
//! route status. Both kinds go through the same code as [`RouteSource`]s.

use std::collections::{BTreeMap, BTreeSet};

use gateway_api::experimental::httproutes::HttpRouteParentRefs;

use super::ai_service::AiServices;
use super::gateway::GatewayState;
use super::listener::{GATEWAY_GROUP, ListenerOrigin};
use super::listener_set::LISTENER_SET;
use super::policy::BackendPolicies;
use super::rule::{RulesOutcome, translate_rules};
use super::source::RouteSource;
use super::{ObjectStatus, TranslateOptions};
use super::{hostname, kind_conflict};
use crate::model::{Key, Resources};
use crate::status::{
    Condition, ParentRef, Problem, RouteParentStatus, RouteStatus, kind, reason, sorted,
};

pub(super) fn translate_routes(
    res: &Resources,
    opts: &TranslateOptions,
    policies: &BackendPolicies,
    ai_services: &AiServices,
    gateways: &mut BTreeMap<Key, GatewayState>,
    statuses: &mut Vec<ObjectStatus>,
) {
    let mut sources: Vec<RouteSource> = (res.http_routes.values().map(RouteSource::http))
        .chain(res.grpc_routes.values().map(RouteSource::grpc))
        .chain(res.tls_routes.values().map(RouteSource::tls))
        .chain(res.tcp_routes.values().map(RouteSource::tcp))
        .chain(res.udp_routes.values().map(RouteSource::udp))
        .collect();
    kind_conflict::attach_order(&mut sources);
    let mut claims = kind_conflict::Claims::default();
    for route in &sources {
        let route_ns = route.namespace.as_str();
        let generation = route.generation;
        let rules = translate_rules(res, opts, policies, ai_services, route);
        let mut parents = Vec::new();
        // Listener indexes per Gateway this route is accepted on; a set, so a route that
        // reaches one listener through two parentRefs counts once.
        let mut attached: BTreeMap<Key, BTreeSet<usize>> = BTreeMap::new();

        for parent in &route.parent_refs {
            let group = parent.group.as_deref().unwrap_or(GATEWAY_GROUP);
            let kind_ = parent.kind.as_deref().unwrap_or("Gateway");
            let parent_key = (
                parent
                    .namespace
                    .clone()
                    .unwrap_or_else(|| route_ns.to_string()),
                parent.name.clone(),
            );
            // Unknown parents and other controllers' Gateways are not ours to report on.
            let (gw_key, origin) = match (group, kind_) {
                (GATEWAY_GROUP, "Gateway") => (parent_key, ListenerOrigin::Gateway),
                (GATEWAY_GROUP, LISTENER_SET) => {
                    let Some(gw_key) = gateways
                        .iter()
                        .find(|(_, gw)| gw.listener_sets.iter().any(|s| s.key == parent_key))
                        .map(|(key, _)| key.clone())
                    else {
                        continue;
                    };
                    (gw_key, ListenerOrigin::ListenerSet(parent_key))
                }
                _ => continue,
            };
            let Some(gw) = gateways.get(&gw_key) else {
                continue;
            };
            let attachment = attach(res, route, parent, gw, &origin)
                .and_then(|listeners| claims.admit(&gw_key, route, listeners));
            let accepted = match (&attachment, &rules.unsupported) {
                (Err(p), _) | (Ok(_), Some(p)) => Err(p.clone()),
                (Ok(listeners), None) => {
                    claims.record(&gw_key, route, listeners);
                    attached
                        .entry(gw_key)
                        .or_default()
                        .extend(listeners.iter().copied());
                    Ok(())
                }
            };
            parents.push(RouteParentStatus {
                parent_ref: ParentRef {
                    group: group.to_string(),
                    kind: kind_.to_string(),
                    namespace: parent.namespace.clone(),
                    name: parent.name.clone(),
                    section_name: parent.section_name.clone(),
                    port: parent.port,
                },
                controller_name: opts.controller_name.clone(),
                conditions: sorted(vec![
                    Condition::from_outcome(
                        kind::ACCEPTED,
                        &accepted,
                        reason::ACCEPTED,
                        "Route is accepted",
                        generation,
                    ),
                    Condition::from_outcome(
                        kind::RESOLVED_REFS,
                        &rules.resolved_refs,
                        reason::RESOLVED_REFS,
                        "All references resolved",
                        generation,
                    ),
                ]),
            });
        }

        for (gw_key, listeners) in attached {
            if let Some(gw) = gateways.get_mut(&gw_key) {
                program(gw, &listeners, &rules);
            }
        }
        if !parents.is_empty() {
            statuses.push(ObjectStatus {
                api_version: route.api_version.to_string(),
                kind: route.kind.to_string(),
                namespace: route_ns.to_string(),
                name: route.name.clone(),
                generation,
                status: serde_json::to_value(RouteStatus { parents }).unwrap_or_default(),
            });
        }
    }
}

/// The listeners of `gw` that a parentRef attaches the route to, or why there are none.
/// Checks narrow in the spec's order: sectionName/port (NoMatchingParent), allowedRoutes
/// (NotAllowedByListeners), then hostnames (NoMatchingListenerHostname).
fn attach(
    res: &Resources,
    route: &RouteSource,
    parent: &HttpRouteParentRefs,
    gw: &GatewayState,
    origin: &ListenerOrigin,
) -> Result<Vec<usize>, Problem> {
    let gw_name = match origin {
        ListenerOrigin::Gateway => format!("Gateway {}/{}", gw.namespace, gw.name),
        ListenerOrigin::ListenerSet((ns, name)) => {
            let set = gw
                .listener_sets
                .iter()
                .find(|s| s.key == (ns.clone(), name.clone()));
            if let Some(Err(p)) = set.map(|s| &s.allowed) {
                return Err(Problem::new(
                    reason::NOT_ALLOWED_BY_LISTENERS,
                    format!("ListenerSet {ns}/{name} is not attached: {}", p.message),
                ));
            }
            format!("ListenerSet {ns}/{name}")
        }
    };
    let candidates: Vec<usize> = (0..gw.listeners.len())
        .filter(|&i| {
            let l = &gw.listeners[i];
            l.origin == *origin
                && parent.section_name.as_ref().is_none_or(|s| *s == l.name)
                && parent.port.is_none_or(|p| p == l.port)
        })
        .collect();
    if candidates.is_empty() {
        let mut wanted = Vec::new();
        if let Some(s) = &parent.section_name {
            wanted.push(format!("named {s}"));
        }
        if let Some(p) = parent.port {
            wanted.push(format!("on port {p}"));
        }
        return Err(Problem::new(
            reason::NO_MATCHING_PARENT,
            format!("{gw_name} has no listener {}", wanted.join(" and ")),
        ));
    }

    let route_ns = route.namespace.as_str();
    let allowed: Vec<usize> = candidates
        .into_iter()
        .filter(|&i| gw.listeners[i].admits_route(res, route.kind, route_ns))
        .collect();
    if allowed.is_empty() {
        return Err(Problem::new(
            reason::NOT_ALLOWED_BY_LISTENERS,
            format!(
                "no matching listener of {gw_name} allows {}s from namespace {route_ns}",
                route.kind
            ),
        ));
    }

    let hostnames = &route.hostnames;
    let matching: Vec<usize> = allowed
        .into_iter()
        .filter(|&i| hostname::intersects(gw.listeners[i].hostname.as_deref(), hostnames))
        .collect();
    if matching.is_empty() {
        return Err(Problem::new(
            reason::NO_MATCHING_LISTENER_HOSTNAME,
            format!(
                "no listener of {gw_name} has a hostname intersecting {}",
                hostnames.join(", ")
            ),
        ));
    }
    Ok(matching)
}

/// Counts the route on its listeners and hands its rules, pointed at the programmed ones,
/// to the Gateway's IR.
fn program(gw: &mut GatewayState, listeners: &BTreeSet<usize>, rules: &RulesOutcome) {
    for &i in listeners {
        gw.listeners[i].attached_routes += 1;
    }
    let mut names: Vec<String> = listeners
        .iter()
        .map(|&i| &gw.listeners[i])
        .filter(|l| l.is_programmed())
        .map(|l| l.ir_name(&gw.namespace, &gw.name))
        .collect();
    names.sort();
    if names.is_empty() {
        return;
    }
    for route in &rules.routes {
        let mut route = route.clone();
        route.listeners = names.clone();
        gw.routes.push(route);
    }
    for backend in &rules.backends {
        let mut backend = backend.clone();
        // The client certificate is the Gateway's, the rest of the TLS settings the
        // Service port's: this Gateway's host gets both.
        if let (Some(tls), Some(Ok(certificate))) =
            (&mut backend.tls, &gw.backend_client_certificate)
        {
            tls.client_certificate = Some(certificate.clone());
        }
        gw.backends.insert(backend.name.clone(), backend);
    }
    gw.services.extend(rules.services.iter().cloned());
    for module in &rules.modules {
        gw.modules.insert(module.name.clone(), module.clone());
    }
}
