//! Prometheus series of LLM traffic: tokens in and out and requests by model, provider
//! and route; time to first token and the gaps between streamed chunks; fallbacks; requests
//! a token limit refused.
//!
//! Models are labelled only by names the configuration lists (a backend's `models`, an
//! exact `routing` entry); any other name a client sends counts as `other`, so clients
//! cannot mint series. Every series a request can touch is resolved when the snapshot is
//! built; the request path only bumps atomics (request counts by status excepted: a
//! family lookup per LLM call, which takes milliseconds to minutes anyway).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The label of models the configuration does not name.
pub const OTHER_MODEL: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    route: Arc<str>,
    backend: Arc<str>,
    provider: &'static str,
    model: Arc<str>,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    backend: Arc<str>,
    provider: &'static str,
    model: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    route: Arc<str>,
    backend: Arc<str>,
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    route: Arc<str>,
    policy: Arc<str>,
    limit: &'static str,
}

/// The limits a token-limit filter names in `ai.rate_limited` (see wit/README.md); any
/// other value counts as `other`, so a filter cannot mint series.
const LIMIT_NAMES: [&str; 4] = [
    "requests_per_minute",
    "tokens_per_minute",
    "tokens_per_hour",
    "tokens_per_day",
];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_buckets() -> Histogram {
    // 0.25 ms .. ~65 s: a local model's gaps to a slow provider's first token.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 19))
}

/// The AI families, registered once with the host's registry.
#[derive(Clone)]
pub struct AiMetrics {
    tokens: Family<TokenLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    first_token: HistogramFamily<BackendLabels>,
    inter_token: HistogramFamily<BackendLabels>,
    fallbacks: Family<BackendLabels, Counter>,
    limit_rejections: Family<RejectionLabels, Counter>,
}

impl AiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = AiMetrics {
            tokens: Family::default(),
            requests: Family::default(),
            first_token: Family::new_with_constructor(latency_buckets),
            inter_token: Family::new_with_constructor(latency_buckets),
            fallbacks: Family::default(),
            limit_rejections: Family::default(),
        };
        registry.register(
            "nantian_ai_tokens",
            "LLM tokens by direction (input: prompt, output: completion), as the backend reported them or, when it reported none, as the ai-adapter estimated them",
            metrics.tokens.clone(),
        );
        registry.register(
            "nantian_ai_requests",
            "LLM requests answered, by the backend that answered and the status sent",
            metrics.requests.clone(),
        );
        registry.register(
            "nantian_ai_time_to_first_token_seconds",
            "From the request's arrival to the first byte of the answer's body leaving for the client",
            metrics.first_token.clone(),
        );
        registry.register(
            "nantian_ai_inter_token_latency_seconds",
            "Gaps between the chunks of a streamed answer, as sent to the client",
            metrics.inter_token.clone(),
        );
        registry.register(
            "nantian_ai_fallbacks",
            "LLM requests a backend failed (connection, timeout, 429, 5xx) and the next fallback took, by the backend that failed",
            metrics.fallbacks.clone(),
        );
        registry.register(
            "nantian_ai_limit_rejections",
            "LLM requests a TokenPolicy refused before they reached a backend, by policy and the limit that was spent",
            metrics.limit_rejections.clone(),
        );
        metrics
    }

    /// The rejection counters of one route, for the TokenPolicies its rule names.
    pub fn rejections(&self, route: &Arc<str>, policies: Vec<Arc<str>>) -> LimitRejections {
        LimitRejections {
            route: route.clone(),
            policies: policies.into_boxed_slice(),
            family: self.limit_rejections.clone(),
        }
    }

    /// The series of one AIService backend on one route, for the models the
    /// configuration names.
    pub fn backend(
        &self,
        route: &Arc<str>,
        backend: &str,
        provider: &'static str,
        models: &[Arc<str>],
    ) -> BackendSeries {
        let backend: Arc<str> = Arc::from(backend);
        let labels = BackendLabels {
            route: route.clone(),
            backend: backend.clone(),
            provider,
        };
        let model_series = |model: Arc<str>| ModelSeries {
            input: self.tokens.get_or_create_owned(&TokenLabels {
                route: route.clone(),
                backend: backend.clone(),
                provider,
                model: model.clone(),
                direction: "input",
            }),
            output: self.tokens.get_or_create_owned(&TokenLabels {
                route: route.clone(),
                backend: backend.clone(),
                provider,
                model: model.clone(),
                direction: "output",
            }),
            model,
        };
        BackendSeries {
            by_model: models
                .iter()
                .map(|m| (m.clone(), model_series(m.clone())))
                .collect(),
            other: model_series(Arc::from(OTHER_MODEL)),
            first_token: self.first_token.get_or_create_owned(&labels),
            inter_token: self.inter_token.get_or_create_owned(&labels),
            fallbacks: self.fallbacks.get_or_create_owned(&labels),
            requests: self.requests.clone(),
            labels,
        }
    }
}

/// Requests refused by the token limits of one route.
pub struct LimitRejections {
    route: Arc<str>,
    /// `<namespace>/<name>` of the TokenPolicies bound on the route.
    policies: Box<[Arc<str>]>,
    family: Family<RejectionLabels, Counter>,
}

impl LimitRejections {
    /// Counts a refusal reported by a filter as (`policy`, `limit`); names the route's
    /// configuration does not know count as `other`.
    pub fn rejected(&self, policy: &str, limit: &str) {
        let policy = self
            .policies
            .iter()
            .find(|p| ***p == *policy)
            .cloned()
            .unwrap_or_else(|| Arc::from(OTHER_MODEL));
        let limit = LIMIT_NAMES
            .iter()
            .find(|l| **l == limit)
            .copied()
            .unwrap_or(OTHER_MODEL);
        self.family
            .get_or_create(&RejectionLabels {
                route: self.route.clone(),
                policy,
                limit,
            })
            .inc();
    }
}

/// Everything one backend of one route counts.
pub struct BackendSeries {
    by_model: HashMap<Arc<str>, ModelSeries>,
    other: ModelSeries,
    pub first_token: Histogram,
    pub inter_token: Histogram,
    pub fallbacks: Counter,
    requests: Family<RequestLabels, Counter>,
    labels: BackendLabels,
}

/// Token counters of one model.
pub struct ModelSeries {
    model: Arc<str>,
    pub input: Counter,
    pub output: Counter,
}

impl BackendSeries {
    /// The token counters for a requested model (`other` for names not configured).
    pub fn model(&self, model: &str) -> &ModelSeries {
        self.by_model.get(model).unwrap_or(&self.other)
    }

    pub fn answered(&self, model: &ModelSeries, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: self.labels.route.clone(),
                backend: self.labels.backend.clone(),
                provider: self.labels.provider,
                model: model.model.clone(),
                status,
            })
            .inc();
    }

    pub fn observe_first_token(&self, after: Duration) {
        self.first_token.observe(after.as_secs_f64());
    }

    pub fn observe_gap(&self, gap: Duration) {
        self.inter_token.observe(gap.as_secs_f64());
    }
}
