//! Nantian's own custom resources (`gateway.nantian.dev/v1alpha1`), one file per kind.
//!
//! - [`AIService`] (`aiservices`): LLM backends behind one OpenAI-style endpoint, routed by model
//!   with an ordered fallback.
//! - [`TokenPolicy`] (`tokenpolicies`): token and request budgets per key, attached to Gateways,
//!   HTTPRoutes or AIServices.
//! - [`WasmPlugin`] (`wasmplugins`): a user's Wasm filter component attached to Gateways or
//!   routes.
//!
//! The schemas are derived from these types (`CustomResourceExt::crd()`), with OpenAPI
//! validation and CEL rules so the API server refuses bad input. The generated YAML lives in
//! `charts/nantian/crds/`; `cargo xtask gen` rewrites it and `controller/tests/manifests.rs`
//! fails when it drifts. Unknown fields are pruned by the API server, so the types do not deny
//! them (an older controller must still read objects written for a newer schema).

mod ai_service;
mod token_policy;
mod wasm_plugin;

pub use ai_service::{
    AIService, AIServiceBackend, AIServiceSpec, AIServiceStatus, AffinityType, BackendAuth,
    CustomPiiDetector, ModelRoute, PiiAction, PiiDetector, PiiDirection, PiiMask, Provider,
    SessionAffinity,
};
pub use token_policy::{
    KeyType, OnLimit, RateLimitKey, RedisStorage, Storage, StorageType, TokenLimits, TokenPolicy,
    TokenPolicySpec, TokenPolicyStatus,
};
pub use wasm_plugin::{
    FailStrategy, Phase, WasmLimits, WasmPlugin, WasmPluginSpec, WasmPluginStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::core::{Message, Rule};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Nantian custom resource.
pub const GROUP: &str = "gateway.nantian.dev";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// The Gateway API group, the usual target of `targetRefs`.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// Every Nantian CRD, in a stable order (by plural name).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![AIService::crd(), TokenPolicy::crd(), WasmPlugin::crd()]
}

/// A DNS subdomain (RFC 1123), the shape of most Kubernetes object names.
pub(crate) const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A DNS label (RFC 1123): lower case alphanumerics and `-`, at most 63 characters.
pub(crate) const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// An HTTP header name (RFC 7230 token), as Gateway API's `HTTPHeaderName`.
pub(crate) const HEADER_NAME: &str = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$";
/// A key of a Secret or ConfigMap's data.
pub(crate) const DATA_KEY: &str = r"^[-._a-zA-Z0-9]+$";

/// A reference to the object a policy applies to, as Gateway API's
/// `LocalPolicyTargetReferenceWithSectionName`: an object in the policy's own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    /// The API group of the target, e.g. `gateway.networking.k8s.io`.
    #[schemars(
        length(max = 253),
        pattern(r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub group: String,
    /// The kind of the target, e.g. `Gateway` or `HTTPRoute`.
    #[schemars(
        length(min = 1, max = 63),
        pattern(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
    )]
    pub kind: String,
    /// The name of the target, in the policy's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// A section of the target: a Gateway listener's name or a route rule's name. Absent: the
    /// whole target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN))]
    pub section_name: Option<String>,
}

/// A key in a Secret or ConfigMap of the object's own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectKeyReference {
    /// The name of the Secret or ConfigMap, in the referring object's namespace.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN))]
    pub name: String,
    /// The key within its data.
    #[schemars(length(min = 1, max = 253), pattern(DATA_KEY))]
    pub key: String,
}

/// CEL: no two targetRefs name the same target (and section).
pub(crate) fn target_refs_unique() -> Rule {
    Rule::new(
        "self.all(a, self.exists_one(b, a.group == b.group && a.kind == b.kind && a.name == b.name \
         && (has(a.sectionName) ? a.sectionName : '') == (has(b.sectionName) ? b.sectionName : '')))",
    )
    .message("targetRefs must be unique")
}

/// CEL: every targetRef is one of `kinds`, each a `(group, kind)` pair.
pub(crate) fn target_refs_kinds(kinds: &[(&str, &str)]) -> Rule {
    let allowed = kinds
        .iter()
        .map(|(group, kind)| format!("(t.group == '{group}' && t.kind == '{kind}')"))
        .collect::<Vec<_>>()
        .join(" || ");
    let names = kinds
        .iter()
        .map(|(group, kind)| format!("{kind}.{group}"))
        .collect::<Vec<_>>()
        .join(", ");
    Rule::new(format!("self.all(t, {allowed})")).message(Message::Message(format!(
        "targetRefs may name only {names}"
    )))
}

#[cfg(test)]
mod tests;
