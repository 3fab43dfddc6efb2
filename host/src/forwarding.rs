//! Header rules for forwarding a message to the next hop: hop-by-hop headers are dropped
//! in both directions, `Host` is kept (and filled from `:authority` for HTTP/2 clients),
//! and the client is recorded in `X-Forwarded-For` / `X-Forwarded-Proto`.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Version};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Removes the headers that describe a single connection (RFC 9110 §7.6.1): `Connection`
/// and every header it names, `Keep-Alive`, `Proxy-Connection`, `TE` (except `trailers`,
/// which gRPC needs end to end), `Trailer`, `Transfer-Encoding` and `Upgrade`. For a
/// WebSocket handshake being proxied, `Connection: upgrade` and `Upgrade` are put back.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages have none: one pass over the names beats a hashed lookup per name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let upgrade = if keep_upgrade {
        headers.get(UPGRADE).cloned()
    } else {
        None
    };
    let named: Vec<HeaderValue> = headers.get_all(CONNECTION).iter().cloned().collect();
    for value in &named {
        for token in tokens(value) {
            headers.remove(token);
        }
    }
    for name in [
        &CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &TRAILER,
        &TRANSFER_ENCODING,
        &UPGRADE,
    ] {
        headers.remove(name);
    }
    let te_is_trailers = {
        let mut all = headers.get_all(TE).iter();
        matches!((all.next(), all.next()), (Some(v), None) if v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    };
    if !te_is_trailers {
        headers.remove(TE);
    }
    if let Some(upgrade) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, upgrade);
    }
}

/// A header only `strip_hop_by_hop` removes by name (those `Connection` names are found
/// through `Connection` itself).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

fn tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// An HTTP/1.1 WebSocket handshake (`Connection: upgrade` + `Upgrade: websocket`).
pub fn is_websocket_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case("upgrade")))
        && headers
            .get_all(UPGRADE)
            .iter()
            .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case("websocket")))
}

/// Prepares request headers for the upstream: hop-by-hop removal, `Host` from the URI's
/// authority when it has one (HTTP/2), `X-Forwarded-For` appended, `X-Forwarded-Proto` set.
pub fn prepare_request_headers(
    headers: &mut HeaderMap,
    authority: Option<&http::uri::Authority>,
    client: &ClientIp,
    scheme: &'static str,
    websocket: bool,
) {
    strip_hop_by_hop(headers, websocket);
    // The URI's authority (HTTP/2 `:authority`, HTTP/1.1 absolute form) is the one the
    // request is for; RFC 9112 §3.2.2 has it replace any `Host` header.
    if let Some(authority) = authority
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(HOST, value);
    }
    append_forwarded_for(headers, client);
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
}

/// A client's address as the `X-Forwarded-For` entry, made once per connection: the
/// header value is shared by every request on it, so adding it allocates nothing.
#[derive(Clone, Debug)]
pub struct ClientIp(HeaderValue);

impl ClientIp {
    pub fn new(ip: IpAddr) -> Self {
        let value = HeaderValue::from_maybe_shared(Bytes::from(ip.to_string()))
            .expect("an IP address is a valid header value");
        ClientIp(value)
    }
}

/// Appends the client address to `X-Forwarded-For`, folding earlier values into one line.
pub fn append_forwarded_for(headers: &mut HeaderMap, client: &ClientIp) {
    let mut existing = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .peekable();
    if existing.peek().is_none() {
        headers.insert(&X_FORWARDED_FOR, client.0.clone());
        return;
    }
    let mut joined = existing.collect::<Vec<_>>().join(", ");
    joined.push_str(", ");
    joined.push_str(client.0.to_str().unwrap_or_default());
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.insert(&X_FORWARDED_FOR, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn names(map: &HeaderMap) -> Vec<&str> {
        let mut v: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        v.sort();
        v
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut map = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
            ("host", "example.com"),
        ]);
        strip_hop_by_hop(&mut map, false);
        assert_eq!(names(&map), ["host", "x-kept"]);
    }

    #[test]
    fn te_trailers_survives_for_grpc() {
        let mut map = headers(&[("te", "trailers")]);
        strip_hop_by_hop(&mut map, false);
        assert_eq!(map.get(TE).unwrap(), "trailers");
    }

    #[test]
    fn websocket_handshake_keeps_upgrade_headers() {
        let mut map = headers(&[
            ("connection", "Upgrade, keep-alive"),
            ("upgrade", "websocket"),
            ("keep-alive", "1"),
        ]);
        assert!(is_websocket_upgrade(Version::HTTP_11, &map));
        assert!(!is_websocket_upgrade(Version::HTTP_2, &map));
        strip_hop_by_hop(&mut map, true);
        assert_eq!(names(&map), ["connection", "upgrade"]);
        assert_eq!(map.get(CONNECTION).unwrap(), "upgrade");
        assert_eq!(map.get(UPGRADE).unwrap(), "websocket");
    }

    #[test]
    fn forwarded_headers_are_appended_and_host_comes_from_authority() {
        let mut map = headers(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        let authority: http::uri::Authority = "example.com:8080".parse().unwrap();
        prepare_request_headers(
            &mut map,
            Some(&authority),
            &ClientIp::new("192.0.2.7".parse().unwrap()),
            "http",
            false,
        );
        assert_eq!(
            map.get(&X_FORWARDED_FOR).unwrap(),
            "10.0.0.1, 10.0.0.2, 192.0.2.7"
        );
        assert_eq!(map.get(&X_FORWARDED_PROTO).unwrap(), "http");
        assert_eq!(map.get(HOST).unwrap(), "example.com:8080");

        let mut fresh = headers(&[("host", "kept.example")]);
        let client = ClientIp::new("::1".parse().unwrap());
        prepare_request_headers(&mut fresh, None, &client, "http", false);
        assert_eq!(fresh.get(&X_FORWARDED_FOR).unwrap(), "::1");
        assert_eq!(fresh.get(HOST).unwrap(), "kept.example");
    }
}
