//! The `Access-Control-*` headers a policy gives an allowed origin: on the answer to a
//! preflight, and on the actual response.
//!
//! Wildcards are answered with what the request asked for (its Origin,
//! Access-Control-Request-Method and -Headers) rather than with `*`. The spec allows either
//! when the request carries no credentials, but requires the echo when it may
//! (`allowCredentials: true`), since browsers reject `*` on credentialed requests; and
//! `*` in Access-Control-Allow-Headers would not cover `Authorization`. Echoing always keeps
//! one rule, correct in both cases.

use crate::config::{CorsConfig, NameList};

pub const ALLOW_ORIGIN: &str = "access-control-allow-origin";
pub const ALLOW_CREDENTIALS: &str = "access-control-allow-credentials";
pub const ALLOW_METHODS: &str = "access-control-allow-methods";
pub const ALLOW_HEADERS: &str = "access-control-allow-headers";
pub const EXPOSE_HEADERS: &str = "access-control-expose-headers";
pub const MAX_AGE: &str = "access-control-max-age";

/// What a preflight asked for.
pub struct PreflightRequest<'a> {
    /// `Origin`, already allowed.
    pub origin: &'a str,
    /// `Access-Control-Request-Method`.
    pub method: &'a str,
    /// `Access-Control-Request-Headers`, all values joined; empty when absent.
    pub headers: &'a str,
}

pub type Headers = Vec<(&'static str, String)>;

impl CorsConfig {
    /// The headers of a successful preflight answer.
    pub fn preflight_headers(&self, request: &PreflightRequest<'_>) -> Headers {
        let mut headers = self.origin_headers(request.origin);
        match &self.methods {
            NameList::Empty => {}
            NameList::Any => headers.push((ALLOW_METHODS, request.method.to_string())),
            NameList::Listed(methods) => headers.push((ALLOW_METHODS, methods.clone())),
        }
        match &self.headers {
            NameList::Empty => {}
            // Nothing requested, nothing to echo: the spec omits the header then.
            NameList::Any if request.headers.is_empty() => {}
            NameList::Any => headers.push((ALLOW_HEADERS, request.headers.to_string())),
            NameList::Listed(names) => headers.push((ALLOW_HEADERS, names.clone())),
        }
        // Expose-Headers matters on the actual response; it is sent here too because the
        // conformance suite expects it on preflights. A credentialed wildcard would have to
        // list the response's headers, and a preflight answer has none worth exposing.
        match &self.expose {
            NameList::Any if self.allow_credentials => {}
            _ => headers.extend(self.expose_header(Vec::new)),
        }
        headers.push((MAX_AGE, self.max_age.to_string()));
        headers
    }

    /// The headers added to the actual response. `response_header_names` is called only
    /// when exposeHeaders is `*` and credentials are allowed: `*` would not do then, so the
    /// response's own header names are listed instead.
    pub fn response_headers(
        &self,
        origin: &str,
        response_header_names: impl FnOnce() -> Vec<String>,
    ) -> Headers {
        let mut headers = self.origin_headers(origin);
        headers.extend(self.expose_header(response_header_names));
        headers
    }

    fn origin_headers(&self, origin: &str) -> Headers {
        let mut headers = vec![(ALLOW_ORIGIN, origin.to_string())];
        // Only when allowed: "false" is not a valid value, the header is left out instead.
        if self.allow_credentials {
            headers.push((ALLOW_CREDENTIALS, "true".to_string()));
        }
        headers
    }

    fn expose_header(
        &self,
        response_header_names: impl FnOnce() -> Vec<String>,
    ) -> Option<(&'static str, String)> {
        let value = match &self.expose {
            NameList::Empty => return None,
            NameList::Any if self.allow_credentials => {
                let names = response_header_names();
                if names.is_empty() {
                    return None;
                }
                names.join(", ")
            }
            NameList::Any => "*".to_string(),
            NameList::Listed(names) => names.clone(),
        };
        Some((EXPOSE_HEADERS, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> CorsConfig {
        CorsConfig::parse(json.as_bytes()).unwrap()
    }

    fn preflight<'a>(origin: &'a str, method: &'a str, headers: &'a str) -> PreflightRequest<'a> {
        PreflightRequest {
            origin,
            method,
            headers,
        }
    }

    fn get<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn listed_values_are_sent_as_configured() {
        let c = config(
            r#"{"allowOrigins":["https://www.foo.com"],"allowMethods":["GET","OPTIONS"],
                "allowHeaders":["x-header-1","x-header-2"],"exposeHeaders":["x-header-3"],
                "maxAge":3600,"allowCredentials":true}"#,
        );
        let h = c.preflight_headers(&preflight("https://www.foo.com", "GET", "x-header-1"));
        assert_eq!(
            h,
            [
                (ALLOW_ORIGIN, "https://www.foo.com".to_string()),
                (ALLOW_CREDENTIALS, "true".to_string()),
                (ALLOW_METHODS, "GET, OPTIONS".to_string()),
                (ALLOW_HEADERS, "x-header-1, x-header-2".to_string()),
                (EXPOSE_HEADERS, "x-header-3".to_string()),
                (MAX_AGE, "3600".to_string()),
            ]
        );
    }

    #[test]
    fn wildcards_echo_the_request() {
        let c = config(r#"{"allowOrigins":["*"],"allowMethods":["*"],"allowHeaders":["*"]}"#);
        let h = c.preflight_headers(&preflight("https://a.example:12345", "PUT", "x-a, x-b"));
        assert_eq!(get(&h, ALLOW_ORIGIN), Some("https://a.example:12345"));
        assert_eq!(get(&h, ALLOW_METHODS), Some("PUT"));
        assert_eq!(get(&h, ALLOW_HEADERS), Some("x-a, x-b"));
        assert_eq!(get(&h, ALLOW_CREDENTIALS), None);
        assert_eq!(get(&h, MAX_AGE), Some("5"));
        let h = c.preflight_headers(&preflight("https://a.example", "PUT", ""));
        assert_eq!(get(&h, ALLOW_HEADERS), None);
    }

    #[test]
    fn unconfigured_lists_send_no_header() {
        let c = config(r#"{"allowOrigins":["https://app.example"]}"#);
        let h = c.preflight_headers(&preflight("https://app.example", "GET", "x-a"));
        assert_eq!(get(&h, ALLOW_METHODS), None);
        assert_eq!(get(&h, ALLOW_HEADERS), None);
        assert_eq!(get(&h, EXPOSE_HEADERS), None);
        let h = c.response_headers("https://app.example", || unreachable!());
        assert_eq!(h, [(ALLOW_ORIGIN, "https://app.example".to_string())]);
    }

    #[test]
    fn exposed_wildcard_is_listed_out_when_credentials_are_allowed() {
        let open = config(r#"{"allowOrigins":["*"],"exposeHeaders":["*"]}"#);
        let h = open.response_headers("https://a.example", || unreachable!());
        assert_eq!(get(&h, EXPOSE_HEADERS), Some("*"));
        let with_credentials =
            config(r#"{"allowOrigins":["*"],"exposeHeaders":["*"],"allowCredentials":true}"#);
        let h = with_credentials.response_headers("https://a.example", || {
            vec!["content-type".into(), "x-trace".into()]
        });
        assert_eq!(get(&h, EXPOSE_HEADERS), Some("content-type, x-trace"));
        let h = with_credentials.preflight_headers(&preflight("https://a.example", "GET", ""));
        assert_eq!(get(&h, EXPOSE_HEADERS), None);
    }
}
