//! Origins (`scheme://host[:port]`) and the `allowOrigins` patterns that match them.
//!
//! Both sides are reduced to a lower-case scheme and host and an explicit port: the spec
//! says an origin without a port has its scheme's default (80 for `http`, 443 for
//! `https`), so `https://a.example` and `https://a.example:443` are the same origin.

/// An origin as sent in the `Origin` request header, reduced for matching.
#[derive(Debug, PartialEq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

/// One `allowOrigins` entry other than the lone `*`.
#[derive(Debug, PartialEq)]
pub struct OriginPattern {
    scheme: String,
    host: HostPattern,
    port: u16,
}

#[derive(Debug, PartialEq)]
enum HostPattern {
    /// `https://*`: any host.
    Any,
    /// `*.bar.com`, kept as `.bar.com`: any host ending in it, however many labels the
    /// `*` stands for (the spec's "greedy match to the left").
    Suffix(String),
    Exact(String),
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Splits `scheme://authority` into the lower-case scheme, the host and the port (the
/// scheme's default when absent). Only `http` and `https` have origins patterns can name.
fn split(value: &str) -> Option<(String, &str, u16)> {
    let (scheme, authority) = value.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = default_port(&scheme)?;
    // An IPv6 host keeps its brackets; the port, if any, follows the closing one.
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']')? + 1;
            let (host, after) = authority.split_at(end + 1);
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        None => default,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().ok().filter(|&p| p != 0)?
        }
        Some(_) => return None,
    };
    Some((scheme, host, port))
}

impl Origin {
    /// `None` for anything that is not an `http(s)://host[:port]` origin (`null`, other
    /// schemes, paths): only a lone `*` in allowOrigins matches those.
    pub fn parse(value: &str) -> Option<Origin> {
        let (scheme, host, port) = split(value)?;
        let is_host_byte = |b: u8| !b"/?#@ \t".contains(&b) && !b.is_ascii_control();
        if host.is_empty() || !host.bytes().all(is_host_byte) {
            return None;
        }
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl OriginPattern {
    /// Parses the CRD's syntax: `http(s)://host[:port]`, where host is `*`, or DNS labels
    /// (letters, digits, `-`) optionally after a leading `*.`.
    pub fn parse(value: &str) -> Result<OriginPattern, String> {
        let invalid = || format!("invalid origin {value:?}: expected http(s)://host[:port] or *");
        let (scheme, host, port) = split(value).ok_or_else(invalid)?;
        let is_label =
            |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(rest) = host.strip_prefix("*.") {
            if !rest.split('.').all(is_label) {
                return Err(invalid());
            }
            HostPattern::Suffix(format!(".{}", rest.to_ascii_lowercase()))
        } else {
            if !host.split('.').all(is_label) {
                return Err(invalid());
            }
            HostPattern::Exact(host.to_ascii_lowercase())
        };
        Ok(OriginPattern { scheme, host, port })
    }

    pub fn matches(&self, origin: &Origin) -> bool {
        self.scheme == origin.scheme
            && self.port == origin.port
            && match &self.host {
                HostPattern::Any => true,
                HostPattern::Suffix(suffix) => {
                    origin.host.len() > suffix.len() && origin.host.ends_with(suffix.as_str())
                }
                HostPattern::Exact(host) => *host == origin.host,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, origin: &str) -> bool {
        let pattern = OriginPattern::parse(pattern).unwrap();
        Origin::parse(origin).is_some_and(|o| pattern.matches(&o))
    }

    #[test]
    fn exact_hosts_match_whatever_their_case_and_default_port() {
        assert!(matches("https://www.foo.com", "https://www.foo.com"));
        assert!(matches("https://www.foo.com", "HTTPS://WWW.Foo.com"));
        assert!(matches("https://www.foo.com", "https://www.foo.com:443"));
        assert!(matches("http://www.foo.com:80", "http://www.foo.com"));
        assert!(matches("http://a.example:8080", "http://a.example:8080"));
        assert!(!matches("https://www.foo.com", "http://www.foo.com"));
        assert!(!matches("https://www.foo.com", "https://www.foo.com:8443"));
        assert!(!matches("https://www.foo.com", "https://foo.com"));
        assert!(!matches("https://www.foo.com", "https://www.foo.com.evil"));
    }

    #[test]
    fn a_leading_wildcard_stands_for_one_or_more_labels() {
        assert!(matches("https://*.bar.com", "https://www.bar.com"));
        assert!(matches("https://*.bar.com", "https://xpto.www.bar.com"));
        assert!(!matches("https://*.bar.com", "https://bar.com"));
        assert!(!matches("https://*.bar.com", "https://foobar.com"));
        assert!(!matches("https://*.bar.com", "http://www.bar.com"));
        assert!(matches("https://*", "https://anything.example"));
        assert!(matches("https://*:8443", "https://[::1]:8443"));
        assert!(!matches("https://*", "https://anything.example:8443"));
    }

    #[test]
    fn only_http_origins_parse() {
        for value in [
            "null",
            "file://",
            "chrome-extension://abc",
            "https://",
            "https://a.com/path",
            "https://user@a.com",
            "https://a.com:",
            "https://a.com:0",
            "https://a.com:70000",
            "https://[::1",
        ] {
            assert_eq!(Origin::parse(value), None, "{value}");
        }
        assert!(Origin::parse("http://[::1]:8080").is_some());
    }

    #[test]
    fn patterns_follow_the_crd_syntax() {
        for value in [
            "*",
            "www.foo.com",
            "ftp://a.com",
            "https://a.*.com",
            "https://*a.com",
            "https://a..com",
            "https://a.com/",
            "https://a_b.com",
            "https://a.com:99999",
        ] {
            assert!(OriginPattern::parse(value).is_err(), "{value}");
        }
        for value in [
            "https://*",
            "http://*.a.b",
            "https://a-b.c:1",
            "http://localhost",
        ] {
            assert!(OriginPattern::parse(value).is_ok(), "{value}");
        }
    }
}
