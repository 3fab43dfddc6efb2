//! HTTPRoute `CORS` filters → the configuration of the built-in cors Wasm component.
//!
//! The values are checked against the CRD's rules first: without an API server (standalone
//! mode) nothing else checks them, and a value the component refuses would get the whole
//! Gateway's snapshot NACKed instead of this one route rejected.

use std::sync::LazyLock;

use gateway_api::experimental::httproutes::HttpRouteRulesFiltersCors;
use regex::Regex;
use serde::Serialize;

/// The CRD's default `maxAge`, in seconds, which an API server would have filled in.
const DEFAULT_MAX_AGE: i32 = 5;

/// The CRD's `allowMethods` enum.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "*",
];

/// The CRD's `CORSOrigin` pattern.
static ORIGIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(^\*$)|(^(http(s)?):\/\/(((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:([0-9]{1,5}))?)$)",
    )
    .expect("the CRD's origin pattern compiles")
});

/// The CRD's `HTTPHeaderName` pattern.
static HEADER_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$").expect("the CRD's header name pattern compiles")
});

/// The component's configuration (shared contract with `filters/cors`): the
/// HTTPCORSFilter fields under their own names, defaults filled in.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CorsConfig {
    allow_origins: Vec<String>,
    allow_methods: Vec<String>,
    allow_headers: Vec<String>,
    expose_headers: Vec<String>,
    max_age: i32,
    allow_credentials: bool,
}

/// The component configuration for `cors`, or what the CRD would have refused.
pub(super) fn config(cors: &HttpRouteRulesFiltersCors) -> Result<CorsConfig, String> {
    let list = |values: &Option<Vec<String>>| values.clone().unwrap_or_default();
    let config = CorsConfig {
        allow_origins: list(&cors.allow_origins),
        allow_methods: list(&cors.allow_methods),
        allow_headers: list(&cors.allow_headers),
        expose_headers: list(&cors.expose_headers),
        max_age: cors.max_age.unwrap_or(DEFAULT_MAX_AGE),
        allow_credentials: cors.allow_credentials.unwrap_or(false),
    };
    for origin in &config.allow_origins {
        check_origin(origin).map_err(|e| format!("allowOrigins: {e}"))?;
    }
    if let Some(method) = config
        .allow_methods
        .iter()
        .find(|m| !METHODS.contains(&m.as_str()))
    {
        return Err(format!("allowMethods: unknown method {method:?}"));
    }
    for (field, names) in [
        ("allowHeaders", &config.allow_headers),
        ("exposeHeaders", &config.expose_headers),
    ] {
        if let Some(name) = names.iter().find(|n| !HEADER_NAME.is_match(n)) {
            return Err(format!("{field}: invalid header name {name:?}"));
        }
    }
    for (field, values) in [
        ("allowOrigins", &config.allow_origins),
        ("allowMethods", &config.allow_methods),
        ("allowHeaders", &config.allow_headers),
    ] {
        if values.len() > 1 && values.iter().any(|v| v == "*") {
            return Err(format!("{field} cannot contain '*' alongside other values"));
        }
    }
    if config.max_age < 1 {
        return Err(format!("maxAge must be at least 1, got {}", config.max_age));
    }
    Ok(config)
}

/// The CRD pattern, plus the port range its description gives (the pattern allows 0 and
/// up to 99999).
fn check_origin(origin: &str) -> Result<(), String> {
    let captures = ORIGIN
        .captures(origin)
        .ok_or_else(|| format!("invalid origin {origin:?}: expected http(s)://host[:port] or *"))?;
    if let Some(port) = captures.get(10) {
        let valid = port.as_str().parse::<u16>().is_ok_and(|p| p != 0);
        if !valid {
            return Err(format!(
                "invalid origin {origin:?}: the port must be between 1 and 65535"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(json: &str) -> HttpRouteRulesFiltersCors {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_are_filled_in_and_values_kept_as_written() {
        let config = config(&cors(
            r#"{"allowOrigins":["https://www.foo.com","https://*.bar.com:8443"],"allowMethods":["GET"]}"#,
        ))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&config).unwrap(),
            serde_json::json!({
                "allowOrigins": ["https://www.foo.com", "https://*.bar.com:8443"],
                "allowMethods": ["GET"],
                "allowHeaders": [],
                "exposeHeaders": [],
                "maxAge": 5,
                "allowCredentials": false,
            })
        );
    }

    #[test]
    fn what_the_crd_refuses_is_refused() {
        for (json, expected) in [
            (
                r#"{"allowOrigins":["www.foo.com"]}"#,
                "allowOrigins: invalid origin",
            ),
            (r#"{"allowOrigins":["https://a.*.com"]}"#, "invalid origin"),
            (
                r#"{"allowOrigins":["https://a.com:0"]}"#,
                "between 1 and 65535",
            ),
            (
                r#"{"allowOrigins":["https://a.com:70000"]}"#,
                "between 1 and 65535",
            ),
            (
                r#"{"allowOrigins":["*","https://a.com"]}"#,
                "allowOrigins cannot contain '*'",
            ),
            (r#"{"allowMethods":["get"]}"#, "unknown method"),
            (
                r#"{"allowMethods":["*","GET"]}"#,
                "allowMethods cannot contain '*'",
            ),
            (
                r#"{"allowHeaders":["x y"]}"#,
                "allowHeaders: invalid header name",
            ),
            (
                r#"{"allowHeaders":["*","x"]}"#,
                "allowHeaders cannot contain '*'",
            ),
            (
                r#"{"exposeHeaders":[":path"]}"#,
                "exposeHeaders: invalid header name",
            ),
            (r#"{"maxAge":0}"#, "maxAge must be at least 1"),
        ] {
            let err = config(&cors(json)).unwrap_err();
            assert!(err.contains(expected), "{json}: {err}");
        }
        // exposeHeaders may mix `*` with names: the CRD has no rule against it.
        assert!(
            config(&cors(
                r#"{"exposeHeaders":["*","x-a"],"allowOrigins":["*"]}"#
            ))
            .is_ok()
        );
    }
}
