//! Stage 2b: one Gateway listener — protocol, allowed routes, supported kinds, status.

use gateway_api::gateways::{
    GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom as From, GatewayListenersTlsMode,
};
use nantian_proto::config;

use super::certificate::{Owner, listener_certificates};
use super::selector::LabelSelector;
use crate::model::{Key, Resources};
use crate::status::{
    Condition, ListenerStatus, Problem, RouteGroupKind, combine, kind, reason, sorted,
};

pub(super) const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
pub(super) const HTTP_ROUTE: &str = "HTTPRoute";
pub(super) const GRPC_ROUTE: &str = "GRPCRoute";
pub(super) const TLS_ROUTE: &str = "TLSRoute";
pub(super) const TCP_ROUTE: &str = "TCPRoute";
pub(super) const UDP_ROUTE: &str = "UDPRoute";

/// Which namespaces' routes a listener admits.
#[derive(Clone, Debug)]
pub(super) enum AllowedNamespaces {
    Same,
    All,
    Selector(LabelSelector),
    /// An invalid selector admits nothing (the listener is not accepted either).
    Nothing,
}

/// Where a listener was declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ListenerOrigin {
    Gateway,
    /// A ListenerSet attached to the Gateway, by (namespace, name).
    ListenerSet(Key),
}

#[derive(Clone, Debug)]
pub(super) struct ListenerState {
    pub name: String,
    pub origin: ListenerOrigin,
    /// The namespace of the Gateway or ListenerSet that declares it: "Same" in
    /// allowedRoutes means this one.
    pub owner_namespace: String,
    pub port: i32,
    pub protocol: String,
    pub hostname: Option<String>,
    pub supported_kinds: Vec<RouteGroupKind>,
    pub namespaces: AllowedNamespaces,
    /// Protocol and field support; conflicts are kept apart in `conflict`.
    pub accepted: Result<(), Problem>,
    pub resolved_refs: Result<(), Problem>,
    pub conflict: Option<Problem>,
    /// Routes accepted on this listener (counted even when the listener is not programmed).
    pub attached_routes: i32,
    /// HTTPS: the usable certificates of its certificateRefs.
    pub certificates: Vec<config::TlsCertificate>,
    /// HTTPS: client certificate validation from the Gateway's tls.frontend.
    pub client_validation: Option<config::ClientValidation>,
    /// A TLS listener with tls.mode Passthrough (the others terminate TLS).
    pub passthrough: bool,
}

impl ListenerState {
    pub(super) fn build(
        res: &Resources,
        origin: ListenerOrigin,
        owner_ns: &str,
        spec: &GatewayListeners,
    ) -> Self {
        let owner = Owner {
            kind: match origin {
                ListenerOrigin::Gateway => "Gateway",
                ListenerOrigin::ListenerSet(_) => "ListenerSet",
            },
            namespace: owner_ns,
        };
        let passthrough = spec
            .tls
            .as_ref()
            .and_then(|tls| tls.mode.as_ref())
            .is_some_and(|m| matches!(m, GatewayListenersTlsMode::Passthrough));
        let mut accepted = match spec.protocol.as_str() {
            "HTTP" => Ok(()),
            "HTTPS" if passthrough => Err(Problem::new(
                reason::UNSUPPORTED_VALUE,
                "an HTTPS listener terminates TLS: tls.mode Passthrough is for TLS listeners",
            )),
            "HTTPS" | "TLS" | "TCP" | "UDP" => Ok(()),
            other => Err(Problem::new(
                reason::UNSUPPORTED_PROTOCOL,
                format!("protocol {other} is not supported"),
            )),
        };
        let namespaces = match allowed_namespaces(spec) {
            Ok(ns) => ns,
            Err(message) => {
                accepted = accepted.and(Err(Problem::new(reason::UNSUPPORTED_VALUE, message)));
                AllowedNamespaces::Nothing
            }
        };
        let (supported_kinds, kinds_problem) = route_kinds(spec);
        let mut problems: Vec<Problem> = kinds_problem.into_iter().collect();
        let mut certificates = Vec::new();
        if spec.protocol == "HTTPS" || (spec.protocol == "TLS" && !passthrough) {
            let (usable, cert_problems) = listener_certificates(res, &owner, spec);
            certificates = usable;
            problems.extend(cert_problems);
        }
        ListenerState {
            name: spec.name.clone(),
            origin,
            owner_namespace: owner_ns.to_string(),
            port: spec.port,
            protocol: spec.protocol.clone(),
            hostname: spec.hostname.clone().filter(|h| !h.is_empty()),
            supported_kinds,
            namespaces,
            accepted,
            resolved_refs: combine(problems),
            conflict: None,
            attached_routes: 0,
            certificates,
            client_validation: None,
            passthrough: spec.protocol == "TLS" && passthrough,
        }
    }

