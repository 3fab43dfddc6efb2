//! `TokenPolicy`: LLM token and request budgets per client key.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{
    GATEWAY_API_GROUP, GROUP, HEADER_NAME, PolicyTargetReference, target_refs_kinds,
    target_refs_unique,
};

/// A TokenPolicy limits how many LLM tokens (prompt plus completion, as the backend reports
/// them) and requests each key may use per minute, hour or day on its targets. A request that
/// would go over a limit is answered by the gateway (`onLimit`) and never reaches a backend.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "gateway.nantian.dev",
    version = "v1alpha1",
    kind = "TokenPolicy",
    plural = "tokenpolicies",
    shortname = "tokpol",
    category = "nantian",
    namespaced,
    status = "TokenPolicyStatus",
    derive = "PartialEq",
    doc = "Token and request budgets per client key for LLM traffic through Gateways, HTTPRoutes or AIServices.",
    printcolumn(name = "Key", type_ = "string", json_path = ".spec.key.type"),
    printcolumn(
        name = "Tokens/min",
        type_ = "integer",
        json_path = ".spec.limits.tokensPerMinute"
    ),
    printcolumn(
        name = "Requests/min",
        type_ = "integer",
        json_path = ".spec.limits.requestsPerMinute",
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
#[serde(rename_all = "camelCase")]
pub struct TokenPolicySpec {
    /// The Gateways, HTTPRoutes or AIServices (in this namespace) whose traffic is limited.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(
        validation = target_refs_unique(),
        validation = target_refs_kinds(&[
            (GATEWAY_API_GROUP, "Gateway"),
            (GATEWAY_API_GROUP, "HTTPRoute"),
            (GROUP, "AIService"),
        ])
    )]
    pub target_refs: Vec<PolicyTargetReference>,
    /// The budgets, each counted separately per key; a request is refused when any is spent.
    pub limits: TokenLimits,
    /// What the budgets are counted per.
    pub key: RateLimitKey,
    /// Tokens a key may spend at once beyond its steady per-minute rate (the extra depth of
    /// its token bucket). Absent: no burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub burst: Option<u64>,
    /// The gateway's answer to a request over a limit. Absent: 429 with a `Retry-After` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_limit: Option<OnLimit>,
    /// Where the counters live. Absent: in each gateway host's memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
}

/// Budgets per key; at least one must be set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new(
    "has(self.tokensPerMinute) || has(self.tokensPerHour) || has(self.tokensPerDay) || has(self.requestsPerMinute)"
).message("set at least one of tokensPerMinute, tokensPerHour, tokensPerDay and requestsPerMinute"))]
#[serde(rename_all = "camelCase")]
pub struct TokenLimits {
    /// LLM tokens per key per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u64>,
    /// LLM tokens per key per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_hour: Option<u64>,
    /// LLM tokens per key per day (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_day: Option<u64>,
    /// Requests per key per minute, whatever their token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<u64>,
}

/// What a TokenPolicy's budgets are counted per.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.header) == (self.type == 'header')")
    .message("header is required when type is header, and allowed only then"))]
#[serde(rename_all = "camelCase")]
pub struct RateLimitKey {
    /// The kind of key.
    #[serde(rename = "type")]
    pub type_: KeyType,
    /// The request header whose value is the key; only with type `header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), pattern(HEADER_NAME))]
    pub header: Option<String>,
}

/// The kinds of key a TokenPolicy counts per. Requests without the key share one budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum KeyType {
    /// The value of the request header named by `header`.
    Header,
    /// The client's API key (`Authorization: Bearer` or `x-api-key`), counted by its hash.
    ApiKey,
    /// The end user the request names (the body's `user`, or Anthropic's `metadata.user_id`).
    User,
    /// The requested model: one budget per model, shared by every client.
    Model,
}

/// The gateway's answer to a request over a limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnLimit {
    /// The HTTP status code.
    #[serde(default = "default_status_code")]
    #[schemars(range(min = 400, max = 599))]
    pub status_code: u16,
    /// The response body (an OpenAI-style JSON error carrying this message). Absent: a
    /// generic message naming the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
    /// Whether to send `Retry-After` with the seconds until the key has budget again.
    #[serde(default = "yes")]
    pub retry_after: bool,
}

impl Default for OnLimit {
    fn default() -> Self {
        OnLimit {
            status_code: default_status_code(),
            message: None,
            retry_after: true,
        }
    }
}

fn default_status_code() -> u16 {
    429
}

fn yes() -> bool {
    true
}

/// Where a TokenPolicy's counters live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.redis) == (self.type == 'redis')")
    .message("redis is required when type is redis, and allowed only then"))]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// The kind of storage.
    #[serde(rename = "type")]
    pub type_: StorageType,
    /// The Redis server; only with type `redis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisStorage>,
}

/// The kinds of counter storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StorageType {
    /// Each gateway host counts on its own: with N replicas a key may use up to N times its
    /// budget.
    Local,
    /// Counters shared by every host in a Redis server.
    Redis,
}

/// A Redis server holding shared counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisStorage {
    /// The server's URL: `redis://host:port/db`, or `rediss://` for TLS.
    #[schemars(length(min = 1, max = 2048), pattern(r"^rediss?://[^\s]+$"))]
    pub url: String,
}

/// The observed state of a TokenPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPolicyStatus {
    /// The TokenPolicy's conditions (such as `Accepted`), one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the conditions were computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
