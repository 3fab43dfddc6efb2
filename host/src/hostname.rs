//! Gateway API hostnames: parsing, request matching and listener/route intersection.
//!
//! Hostnames are stored lowercase. A wildcard keeps its suffix *with* the leading dot
//! (`*.example.com` → `.example.com`) so matching is one `ends_with` plus a length check:
//! a wildcard covers one or more labels, never the bare domain.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hostname {
    Exact(Box<str>),
    /// The suffix including its leading dot.
    Wildcard(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hostname {hostname:?}: {reason}")]
pub struct HostnameError {
    pub hostname: String,
    pub reason: &'static str,
}

impl Hostname {
    /// Parses a Gateway API hostname (`example.com` or `*.example.com`), case-insensitively.
    pub fn parse(raw: &str) -> Result<Self, HostnameError> {
        let err = |reason| HostnameError {
            hostname: raw.to_string(),
            reason,
        };
        let lower = raw.to_ascii_lowercase();
        let (wildcard, domain) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if domain.is_empty() || domain.len() > 253 {
            return Err(err(
                "must have 1 to 253 characters after an optional \"*.\"",
            ));
        }
        for label in domain.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(err("every label must have 1 to 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(err("labels may contain only letters, digits and '-'"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(err("labels may not start or end with '-'"));
            }
        }
        if !wildcard && domain.parse::<std::net::IpAddr>().is_ok() {
            return Err(err("must be a DNS name, not an IP address"));
        }
        Ok(if wildcard {
            Hostname::Wildcard(format!(".{domain}").into())
        } else {
            Hostname::Exact(domain.into())
        })
    }

    /// Whether a request host (lowercase, without port) falls under this hostname.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Hostname::Exact(h) => **h == *host,
            Hostname::Wildcard(suffix) => wildcard_covers(suffix, host),
        }
    }

    /// The hostnames both accept, per Gateway API's listener/route intersection:
    /// exact under wildcard keeps the exact one; of two wildcards the more specific wins.
    pub fn intersect(&self, other: &Hostname) -> Option<Hostname> {
        match (self, other) {
            (Hostname::Exact(a), Hostname::Exact(b)) => (a == b).then(|| self.clone()),
            (Hostname::Exact(e), Hostname::Wildcard(w))
            | (Hostname::Wildcard(w), Hostname::Exact(e)) => {
                wildcard_covers(w, e).then(|| Hostname::Exact(e.clone()))
            }
            (Hostname::Wildcard(a), Hostname::Wildcard(b)) => {
                if a.ends_with(&**b) {
                    Some(self.clone())
                } else if b.ends_with(&**a) {
                    Some(other.clone())
                } else {
                    None
                }
            }
        }
    }

    /// Characters of the hostname as written (`*.a.com` counts 7), for precedence.
    pub fn written_len(&self) -> usize {
        match self {
            Hostname::Exact(h) => h.len(),
            Hostname::Wildcard(suffix) => suffix.len() + 1,
        }
    }
}

fn wildcard_covers(suffix: &str, host: &str) -> bool {
    host.len() > suffix.len() && host.ends_with(suffix)
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hostname::Exact(h) => f.write_str(h),
            Hostname::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// The request host a router compares: `Host` (or `:authority`) without the port,
/// lowercased. Borrowed when the client already sent it lowercase (the common case).
pub fn normalize_request_host(authority: &str) -> std::borrow::Cow<'_, str> {
    let host = strip_port(authority);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`; bare IPv6 stays whole.
pub fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hostname {
        Hostname::parse(s).unwrap()
    }

    #[test]
    fn parse_lowercases_and_rejects_malformed_names() {
        assert_eq!(
            h("Foo.Example.COM"),
            Hostname::Exact("foo.example.com".into())
        );
        assert_eq!(
            h("*.Example.com"),
            Hostname::Wildcard(".example.com".into())
        );
        for bad in [
            "",
            "*",
            "*.",
            "a..b",
            "-a.com",
            "a_b.com",
            "foo.*.com",
            "10.0.0.1",
            "a.com.",
        ] {
            assert!(Hostname::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn wildcard_covers_one_or_more_labels_but_not_the_bare_domain() {
        let w = h("*.bar.com");
        assert!(w.matches("baz.bar.com"));
        assert!(w.matches("multiple.prefixes.bar.com"));
        assert!(!w.matches("bar.com"));
        assert!(!w.matches("foobar.com"));
        assert!(h("bar.com").matches("bar.com"));
        assert!(!h("bar.com").matches("foo.bar.com"));
    }

    #[test]
    fn intersection_follows_gateway_api() {
        let cases = [
            (
                "very.specific.com",
                "very.specific.com",
                Some("very.specific.com"),
            ),
            ("very.specific.com", "non.matching.com", None),
            (
                "very.specific.com",
                "*.specific.com",
                Some("very.specific.com"),
            ),
            ("*.wildcard.io", "foo.wildcard.io", Some("foo.wildcard.io")),
            (
                "*.wildcard.io",
                "foo.bar.wildcard.io",
                Some("foo.bar.wildcard.io"),
            ),
            ("*.wildcard.io", "wildcard.io", None),
            (
                "*.anotherwildcard.io",
                "*.anotherwildcard.io",
                Some("*.anotherwildcard.io"),
            ),
            (
                "*.example.com",
                "*.foo.example.com",
                Some("*.foo.example.com"),
            ),
            (
                "*.foo.example.com",
                "*.example.com",
                Some("*.foo.example.com"),
            ),
            ("*.a.com", "*.b.com", None),
        ];
        for (listener, route, want) in cases {
            let got = h(listener).intersect(&h(route)).map(|x| x.to_string());
            assert_eq!(got.as_deref(), want, "{listener} ∩ {route}");
        }
    }

    #[test]
    fn request_host_drops_port_and_case() {
        assert_eq!(
            normalize_request_host("Very.Specific.com:1234"),
            "very.specific.com"
        );
        assert_eq!(normalize_request_host("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert!(matches!(
            normalize_request_host("a.com"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
