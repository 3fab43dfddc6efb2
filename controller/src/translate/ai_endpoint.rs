//! An AIService backend's `endpoint` URL (`http://` or `https://`) taken apart into what
//! the host needs: where to connect, what to send as Host, and the base path the
//! ai-adapter puts in front of the provider's API paths.
//!
//! Parsed here rather than by a URL library: the accepted shape is small (no user
//! information, query or fragment) and every refusal must say what is wrong in the
//! AIService's status.

use std::net::{IpAddr, Ipv6Addr};

/// One endpoint URL, taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// `https`: TLS to the backend, verified against the system's roots.
    pub tls: bool,
    /// A DNS name (lower case) or an IP address, IPv6 without brackets: what the host
    /// connects to.
    pub host: String,
    /// The URL's port, else 80 for http and 443 for https.
    pub port: u16,
    /// `host[:port]` for Host / `:authority`: the port only when the URL names one, an
    /// IPv6 address in brackets.
    pub authority: String,
    /// The URL's path without a trailing `/`; empty for none.
    pub base_path: String,
}

/// Parses an endpoint URL, or says what is wrong with it.
pub(super) fn parse(url: &str) -> Result<Endpoint, String> {
    if let Some(c) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("contains {c:?}"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("is not an absolute URL (scheme://host)")?;
    let tls = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return Err(format!("scheme {scheme:?} is not http or https"));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if path.contains(['?', '#']) {
        return Err("has a query or fragment, where only a base path is allowed".into());
    }
    if authority.contains('@') {
        return Err("carries user information, but credentials belong in auth.secretRef".into());
    }
    let (host, port) = host_and_port(authority)?;
    let explicit_port = port.is_some();
    let port = port.unwrap_or(if tls { 443 } else { 80 });
    let authority = match (host.parse::<Ipv6Addr>(), explicit_port) {
        (Ok(_), true) => format!("[{host}]:{port}"),
        (Ok(_), false) => format!("[{host}]"),
        (Err(_), true) => format!("{host}:{port}"),
        (Err(_), false) => host.clone(),
    };
    Ok(Endpoint {
        tls,
        host,
        port,
        authority,
        base_path: path.trim_end_matches('/').to_string(),
    })
}

/// `host[:port]` or `[ipv6][:port]` → the host (normalised) and the port if written.
fn host_and_port(authority: &str) -> Result<(String, Option<u16>), String> {
    if authority.is_empty() {
        return Err("has no host".into());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after) = bracketed
            .split_once(']')
            .ok_or("has an IPv6 address without its closing ]")?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| format!("[{inside}] is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("has {after:?} after its IPv6 address"))?,
            ),
        };
        (ip.to_string(), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        (host_name(host)?, port)
    };
    let port = port.map(parse_port).transpose()?;
    Ok((host, port))
}

/// A DNS name (lower-cased) or an IPv4 address.
fn host_name(host: &str) -> Result<String, String> {
    if host.is_empty() {
        return Err("has no host".into());
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(format!("host {host:?} is not a DNS name or IP address"));
    }
    Ok(host.to_ascii_lowercase())
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(format!("port {text:?} is not a number from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(tls: bool, host: &str, port: u16, authority: &str, path: &str) -> Endpoint {
        Endpoint {
            tls,
            host: host.into(),
            port,
            authority: authority.into(),
            base_path: path.into(),
        }
    }

    #[test]
    fn default_ports_and_base_paths() {
        assert_eq!(
            parse("https://api.openai.com/v1"),
            Ok(endpoint(
                true,
                "api.openai.com",
                443,
                "api.openai.com",
                "/v1"
            ))
        );
        assert_eq!(
            parse("http://ollama.models.svc:11434"),
            Ok(endpoint(
                false,
                "ollama.models.svc",
                11434,
                "ollama.models.svc:11434",
                ""
            ))
        );
        assert_eq!(
            parse("http://llm/"),
            Ok(endpoint(false, "llm", 80, "llm", ""))
        );
        // A port written out stays in the authority, even the default one.
        assert_eq!(
            parse("https://api.example.com:443/"),
            Ok(endpoint(
                true,
                "api.example.com",
                443,
                "api.example.com:443",
                ""
            ))
        );
    }

    #[test]
    fn trailing_slashes_are_dropped_and_hosts_lower_cased() {
        assert_eq!(
            parse("HTTPS://API.Example.COM:8443/openai/v1//"),
            Ok(endpoint(
                true,
                "api.example.com",
                8443,
                "api.example.com:8443",
                "/openai/v1"
            ))
        );
    }

    #[test]
    fn ip_literals() {
        assert_eq!(
            parse("http://[::1]:8080/v1"),
            Ok(endpoint(false, "::1", 8080, "[::1]:8080", "/v1"))
        );
        assert_eq!(
            parse("https://[2001:DB8:0::1]/"),
            Ok(endpoint(true, "2001:db8::1", 443, "[2001:db8::1]", ""))
        );
        assert_eq!(
            parse("http://127.0.0.1:11434"),
            Ok(endpoint(false, "127.0.0.1", 11434, "127.0.0.1:11434", ""))
        );
    }

    #[test]
    fn what_is_refused_is_said() {
        for (url, complaint) in [
            ("api.openai.com/v1", "absolute URL"),
            ("ftp://files.example.com", "not http or https"),
            ("http://", "no host"),
            ("http:///v1", "no host"),
            ("http://:8080", "no host"),
            ("http://user:pw@llm.example.com", "user information"),
            ("http://llm:0", "port \"0\""),
            ("http://llm:99999", "port \"99999\""),
            ("http://llm:+80", "port \"+80\""),
            ("http://llm:", "port \"\""),
            ("http://llm:80:81", "port \"80:81\""),
            ("http://[::1", "closing ]"),
            ("http://[zz::1]:80", "not an IPv6 address"),
            ("http://[::1]x", "after its IPv6 address"),
            ("http://llm/v1?key=1", "query or fragment"),
            ("http://llm#top", "query or fragment"),
            ("http://ll m/v1", "contains ' '"),
            ("http://-llm.example.com", "not a DNS name"),
            ("http://llm..example.com", "not a DNS name"),
        ] {
            let err = parse(url).expect_err(url);
            assert!(err.contains(complaint), "{url}: {err}");
        }
    }
}