    /// Whether the host gets this listener: one that terminates TLS also needs a usable
    /// certificate.
    pub(super) fn is_programmed(&self) -> bool {
        let terminates = self.protocol == "HTTPS" || (self.protocol == "TLS" && !self.passthrough);
        self.accepted.is_ok()
            && self.conflict.is_none()
            && (!terminates || !self.certificates.is_empty())
    }

    /// Whether allowedRoutes admits a route of `route_kind` from `route_ns`.
    pub(super) fn admits_route(&self, res: &Resources, route_kind: &str, route_ns: &str) -> bool {
        let kind_ok = self
            .supported_kinds
            .iter()
            .any(|k| k.group == GATEWAY_GROUP && k.kind == route_kind);
        kind_ok
            && match &self.namespaces {
                AllowedNamespaces::Same => route_ns == self.owner_namespace,
                AllowedNamespaces::All => true,
                AllowedNamespaces::Selector(selector) => {
                    selector.matches(&res.namespace_labels(route_ns))
                }
                AllowedNamespaces::Nothing => false,
            }
    }

    /// This listener's name in the IR: unique within its Gateway, whichever object
    /// declared it.
    pub(super) fn ir_name(&self, gateway_ns: &str, gateway: &str) -> String {
        match &self.origin {
            ListenerOrigin::Gateway => ir_name(gateway_ns, gateway, &self.name),
            ListenerOrigin::ListenerSet((ns, name)) => ir_name(
                gateway_ns,
                gateway,
                &format!("listenerset/{ns}/{name}/{}", self.name),
            ),
        }
    }

    pub(super) fn ir(
        &self,
        gateway_ns: &str,
        gateway: &str,
        addresses: &[String],
    ) -> config::Listener {
        config::Listener {
            name: self.ir_name(gateway_ns, gateway),
            addresses: addresses.to_vec(),
            port: u32::try_from(self.port).unwrap_or_default(),
            protocol: self.protocol.clone(),
            // A TCP connection or UDP datagram names no host: the field means nothing there.
            hostname: match self.protocol.as_str() {
                "TCP" | "UDP" => String::new(),
                _ => self.hostname.clone().unwrap_or_default(),
            },
            certificates: self.certificates.clone(),
            client_validation: self.client_validation.clone(),
            tls_mode: match (self.protocol.as_str(), self.passthrough) {
                ("TLS", true) => "Passthrough".to_string(),
                ("TLS", false) => "Terminate".to_string(),
                _ => String::new(),
            },
        }
    }

    pub(super) fn status(&self, generation: i64) -> ListenerStatus {
        let conflict = self.conflict.clone().map_or(Ok(()), Err);
        // A ListenerSet listener that lost to an earlier one says so first: that is why
        // it is out, whatever else is wrong with it.
        let accepted = match self.origin {
            ListenerOrigin::Gateway => self.accepted.clone().and(conflict),
            ListenerOrigin::ListenerSet(_) => conflict.and(self.accepted.clone()),
        };
        let programmed = match &accepted {
            Ok(()) if self.is_programmed() => Ok(()),
            Ok(()) => Err(Problem::new(
                reason::INVALID,
                "no usable TLS certificate (see ResolvedRefs)",
            )),
            // ListenerSet entries carry the conflict's reason on Programmed too, as the
            // ListenerSet conformance tests expect.
            Err(p) if self.conflict.is_some() && self.origin != ListenerOrigin::Gateway => {
                Err(p.clone())
            }
            Err(p) => Err(Problem::new(
                reason::INVALID,
                format!("listener is not accepted: {}", p.message),
            )),
        };
        let conflicted = match &self.conflict {
            Some(p) => Condition::new(
                kind::CONFLICTED,
                true,
                p.reason,
                p.message.clone(),
                generation,
            ),
            None => Condition::new(
                kind::CONFLICTED,
                false,
                reason::NO_CONFLICTS,
                "No conflicts",
                generation,
            ),
        };
        ListenerStatus {
            name: self.name.clone(),
            supported_kinds: self.supported_kinds.clone(),
            attached_routes: self.attached_routes,
            conditions: sorted(vec![
                Condition::from_outcome(
                    kind::ACCEPTED,
                    &accepted,
                    reason::ACCEPTED,
                    "Listener is valid",
                    generation,
                ),
                conflicted,
                Condition::from_outcome(
                    kind::PROGRAMMED,
                    &programmed,
                    reason::PROGRAMMED,
                    "Listener is programmed",
                    generation,
                ),
                Condition::from_outcome(
                    kind::RESOLVED_REFS,
                    &self.resolved_refs,
                    reason::RESOLVED_REFS,
                    "All references resolved",
                    generation,
                ),
            ]),
        }
    }
}

