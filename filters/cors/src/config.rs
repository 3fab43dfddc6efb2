//! The filter's JSON configuration: the Gateway API `HTTPCORSFilter` fields under their own
//! (camelCase) names, as the controller writes them:
//!
//! ```json
//! {"allowOrigins": ["https://www.foo.com", "https://*.bar.com"], "allowMethods": ["GET"],
//!  "allowHeaders": ["x-a"], "exposeHeaders": ["x-b"], "maxAge": 5, "allowCredentials": true}
//! ```
//!
//! Every key may be absent (lists default to empty, `maxAge` to the spec's 5 seconds).
//! Everything is validated up front, so a bad origin or header name is a rejected
//! configuration rather than an invalid response header at request time.

use serde::Deserialize;

use crate::origin::{Origin, OriginPattern};

/// The spec's default `Access-Control-Max-Age`, in seconds.
const DEFAULT_MAX_AGE: u32 = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fields {
    #[serde(default)]
    allow_origins: Vec<String>,
    #[serde(default)]
    allow_methods: Vec<String>,
    #[serde(default)]
    allow_headers: Vec<String>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default = "default_max_age")]
    max_age: u32,
    #[serde(default)]
    allow_credentials: bool,
}

fn default_max_age() -> u32 {
    DEFAULT_MAX_AGE
}

/// A validated CORS policy.
#[derive(Debug)]
pub struct CorsConfig {
    pub origins: AllowedOrigins,
    pub methods: NameList,
    pub headers: NameList,
    pub expose: NameList,
    pub max_age: u32,
    pub allow_credentials: bool,
}

#[derive(Debug)]
pub enum AllowedOrigins {
    /// `*`: every origin, including ones that are not `http(s)://` (e.g. `null`).
    Any,
    /// Empty: no origin is allowed.
    Patterns(Vec<OriginPattern>),
}

/// allowMethods, allowHeaders or exposeHeaders.
#[derive(Debug, PartialEq)]
pub enum NameList {
    /// Not configured: the response header is left out.
    Empty,
    /// `*`.
    Any,
    /// The names, joined for the response header.
    Listed(String),
}

impl CorsConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let fields: Fields =
            serde_json::from_slice(bytes).map_err(|e| format!("CORS config is not valid: {e}"))?;
        let origins = if fields.allow_origins.iter().any(|o| o == "*") {
            AllowedOrigins::Any
        } else {
            AllowedOrigins::Patterns(
                fields
                    .allow_origins
                    .iter()
                    .map(|o| OriginPattern::parse(o))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("allowOrigins: {e}"))?,
            )
        };
        Ok(CorsConfig {
            origins,
            methods: name_list("allowMethods", "method", &fields.allow_methods)?,
            headers: name_list("allowHeaders", "header name", &fields.allow_headers)?,
            expose: name_list("exposeHeaders", "header name", &fields.expose_headers)?,
            max_age: fields.max_age,
            allow_credentials: fields.allow_credentials,
        })
    }

    /// Whether `origin` (the `Origin` header's value) may share the route's responses.
    pub fn allows_origin(&self, origin: &str) -> bool {
        match &self.origins {
            AllowedOrigins::Any => true,
            AllowedOrigins::Patterns(patterns) => Origin::parse(origin)
                .is_some_and(|origin| patterns.iter().any(|p| p.matches(&origin))),
        }
    }
}

/// Methods and header names are both RFC 9110 tokens, which is what the CRD allows (the
/// methods as an enum of them); `*` anywhere makes the list a wildcard.
fn name_list(field: &str, what: &str, names: &[String]) -> Result<NameList, String> {
    if names.iter().any(|n| n == "*") {
        return Ok(NameList::Any);
    }
    if names.is_empty() {
        return Ok(NameList::Empty);
    }
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || !n.bytes().all(is_tchar))
    {
        return Err(format!("{field}: invalid {what} {bad:?}"));
    }
    Ok(NameList::Listed(names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_optional() {
        let config = CorsConfig::parse(b"{}").unwrap();
        assert!(matches!(&config.origins, AllowedOrigins::Patterns(p) if p.is_empty()));
        assert_eq!(config.methods, NameList::Empty);
        assert_eq!(config.max_age, 5);
        assert!(!config.allow_credentials);
        assert!(!config.allows_origin("https://a.example"));
    }

    #[test]
    fn lists_are_joined_and_wildcards_recognised() {
        let config = CorsConfig::parse(
            br#"{"allowOrigins":["*"],"allowMethods":["GET","OPTIONS"],"allowHeaders":["*"],
                 "exposeHeaders":["x-header-3","x-header-4"],"maxAge":3600,"allowCredentials":true}"#,
        )
        .unwrap();
        assert!(config.allows_origin("null"));
        assert_eq!(config.methods, NameList::Listed("GET, OPTIONS".into()));
        assert_eq!(config.headers, NameList::Any);
        assert_eq!(
            config.expose,
            NameList::Listed("x-header-3, x-header-4".into())
        );
        assert_eq!(config.max_age, 3600);
        assert!(config.allow_credentials);
    }

    #[test]
    fn rejects_unknown_keys_bad_origins_and_names() {
        for (bad, expected) in [
            (r#"{"allowOrigin":[]}"#, "unknown field"),
            (
                r#"{"allowOrigins":["www.foo.com"]}"#,
                "allowOrigins: invalid origin",
            ),
            (
                r#"{"allowMethods":["GET POST"]}"#,
                "allowMethods: invalid method",
            ),
            (
                r#"{"allowHeaders":["x\r\ny"]}"#,
                "allowHeaders: invalid header name",
            ),
            (
                r#"{"exposeHeaders":[""]}"#,
                "exposeHeaders: invalid header name",
            ),
            (r#"{"maxAge":-1}"#, "not valid"),
            ("true", "not valid"),
        ] {
            let err = CorsConfig::parse(bad.as_bytes()).unwrap_err();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }
}
