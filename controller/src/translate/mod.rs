//! Gateway API objects → statuses + per-Gateway IR (nantian config resources).
//!
//! A pure function run as named stages in a fixed order:
//! 1. [`gateway_class`]: which GatewayClasses are ours; their status.
//! 2. [`gateway`] (with [`address`], [`listener`], [`certificate`], [`conflict`]): our
//!    Gateways, their addresses and listeners.
//! 3. [`route`] (with [`source`], [`grpc_match`], [`kind_conflict`], [`rule`], [`filter`],
//!    [`backend`], [`ai_service`]): HTTPRoute and GRPCRoute attachment, rules, backends;
//!    route statuses and listener attachment counts.
//! 4. Gateway statuses and IR, then sorting.
//!
//! Invalid input becomes a condition on its object, never an error.

mod address;
mod ai_endpoint;
mod ai_service;
mod backend;
mod backend_lb;
mod backend_tls;
mod certificate;
mod client_validation;
mod conflict;
mod cors;
mod filter;
mod gateway;
mod gateway_class;
mod grpc_match;
mod hostname;
mod kind_conflict;
mod listener;
mod listener_set;
mod policy;
mod reference_grant;
mod retry;
mod route;
mod rule;
mod selector;
mod source;
mod token_policy;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use nantian_proto::config;
use serde::Serialize;

use crate::model::{Key, Resources};
use crate::status;

pub use backend_lb::{DEFAULT_SESSION_NAME, HASH_ON_ANNOTATION, LOAD_BALANCER_ANNOTATION};
pub use gateway_class::SUPPORTED_FEATURES;
pub use hostname::intersects as hostnames_intersect;

/// The controller name Nantian's GatewayClasses carry.
pub const DEFAULT_CONTROLLER_NAME: &str = "gateway.nantian.dev/controller";

/// The filter name of the built-in header modifier in [`TranslateOptions::filter_modules`].
pub const HEADER_MODIFIER: &str = "header-modifier";
/// The filter name of the built-in CORS filter in [`TranslateOptions::filter_modules`].
pub const CORS: &str = "cors";
/// The filter name of the built-in ai-adapter in [`TranslateOptions::filter_modules`]: it
/// translates between a client's LLM API and an AIService backend's.
pub const AI_ADAPTER: &str = "ai-adapter";
/// The filter name of the built-in token-limit filter in [`TranslateOptions::filter_modules`]:
/// it enforces TokenPolicies on LLM rules.
pub const TOKEN_LIMIT: &str = "token-limit";
/// The filter name of the built-in PII mask in [`TranslateOptions::filter_modules`]: it
/// masks personal data in LLM requests and answers for AIServices that ask for it.
pub const PII_MASK: &str = "pii-mask";

#[derive(Clone, Debug)]
pub struct TranslateOptions {
    /// GatewayClasses with this `spec.controllerName` are ours.
    pub controller_name: String,
    /// The addresses allocated to each Gateway (namespace, name): one when it has no
    /// `spec.addresses`, else one per `IPAddress` entry without a value, in entry order.
    /// The standalone runtime allocates them from its address pool.
    pub addresses: BTreeMap<(String, String), Vec<IpAddr>>,
    /// Static `spec.addresses` this machine can't bind, with why (AddressNotUsable).
    pub unusable_addresses: BTreeMap<IpAddr, String>,
    /// Built-in Wasm filter modules by filter name ([`HEADER_MODIFIER`], [`CORS`],
    /// [`AI_ADAPTER`], [`TOKEN_LIMIT`], [`PII_MASK`]).
    pub filter_modules: BTreeMap<String, config::FilterModule>,
    /// Where a Gateway's addresses come from: the machine's own (standalone) or the
    /// Service provisioned for it (Kubernetes).
    pub addressing: Addressing,
}

/// How Gateways get their addresses.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Addressing {
    /// Standalone: each host binds its Gateway's own loopback addresses
    /// ([`TranslateOptions::addresses`]), and those are the Gateway's `status.addresses`.
    #[default]
    HostAddresses,
    /// Kubernetes: a host binds `bind` (every interface of its pod: 0.0.0.0), and
    /// clients reach it through the Service provisioned for its Gateway, whose addresses
    /// (load-balancer ingress, else cluster IP) are the Gateway's, by (namespace, name).
    /// A Gateway whose Service has no address yet is not programmed (AddressNotAssigned),
    /// nor one whose provisioned pods are not available yet (NoResources).
    ServiceAddresses {
        bind: IpAddr,
        by_gateway: BTreeMap<(String, String), ProvisionedGateway>,
    },
}

/// What the Kubernetes provider knows of the data plane provisioned for one Gateway.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProvisionedGateway {
    /// Its Service's addresses; empty while it has none.
    pub addresses: Vec<status::GatewayAddress>,
    /// Whether its Deployment has an available pod; `None` when Nantian does not run
    /// its pods (provisioning is off).
    pub available: Option<bool>,
}

