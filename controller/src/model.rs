//! The objects the translator reads, by kind, keyed by (namespace, name).
//!
//! Both providers (the standalone directory loader and, later, the Kubernetes watcher) fill
//! the same [`Resources`]; BTreeMaps keep every walk over them, and so the translator's
//! output, deterministic.

use std::collections::BTreeMap;
use std::fmt;

use gateway_api::backendtlspolicies::BackendTlsPolicy;
use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::experimental::tcproutes::TcpRoute;
use gateway_api::experimental::udproutes::UdpRoute;
use gateway_api::gatewayclasses::GatewayClass;
use gateway_api::gateways::Gateway;
use gateway_api::grpcroutes::GrpcRoute;
use gateway_api::listenersets::ListenerSet;
use gateway_api::referencegrants::ReferenceGrant;
use gateway_api::tlsroutes::TlsRoute;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::crd::{AIService, TokenPolicy};
use crate::lb_policy::{BACKEND_LB_POLICY, LbPolicy, X_BACKEND_TRAFFIC_POLICY};

/// The kind of Nantian's [`AIService`].
pub const AI_SERVICE: &str = "AIService";
/// The kind of Nantian's [`TokenPolicy`].
pub const TOKEN_POLICY: &str = "TokenPolicy";

/// (namespace, name). Cluster-scoped objects use an empty namespace.
pub type Key = (String, String);

/// Every object the translator may look at, by kind.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub namespaces: BTreeMap<Key, Namespace>,
    pub gateway_classes: BTreeMap<Key, GatewayClass>,
    pub gateways: BTreeMap<Key, Gateway>,
    pub http_routes: BTreeMap<Key, HttpRoute>,
    pub grpc_routes: BTreeMap<Key, GrpcRoute>,
    pub tls_routes: BTreeMap<Key, TlsRoute>,
    pub tcp_routes: BTreeMap<Key, TcpRoute>,
    pub udp_routes: BTreeMap<Key, UdpRoute>,
    pub reference_grants: BTreeMap<Key, ReferenceGrant>,
    pub services: BTreeMap<Key, Service>,
    pub endpoint_slices: BTreeMap<Key, EndpointSlice>,
    pub secrets: BTreeMap<Key, Secret>,
    pub config_maps: BTreeMap<Key, ConfigMap>,
    pub backend_tls_policies: BTreeMap<Key, BackendTlsPolicy>,
    pub listener_sets: BTreeMap<Key, ListenerSet>,
    pub backend_lb_policies: BTreeMap<Key, LbPolicy>,
    pub backend_traffic_policies: BTreeMap<Key, LbPolicy>,
    /// Nantian's AIServices (`gateway.nantian.dev`), the backends of LLM routes.
    pub ai_services: BTreeMap<Key, AIService>,
    /// Nantian's TokenPolicies: token and request budgets on LLM routes.
    pub token_policies: BTreeMap<Key, TokenPolicy>,
    /// Kubernetes only: the Deployments Nantian provisioned for its Gateways.
    pub host_deployments: BTreeMap<Key, HostDeployment>,
}

/// What the Kubernetes provider reads of a Deployment it provisioned for a Gateway: how
/// many of its pods are available (the rest of the object is not kept).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HostDeployment {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: Option<HostDeploymentStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostDeploymentStatus {
    #[serde(default)]
    pub available_replicas: Option<i32>,
}

impl HostDeployment {
    /// Whether at least one of its pods is available to serve.
    pub fn available(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .is_some_and(|n| n > 0)
    }
}

