//! BackendLBPolicy (gateway.networking.k8s.io/v1alpha2, Gateway API v1.2) and its successor
//! XBackendTrafficPolicy (gateway.networking.x-k8s.io/v1alpha1), plus the
//! `sessionPersistence` of HTTPRoute rules: typed here because the gateway-api crate's
//! standard channel has none of them. Both policy kinds load into [`LbPolicy`]: Nantian
//! gives them the same meaning. Fields this crate does not use (XBackendTrafficPolicy's
//! `retryConstraint`) are left to serde to skip.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

pub const BACKEND_LB_POLICY: &str = "BackendLBPolicy";
pub const X_BACKEND_TRAFFIC_POLICY: &str = "XBackendTrafficPolicy";

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LbPolicy {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: LbPolicySpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbPolicySpec {
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetRef>,
    #[serde(default)]
    pub session_persistence: Option<SessionPersistence>,
}

/// LocalPolicyTargetReference(WithSectionName).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetRef {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub section_name: Option<String>,
}

/// Gateway API SessionPersistence (`apis/v1/shared_types.go`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionPersistence {
    #[serde(default)]
    pub session_name: Option<String>,
    #[serde(default)]
    pub absolute_timeout: Option<String>,
    #[serde(default)]
    pub idle_timeout: Option<String>,
    /// "Cookie" (default) or "Header".
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub cookie_config: Option<CookieConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CookieConfig {
    /// "Session" (default) or "Permanent".
    #[serde(default)]
    pub lifetime_type: Option<String>,
}
