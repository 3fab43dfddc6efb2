//! Stage 2: our Gateways — addresses, listeners — and, once routes have attached, their
//! status and IR.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use gateway_api::gateways::{Gateway, GatewayAllowedListenersNamespacesFrom};
use nantian_proto::config;

use super::address::{self, GatewayAddresses, IP_ADDRESS};
use super::certificate::{Owner, SecretRef, secret_certificate};
use super::client_validation;
use super::conflict::mark_conflicts;
use super::gateway_class::OurClasses;
use super::listener::{ListenerOrigin, ListenerState};
use super::listener_set::{self, ListenerSetState};
use super::{GATEWAY_API_VERSION, GatewayIr, ObjectStatus, TranslateOptions};
use crate::model::{Key, MetaExt, Resources};
use crate::status::{Condition, GatewayAddress, GatewayStatus, Problem, kind, reason, sorted};

const INVALID_CLIENT_CERTIFICATE_REF: &str = "InvalidClientCertificateRef";

/// What the translator knows about one of our Gateways while it runs.
#[derive(Clone, Debug)]
pub(super) struct GatewayState {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    /// What its host binds, and why some `spec.addresses` entries are not bound.
    pub addresses: GatewayAddresses,
    /// Why the Gateway as a whole is not accepted (class, parameters, addresses).
    pub rejected: Option<Problem>,
    pub listeners: Vec<ListenerState>,
    pub routes: Vec<config::Route>,
    pub backends: BTreeMap<String, config::Backend>,
    pub modules: BTreeMap<String, config::FilterModule>,
    /// `spec.tls.backend.clientCertificateRef`: `None` when unset, else the certificate the
    /// host presents to TLS backends, or why it can't (the Gateway's ResolvedRefs).
    pub backend_client_certificate: Option<Result<config::TlsCertificate, Problem>>,
    /// The Services (namespace, name) this Gateway's routes reach.
    pub services: BTreeSet<Key>,
    /// ListenerSets naming this Gateway, in precedence order; the listeners of the
    /// admitted ones are in `listeners` after the Gateway's own.
    pub listener_sets: Vec<ListenerSetState>,
    /// Whether allowedListeners admits any ListenerSets (then the status counts them).
    pub admits_listener_sets: bool,
}

/// Our Gateways by (namespace, name): those whose class is one of ours.
pub(super) fn build_gateways(
    res: &Resources,
    opts: &TranslateOptions,
    classes: &OurClasses,
) -> BTreeMap<Key, GatewayState> {
    let mut out = BTreeMap::new();
    let mut claimed = BTreeMap::new();
    for (key, gw) in &res.gateways {
        let Some(class) = classes.get(&gw.spec.gateway_class_name) else {
            continue;
        };
        let namespace = gw.namespace().to_string();
        let mut listeners: Vec<ListenerState> = gw
            .spec
            .listeners
            .iter()
            .map(|l| ListenerState::build(res, ListenerOrigin::Gateway, &namespace, l))
            .collect();
        mark_conflicts(&mut listeners);
        let listener_sets = listener_set::merge(res, gw, &mut listeners);
        for listener in &mut listeners {
            client_validation::apply(res, gw, listener);
        }
        let class_problem = class.clone().err().map(|p| {
            Problem::new(
                reason::INVALID,
                format!(
                    "GatewayClass {} is not accepted: {}",
                    gw.spec.gateway_class_name, p.message
                ),
            )
        });
        let parameters_problem = gw
            .spec
            .infrastructure
            .as_ref()
            .and_then(|i| i.parameters_ref.as_ref())
            .map(|p| {
                Problem::new(
                    reason::INVALID_PARAMETERS,
                    format!(
                        "infrastructure.parametersRef {}/{} {} is not supported",
                        p.group, p.kind, p.name
                    ),
                )
            });
        let rejected = class_problem.or(parameters_problem);
        // A Gateway rejected anyway binds nothing, so it takes no address from the others.
        let mut unclaimed = BTreeMap::new();
        let claims = match rejected {
            Some(_) => &mut unclaimed,
            None => &mut claimed,
        };
        let addresses = address::resolve(gw, opts, claims);
        out.insert(
            key.clone(),
            GatewayState {
                name: gw.name().to_string(),
                namespace,
                generation: gw.generation(),
                rejected: rejected.or(addresses.unsupported.clone()),
                addresses,
                listeners,
                routes: Vec::new(),
                backends: BTreeMap::new(),
                modules: BTreeMap::new(),
                backend_client_certificate: backend_client_certificate(res, gw),
                listener_sets,
                admits_listener_sets: gw
                    .spec
                    .allowed_listeners
                    .as_ref()
                    .and_then(|a| a.namespaces.as_ref())
                    .and_then(|n| n.from.as_ref())
                    .is_some_and(|from| {
                        !matches!(from, GatewayAllowedListenersNamespacesFrom::None)
                    }),
                services: BTreeSet::new(),
            },
        );
    }
    out
}

/// The certificate of `spec.tls.backend.clientCertificateRef`, if set.
fn backend_client_certificate(
    res: &Resources,
    gw: &Gateway,
) -> Option<Result<config::TlsCertificate, Problem>> {
    let r = gw
        .spec
        .tls
        .as_ref()?
        .backend
        .as_ref()?
        .client_certificate_ref
        .as_ref()?;
    let reference = SecretRef {
        group: r.group.as_deref().unwrap_or(""),
        kind: r.kind.as_deref().unwrap_or("Secret"),
        namespace: r.namespace.as_deref().unwrap_or(gw.namespace()),
        name: &r.name,
    };
    let owner = Owner {
        kind: "Gateway",
        namespace: gw.namespace(),
    };
    Some(secret_certificate(
        res,
        &owner,
        &reference,
        INVALID_CLIENT_CERTIFICATE_REF,
    ))
}

