//! A route of any kind (HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute) in the one shape that attachment,
//! rule translation and route status read, so every kind shares that code.
//!
//! GRPCRoute parentRefs, backendRefs and filters have the HTTPRoute types' fields (the
//! API defines them from the same Go types), so they are read as HTTPRoute values; only
//! matches differ, and each kind translates its own before they get here.

use gateway_api::experimental::httproutes::{HttpRoute, HttpRouteParentRefs, HttpRouteRules};
use gateway_api::experimental::tcproutes::TcpRoute;
use gateway_api::experimental::udproutes::UdpRoute;
use gateway_api::grpcroutes::GrpcRoute;
use gateway_api::tlsroutes::TlsRoute;
use nantian_proto::config;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::listener::{GRPC_ROUTE, HTTP_ROUTE, TCP_ROUTE, TLS_ROUTE, UDP_ROUTE};
use super::rule::translate_matches;
use super::{GATEWAY_API_VERSION, grpc_match};
use crate::model::MetaExt;

/// What the rest of stage 3 needs of one route.
pub(super) struct RouteSource {
    /// [`HTTP_ROUTE`], [`GRPC_ROUTE`], [`TLS_ROUTE`], [`TCP_ROUTE`] or [`UDP_ROUTE`].
    pub kind: &'static str,
    /// The API version its status is written with.
    pub api_version: &'static str,
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
            api_version: GATEWAY_API_VERSION,
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
            api_version: GATEWAY_API_VERSION,
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
        backend_refs_only(
            (TLS_ROUTE, GATEWAY_API_VERSION),
            route,
            route.spec.hostnames.clone(),
            route.spec.parent_refs.as_ref(),
            route
                .spec
                .rules
                .iter()
                .map(|r| (r.name.clone(), r.backend_refs.clone())),
        )
    }

    /// A TCPRoute (experimental channel, v1alpha2): backendRefs only; every connection of
    /// the listener goes to it.
    pub(super) fn tcp(route: &TcpRoute) -> Self {
        backend_refs_only(
            (TCP_ROUTE, GATEWAY_V1ALPHA2),
            route,
            Vec::new(),
            route.spec.parent_refs.as_ref(),
            route
                .spec
                .rules
                .iter()
                .map(|r| (r.name.clone(), r.backend_refs.clone())),
        )
    }

    /// A UDPRoute (experimental channel, v1alpha2): backendRefs only; every flow of the
    /// listener goes to it.
    pub(super) fn udp(route: &UdpRoute) -> Self {
        backend_refs_only(
            (UDP_ROUTE, GATEWAY_V1ALPHA2),
            route,
            Vec::new(),
            route.spec.parent_refs.as_ref(),
            route
                .spec
                .rules
                .iter()
                .map(|r| (r.name.clone(), r.backend_refs.clone())),
        )
    }
}

/// A route kind whose rules are a name and backendRefs only (TLSRoute, TCPRoute,
/// UDPRoute): parentRefs and backendRefs read as the HTTPRoute types with the same fields.
fn backend_refs_only<P: Serialize, B: Serialize>(
    (kind, api_version): (&'static str, &'static str),
    meta: &impl MetaExt,
    hostnames: Vec<String>,
    parent_refs: Option<&Vec<P>>,
    rules: impl Iterator<Item = (Option<String>, Vec<B>)>,
) -> RouteSource {
    RouteSource {
        kind,
        api_version,
        namespace: meta.namespace().to_string(),
        name: meta.name().to_string(),
        generation: meta.generation(),
        creation_seconds: meta.creation_seconds(),
        hostnames,
        parent_refs: parent_refs
            .into_iter()
            .flatten()
            .filter_map(same_shape)
            .collect(),
        rules: rules
            .map(|(name, backend_refs)| RuleSource {
                rule: HttpRouteRules {
                    name,
                    backend_refs: Some(backend_refs.iter().filter_map(same_shape).collect()),
                    ..Default::default()
                },
                matches: Ok(Vec::new()),
            })
            .collect(),
    }
}

const GATEWAY_V1ALPHA2: &str = "gateway.networking.k8s.io/v1alpha2";

/// A GRPCRoute value read as the HTTPRoute type with the same fields. The types are
/// generated from one schema, so this only fails if the crate's types drift apart.
fn same_shape<From: Serialize, To: DeserializeOwned>(value: &From) -> Option<To> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .ok()
}
