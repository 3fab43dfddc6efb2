//! Gateway API RequestRedirect: composes the `Location` of the redirect response.

use crate::config::{PathModifier, RedirectSpec, Scheme};

/// What the redirect keeps from the request when the filter doesn't override it.
#[derive(Debug, Clone, Copy)]
pub struct RedirectRequest<'a> {
    pub scheme: Scheme,
    /// Request host without port.
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The port of the listener that accepted the request.
    pub listener_port: u16,
    /// The PathPrefix value of the match that selected the rule, if it was a prefix match.
    pub matched_prefix: Option<&'a str>,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// The `Location` value. The port is: the filter's; else the redirect scheme's well-known
/// port when the filter sets a scheme; else the listener's. It is omitted when it is the
/// scheme's default. The query string is kept.
pub fn location(spec: &RedirectSpec, req: &RedirectRequest<'_>) -> String {
    let scheme = spec.scheme.unwrap_or(req.scheme);
    let host = spec.hostname.as_deref().unwrap_or(req.host);
    let port = spec
        .port
        .or_else(|| spec.scheme.map(Scheme::default_port))
        .unwrap_or(req.listener_port);
    let path = match (&spec.path, req.matched_prefix) {
        (None, _) => req.path.to_string(),
        (Some(PathModifier::ReplaceFullPath(full)), _) => full.to_string(),
        (Some(PathModifier::ReplacePrefixMatch(replacement)), Some(prefix)) => {
            replace_prefix(req.path, prefix, replacement)
        }
        // Config validation ties ReplacePrefixMatch to PathPrefix matches; keep the path
        // rather than invent one if that ever doesn't hold.
        (Some(PathModifier::ReplacePrefixMatch(_)), None) => req.path.to_string(),
    };
    let mut out = String::with_capacity(scheme.as_str().len() + host.len() + path.len() + 16);
    out.push_str(scheme.as_str());
    out.push_str("://");
    out.push_str(host);
    if port != scheme.default_port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(&path);
    if let Some(q) = req.query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Replaces the matched path prefix, element-wise, as in Gateway API's table: trailing
/// slashes of prefix and replacement are ignored and the result is never empty.
pub fn replace_prefix(path: &str, prefix: &str, replacement: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let rest = path
        .get(prefix.len()..)
        .filter(|_| path.starts_with(prefix))
        .unwrap_or("");
    let replacement = replacement.trim_end_matches('/');
    let joined = format!("{replacement}{rest}");
    if joined.is_empty() {
        "/".to_string()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scheme: Option<Scheme>, port: Option<u16>, path: Option<PathModifier>) -> RedirectSpec {
        RedirectSpec {
            scheme,
            hostname: Some("example.org".into()),
            port,
            path,
            status: 302,
        }
    }

    fn req(listener_port: u16) -> RedirectRequest<'static> {
        RedirectRequest {
            scheme: Scheme::Http,
            host: "gw.local",
            path: "/p",
            query: None,
            listener_port,
            matched_prefix: Some("/p"),
        }
    }

    #[test]
    fn port_and_scheme_follow_the_conformance_table() {
        use Scheme::*;
        // HTTPRouteRedirectPortAndScheme, listener on port 80 and on 8080.
        let cases = [
            (80, None, None, "http://example.org/p"),
            (80, None, Some(80), "http://example.org/p"),
            (80, None, Some(8080), "http://example.org:8080/p"),
            (80, Some(Https), None, "https://example.org/p"),
            (80, Some(Https), Some(443), "https://example.org/p"),
            (80, Some(Https), Some(8443), "https://example.org:8443/p"),
            (8080, None, None, "http://example.org:8080/p"),
            (8080, None, Some(80), "http://example.org/p"),
            (8080, Some(Https), None, "https://example.org/p"),
            (8080, Some(Http), None, "http://example.org/p"),
        ];
        for (listener, scheme, port, want) in cases {
            assert_eq!(
                location(&spec(scheme, port, None), &req(listener)),
                want,
                "{listener} {scheme:?} {port:?}"
            );
        }
    }

    #[test]
    fn keeps_request_host_and_query_when_not_overridden() {
        let mut s = spec(
            None,
            None,
            Some(PathModifier::ReplaceFullPath("/new".into())),
        );
        s.hostname = None;
        let r = RedirectRequest {
            query: Some("a=1"),
            ..req(80)
        };
        assert_eq!(location(&s, &r), "http://gw.local/new?a=1");
    }

    #[test]
    fn replace_prefix_matches_the_gateway_api_table() {
        let cases = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
            // HTTPRouteRedirectPath
            (
                "/original-prefix/lemon",
                "/original-prefix",
                "/replacement-prefix",
                "/replacement-prefix/lemon",
            ),
            (
                "/path-and-host",
                "/path-and-host",
                "/replacement-prefix",
                "/replacement-prefix",
            ),
        ];
        for (path, prefix, replacement, want) in cases {
            assert_eq!(
                replace_prefix(path, prefix, replacement),
                want,
                "{path} {prefix} {replacement}"
            );
        }
    }
}