impl GatewayState {
    fn accepted(&self) -> Result<(), Problem> {
        if let Some(p) = &self.rejected {
            return Err(p.clone());
        }
        if self.listeners.iter().any(ListenerState::is_programmed) {
            Ok(())
        } else {
            Err(Problem::new(
                reason::LISTENERS_NOT_VALID,
                format!(
                    "no valid listeners: {}",
                    self.invalid_listener_names().join(", ")
                ),
            ))
        }
    }

    fn own_listeners(&self) -> impl Iterator<Item = &ListenerState> {
        self.listeners
            .iter()
            .filter(|l| l.origin == ListenerOrigin::Gateway)
    }

    fn invalid_listener_names(&self) -> Vec<&str> {
        self.own_listeners()
            .filter(|l| !l.is_programmed())
            .map(|l| l.name.as_str())
            .collect()
    }

    fn programmed(&self) -> Result<&[IpAddr], Problem> {
        if let Err(p) = self.accepted() {
            return Err(Problem::new(
                reason::INVALID,
                format!("Gateway is not accepted: {}", p.message),
            ));
        }
        match &self.addresses.unusable {
            Some(p) => Err(p.clone()),
            None => Ok(&self.addresses.bound),
        }
    }

    /// The addresses the host serves: those bound, once the Gateway is accepted. A
    /// Gateway with an unusable address is still served on its usable ones.
    fn served_addresses(&self) -> &[IpAddr] {
        match self.accepted() {
            Ok(()) => &self.addresses.bound,
            Err(_) => &[],
        }
    }

    pub(super) fn status(&self) -> ObjectStatus {
        let g = self.generation;
        let accepted = self.accepted();
        let invalid = self.invalid_listener_names();
        let accepted_condition = match &accepted {
            Ok(()) if !invalid.is_empty() => Condition::new(
                kind::ACCEPTED,
                true,
                reason::LISTENERS_NOT_VALID,
                format!("listeners not valid: {}", invalid.join(", ")),
                g,
            ),
            _ => Condition::from_outcome(
                kind::ACCEPTED,
                &accepted,
                reason::ACCEPTED,
                "Gateway is accepted",
                g,
            ),
        };
        let programmed = self.programmed();
        let programmed_condition = match &programmed {
            Ok(ips) => Condition::new(
                kind::PROGRAMMED,
                true,
                reason::PROGRAMMED,
                format!("Programmed on {}", join(ips)),
                g,
            ),
            Err(p) => Condition::new(kind::PROGRAMMED, false, p.reason, p.message.clone(), g),
        };
        let addresses = match (&self.addresses.reported, self.accepted()) {
            (Some(reported), Ok(())) => reported.clone(),
            _ => self
                .served_addresses()
                .iter()
                .map(|ip| GatewayAddress {
                    type_: IP_ADDRESS.to_string(),
                    value: ip.to_string(),
                })
                .collect(),
        };
        let mut conditions = vec![accepted_condition, programmed_condition];
        // Gateway-level references: only the backend client certificate so far.
        if let Some(certificate) = &self.backend_client_certificate {
            conditions.push(Condition::from_outcome(
                kind::RESOLVED_REFS,
                &certificate.as_ref().map(|_| ()).map_err(Clone::clone),
                reason::RESOLVED_REFS,
                "All references resolved",
                g,
            ));
        }
        // The spec asks for a standing warning while any port lets clients through
        // without a valid certificate.
        let insecure = self.listeners.iter().any(|l| {
            l.client_validation
                .as_ref()
                .is_some_and(|v| v.allow_insecure_fallback)
        });
        if insecure {
            conditions.push(Condition::new(
                "InsecureFrontendValidationMode",
                true,
                "ConfigurationChanged",
                "tls.frontend validation is AllowInsecureFallback: clients without a valid certificate are served",
                g,
            ));
        }
        let attached_listener_sets = self.admits_listener_sets.then(|| {
            let attached = self
                .listener_sets
                .iter()
                .filter(|set| set.is_attached(&self.listeners))
                .count();
            i32::try_from(attached).unwrap_or(i32::MAX)
        });
        let status = GatewayStatus {
            addresses,
            conditions: sorted(conditions),
            listeners: self.own_listeners().map(|l| l.status(g)).collect(),
            attached_listener_sets,
        };
        ObjectStatus {
            api_version: GATEWAY_API_VERSION.to_string(),
            kind: "Gateway".to_string(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            generation: g,
            status: serde_json::to_value(status).unwrap_or_default(),
        }
    }

    /// The status of every ListenerSet naming this Gateway.
    pub(super) fn listener_set_statuses(&self) -> Vec<ObjectStatus> {
        let accepted = self.accepted();
        self.listener_sets
            .iter()
            .map(|set| set.status(&self.listeners, &accepted))
            .collect()
    }

    /// The Gateway's resources, when it is programmed.
    pub(super) fn into_ir(self) -> Option<GatewayIr> {
        let addresses = self.served_addresses().to_vec();
        if addresses.is_empty() {
            return None;
        }
        let address_texts: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
        let mut listeners: Vec<config::Listener> = self
            .listeners
            .iter()
            .filter(|l| l.is_programmed())
            .map(|l| l.ir(&self.namespace, &self.name, &address_texts))
            .collect();
        listeners.sort_by(|a, b| a.name.cmp(&b.name));
        let mut routes = self.routes;
        routes.sort_by(|a, b| a.name.cmp(&b.name));
        Some(GatewayIr {
            namespace: self.namespace,
            name: self.name,
            addresses,
            listeners,
            routes,
            backends: self.backends.into_values().collect(),
            modules: self.modules.into_values().collect(),
        })
    }
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