/// `listener/<namespace>/<gateway>/<listener>`.
pub(super) fn ir_name(gateway_ns: &str, gateway: &str, listener: &str) -> String {
    format!("listener/{gateway_ns}/{gateway}/{listener}")
}

fn allowed_namespaces(spec: &GatewayListeners) -> Result<AllowedNamespaces, String> {
    let namespaces = spec
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    let from = namespaces
        .and_then(|n| n.from.clone())
        .unwrap_or(From::Same);
    Ok(match from {
        From::Same => AllowedNamespaces::Same,
        From::All => AllowedNamespaces::All,
        From::Selector => {
            let selector = namespaces
                .and_then(|n| n.selector.as_ref())
                .ok_or("allowedRoutes.namespaces.from is Selector but no selector is set")?;
            AllowedNamespaces::Selector(
                LabelSelector::parse(selector)
                    .map_err(|e| format!("invalid allowedRoutes namespace selector: {e}"))?,
            )
        }
    })
}

/// The route kinds this listener supports: what its protocol can carry and Nantian
/// implements, narrowed to allowedRoutes.kinds when given; plus a problem naming the
/// requested kinds that are invalid. HTTP and HTTPS listeners carry gRPC too: every
/// listener serves HTTP/2 (h2c with prior knowledge, or by ALPN), as GRPCRoute requires.
/// TLS listeners carry TLSRoutes, in either tls.mode; TCP listeners TCPRoutes; UDP
/// listeners UDPRoutes.
fn route_kinds(spec: &GatewayListeners) -> (Vec<RouteGroupKind>, Option<Problem>) {
    let implemented: &[&str] = match spec.protocol.as_str() {
        "HTTP" | "HTTPS" => &[HTTP_ROUTE, GRPC_ROUTE],
        "TLS" => &[TLS_ROUTE],
        "TCP" => &[TCP_ROUTE],
        "UDP" => &[UDP_ROUTE],
        _ => &[],
    };
    let requested = spec
        .allowed_routes
        .as_ref()
        .and_then(|a| a.kinds.as_ref())
        .filter(|kinds| !kinds.is_empty());
    let Some(requested) = requested else {
        let kinds = implemented
            .iter()
            .map(|k| RouteGroupKind {
                group: GATEWAY_GROUP.to_string(),
                kind: k.to_string(),
            })
            .collect();
        return (kinds, None);
    };
    let mut valid: Vec<RouteGroupKind> = Vec::new();
    let mut invalid = Vec::new();
    for k in requested {
        let group = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
        if group == GATEWAY_GROUP && implemented.contains(&k.kind.as_str()) {
            let rgk = RouteGroupKind {
                group: group.to_string(),
                kind: k.kind.clone(),
            };
            if !valid.contains(&rgk) {
                valid.push(rgk);
            }
        } else {
            invalid.push(format!("{group}/{}", k.kind));
        }
    }
    let problem = (!invalid.is_empty()).then(|| {
        Problem::new(
            reason::INVALID_ROUTE_KINDS,
            format!(
                "route kinds {} are not supported on protocol {}",
                invalid.join(", "),
                spec.protocol
            ),
        )
    });
    (valid, problem)
}