impl Resources {
    /// Total number of objects of all kinds.
    pub fn len(&self) -> usize {
        self.namespaces.len()
            + self.gateway_classes.len()
            + self.gateways.len()
            + self.http_routes.len()
            + self.grpc_routes.len()
            + self.tls_routes.len()
            + self.tcp_routes.len()
            + self.udp_routes.len()
            + self.reference_grants.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.secrets.len()
            + self.config_maps.len()
            + self.backend_tls_policies.len()
            + self.listener_sets.len()
            + self.backend_lb_policies.len()
            + self.backend_traffic_policies.len()
            + self.ai_services.len()
            + self.token_policies.len()
            + self.host_deployments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds copies of every object of `other`, replacing objects with the same key.
    pub fn extend_from(&mut self, other: &Resources) {
        fn copy<T: Clone>(into: &mut BTreeMap<Key, T>, from: &BTreeMap<Key, T>) {
            into.extend(from.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        copy(&mut self.namespaces, &other.namespaces);
        copy(&mut self.gateway_classes, &other.gateway_classes);
        copy(&mut self.gateways, &other.gateways);
        copy(&mut self.http_routes, &other.http_routes);
        copy(&mut self.grpc_routes, &other.grpc_routes);
        copy(&mut self.tls_routes, &other.tls_routes);
        copy(&mut self.tcp_routes, &other.tcp_routes);
        copy(&mut self.udp_routes, &other.udp_routes);
        copy(&mut self.reference_grants, &other.reference_grants);
        copy(&mut self.services, &other.services);
        copy(&mut self.endpoint_slices, &other.endpoint_slices);
        copy(&mut self.secrets, &other.secrets);
        copy(&mut self.config_maps, &other.config_maps);
        copy(&mut self.backend_tls_policies, &other.backend_tls_policies);
        copy(&mut self.listener_sets, &other.listener_sets);
        copy(&mut self.backend_lb_policies, &other.backend_lb_policies);
        copy(
            &mut self.backend_traffic_policies,
            &other.backend_traffic_policies,
        );
        copy(&mut self.ai_services, &other.ai_services);
        copy(&mut self.token_policies, &other.token_policies);
        copy(&mut self.host_deployments, &other.host_deployments);
    }

    /// Whether an object with this reference is present.
    pub fn contains(&self, object: &ObjectRef) -> bool {
        let key = object.key();
        match object.kind.as_str() {
            "Namespace" => self.namespaces.contains_key(&key),
            "GatewayClass" => self.gateway_classes.contains_key(&key),
            "Gateway" => self.gateways.contains_key(&key),
            "HTTPRoute" => self.http_routes.contains_key(&key),
            "GRPCRoute" => self.grpc_routes.contains_key(&key),
            "TLSRoute" => self.tls_routes.contains_key(&key),
            "TCPRoute" => self.tcp_routes.contains_key(&key),
            "UDPRoute" => self.udp_routes.contains_key(&key),
            "ReferenceGrant" => self.reference_grants.contains_key(&key),
            "Service" => self.services.contains_key(&key),
            "EndpointSlice" => self.endpoint_slices.contains_key(&key),
            "Secret" => self.secrets.contains_key(&key),
            "ConfigMap" => self.config_maps.contains_key(&key),
            "BackendTLSPolicy" => self.backend_tls_policies.contains_key(&key),
            "ListenerSet" => self.listener_sets.contains_key(&key),
            BACKEND_LB_POLICY => self.backend_lb_policies.contains_key(&key),
            X_BACKEND_TRAFFIC_POLICY => self.backend_traffic_policies.contains_key(&key),
            AI_SERVICE => self.ai_services.contains_key(&key),
            TOKEN_POLICY => self.token_policies.contains_key(&key),
            _ => false,
        }
    }

    /// The labels of a namespace. Kubernetes stamps every namespace with
    /// `kubernetes.io/metadata.name`; a namespace that was never declared (common in a
    /// standalone directory) still carries that label so selectors on it work.
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .namespaces
            .get(&(String::new(), namespace.to_string()))
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default();
        labels
            .entry("kubernetes.io/metadata.name".to_string())
            .or_insert_with(|| namespace.to_string());
        labels
    }
}

/// A reference to one object: kind plus namespace (absent for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn namespaced(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
        }
    }

    pub fn cluster(kind: &str, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: None,
            name: name.to_string(),
        }
    }

    /// The key this object has in its [`Resources`] map.
    pub fn key(&self) -> Key {
        (
            self.namespace.clone().unwrap_or_default(),
            self.name.clone(),
        )
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Accessors for the metadata fields the translator needs, with Kubernetes' defaults.
pub trait MetaExt {
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;

    fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    fn namespace(&self) -> &str {
        self.meta().namespace.as_deref().unwrap_or("default")
    }

    /// `metadata.generation`. An API server starts every object at 1; standalone mode
    /// plays its part for objects written by hand without one.
    fn generation(&self) -> i64 {
        self.meta().generation.unwrap_or(1)
    }

    /// `metadata.creationTimestamp` in Unix seconds, 0 when absent.
    fn creation_seconds(&self) -> i64 {
        self.meta()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or(0)
    }

    fn labels(&self) -> BTreeMap<String, String> {
        self.meta().labels.clone().unwrap_or_default()
    }
}

macro_rules! meta_ext {
    ($($ty:ty),* $(,)?) => {
        $(impl MetaExt for $ty {
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        })*
    };
}

meta_ext!(
    Namespace,
    GatewayClass,
    Gateway,
    HttpRoute,
    GrpcRoute,
    TlsRoute,
    TcpRoute,
    UdpRoute,
    ReferenceGrant,
    Service,
    EndpointSlice,
    Secret,
    ConfigMap,
    BackendTlsPolicy,
    ListenerSet,
    LbPolicy,
    AIService,
    TokenPolicy,
    HostDeployment,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ref_display_and_key() {
        let r = ObjectRef::namespaced("Service", "apps", "web");
        assert_eq!(r.to_string(), "Service apps/web");
        assert_eq!(r.key(), ("apps".to_string(), "web".to_string()));
        let c = ObjectRef::cluster("GatewayClass", "nantian");
        assert_eq!(c.to_string(), "GatewayClass nantian");
        assert_eq!(c.key(), (String::new(), "nantian".to_string()));
    }

    #[test]
    fn undeclared_namespace_still_has_its_name_label() {
        let res = Resources::default();
        let labels = res.namespace_labels("apps");
        assert_eq!(
            labels
                .get("kubernetes.io/metadata.name")
                .map(String::as_str),
            Some("apps")
        );
    }
}
