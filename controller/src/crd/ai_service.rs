//! `AIService`: LLM backends behind the gateway, chosen by the requested model.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::{Message, Rule};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{DNS_LABEL, HEADER_NAME, ObjectKeyReference};

/// An AIService puts LLM backends behind the HTTPRoute rules whose only backendRef names it:
/// a request names a model (the `model` field of an OpenAI- or Anthropic-style body),
/// `routing` picks the backends that serve it (weighted), and `fallback` lists the backends
/// tried in order when those fail.
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
    /// Keeps a client on one backend when `routing` splits a model's requests between
    /// several: the key named here is hashed to choose. Absent: each request is routed
    /// afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
    /// Finds personal data (e-mail addresses, phone and card numbers, …) in the text of
    /// requests and answers, streamed ones included, and masks it or refuses the request.
    /// Absent: nothing is masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii_mask: Option<PiiMask>,
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

/// What personal data is looked for, and what is done with it. Only the text of the
/// conversation is scanned (message contents, the system prompt, tool results, the answer's
/// text), never model names, ids or tool-call arguments. What is found is replaced by a
/// placeholder naming its kind (`[EMAIL]`, `[PHONE]`, `[CREDIT_CARD]`, `[SSN]`, `[IPV4]`,
/// `[IPV6]`, `[IBAN]`, or a custom detector's name in upper case), by `[REDACTED]`, or the
/// request is refused with a 400 in the client's own API error format, naming the kinds
/// found but never the values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new(
    "!has(self.detectors) || size(self.detectors) > 0 || (has(self.custom) && size(self.custom) > 0)"
).message("detectors is empty and there are no custom detectors: nothing would be detected"))]
#[x_kube(validation = pii_actions_name_detectors())]
#[serde(rename_all = "camelCase")]
pub struct PiiMask {
    /// The built-in detectors to run. Absent: all of them; empty: only the `custom` ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 7))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub detectors: Option<Vec<PiiDetector>>,
    /// Detectors of your own: named regular expressions, in the syntax of Rust's `regex`
    /// crate (close to RE2: no look-around, no backreferences). They run before the
    /// built-in ones and win ties with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(
        validation = Rule::new("self.all(a, self.exists_one(b, a.name == b.name))")
            .message("custom detector names must be unique"),
        merge_strategy = ListMerge::Map(vec!["name".into()])
    )]
    pub custom: Vec<CustomPiiDetector>,
    /// What is done with what any detector finds, unless `actions` says otherwise for it.
    #[serde(default)]
    pub action: PiiAction,
    /// The action of particular detectors, by name (a built-in detector enabled by
    /// `detectors`, or a custom one), overriding `action`. For example `{email: Reject}`
    /// refuses requests with e-mail addresses and masks everything else.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 71))]
    pub actions: BTreeMap<String, PiiAction>,
    /// Which messages are scanned: the client's requests, the backends' answers, or both.
    #[serde(default)]
    pub direction: PiiDirection,
}

/// CEL: every key of `actions` names a detector that runs.
fn pii_actions_name_detectors() -> Rule {
    let builtins = PiiDetector::ALL
        .map(|d| format!("'{}'", d.as_str()))
        .join(", ");
    Rule::new(format!(
        "!has(self.actions) || self.actions.all(k, (k in [{builtins}] && (!has(self.detectors) \
         || k in self.detectors)) || (has(self.custom) && self.custom.exists(c, c.name == k)))"
    ))
    .message(Message::Message(
        "every key of actions must name a built-in detector that detectors enables, or a \
         custom detector"
            .into(),
    ))
}

/// A built-in detector of personal data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PiiDetector {
    /// E-mail addresses (`jane.doe@example.com`).
    Email,
    /// Phone numbers: international ones starting with `+` (`+44 20 7946 0958`,
    /// `+1 (415) 555-2671`) and North American ones (`(415) 555-2671`, `415-555-2671`).
    Phone,
    /// Payment card numbers of 13 to 19 digits, whole or in groups (`4111 1111 1111 1111`),
    /// that pass the Luhn check.
    CreditCard,
    /// US Social Security numbers written with dashes (`123-45-6789`).
    Ssn,
    /// IPv4 addresses (`10.1.2.3`).
    Ipv4,
    /// IPv6 addresses (`fe80::1ff:fe23:4567:890a`).
    Ipv6,
    /// International bank account numbers that pass their check digits
    /// (`GB82WEST12345698765432`).
    Iban,
}

impl PiiDetector {
    /// Every built-in detector.
    pub const ALL: [PiiDetector; 7] = [
        PiiDetector::Email,
        PiiDetector::Phone,
        PiiDetector::CreditCard,
        PiiDetector::Ssn,
        PiiDetector::Ipv4,
        PiiDetector::Ipv6,
        PiiDetector::Iban,
    ];

    /// Its name as the spec writes it, in `detectors` and as a key of `actions`.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiDetector::Email => "email",
            PiiDetector::Phone => "phone",
            PiiDetector::CreditCard => "creditCard",
            PiiDetector::Ssn => "ssn",
            PiiDetector::Ipv4 => "ipv4",
            PiiDetector::Ipv6 => "ipv6",
            PiiDetector::Iban => "iban",
        }
    }
}

/// A detector of your own: a name and a regular expression.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = pii_custom_name_is_free())]
#[serde(rename_all = "camelCase")]
pub struct CustomPiiDetector {
    /// The detector's name, in `actions` and, upper-cased, in its placeholder
    /// (`employee-id` masks as `[EMPLOYEE-ID]`). Not the name of a built-in detector.
    #[schemars(length(min = 1, max = 64), pattern(DNS_LABEL))]
    pub name: String,
    /// The regular expression to look for, e.g. `EMP-[0-9]{6}`. It must not match the
    /// empty string.
    #[schemars(length(min = 1, max = 1024))]
    pub pattern: String,
}

/// CEL: a custom detector's name is not a built-in one's (its placeholder would be too).
fn pii_custom_name_is_free() -> Rule {
    let builtins = PiiDetector::ALL
        .map(|d| format!("'{}'", d.as_str().to_ascii_lowercase()))
        .join(", ");
    Rule::new(format!("!(self.name in [{builtins}])")).message(Message::Message(
        "a custom detector cannot take the name of a built-in one".into(),
    ))
}

/// What happens to a piece of personal data.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum PiiAction {
    /// Replaced by a placeholder naming its kind, such as `[EMAIL]`.
    #[default]
    Mask,
    /// Replaced by `[REDACTED]`.
    Redact,
    /// The request is refused (400) and never reaches a backend. An answer cannot be
    /// refused once it has started to stream, so in answers this masks instead.
    Reject,
}

impl PiiAction {
    /// Its name as the spec writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiAction::Mask => "Mask",
            PiiAction::Redact => "Redact",
            PiiAction::Reject => "Reject",
        }
    }
}

/// Which messages an AIService's PII mask scans.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum PiiDirection {
    /// The clients' requests, before they reach a backend.
    Request,
    /// The backends' answers, before they reach the client.
    Response,
    /// Both.
    #[default]
    Both,
}

impl PiiDirection {
    /// Its name as the spec writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiDirection::Request => "Request",
            PiiDirection::Response => "Response",
            PiiDirection::Both => "Both",
        }
    }
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
