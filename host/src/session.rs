//! Session persistence (Gateway API GEP-1619): the token that pins a client to an
//! endpoint, and how it travels in a cookie or a header.
//!
//! A token never shows the endpoint's address: it carries a keyed hash of the backend
//! name and the endpoint's authority, when the session started, when it was last used,
//! and an HMAC-SHA256 tag over all of it, so a client can neither learn nor forge where it
//! goes, nor stretch its session. The key is the host's ([`SessionKey`]); hosts that share
//! one (`--session-key-file`) accept each other's tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{COOKIE, HeaderName, HeaderValue};
use nantian_proto::config as pb;
use ring::hmac;

use crate::config::{ConfigError, invalid};

/// One route rule's or backend's session persistence, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    pub carrier: Carrier,
    /// From the first pick; `None`: no limit.
    pub absolute_timeout: Option<Duration>,
    /// Since the session's last request; `None`: no limit.
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carrier {
    /// `Set-Cookie: <name>=<token>; Path=<path>; HttpOnly[; Max-Age=<absolute>]`.
    Cookie {
        name: Box<str>,
        path: Box<str>,
        /// Permanent: `Max-Age` is the absolute timeout; otherwise a session cookie.
        permanent: bool,
    },
    /// The token in a response header, sent back by the client in the same header.
    Header(HeaderName),
}

impl TryFrom<&pb::SessionPersistence> for SessionSpec {
    type Error = ConfigError;

    fn try_from(pb: &pb::SessionPersistence) -> Result<Self, ConfigError> {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        let absolute_timeout = secs(pb.absolute_timeout_seconds);
        let carrier = match pb.r#type.as_str() {
            "" | "Cookie" => {
                let name = pb.session_name.as_str();
                if !is_cookie_token(name) {
                    return Err(invalid("session cookie name", name, "not a cookie name"));
                }
                let path = match pb.cookie_path.as_str() {
                    "" => "/",
                    p if p.starts_with('/') && p.bytes().all(is_cookie_path_byte) => p,
                    p => return Err(invalid("session cookie path", p, "not a cookie path")),
                };
                let permanent = match pb.cookie_lifetime.as_str() {
                    "" | "Session" => false,
                    "Permanent" => true,
                    other => {
                        return Err(ConfigError::Unsupported {
                            field: "session cookie lifetime",
                            value: other.to_string(),
                        });
                    }
                };
                if permanent && absolute_timeout.is_none() {
                    return Err(invalid(
                        "session cookie lifetime",
                        "Permanent",
                        "needs an absolute timeout for Max-Age",
                    ));
                }
                Carrier::Cookie {
                    name: name.into(),
                    path: path.into(),
                    permanent,
                }
            }
            "Header" => Carrier::Header(
                HeaderName::try_from(pb.session_name.as_str())
                    .map_err(|e| invalid("session header name", &pb.session_name, e))?,
            ),
            other => {
                return Err(ConfigError::Unsupported {
                    field: "session persistence type",
                    value: other.to_string(),
                });
            }
        };
        Ok(SessionSpec {
            carrier,
            absolute_timeout,
            idle_timeout: secs(pb.idle_timeout_seconds),
        })
    }
}

/// RFC 6265 cookie-name (an RFC 7230 token).
fn is_cookie_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_cookie_path_byte(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b';'
}

/// What a token says; times are Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// [`SessionKey::endpoint_id`] of the endpoint.
    pub endpoint: u64,
    pub issued: u64,
    pub last_seen: u64,
}

const TOKEN_VERSION: u8 = 1;
/// Version, endpoint id, issued, last seen.
const BODY_LEN: usize = 1 + 8 + 8 + 8;
/// Truncated HMAC-SHA256: 128 bits is plenty against forgery at line rate.
const TAG_LEN: usize = 16;
/// Hex of body and tag.
const TOKEN_TEXT_LEN: usize = 2 * (BODY_LEN + TAG_LEN);

