//! `AiService` (the IR of an AIService behind one rule) → [`AiServiceSpec`], validated:
//! providers known, indexes in range, credentials and authorities usable as headers.

use http::header::{HeaderName, HeaderValue};
use http::uri::Authority;
use nantian_proto::config as pb;

use crate::config::{ConfigError, FilterSpec, invalid};

/// The request body the host reads for routing when the IR names no limit. The
/// ai-adapter holds a request and its translation at once, within its 64 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 << 20;

/// The API a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Anthropic,
    Ollama,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Ollama => "ollama",
        }
    }
}

/// Which models a routing entry matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
}

impl ModelPattern {
    pub fn parse(text: &str) -> Self {
        match text.strip_suffix('*') {
            Some("") => ModelPattern::Any,
            Some(prefix) => ModelPattern::Prefix(prefix.into()),
            None => ModelPattern::Exact(text.into()),
        }
    }

    pub fn matches(&self, model: &str) -> bool {
        match self {
            ModelPattern::Any => true,
            ModelPattern::Exact(name) => **name == *model,
            ModelPattern::Prefix(prefix) => model.starts_with(&**prefix),
        }
    }
}

/// What keeps a client on one backend of a weighted split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    Header(HeaderName),
    /// The body's `user` (OpenAI, Ollama) or `metadata.user_id` (Anthropic).
    User,
}

#[derive(Debug, Clone)]
pub struct AiServiceSpec {
    pub name: Box<str>,
    pub backends: Vec<AiBackendSpec>,
    pub routing: Vec<(ModelPattern, Vec<usize>)>,
    pub fallback: Vec<usize>,
    pub max_request_bytes: usize,
    pub sticky: Option<StickyKey>,
}

#[derive(Debug, Clone)]
pub struct AiBackendSpec {
    pub name: Box<str>,
    pub provider: Provider,
    /// A Backend resource of the snapshot.
    pub backend: String,
    pub models: Vec<Box<str>>,
    pub weight: u32,
    pub authority: Authority,
    pub auth: Option<(HeaderName, HeaderValue)>,
    pub filters: Vec<FilterSpec>,
}

impl AiServiceSpec {
    /// `convert_filters` turns the IR's filter lists into specs (it lives with the route
    /// decoding, which shares it).
    pub fn decode(
        pb: &pb::AiService,
        convert_filters: impl Fn(&[pb::RouteFilter]) -> Result<Vec<FilterSpec>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        if pb.backends.is_empty() {
            return Err(invalid("ai service", &pb.name, "has no backends"));
        }
        let index = |field: &'static str, i: u32| -> Result<usize, ConfigError> {
            usize::try_from(i)
                .ok()
                .filter(|i| *i < pb.backends.len())
                .ok_or_else(|| invalid(field, i, "is not a backend index"))
        };
        let backends = pb
            .backends
            .iter()
            .map(|b| AiBackendSpec::decode(b, &convert_filters))
            .collect::<Result<_, _>>()?;
        let routing = pb
            .routing
            .iter()
            .map(|r| {
                if r.backends.is_empty() {
                    return Err(invalid("ai routing", &r.model, "names no backends"));
                }
                let backends = r
                    .backends
                    .iter()
                    .map(|&i| index("ai routing backend", i))
                    .collect::<Result<_, _>>()?;
                Ok((ModelPattern::parse(&r.model), backends))
            })
            .collect::<Result<_, _>>()?;
        let fallback = pb
            .fallback
            .iter()
            .map(|&i| index("ai fallback", i))
            .collect::<Result<_, _>>()?;
        let max_request_bytes = match pb.max_request_bytes {
            0 => DEFAULT_MAX_REQUEST_BYTES,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let sticky = match pb.sticky_key.as_str() {
            "" => None,
            "user" => Some(StickyKey::User),
            name => Some(StickyKey::Header(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| invalid("ai sticky key", name, "not a header name or \"user\""))?,
            )),
        };
        Ok(AiServiceSpec {
            name: pb.name.as_str().into(),
            backends,
            routing,
            fallback,
            max_request_bytes,
            sticky,
        })
    }
}

impl AiBackendSpec {
    fn decode(
        pb: &pb::AiBackend,
        convert_filters: impl Fn(&[pb::RouteFilter]) -> Result<Vec<FilterSpec>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let provider = match pb.provider.as_str() {
            "openai" => Provider::OpenAi,
            "anthropic" => Provider::Anthropic,
            "ollama" => Provider::Ollama,
            other => {
                return Err(ConfigError::Unsupported {
                    field: "ai provider",
                    value: other.to_string(),
                });
            }
        };
        if pb.backend.is_empty() {
            return Err(invalid("ai backend", &pb.name, "names no Backend"));
        }
        let authority = pb
            .authority
            .parse::<Authority>()
            .map_err(|e| invalid("ai backend authority", &pb.authority, e))?;
        let auth = match pb.auth_header.as_str() {
            "" => None,
            name => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| invalid("ai auth header", name, "not a header name"))?;
                // The value is a secret: the error names the backend, never the value.
                let mut value = HeaderValue::from_str(&pb.auth_value)
                    .map_err(|_| invalid("ai auth value", &pb.name, "not a valid header value"))?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        Ok(AiBackendSpec {
            name: pb.name.as_str().into(),
            provider,
            backend: pb.backend.clone(),
            models: pb.models.iter().map(|m| m.as_str().into()).collect(),
            weight: pb.weight,
            authority,
            auth,
            filters: convert_filters(&pb.filters)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_patterns() {
        assert!(ModelPattern::parse("*").matches("anything"));
        assert!(ModelPattern::parse("gpt-4*").matches("gpt-4o"));
        assert!(!ModelPattern::parse("gpt-4*").matches("gpt-3.5"));
        assert!(ModelPattern::parse("claude").matches("claude"));
        assert!(!ModelPattern::parse("claude").matches("claude-3"));
    }

    fn backend(provider: &str) -> pb::AiBackend {
        pb::AiBackend {
            name: "b".into(),
            provider: provider.into(),
            backend: "backend/x".into(),
            authority: "127.0.0.1:9000".into(),
            weight: 1,
            ..Default::default()
        }
    }

    fn decode(pb: &pb::AiService) -> Result<AiServiceSpec, ConfigError> {
        AiServiceSpec::decode(pb, |_| Ok(Vec::new()))
    }

    #[test]
    fn bad_indexes_providers_and_credentials_are_rejected() {
        let mut ai = pb::AiService {
            name: "aiservice/ns/a".into(),
            backends: vec![backend("openai")],
            ..Default::default()
        };
        let spec = decode(&ai).unwrap();
        assert_eq!(spec.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
        ai.fallback = vec![1];
        assert!(
            decode(&ai)
                .unwrap_err()
                .to_string()
                .contains("backend index")
        );
        ai.fallback.clear();
        ai.backends[0].provider = "cohere".into();
        assert!(decode(&ai).unwrap_err().to_string().contains("cohere"));
        ai.backends[0] = backend("anthropic");
        ai.backends[0].auth_header = "x-api-key".into();
        ai.backends[0].auth_value = "sk-secret\n".into();
        let err = decode(&ai).unwrap_err().to_string();
        assert!(!err.contains("sk-secret"), "{err}");
    }
}
