//! `AIService`: LLM backends behind the gateway, chosen by the requested model.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{
    DNS_LABEL, GATEWAY_API_GROUP, HEADER_NAME, ObjectKeyReference, PolicyTargetReference,
    target_refs_kinds, target_refs_unique,
};

/// An AIService puts LLM backends behind the routes it is attached to: a request names a model
/// (the `model` field of an OpenAI- or Anthropic-style body), `routing` picks the backends that
/// serve it (weighted), and `fallback` lists the backends tried in order when those fail.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "gateway.nantian.dev",
    version = "v1alpha1",
    kind = "AIService",
    plural = "aiservices",
    shortname = "aisvc",
    category = "nantian",
    namespaced,
    status = "AIServiceStatus",
    derive = "PartialEq",
    doc = "LLM backends behind the gateway, routed by the requested model with an ordered fallback.",
    printcolumn(
        name = "Fallback",
        type_ = "string",
        json_path = ".spec.fallback",
        priority = 1
    ),
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
#[x_kube(validation = Rule::new(
    "!has(self.routing) || self.routing.all(r, r.backends.all(n, self.backends.exists(b, b.name == n)))"
).message("every backend named in routing must be listed in backends"))]
#[x_kube(validation = Rule::new(
    "!has(self.fallback) || self.fallback.all(n, self.backends.exists(b, b.name == n))"
).message("every backend named in fallback must be listed in backends"))]
#[serde(rename_all = "camelCase")]
pub struct AIServiceSpec {
    /// The LLM backends, each named uniquely.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = Rule::new("self.all(a, self.exists_one(b, a.name == b.name))")
            .message("backend names must be unique"),
        merge_strategy = ListMerge::Map(vec!["name".into()])
    )]
    pub backends: Vec<AIServiceBackend>,
    /// Which backends serve which models, first match wins. A request whose model no entry
    /// matches goes to the backends whose `models` list it (all of them when none does); the
    /// chosen backends share requests by `weight`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub routing: Vec<ModelRoute>,
    /// Backend names tried in order when the chosen backend fails (connection error, timeout,
    /// 429 or 5xx) before any of its response was sent to the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 63), pattern(DNS_LABEL)))]
    pub fallback: Vec<String>,
    /// The Gateways or HTTPRoutes (in this namespace) whose requests this AIService serves.
    /// Absent: only routes whose backendRefs name this AIService use it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(
        validation = target_refs_unique(),
        validation = target_refs_kinds(&[(GATEWAY_API_GROUP, "Gateway"), (GATEWAY_API_GROUP, "HTTPRoute")])
    )]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Keeps a client on one backend when `routing` splits a model's requests between
    /// several: the key named here is hashed to choose. Absent: each request is routed
    /// afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
}

/// One LLM backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIServiceBackend {
    /// The backend's name, used by `routing` and `fallback`.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL))]
    pub name: String,
    /// The API the backend speaks.
    pub provider: Provider,
    /// The backend's base URL, e.g. `https://api.openai.com/v1` or
    /// `http://ollama.models.svc:11434`.
    #[schemars(length(min = 1, max = 2048), pattern(r"^https?://[^\s/?#]+[^\s]*$"))]
    pub endpoint: String,
    /// The models this backend serves, as clients name them. Empty: any model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub models: Vec<String>,
    /// The credential sent to the backend. Absent: requests go unauthenticated (e.g. Ollama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BackendAuth>,
    /// The backend's share of the requests routed to it together with others, relative to
    /// their weights; 0 sends it none unless it is a fallback.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// The API an LLM backend speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Provider {
    /// The OpenAI API (`/v1/chat/completions`), also spoken by many compatible servers.
    #[serde(rename = "openai")]
    OpenAI,
    /// The Anthropic Messages API (`/v1/messages`).
    #[serde(rename = "anthropic")]
    Anthropic,
    /// An Ollama server (`/api/chat`).
    #[serde(rename = "ollama")]
    Ollama,
}

/// A credential for an LLM backend, read from a Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendAuth {
    /// The Secret key holding the API key, in the AIService's namespace.
    pub secret_ref: ObjectKeyReference,
    /// The request header that carries the key, sent as is. Absent: the provider's own
    /// (`Authorization: Bearer <key>` for openai and ollama, `x-api-key: <key>` for anthropic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), pattern(HEADER_NAME))]
    pub header: Option<String>,
}

/// The backends for requests asking for a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelRoute {
    /// The model this entry matches: an exact name (`gpt-4o`), a prefix ending in `*`
    /// (`gpt-4*` matches `gpt-4o` and `gpt-4.1`), or `*` for any model.
    #[schemars(length(min = 1, max = 253), pattern(r"^[^*\s]*\*?$"))]
    pub model: String,
    /// The names of the backends that serve it, sharing requests by their `weight`.
    #[schemars(
        length(min = 1, max = 16),
        inner(length(min = 1, max = 63), pattern(DNS_LABEL))
    )]
    pub backends: Vec<String>,
}

/// What keeps a client on one backend of a weighted split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.header) == (self.type == 'header')")
    .message("header is required when type is header, and allowed only then"))]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinity {
    /// The kind of key.
    #[serde(rename = "type")]
    pub type_: AffinityType,
    /// The request header whose value is the key; only with type `header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), pattern(HEADER_NAME))]
    pub header: Option<String>,
}

/// The kinds of key an AIService keeps clients on one backend by. Requests without the key
/// are routed afresh each time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AffinityType {
    /// The value of the request header named by `header`.
    Header,
    /// The end user the request names (the body's `user`, or Anthropic's
    /// `metadata.user_id`).
    User,
}

/// The observed state of an AIService.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIServiceStatus {
    /// The AIService's conditions (such as `Accepted`), one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the conditions were computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