/// The host's secret for session tokens.
pub struct SessionKey(hmac::Key);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// A fresh random key: tokens live as long as this host process.
    pub fn random() -> Self {
        let rng = ring::rand::SystemRandom::new();
        SessionKey(hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("the system RNG works"))
    }

    /// A key from a shared secret, so several hosts (or a restarted one) accept each
    /// other's tokens.
    pub fn from_secret(secret: &[u8]) -> Self {
        SessionKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The opaque id of an endpoint of a backend.
    pub fn endpoint_id(&self, backend: &str, authority: &str) -> u64 {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(b"endpoint\0");
        ctx.update(backend.as_bytes());
        ctx.update(b"\0");
        ctx.update(authority.as_bytes());
        let tag = ctx.sign();
        u64::from_be_bytes(tag.as_ref()[..8].try_into().expect("8 bytes"))
    }

    /// The token as text: hex of the fields and their tag.
    pub fn seal(&self, t: &Token) -> String {
        let body = body(t);
        let tag = hmac::sign(&self.0, &body);
        let mut out = String::with_capacity(TOKEN_TEXT_LEN);
        for b in body.iter().chain(&tag.as_ref()[..TAG_LEN]) {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }

    /// The token in `text` when its tag is ours; `None` for anything else.
    pub fn open(&self, text: &[u8]) -> Option<Token> {
        if text.len() != TOKEN_TEXT_LEN {
            return None;
        }
        let mut raw = [0u8; BODY_LEN + TAG_LEN];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            raw[i] = (unhex(pair[0])? << 4) | unhex(pair[1])?;
        }
        let (body, tag) = raw.split_at(BODY_LEN);
        // Constant-time comparison of the truncated tag.
        let expected = hmac::sign(&self.0, body);
        if !constant_time_eq(&expected.as_ref()[..TAG_LEN], tag) || body[0] != TOKEN_VERSION {
            return None;
        }
        let field = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        Some(Token {
            endpoint: field(1),
            issued: field(9),
            last_seen: field(17),
        })
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn body(t: &Token) -> [u8; BODY_LEN] {
    let mut body = [0u8; BODY_LEN];
    body[0] = TOKEN_VERSION;
    body[1..9].copy_from_slice(&t.endpoint.to_be_bytes());
    body[9..17].copy_from_slice(&t.issued.to_be_bytes());
    body[17..25].copy_from_slice(&t.last_seen.to_be_bytes());
    body
}

/// Now, in Unix seconds. Wall-clock time: tokens outlive this process.
pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SessionSpec {
    /// Whether a token is still good at `now`: within the absolute and idle timeouts, and
    /// not from the future (a clock skew of a minute between hosts is forgiven).
    pub fn is_live(&self, t: &Token, now: u64) -> bool {
        let within = |since: u64, limit: Option<Duration>| {
            limit.is_none_or(|limit| now < since.saturating_add(limit.as_secs()))
        };
        t.issued <= t.last_seen
            && t.last_seen <= now.saturating_add(60)
            && within(t.issued, self.absolute_timeout)
            && within(t.last_seen, self.idle_timeout)
    }

    /// The raw token a request carries, if any (the first cookie or header of that name).
    pub fn find<'h>(&self, headers: &'h HeaderMap) -> Option<&'h [u8]> {
        match &self.carrier {
            Carrier::Header(name) => headers.get(name).map(HeaderValue::as_bytes),
            Carrier::Cookie { name, .. } => headers
                .get_all(COOKIE)
                .iter()
                .find_map(|v| cookie_value(v.as_bytes(), name.as_bytes())),
        }
    }

    /// The response header that hands `token` (sealed) to the client.
    pub fn issue(&self, sealed: &str, token: &Token, now: u64) -> (HeaderName, HeaderValue) {
        match &self.carrier {
            Carrier::Header(name) => (
                name.clone(),
                HeaderValue::from_str(sealed).expect("hex is a valid header value"),
            ),
            Carrier::Cookie {
                name,
                path,
                permanent,
            } => {
                let mut cookie = format!("{name}={sealed}; Path={path}; HttpOnly");
                if *permanent && let Some(absolute) = self.absolute_timeout {
                    // The cookie ends when the session does: what is left of it.
                    let end = token.issued.saturating_add(absolute.as_secs());
                    cookie.push_str(&format!("; Max-Age={}", end.saturating_sub(now)));
                }
                (
                    http::header::SET_COOKIE,
                    HeaderValue::from_str(&cookie).expect("validated name and path"),
                )
            }
        }
    }
}

