//! The kinds the Kubernetes provider watches, and how a watched object lands in the
//! translator's [`Resources`].
//!
//! Every kind is watched as a `DynamicObject` and parsed into the same typed structs the
//! standalone loader produces, so both providers feed the translator identical input (the
//! gateway-api crate has no types for some kinds Nantian reads, e.g. the LB policies).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde::de::DeserializeOwned;

use crate::crd;
use crate::lb_policy::{BACKEND_LB_POLICY, X_BACKEND_TRAFFIC_POLICY};
use crate::model::{AI_SERVICE, Key, MetaExt, Resources, TOKEN_POLICY};

/// One watched kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchedKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Core kinds and Gateway API's standard channel must exist; an optional kind whose
    /// CRD is not installed is treated as having no objects.
    pub required: bool,
    /// Only objects with these labels are watched (`None`: all of them).
    pub label_selector: Option<&'static str>,
    /// The provider reads the status of these objects: a status-only change counts.
    pub reads_status: bool,
}

impl WatchedKind {
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }
}

const GATEWAY: &str = "gateway.networking.k8s.io";
const GATEWAY_X: &str = "gateway.networking.x-k8s.io";

const fn kind(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    required: bool,
) -> WatchedKind {
    WatchedKind {
        group,
        version,
        kind,
        plural,
        namespaced,
        required,
        label_selector: None,
        reads_status: false,
    }
}

/// The Deployments Nantian provisioned (`provision::MANAGED_BY` = `MANAGED_BY_US`): their
/// available pods decide whether a Gateway is Programmed.
const HOST_DEPLOYMENTS: WatchedKind = WatchedKind {
    label_selector: Some("app.kubernetes.io/managed-by=nantian"),
    reads_status: true,
    ..kind("apps", "v1", "Deployment", "deployments", true, true)
};

/// Every kind the translator reads. Versions are the storage versions of Gateway API
/// v1.5.1 (and the core API's and Nantian's only ones).
pub const WATCHED: &[WatchedKind] = &[
    kind("", "v1", "Namespace", "namespaces", false, true),
    kind("", "v1", "Service", "services", true, true),
    kind("", "v1", "Secret", "secrets", true, true),
    kind("", "v1", "ConfigMap", "configmaps", true, true),
    kind(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        true,
    ),
    kind(GATEWAY, "v1", "GatewayClass", "gatewayclasses", false, true),
    kind(GATEWAY, "v1", "Gateway", "gateways", true, true),
    kind(GATEWAY, "v1", "HTTPRoute", "httproutes", true, true),
    kind(GATEWAY, "v1", "GRPCRoute", "grpcroutes", true, true),
    kind(GATEWAY, "v1", "TLSRoute", "tlsroutes", true, false),
    kind(GATEWAY, "v1alpha2", "TCPRoute", "tcproutes", true, false),
    kind(GATEWAY, "v1alpha2", "UDPRoute", "udproutes", true, false),
    kind(
        GATEWAY,
        "v1beta1",
        "ReferenceGrant",
        "referencegrants",
        true,
        true,
    ),
    kind(
        GATEWAY,
        "v1",
        "BackendTLSPolicy",
        "backendtlspolicies",
        true,
        false,
    ),
    kind(GATEWAY, "v1", "ListenerSet", "listenersets", true, false),
    kind(
        GATEWAY,
        "v1alpha2",
        BACKEND_LB_POLICY,
        "backendlbpolicies",
        true,
        false,
    ),
    kind(
        GATEWAY_X,
        "v1alpha1",
        X_BACKEND_TRAFFIC_POLICY,
        "xbackendtrafficpolicies",
        true,
        false,
    ),
    // Nantian's own CRDs are optional too: a cluster may run Nantian without them.
    kind(
        crd::GROUP,
        crd::VERSION,
        AI_SERVICE,
        "aiservices",
        true,
        false,
    ),
    kind(
        crd::GROUP,
        crd::VERSION,
        TOKEN_POLICY,
        "tokenpolicies",
        true,
        false,
    ),
    HOST_DEPLOYMENTS,
];

/// The map of `res` a kind's objects live in, as a generic operation over it.
trait KindMap {
    fn apply(&mut self, key: Key, value: serde_json::Value) -> Result<(), String>;
    fn remove(&mut self, key: &Key);
    fn clear(&mut self);
}

impl<T: DeserializeOwned + MetaExt> KindMap for std::collections::BTreeMap<Key, T> {
    fn apply(&mut self, key: Key, value: serde_json::Value) -> Result<(), String> {
        let parsed: T = serde_json::from_value(value).map_err(|e| e.to_string())?;
        self.insert(key, parsed);
        Ok(())
    }
    fn remove(&mut self, key: &Key) {
        std::collections::BTreeMap::remove(self, key);
    }
    fn clear(&mut self) {
        std::collections::BTreeMap::clear(self);
    }
}

fn map_of<'a>(res: &'a mut Resources, kind: &str) -> Option<&'a mut dyn KindMap> {
    Some(match kind {
        "Namespace" => &mut res.namespaces,
        "GatewayClass" => &mut res.gateway_classes,
        "Gateway" => &mut res.gateways,
        "HTTPRoute" => &mut res.http_routes,
        "GRPCRoute" => &mut res.grpc_routes,
        "TLSRoute" => &mut res.tls_routes,
        "TCPRoute" => &mut res.tcp_routes,
        "UDPRoute" => &mut res.udp_routes,
        "ReferenceGrant" => &mut res.reference_grants,
        "Service" => &mut res.services,
        "EndpointSlice" => &mut res.endpoint_slices,
        "Secret" => &mut res.secrets,
        "ConfigMap" => &mut res.config_maps,
        "BackendTLSPolicy" => &mut res.backend_tls_policies,
        "ListenerSet" => &mut res.listener_sets,
        BACKEND_LB_POLICY => &mut res.backend_lb_policies,
        X_BACKEND_TRAFFIC_POLICY => &mut res.backend_traffic_policies,
        AI_SERVICE => &mut res.ai_services,
        TOKEN_POLICY => &mut res.token_policies,
        "Deployment" => &mut res.host_deployments,
        _ => return None,
    })
}

