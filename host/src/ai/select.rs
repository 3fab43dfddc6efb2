//! Which AIService backends one LLM request tries, in order: the backend its model routes
//! to (weighted, or sticky by a client key), then the fallbacks.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use http::uri::Authority;
use serde::Deserialize;
use smallvec::SmallVec;

use super::metrics::{BackendSeries, LimitRejections};
use super::spec::{AiServiceSpec, ModelPattern, Provider, StickyKey};
use crate::filter_chain::ChainStep;
use crate::metrics::Metrics;
use crate::snapshot::Weighted;
use crate::upstream::Upstream;

/// An AIService ready to serve one rule.
pub struct AiService {
    pub name: Box<str>,
    pub backends: Box<[AiBackend]>,
    routing: Box<[(ModelPattern, Weighted<usize>)]>,
    /// For models no routing entry matches: the backends listing each model.
    listed: HashMap<Box<str>, Weighted<usize>>,
    /// Backends serving any model (an empty `models`), then all of them when there are none.
    any_model: Weighted<usize>,
    fallback: Box<[usize]>,
    pub max_request_bytes: usize,
    /// Requests the rule's token limits refused.
    pub rejections: LimitRejections,
    sticky: Option<StickyKey>,
    /// Sticky picks hash with a fixed key so every host of a Gateway agrees.
    hasher: std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>,
}

pub struct AiBackend {
    pub name: Box<str>,
    /// Its series: tokens, answers, latencies, fallbacks.
    pub series: BackendSeries,
    pub provider: Provider,
    pub upstream: Arc<Upstream>,
    pub models: Box<[Box<str>]>,
    pub authority: Authority,
    pub auth: Option<(HeaderName, HeaderValue)>,
    pub filters: Box<[ChainStep]>,
}

/// The fields of an LLM request body routing looks at; every API puts them at the top
/// level (Anthropic's user under `metadata`). The rest of the body is skipped, not built.
#[derive(Deserialize, Default)]
pub struct RoutingFields {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

impl RoutingFields {
    /// A body that is not a JSON object routes as if it named no model; the adapter then
    /// answers it in the client's own error format.
    pub fn read(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    fn user(&self) -> Option<&str> {
        self.user
            .as_deref()
            .or_else(|| self.metadata.as_ref()?.user_id.as_deref())
    }
}

impl AiService {
    pub fn new(
        spec: &AiServiceSpec,
        route: &Arc<str>,
        metrics: &Metrics,
        policies: Vec<Arc<str>>,
        mut backend: impl FnMut(usize) -> (Arc<Upstream>, Box<[ChainStep]>),
    ) -> Self {
        let weighted = |indexes: &mut dyn Iterator<Item = usize>| {
            Weighted::new(indexes.map(|i| (spec.backends[i].weight, i)))
        };
        let routing = spec
            .routing
            .iter()
            .map(|(pattern, indexes)| (pattern.clone(), weighted(&mut indexes.iter().copied())))
            .collect();
        let mut by_model: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        for (i, b) in spec.backends.iter().enumerate() {
            for model in &b.models {
                by_model.entry(model.clone()).or_default().push(i);
            }
        }
        let listed = by_model
            .into_iter()
            .map(|(model, indexes)| (model, weighted(&mut indexes.into_iter())))
            .collect();
        let serving_any: Vec<usize> = (0..spec.backends.len())
            .filter(|&i| spec.backends[i].models.is_empty())
            .collect();
        let any_model = if serving_any.is_empty() {
            weighted(&mut (0..spec.backends.len()))
        } else {
            weighted(&mut serving_any.into_iter())
        };
        // The model names metrics label by: the ones the configuration names.
        let mut configured: Vec<Arc<str>> = spec
            .backends
            .iter()
            .flat_map(|b| b.models.iter().map(|m| Arc::from(&**m)))
            .chain(spec.routing.iter().filter_map(|(p, _)| match p {
                ModelPattern::Exact(name) => Some(Arc::from(&**name)),
                ModelPattern::Any | ModelPattern::Prefix(_) => None,
            }))
            .collect();
        configured.sort();
        configured.dedup();
        let backends = spec
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (upstream, filters) = backend(i);
                AiBackend {
                    series: metrics
                        .ai
                        .backend(route, &b.name, b.provider.as_str(), &configured),
                    name: b.name.clone(),
                    provider: b.provider,
                    upstream,
                    models: b.models.clone().into_boxed_slice(),
                    authority: b.authority.clone(),
                    auth: b.auth.clone(),
                    filters,
                }
            })
            .collect();
        AiService {
            name: spec.name.clone(),
            backends,
            routing,
            listed,
            any_model,
            fallback: spec.fallback.clone().into_boxed_slice(),
            max_request_bytes: spec.max_request_bytes,
            rejections: metrics.ai.rejections(route, policies),
            sticky: spec.sticky.clone(),
            hasher: Default::default(),
        }
    }

    /// The backends to try for a request, first the routed one, then the fallbacks
    /// (each once). Empty when nothing can serve the model (all weights 0, no fallback).
    pub fn attempts(&self, fields: &RoutingFields, headers: &HeaderMap) -> SmallVec<[usize; 4]> {
        let model = fields.model.as_deref().unwrap_or("");
        let candidates = self.candidates(model);
        let sticky = match &self.sticky {
            Some(StickyKey::Header(name)) => headers.get(name).map(|v| v.as_bytes()),
            Some(StickyKey::User) => fields.user().map(str::as_bytes),
            None => None,
        };
        let first = match sticky {
            Some(key) => {
                let mut hasher = self.hasher.build_hasher();
                hasher.write(key);
                candidates.pick_by(hasher.finish())
            }
            None => candidates.pick(),
        };
        let mut order: SmallVec<[usize; 4]> = first.copied().into_iter().collect();
        for &i in self.fallback.iter() {
            if !order.contains(&i) {
                order.push(i);
            }
        }
        order
    }