impl TranslateOptions {
    pub fn new(controller_name: impl Into<String>) -> Self {
        TranslateOptions {
            controller_name: controller_name.into(),
            addresses: BTreeMap::new(),
            unusable_addresses: BTreeMap::new(),
            filter_modules: BTreeMap::new(),
            addressing: Addressing::default(),
        }
    }
}

impl Default for TranslateOptions {
    fn default() -> Self {
        TranslateOptions::new(DEFAULT_CONTROLLER_NAME)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Translation {
    /// Sorted by kind (GatewayClass, Gateway, ListenerSet, HTTPRoute, GRPCRoute, policies and
    /// AIServices), then namespace and name.
    pub statuses: Vec<ObjectStatus>,
    /// One per programmed Gateway of ours, sorted by namespace and name.
    pub gateways: Vec<GatewayIr>,
}

/// The config resources one Gateway's host serves. Route listeners only name this
/// Gateway's listeners, so a route attached to two Gateways appears in both, each time
/// with that Gateway's listeners.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayIr {
    pub namespace: String,
    pub name: String,
    /// Every address the host serves the listeners on; its admin endpoint is on the first.
    pub addresses: Vec<IpAddr>,
    pub listeners: Vec<config::Listener>,
    pub routes: Vec<config::Route>,
    pub backends: Vec<config::Backend>,
    pub modules: Vec<config::FilterModule>,
}

/// The status the translator computed for one object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    pub api_version: String,
    pub kind: String,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub status: serde_json::Value,
}

impl ObjectStatus {
    fn kind_rank(&self) -> u8 {
        match self.kind.as_str() {
            "GatewayClass" => 0,
            "Gateway" => 1,
            "ListenerSet" => 2,
            "HTTPRoute" => 3,
            "GRPCRoute" => 4,
            "TLSRoute" => 5,
            "TCPRoute" => 6,
            "UDPRoute" => 7,
            _ => 8,
        }
    }
}

const GATEWAY_API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// The apiVersion of Nantian's own kinds (AIService, TokenPolicy).
const NANTIAN_API_VERSION: &str = "gateway.nantian.dev/v1alpha1";

/// The status of one of Nantian's own objects whose only condition is `Accepted`.
fn accepted_status(
    kind: &str,
    (namespace, name): &crate::model::Key,
    generation: i64,
    outcome: &Result<(), status::Problem>,
    ok_message: &str,
) -> ObjectStatus {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Status {
        conditions: Vec<status::Condition>,
        observed_generation: i64,
    }
    let status = Status {
        conditions: vec![status::Condition::from_outcome(
            status::kind::ACCEPTED,
            outcome,
            status::reason::ACCEPTED,
            ok_message,
            generation,
        )],
        observed_generation: generation,
    };
    ObjectStatus {
        api_version: NANTIAN_API_VERSION.to_string(),
        kind: kind.to_string(),
        namespace: namespace.clone(),
        name: name.clone(),
        generation,
        status: serde_json::to_value(status).unwrap_or_default(),
    }
}

pub fn translate(res: &Resources, opts: &TranslateOptions) -> Translation {
    let mut statuses = Vec::new();

    let our_classes = gateway_class::translate_classes(res, opts, &mut statuses);
    let mut gateways = gateway::build_gateways(res, opts, &our_classes);
    let policies = policy::BackendPolicies {
        tls: backend_tls::resolve(res),
        lb: backend_lb::resolve(res),
    };
    let ai_services = ai_service::resolve(res);
    route::translate_routes(
        res,
        opts,
        &policies,
        &ai_services,
        &mut gateways,
        &mut statuses,
    );
    let reached: BTreeMap<Key, BTreeSet<Key>> = gateways
        .iter()
        .map(|(key, gw)| (key.clone(), gw.services.clone()))
        .collect();
    policies.tls.statuses(opts, &reached, &mut statuses);
    policies.lb.statuses(opts, &reached, &mut statuses);
    ai_services.statuses(&mut statuses);
    let token_policies = token_policy::resolve(res, opts);
    token_policies.statuses(&mut statuses);

    let mut irs = Vec::new();
    for gw in gateways.into_values() {
        statuses.push(gw.status());
        statuses.extend(gw.listener_set_statuses());
        if let Some(mut ir) = gw.into_ir() {
            token_policies.apply(opts, &mut ir);
            irs.push(ir);
        }
    }

    statuses.sort_by(|a, b| {
        (a.kind_rank(), &a.namespace, &a.name).cmp(&(b.kind_rank(), &b.namespace, &b.name))
    });
    irs.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Translation {
        statuses,
        gateways: irs,
    }
}
