//! `WasmPlugin`: a user's Wasm filter component, run in the filter chain of its targets.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::{Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::{
    GATEWAY_API_GROUP, ObjectKeyReference, PolicyTargetReference, target_refs_kinds,
    target_refs_unique,
};

/// A WasmPlugin runs a WebAssembly component implementing `nantian:filter` (see
/// `wit/README.md`) on the requests of its targets. The component comes from a URL, checked
/// against its SHA-256, or from a ConfigMap key.
///
/// Order on a request: `Authn` plugins, `Authz` plugins, the route's own filters (Gateway API
/// filters such as header modifiers and CORS), then `Default` plugins, then the backend;
/// responses pass back through them in reverse. Within a phase, higher `priority` runs first,
/// ties by namespace and name.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "gateway.nantian.dev",
    version = "v1alpha1",
    kind = "WasmPlugin",
    plural = "wasmplugins",
    shortname = "wasmp",
    category = "nantian",
    namespaced,
    status = "WasmPluginStatus",
    derive = "PartialEq",
    doc = "A Wasm filter component (nantian:filter) run on the requests of Gateways or routes.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".spec.phase"),
    printcolumn(name = "Priority", type_ = "integer", json_path = ".spec.priority"),
    printcolumn(name = "Fail", type_ = "string", json_path = ".spec.failStrategy"),
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url", priority = 1),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.url) != has(self.configMapRef)")
    .message("set exactly one of url and configMapRef"))]
#[x_kube(validation = Rule::new("!has(self.url) || has(self.sha256)")
    .message("sha256 is required with url"))]
#[serde(rename_all = "camelCase")]
pub struct WasmPluginSpec {
    /// The Gateways, HTTPRoutes or GRPCRoutes (in this namespace) whose requests the plugin
    /// sees. A Gateway target covers every route attached to it (or to the listener named by
    /// `sectionName`).
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(
        validation = target_refs_unique(),
        validation = target_refs_kinds(&[
            (GATEWAY_API_GROUP, "Gateway"),
            (GATEWAY_API_GROUP, "HTTPRoute"),
            (GATEWAY_API_GROUP, "GRPCRoute"),
        ])
    )]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Where to fetch the component: `https://` (a `.wasm` file) or `oci://` (an OCI artifact,
    /// `oci://registry/repository:tag`). Requires `sha256`; excludes `configMapRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), pattern(r"^(https|oci)://[^\s]+$"))]
    pub url: Option<String>,
    /// The component's bytes in a ConfigMap's `binaryData` key, in this namespace. Excludes
    /// `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ObjectKeyReference>,
    /// The SHA-256 of the component, 64 lower-case hex digits; a download that does not match
    /// is refused. Required with `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[a-f0-9]{64}$"))]
    pub sha256: Option<String>,
    /// The plugin's configuration, any JSON object, handed to the component's `init` as JSON
    /// bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub plugin_config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Where in the filter chain the plugin runs.
    #[serde(default)]
    pub phase: Phase,
    /// The order within a phase: higher runs first on the request.
    #[serde(default)]
    #[schemars(range(min = -1000, max = 1000))]
    pub priority: i32,
    /// What happens to a request when the plugin fails (traps, runs out of time or memory,
    /// or cannot be loaded).
    #[serde(default)]
    pub fail_strategy: FailStrategy,
    /// Resource limits per call. Absent: the host's defaults (16Mi of memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<WasmLimits>,
}

fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Where in the filter chain a WasmPlugin runs (see the WasmPlugin's description for the
/// order).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Phase {
    /// First: establish who the client is.
    Authn,
    /// After `Authn`: decide whether the client may proceed.
    Authz,
    /// Last, after the route's own filters, just before the backend.
    #[default]
    Default,
}

/// What a failing plugin does to the request.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum FailStrategy {
    /// The gateway answers 500.
    #[default]
    FailClosed,
    /// The request continues without this plugin.
    FailOpen,
}

/// Limits on each call into a plugin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WasmLimits {
    /// The most linear memory an instance may grow to, a Kubernetes quantity (`16Mi`,
    /// `64Mi`); the host caps it at 64Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), pattern(r"^[0-9]+(Ki|Mi|Gi|k|M|G)?$"))]
    pub memory: Option<String>,
    /// The most time one call may run, a duration (`5ms`, `1s`, `1m30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"))]
    pub time: Option<String>,
}

/// The observed state of a WasmPlugin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WasmPluginStatus {
    /// The WasmPlugin's conditions (such as `Accepted`), one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the conditions were computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
