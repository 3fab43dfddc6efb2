//! The JSON document the echo backend answers with, in the shape of the Gateway API
//! conformance echo server (`RequestAssertions` in `conformance/echo-basic`), so the
//! conformance replay can read it with the same expectations.

use std::collections::BTreeMap;

use http::HeaderMap;
use serde::{Deserialize, Serialize};

/// What the backend saw of a request. Tests deserialize it from response bodies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoResponse {
    /// The request target as received (path and query).
    pub path: String,
    /// `Host` header (HTTP/1) or `:authority` (HTTP/2).
    pub host: String,
    pub method: String,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub proto: String,
    /// Request headers by canonical name (`X-Forwarded-For`), values in arrival order.
    /// `Host` is not among them (it is `host`), as in Go's `http.Request.Header`.
    pub headers: BTreeMap<String, Vec<String>>,
    /// The port of the listener that served the request.
    #[serde(rename = "httpPort", default)]
    pub http_port: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub ingress: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub pod: String,
    /// The TLS connection the request came over; absent for cleartext ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsAssertions>,
}

/// echo-basic's `TLSAssertions`: what the server saw of the TLS connection a request came
/// over. The BackendTLSPolicy conformance tests compare `serverName` with the SNI a gateway
/// should send and look for its client certificate among `peerCertificates`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsAssertions {
    /// `TLSv1.3`, `TLSv1.2`, ...
    #[serde(default)]
    pub version: String,
    /// The client's certificate chain, each as Go's `pem.Encode` writes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_certificates: Vec<String>,
    /// The SNI the client sent; empty without one.
    #[serde(default)]
    pub server_name: String,
    /// The ALPN protocol agreed on, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub negotiated_protocol: String,
    /// Go's `tls.CipherSuiteName`, e.g. `TLS_AES_128_GCM_SHA256`.
    #[serde(default)]
    pub cipher_suite: String,
}

impl EchoResponse {
    /// All values of a request header, looked up case-insensitively.
    pub fn header_values(&self, name: &str) -> Option<&[String]> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, values)| values.as_slice())
    }

    /// The first value of a request header, looked up case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name)?.first().map(String::as_str)
    }
}

/// Request headers as Go's `http.Request.Header` holds them: canonical keys, `Host` and
/// `Transfer-Encoding` lifted out, and (HTTP/2 only) `Cookie` lines joined with `"; "`.
pub fn header_map_to_echo(headers: &HeaderMap, http2: bool) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for name in headers.keys() {
        if name == http::header::HOST || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        let mut values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        if http2 && name == http::header::COOKIE && values.len() > 1 {
            values = vec![values.join("; ")];
        }
        out.insert(canonical_header_key(name.as_str()), values);
    }
    out
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: upper-case the first letter and every letter
/// after a hyphen, lower-case the rest. Keys with bytes outside the token set stay as
/// they are, like in Go.
pub fn canonical_header_key(name: &str) -> String {
    if !name.bytes().all(is_token_byte) {
        return name.to_owned();
    }
    let mut upper = true;
    name.chars()
        .map(|c| {
            let mapped = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            mapped
        })
        .collect()
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_keys_follow_go() {
        assert_eq!(canonical_header_key("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(canonical_header_key("content-type"), "Content-Type");
        assert_eq!(canonical_header_key("WWW-AUTHENTICATE"), "Www-Authenticate");
        assert_eq!(canonical_header_key("x-b3-traceid"), "X-B3-Traceid");
        assert_eq!(canonical_header_key("-x"), "-X");
        assert_eq!(canonical_header_key("bad header"), "bad header");
    }

    #[test]
    fn header_map_groups_values_and_lifts_host() {
        let mut headers = HeaderMap::new();
        headers.append("host", "example.com".parse().unwrap());
        headers.append("x-multi", "a".parse().unwrap());
        headers.append("x-multi", "b".parse().unwrap());
        headers.append("cookie", "a=1".parse().unwrap());
        headers.append("cookie", "b=2".parse().unwrap());

        let http1 = header_map_to_echo(&headers, false);
        assert!(!http1.contains_key("Host"));
        assert_eq!(http1["X-Multi"], ["a", "b"]);
        assert_eq!(http1["Cookie"], ["a=1", "b=2"]);

        let http2 = header_map_to_echo(&headers, true);
        assert_eq!(http2["Cookie"], ["a=1; b=2"]);
    }

    #[test]
    fn json_uses_conformance_field_names() {
        let response = EchoResponse {
            path: "/p?q=1".into(),
            http_port: "3000".into(),
            ..Default::default()
        };
        let json: serde_json::Value = serde_json::to_value(&response).unwrap();
        for key in [
            "path",
            "host",
            "method",
            "proto",
            "headers",
            "httpPort",
            "namespace",
            "ingress",
            "service",
            "pod",
        ] {
            assert!(json.get(key).is_some(), "missing {key} in {json}");
        }
        assert_eq!(json["httpPort"], "3000");
        assert!(json.get("tls").is_none(), "no tls object for cleartext");
        let parsed: EchoResponse = serde_json::from_value(json).unwrap();
        assert_eq!(parsed, response);
    }

    #[test]
    fn tls_object_uses_echo_basic_field_names() {
        let response = EchoResponse {
            tls: Some(TlsAssertions {
                version: "TLSv1.3".into(),
                server_name: "abc.example.com".into(),
                cipher_suite: "TLS_AES_128_GCM_SHA256".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let json = serde_json::to_value(&response).unwrap();
        let tls = &json["tls"];
        assert_eq!(tls["version"], "TLSv1.3");
        assert_eq!(tls["serverName"], "abc.example.com");
        assert_eq!(tls["cipherSuite"], "TLS_AES_128_GCM_SHA256");
        // Go's `omitempty` fields.
        assert!(tls.get("peerCertificates").is_none());
        assert!(tls.get("negotiatedProtocol").is_none());
        let parsed: EchoResponse = serde_json::from_value(json).unwrap();
        assert_eq!(parsed, response);
    }
}