pub fn key_of(object: &DynamicObject) -> Key {
    (
        object.metadata.namespace.clone().unwrap_or_default(),
        object.metadata.name.clone().unwrap_or_default(),
    )
}

/// Adds or replaces `object`. An object the typed parse refuses (which the API server's
/// schema should have stopped) is left out, with the reason returned for the log.
pub fn apply(res: &mut Resources, kind: &WatchedKind, object: DynamicObject) -> Result<(), String> {
    let key = key_of(&object);
    let Some(map) = map_of(res, kind.kind) else {
        return Ok(());
    };
    let mut value = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    // A DynamicObject serialises its type only when the watch response carried it.
    if let Some(fields) = value.as_object_mut() {
        let api_version = if kind.group.is_empty() {
            kind.version.to_string()
        } else {
            format!("{}/{}", kind.group, kind.version)
        };
        fields.insert("apiVersion".into(), api_version.into());
        fields.insert("kind".into(), kind.kind.into());
    }
    map.apply(key.clone(), value)
        .inspect_err(|_| map.remove(&key))
}

pub fn remove(res: &mut Resources, kind: &WatchedKind, object: &DynamicObject) {
    if let Some(map) = map_of(res, kind.kind) {
        map.remove(&key_of(object));
    }
}

/// Forgets every object of `kind` (a watch re-listing from scratch).
pub fn clear(res: &mut Resources, kind: &WatchedKind) {
    if let Some(map) = map_of(res, kind.kind) {
        map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn every_watched_kind_has_a_map() {
        let mut res = Resources::default();
        for kind in WATCHED {
            assert!(map_of(&mut res, kind.kind).is_some(), "{}", kind.kind);
        }
    }

    #[test]
    fn host_deployments_are_selected_by_the_provisioners_label() {
        use crate::kubernetes::provision::{MANAGED_BY, MANAGED_BY_US};
        assert_eq!(
            HOST_DEPLOYMENTS.label_selector,
            Some(format!("{MANAGED_BY}={MANAGED_BY_US}").as_str())
        );
        let mut res = Resources::default();
        let deployment = object(serde_json::json!({
            "metadata": {"name": "nantian-web", "namespace": "apps", "generation": 2},
            "spec": {"replicas": 1, "template": {"spec": {"containers": []}}},
            "status": {"replicas": 1, "availableReplicas": 1}
        }));
        apply(&mut res, &HOST_DEPLOYMENTS, deployment).unwrap();
        let key = ("apps".to_string(), "nantian-web".to_string());
        assert!(res.host_deployments[&key].available());
        let unavailable = object(serde_json::json!({
            "metadata": {"name": "nantian-web", "namespace": "apps", "generation": 2},
            "status": {"replicas": 1, "unavailableReplicas": 1}
        }));
        apply(&mut res, &HOST_DEPLOYMENTS, unavailable).unwrap();
        assert!(!res.host_deployments[&key].available());
    }

    #[test]
    fn ai_services_are_watched_when_their_crd_is_installed() {
        use kube::CustomResourceExt;
        let kind = WATCHED.iter().find(|k| k.kind == AI_SERVICE).unwrap();
        let crd = crd::AIService::crd();
        assert_eq!(kind.group, crd.spec.group);
        assert_eq!(kind.plural, crd.spec.names.plural);
        assert!(
            !kind.required,
            "a cluster without Nantian's CRDs still works"
        );
        let mut res = Resources::default();
        let llm = object(serde_json::json!({
            "metadata": {"name": "llm", "namespace": "apps", "generation": 2},
            "spec": {"backends": [
                {"name": "a", "provider": "openai", "endpoint": "https://api.openai.com/v1"}
            ]}
        }));
        apply(&mut res, kind, llm).unwrap();
        let parsed = &res.ai_services[&("apps".to_string(), "llm".to_string())];
        assert_eq!(parsed.spec.backends[0].provider, crd::Provider::OpenAI);
        assert_eq!(parsed.metadata.generation, Some(2));
    }

    #[test]
    fn objects_are_parsed_into_their_typed_map_and_removed() {
        let mut res = Resources::default();
        let gateway = WATCHED.iter().find(|k| k.kind == "Gateway").unwrap();
        let gw = object(serde_json::json!({
            "metadata": {"name": "web", "namespace": "apps", "generation": 3},
            "spec": {"gatewayClassName": "nantian", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}
        }));
        apply(&mut res, gateway, gw.clone()).unwrap();
        let parsed = &res.gateways[&("apps".to_string(), "web".to_string())];
        assert_eq!(parsed.spec.gateway_class_name, "nantian");
        assert_eq!(parsed.metadata.generation, Some(3));
        remove(&mut res, gateway, &gw);
        assert!(res.gateways.is_empty());
    }

    #[test]
    fn an_object_the_typed_parse_refuses_is_dropped_with_the_reason() {
        let mut res = Resources::default();
        let gateway = WATCHED.iter().find(|k| k.kind == "Gateway").unwrap();
        let good = object(serde_json::json!({
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {"gatewayClassName": "nantian", "listeners": []}
        }));
        apply(&mut res, gateway, good).unwrap();
        let bad = object(serde_json::json!({
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {"gatewayClassName": 7}
        }));
        let err = apply(&mut res, gateway, bad).unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
        assert!(res.gateways.is_empty());
    }
}