/// The value of cookie `name` in one `Cookie` header (`a=1; b=2`).
fn cookie_value<'h>(header: &'h [u8], name: &[u8]) -> Option<&'h [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(absolute: u64, idle: u64) -> SessionSpec {
        SessionSpec {
            carrier: Carrier::Cookie {
                name: "s".into(),
                path: "/".into(),
                permanent: false,
            },
            absolute_timeout: (absolute > 0).then(|| Duration::from_secs(absolute)),
            idle_timeout: (idle > 0).then(|| Duration::from_secs(idle)),
        }
    }

    #[test]
    fn a_sealed_token_opens_with_its_key_only() {
        let key = SessionKey::from_secret(b"one");
        let t = Token {
            endpoint: key.endpoint_id("backend/ns/svc:80", "10.0.0.1:80"),
            issued: 1_700_000_000,
            last_seen: 1_700_000_100,
        };
        let sealed = key.seal(&t);
        assert_eq!(sealed.len(), TOKEN_TEXT_LEN);
        assert!(!sealed.contains("10.0.0.1"));
        assert_eq!(key.open(sealed.as_bytes()), Some(t));
        assert_eq!(
            SessionKey::from_secret(b"two").open(sealed.as_bytes()),
            None
        );
        assert_eq!(key.open(b"garbage"), None);
    }

    #[test]
    fn any_changed_character_is_refused() {
        let key = SessionKey::random();
        let sealed = key.seal(&Token {
            endpoint: 7,
            issued: 10,
            last_seen: 20,
        });
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone().into_bytes();
            tampered[i] = if tampered[i] == b'0' { b'1' } else { b'0' };
            assert_eq!(key.open(&tampered), None, "character {i}");
        }
    }

    #[test]
    fn endpoint_ids_differ_by_backend_and_authority() {
        let key = SessionKey::from_secret(b"k");
        let a = key.endpoint_id("b1", "10.0.0.1:80");
        assert_eq!(a, key.endpoint_id("b1", "10.0.0.1:80"));
        assert_ne!(a, key.endpoint_id("b1", "10.0.0.2:80"));
        assert_ne!(a, key.endpoint_id("b2", "10.0.0.1:80"));
    }

    #[test]
    fn tokens_expire_by_absolute_and_idle_timeouts() {
        let t = Token {
            endpoint: 1,
            issued: 1000,
            last_seen: 1500,
        };
        assert!(spec(0, 0).is_live(&t, 1_000_000));
        assert!(spec(600, 0).is_live(&t, 1599));
        assert!(!spec(600, 0).is_live(&t, 1600));
        assert!(spec(0, 100).is_live(&t, 1599));
        assert!(!spec(0, 100).is_live(&t, 1600));
        // From the future, or last seen before it was issued: forged or broken.
        assert!(!spec(0, 0).is_live(&t, 1000));
        let backwards = Token {
            last_seen: 999,
            ..t
        };
        assert!(!spec(0, 0).is_live(&backwards, 2000));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let s = spec(0, 0);
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; ss=2"));
        assert_eq!(s.find(&h), None);
        h.append(COOKIE, HeaderValue::from_static("x=y;s=abc ; z=1"));
        assert_eq!(s.find(&h), Some(&b"abc"[..]));
    }

    #[test]
    fn session_and_permanent_cookies_differ_in_max_age() {
        let t = Token {
            endpoint: 1,
            issued: 1000,
            last_seen: 1000,
        };
        let (name, v) = spec(3600, 0).issue("tok", &t, 1000);
        assert_eq!(name, http::header::SET_COOKIE);
        assert_eq!(v, "s=tok; Path=/; HttpOnly");
        let permanent = SessionSpec {
            carrier: Carrier::Cookie {
                name: "s".into(),
                path: "/app".into(),
                permanent: true,
            },
            ..spec(3600, 0)
        };
        let (_, v) = permanent.issue("tok", &t, 1600);
        assert_eq!(v, "s=tok; Path=/app; HttpOnly; Max-Age=3000");
    }

    #[test]
    fn decoding_checks_names_types_and_lifetimes() {
        let pb = |t: &str, name: &str, lifetime: &str, absolute: u64| pb::SessionPersistence {
            r#type: t.into(),
            session_name: name.into(),
            cookie_lifetime: lifetime.into(),
            absolute_timeout_seconds: absolute,
            ..Default::default()
        };
        assert!(SessionSpec::try_from(&pb("Cookie", "ok", "Session", 0)).is_ok());
        assert!(SessionSpec::try_from(&pb("Header", "x-session", "", 0)).is_ok());
        assert!(SessionSpec::try_from(&pb("Cookie", "bad name", "", 0)).is_err());
        assert!(SessionSpec::try_from(&pb("Header", "bad header", "", 0)).is_err());
        assert!(SessionSpec::try_from(&pb("Sticky", "x", "", 0)).is_err());
        assert!(SessionSpec::try_from(&pb("Cookie", "x", "Forever", 0)).is_err());
        assert!(SessionSpec::try_from(&pb("Cookie", "x", "Permanent", 0)).is_err());
        assert!(SessionSpec::try_from(&pb("Cookie", "x", "Permanent", 60)).is_ok());
    }
}
