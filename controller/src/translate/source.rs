//! A route of any kind (HTTPRoute, GRPCRoute, TLSRoute) in the one shape that attachment,
//! rule translation and route status read, so every kind shares that code.
//!
//! GRPCRoute parentRefs, backendRefs and filters have the HTTPRoute types' fields (the
//! API defines them from the same Go types), so they are read as HTTPRoute values; only
//! matches differ, and each kind translates its own before they get here.

use gateway_api::experimental::httproutes::{HttpRoute, HttpRouteParentRefs, HttpRouteRules};
use gateway_api::grpcroutes::GrpcRoute;
use gateway_api::tlsroutes::TlsRoute;
use nantian_proto::config;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::grpc_match;
use super::listener::{GRPC_ROUTE, HTTP_ROUTE, TLS_ROUTE};
use super::rule::translate_matches;
use crate::model::MetaExt;

/// What the rest of stage 3 needs of one route.
pub(super) struct RouteSource {
    /// [`HTTP_ROUTE`], [`GRPC_ROUTE`] or [`TLS_ROUTE`].
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub creation_seconds: i64,
    pub hostnames: Vec<String>,
    pub parent_refs: Vec<HttpRouteParentRefs>,
    pub rules: Vec<RuleSource>,
}

pub(super) struct RuleSource {
    /// Name, filters, backendRefs and timeouts (its `matches` are not read).
    pub rule: HttpRouteRules,
    /// The rule's matches, defaults filled in, or why they cannot be served.
    pub matches: Result<Vec<config::RouteMatch>, String>,
}

impl RouteSource {
    pub(super) fn is_grpc(&self) -> bool {
        self.kind == GRPC_ROUTE
    }

    pub(super) fn http(route: &HttpRoute) -> Self {
        // Without an API server to apply the CRD default, a route without rules gets it
        // here: one rule matching every request.
        let rules = match &route.spec.rules {
            Some(rules) => rules.clone(),
            None => vec![HttpRouteRules::default()],
        };
        RouteSource {
            kind: HTTP_ROUTE,
            namespace: route.namespace().to_string(),
            name: route.name().to_string(),
            generation: route.generation(),
            creation_seconds: route.creation_seconds(),
            hostnames: route.spec.hostnames.clone().unwrap_or_default(),
            parent_refs: route.spec.parent_refs.clone().unwrap_or_default(),
            rules: rules
                .into_iter()
                .map(|rule| RuleSource {
                    matches: translate_matches(rule.matches.as_deref().unwrap_or_default()),
                    rule,
                })
                .collect(),
        }
    }

    pub(super) fn grpc(route: &GrpcRoute) -> Self {
        let rules = route.spec.rules.clone().unwrap_or_default();
        let rules = if rules.is_empty() {
            vec![Default::default()]
        } else {
            rules
        };
        RouteSource {
            kind: GRPC_ROUTE,
            namespace: route.namespace().to_string(),
            name: route.name().to_string(),
            generation: route.generation(),
            creation_seconds: route.creation_seconds(),
            hostnames: route.spec.hostnames.clone().unwrap_or_default(),
            parent_refs: route
                .spec
                .parent_refs
                .iter()
                .flatten()
                .filter_map(same_shape)
                .collect(),
            rules: rules
                .iter()
                .map(|rule| {
                    let matches =
                        grpc_match::translate(rule.matches.as_deref().unwrap_or_default());
                    let rule = HttpRouteRules {
                        name: rule.name.clone(),
                        backend_refs: rule
                            .backend_refs
                            .as_ref()
                            .map(|b| b.iter().filter_map(same_shape).collect()),
                        filters: rule
                            .filters
                            .as_ref()
                            .map(|f| f.iter().filter_map(same_shape).collect()),
                        ..Default::default()
                    };
                    RuleSource { rule, matches }
                })
                .collect(),
        }
    }
    /// A TLSRoute: its rules are backendRefs only (no matches, no filters); the host
    /// picks one by SNI against the hostnames.
    pub(super) fn tls(route: &TlsRoute) -> Self {
        RouteSource {
            kind: TLS_ROUTE,
            namespace: route.namespace().to_string(),
            name: route.name().to_string(),
            generation: route.generation(),
            creation_seconds: route.creation_seconds(),
            hostnames: route.spec.hostnames.clone(),
            parent_refs: route
                .spec
                .parent_refs
                .iter()
                .flatten()
                .filter_map(same_shape)
                .collect(),
            rules: route
                .spec
                .rules
                .iter()
                .map(|rule| RuleSource {
                    rule: HttpRouteRules {
                        name: rule.name.clone(),
                        backend_refs: Some(
                            rule.backend_refs.iter().filter_map(same_shape).collect(),
                        ),
                        ..Default::default()
                    },
                    matches: Ok(Vec::new()),
                })
                .collect(),
        }
    }
}

/// A GRPCRoute value read as the HTTPRoute type with the same fields. The types are
/// generated from one schema, so this only fails if the crate's types drift apart.
fn same_shape<From: Serialize, To: DeserializeOwned>(value: &From) -> Option<To> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .ok()
}