    fn candidates(&self, model: &str) -> &Weighted<usize> {
        if let Some((_, backends)) = self.routing.iter().find(|(p, _)| p.matches(model)) {
            return backends;
        }
        self.listed.get(model).unwrap_or(&self.any_model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::spec::AiBackendSpec;
    use crate::config::UpstreamProtocol;
    use crate::upstream::UpstreamClient;

    fn backend(name: &str, models: &[&str], weight: u32) -> AiBackendSpec {
        AiBackendSpec {
            name: name.into(),
            provider: Provider::OpenAi,
            backend: format!("backend/{name}"),
            models: models.iter().map(|m| (*m).into()).collect(),
            weight,
            authority: "127.0.0.1:1".parse().unwrap(),
            auth: None,
            filters: Vec::new(),
        }
    }

    fn service(spec: AiServiceSpec) -> AiService {
        let client = Arc::new(UpstreamClient::new(UpstreamProtocol::Http1, None));
        AiService::new(
            &spec,
            &Arc::from("route/t"),
            &Metrics::new(),
            Vec::new(),
            |i| {
                let upstream = Upstream::new(
                    Arc::from(spec.backends[i].backend.as_str()),
                    client.clone(),
                    Vec::new(),
                    prometheus_client::metrics::histogram::Histogram::new([1.0]),
                );
                (Arc::new(upstream), Box::default())
            },
        )
    }

    fn spec(backends: Vec<AiBackendSpec>) -> AiServiceSpec {
        AiServiceSpec {
            name: "aiservice/ns/llm".into(),
            backends,
            routing: Vec::new(),
            fallback: Vec::new(),
            max_request_bytes: 1024,
            sticky: None,
        }
    }

    fn body(json: &str) -> RoutingFields {
        RoutingFields::read(json.as_bytes())
    }

    #[test]
    fn routing_entries_then_listed_models_then_any_model_backends() {
        let mut s = spec(vec![
            backend("gpt", &["gpt-4o"], 1),
            backend("claude", &["claude-3"], 1),
            backend("anything", &[], 1),
        ]);
        s.routing = vec![(ModelPattern::parse("claude*"), vec![1])];
        let ai = service(s);
        let h = HeaderMap::new();
        assert_eq!(&ai.attempts(&body(r#"{"model":"claude-9"}"#), &h)[..], [1]);
        assert_eq!(&ai.attempts(&body(r#"{"model":"gpt-4o"}"#), &h)[..], [0]);
        assert_eq!(&ai.attempts(&body(r#"{"model":"llama"}"#), &h)[..], [2]);
        // No model (or not JSON at all): a backend serving any model, whose adapter then
        // answers in the client's error format.
        assert_eq!(&ai.attempts(&body("not json"), &h)[..], [2]);
    }

    #[test]
    fn fallbacks_follow_the_pick_once_each() {
        let mut s = spec(vec![
            backend("a", &[], 1),
            backend("b", &[], 0),
            backend("c", &[], 0),
        ]);
        s.fallback = vec![2, 0, 1];
        let ai = service(s);
        let order = ai.attempts(&body(r#"{"model":"m"}"#), &HeaderMap::new());
        assert_eq!(&order[..], [0, 2, 1]);
    }

    #[test]
    fn weight_zero_backends_only_serve_as_fallbacks() {
        let mut s = spec(vec![backend("a", &[], 0)]);
        let ai = service(s.clone());
        assert!(ai.attempts(&body("{}"), &HeaderMap::new()).is_empty());
        s.fallback = vec![0];
        let ai = service(s);
        assert_eq!(&ai.attempts(&body("{}"), &HeaderMap::new())[..], [0]);
    }

    #[test]
    fn a_sticky_key_keeps_its_backend_and_keys_spread() {
        let mut s = spec((0..4).map(|i| backend(&format!("b{i}"), &[], 1)).collect());
        s.sticky = Some(StickyKey::Header(HeaderName::from_static("x-user")));
        let by_header = service(s.clone());
        s.sticky = Some(StickyKey::User);
        let by_user = service(s);
        let mut seen = std::collections::BTreeSet::new();
        for user in 0..64 {
            let mut h = HeaderMap::new();
            h.insert("x-user", HeaderValue::from(user));
            let first = by_header.attempts(&body("{}"), &h)[0];
            for _ in 0..5 {
                assert_eq!(by_header.attempts(&body("{}"), &h)[0], first);
            }
            seen.insert(first);
            let openai = format!(r#"{{"model":"m","user":"u{user}"}}"#);
            let anthropic = format!(r#"{{"model":"m","metadata":{{"user_id":"u{user}"}}}}"#);
            let pick = by_user.attempts(&body(&openai), &HeaderMap::new())[0];
            assert_eq!(
                by_user.attempts(&body(&anthropic), &HeaderMap::new())[0],
                pick
            );
        }
        assert_eq!(
            seen.len(),
            4,
            "64 keys should reach all 4 backends: {seen:?}"
        );
    }
}
