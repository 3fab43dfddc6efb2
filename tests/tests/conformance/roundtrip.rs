//! One request to a Gateway and what came back, after upstream's
//! `conformance/utils/roundtripper`, and the eventually-consistent retry around it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nantian_e2e::harness;
use serde::Deserialize;

use crate::certificates::TrustedCertificate;
use crate::compare::compare;
use crate::model::{Expectation, RequestProtocol, TlsRequest};
use crate::tls::{self, Alpn, ClientAuth};

/// Upstream's `RequiredConsecutiveSuccesses`.
pub const REQUIRED_CONSECUTIVE_SUCCESSES: u32 = 3;
/// Pause after a failed attempt before the next (upstream waits 1 s; on loopback the
/// system converges in milliseconds, so a shorter pause only makes passing runs faster).
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Bounds one h2c or HTTPS round trip (the TLS handshake included), as `harness::send`
/// bounds an HTTP/1.1 one.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where requests go: a Gateway address and the port of one of its listeners, over TLS
/// for an HTTPS listener.
#[derive(Debug, Clone)]
pub struct Target {
    pub ip: String,
    pub port: u16,
    pub tls: Option<TlsTarget>,
}

/// How requests reach an HTTPS listener: the step's `tls`, the certificate of its
/// Secret, the only one trusted, and the client certificate to present, if any.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    pub request: TlsRequest,
    pub certificate: TrustedCertificate,
    pub client: Option<ClientAuth>,
}

impl Target {
    /// The URL scheme of requests: `https` over TLS.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    fn default_port(&self) -> u16 {
        if self.tls.is_some() { 443 } else { 80 }
    }

    /// Upstream's `CalculateHost`: the URL host, without the port when the scheme implies it.
    pub fn url_host(&self) -> String {
        if self.port == self.default_port() {
            self.ip.clone()
        } else {
            format!("{}:{}", self.ip, self.port)
        }
    }

    /// The same target with a new record of whether a server asked for the client
    /// certificate.
    pub fn with_fresh_client_record(&self) -> Target {
        let mut target = self.clone();
        if let Some(client) = target.tls.as_mut().and_then(|t| t.client.as_mut()) {
            *client = client.fresh();
        }
        target
    }

    /// Upstream's check after a request with a client certificate: "client certificate was
    /// not presented during the handshake" unless a server asked for it.
    pub fn client_certificate_presented(&self) -> Result<(), String> {
        match self.tls.as_ref().and_then(|t| t.client.as_ref()) {
            Some(client) if !client.asked() => {
                Err("client certificate was not presented during the handshake".into())
            }
            _ => Ok(()),
        }
    }

    /// The listener's socket address, to connect to.
    pub fn socket_addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// The echo server's JSON (upstream's `CapturedRequest`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EchoedRequest {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub pod: String,
    /// Absent over cleartext, which reads as empty (upstream's `TLS` is a struct).
    #[serde(default)]
    pub tls: EchoedTls,
}

/// The echo's `tls` (upstream's `roundtripper.TLS`), the parts the comparison reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EchoedTls {
    #[serde(default)]
    pub server_name: String,
    #[serde(default)]
    pub peer_certificates: Vec<String>,
}

impl EchoedRequest {
    /// Upstream lower-cases the captured names before lookups: names match in any case.
    pub fn header(&self, name: &str) -> Option<&[String]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// A redirect's `Location`, split like Go's `url.URL` (`Hostname()`, `Port()`, `Path`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedirectTarget {
    pub scheme: String,
    pub host: String,
    pub port: String,
    pub path: String,
}

/// Upstream's `CapturedResponse` with the `CapturedRequest` it carried.
#[derive(Debug, Clone)]
pub struct Captured {
    pub status: u16,
    pub headers: http::HeaderMap,
    /// The echo, or (for a reply that is not JSON) an empty one with the sent method.
    pub echo: EchoedRequest,
    pub redirect: Option<RedirectTarget>,
    /// The scheme of the request's URL, what an expected redirect's scheme defaults to.
    pub request_scheme: &'static str,
}

pub fn method(exp: &Expectation) -> &str {
    if exp.request.method.is_empty() {
        "GET"
    } else {
        &exp.request.method
    }
}

/// The request upstream's `MakeRequest` builds, plus `extra` headers (weight entropy). Over
/// HTTP/1.1 the host goes in the `Host` header; over HTTP/2 (h2c or H2) it is the URI's
/// authority (the `:authority` pseudo-header), as Go's HTTP/2 transport sends it.
pub fn build_request(
    target: &Target,
    exp: &Expectation,
    extra: &[(String, String)],
) -> Result<http::Request<Bytes>, String> {
    let host = if exp.request.host.is_empty() {
        target.url_host()
    } else {
        exp.request.host.clone()
    };
    let scheme = target.scheme();
    let builder = http::Request::builder().method(method(exp));
    let mut builder = match exp.request.protocol {
        None => builder
            .uri(format!(
                "{scheme}://{}{}",
                target.socket_addr(),
                exp.request.path
            ))
            .header(http::header::HOST, host),
        Some(RequestProtocol::H2cPriorKnowledge | RequestProtocol::H2) => {
            builder.uri(format!("{scheme}://{host}{}", exp.request.path))
        }
    };
    for (name, value) in exp
        .request
        .headers
        .iter()
        .chain(extra.iter().map(|(n, v)| (n, v)))
    {
        builder = builder.header(name.as_str(), value.as_str());
    }
    // Upstream always sends it, empty when the backend should add nothing.
    let set: Vec<String> = exp
        .backend_set_response_headers
        .iter()
        .map(|(n, v)| format!("{n}:{v}"))
        .collect();
    builder = builder.header("X-Echo-Set-Header", set.join(","));
    builder
        .body(Bytes::new())
        .map_err(|e| format!("building request: {e}"))
}

/// Sends one request on a fresh connection and captures the reply.
pub async fn round_trip(
    target: &Target,
    exp: &Expectation,
    extra: &[(String, String)],
) -> Result<Captured, String> {
    let req = build_request(target, exp, extra)?;
    let addr = target.socket_addr();
    let reply = match (&target.tls, exp.request.protocol) {
        (None, None) => harness::send(req).await,
        (None, Some(RequestProtocol::H2cPriorKnowledge)) => {
            bounded(harness::send_h2c(&addr, req)).await
        }
        (Some(tls), protocol @ (None | Some(RequestProtocol::H2))) => {
            let server_name = tls.request.server_name_for(&exp.request.host)?;
            let alpn = match protocol {
                Some(RequestProtocol::H2) => Alpn::H2,
                _ => Alpn::Http1,
            };
            let client = tls.client.as_ref();
            bounded(tls::send(
                &addr,
                &tls.certificate,
                client,
                server_name,
                alpn,
                req,
            ))
            .await
        }
        (None, Some(RequestProtocol::H2)) => Err("protocol H2 needs TLS".into()),
        (Some(_), Some(RequestProtocol::H2cPriorKnowledge)) => {
            Err("h2 prior knowledge is not encrypted".into())
        }
    }
    .map_err(|e| format!("request failed: {e}"))?;
    let echo = if reply
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/json")
    {
        serde_json::from_slice(&reply.body)
            .map_err(|e| format!("unexpected error reading response: {e}"))?
    } else {
        EchoedRequest {
            method: method(exp).to_string(),
            ..EchoedRequest::default()
        }
    };
    let redirect = if is_redirect(reply.status) {
        let location = reply
            .headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("{} without a Location header", reply.status))?;
        Some(parse_location(location, target)?)
    } else {
        None
    };
    Ok(Captured {
        status: reply.status,
        headers: reply.headers,
        echo,
        redirect,
        request_scheme: target.scheme(),
    })
}

async fn bounded(
    exchange: impl Future<Output = Result<harness::Reply, String>>,
) -> Result<harness::Reply, String> {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err("timed out".to_string()))
}

/// `http.WaitForConsistentResponse`: repeats the request until it matches
/// [`REQUIRED_CONSECUTIVE_SUCCESSES`] times in a row, or fails with the last mismatch once
/// `max_time` has passed.
pub async fn expect_eventually(
    target: &Target,
    exp: &Expectation,
    max_time: Duration,
) -> Result<(), String> {
    await_convergence(max_time, async || {
        let captured = round_trip(target, exp, &[]).await?;
        compare(exp, &captured)
    })
    .await
}

/// Upstream's threshold in `http.MakeRequestAndExpectFailure`.
const REQUIRED_CONSECUTIVE_ERRORS: u32 = 5;

/// `http.MakeRequestAndExpectFailure` (`WaitForConsistentFailureResponse`): the request
/// must get a response that is neither 200 nor a timeout (408, 504)
/// [`REQUIRED_CONSECUTIVE_ERRORS`] times in a row; a request that gets no response, or a
/// timeout, starts the count again, and a 200 fails at once.
pub async fn expect_http_error(
    target: &Target,
    exp: &Expectation,
    max_time: Duration,
) -> Result<(), String> {
    await_consecutive(REQUIRED_CONSECUTIVE_ERRORS, max_time, async || {
        let captured = round_trip(target, exp, &[])
            .await
            .map_err(Attempt::NotYet)?;
        match captured.status {
            200 => Err(Attempt::Failed(
                "Request should fail, returned HTTP Status OK (200) instead".into(),
            )),
            status if is_timeout(status) => {
                Err(Attempt::NotYet(format!("got {status}, a timeout")))
            }
            _ => Ok(()),
        }
    })
    .await
}

/// `tls.MakeTLSRequestAndExpectFailureResponse`: one request, not retried, which must get
/// no response at all (a refused handshake, a connection closed before the reply).
pub async fn expect_failure(target: &Target, exp: &Expectation) -> Result<(), String> {
    match round_trip(target, exp, &[]).await {
        Ok(captured) => Err(format!(
            "Request should fail, but got status {}",
            captured.status
        )),
        Err(_) => Ok(()),
    }
}

/// `http.AwaitConvergence`: runs `attempt` until it succeeds
/// [`REQUIRED_CONSECUTIVE_SUCCESSES`] times in a row (no pause after a success), or fails
/// with its last complaint once `max_time` has passed.
pub async fn await_convergence(
    max_time: Duration,
    mut attempt: impl AsyncFnMut() -> Result<(), String>,
) -> Result<(), String> {
    await_consecutive(REQUIRED_CONSECUTIVE_SUCCESSES, max_time, async || {
        attempt().await.map_err(Attempt::NotYet)
    })
    .await
}

/// Why an attempt of [`await_consecutive`] did not succeed.
pub enum Attempt {
    /// Try again (after a pause), until the deadline.
    NotYet(String),
    /// Give up now (upstream's `t.Fatalf` inside the attempt).
    Failed(String),
}

/// `http.AwaitConvergence` with its threshold: runs `attempt` until it succeeds
/// `threshold` times in a row (no pause after a success), or fails with its last complaint
/// once `max_time` has passed or at once when an attempt says so.
pub async fn await_consecutive(
    threshold: u32,
    max_time: Duration,
    mut attempt: impl AsyncFnMut() -> Result<(), Attempt>,
) -> Result<(), String> {
    let start = Instant::now();
    let mut successes = 0;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt().await {
            Ok(()) => {
                successes += 1;
                if successes >= threshold {
                    return Ok(());
                }
                continue;
            }
            Err(Attempt::Failed(e)) => return Err(format!("{e} (attempt {attempts})")),
            Err(Attempt::NotYet(e)) if start.elapsed() >= max_time => {
                return Err(format!(
                    "{e} (still after {attempts} attempts in {max_time:?})"
                ));
            }
            Err(Attempt::NotYet(_)) => successes = 0,
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

pub fn is_redirect(status: u16) -> bool {
    matches!(status, 300 | 301 | 302 | 303 | 304 | 305 | 307 | 308)
}

pub fn is_timeout(status: u16) -> bool {
    matches!(status, 408 | 504)
}

/// Go's `resp.Location()`: an absolute URL as is, a relative one against the request URL
/// (whose port is implied when it is the scheme's).
pub fn parse_location(location: &str, target: &Target) -> Result<RedirectTarget, String> {
    if location.contains("://") {
        let uri: http::Uri = location
            .parse()
            .map_err(|e| format!("bad Location {location:?}: {e}"))?;
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        return Ok(RedirectTarget {
            scheme: uri.scheme_str().unwrap_or_default().to_string(),
            host: host.to_string(),
            port: uri.port_u16().map(|p| p.to_string()).unwrap_or_default(),
            path: uri.path().to_string(),
        });
    }
    let path = location.split(['?', '#']).next().unwrap_or_default();
    Ok(RedirectTarget {
        scheme: target.scheme().to_string(),
        host: target.ip.clone(),
        port: if target.port == target.default_port() {
            String::new()
        } else {
            target.port.to_string()
        },
        path: path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::from_yaml;

    fn target() -> Target {
        Target {
            ip: "127.0.100.1".into(),
            port: 80,
            tls: None,
        }
    }

    /// An HTTPS listener on 443 (the certificate plays no part in building requests).
    fn https_target(port: u16) -> Target {
        Target {
            port,
            tls: Some(TlsTarget {
                request: from_yaml("secret: ns/cert").unwrap(),
                certificate: TrustedCertificate {
                    pem: String::new(),
                    der: Vec::new().into(),
                    names: Default::default(),
                },
                client: None,
            }),
            ..target()
        }
    }

    fn exp(yaml: &str) -> Expectation {
        from_yaml(yaml).unwrap()
    }

    #[test]
    fn url_host_drops_the_default_port() {
        assert_eq!(target().url_host(), "127.0.100.1");
        let t = Target {
            ip: "127.0.100.1".into(),
            port: 8080,
            tls: None,
        };
        assert_eq!(t.url_host(), "127.0.100.1:8080");
        assert_eq!(https_target(443).url_host(), "127.0.100.1");
        assert_eq!(https_target(80).url_host(), "127.0.100.1:80");
    }

    #[test]
    fn requests_carry_host_method_headers_and_echo_set_header() {
        let e = exp(
            "request: {host: example.com, method: POST, path: '/v2?x=1', headers: {Version: one}}\nbackendSetResponseHeaders: {X-A: b}",
        );
        let req = build_request(&target(), &e, &[("X-Jitter".into(), "7".into())]).unwrap();
        assert_eq!(req.method(), "POST");
        assert_eq!(req.uri(), "http://127.0.100.1:80/v2?x=1");
        assert_eq!(req.headers()["host"], "example.com");
        assert_eq!(req.headers()["version"], "one");
        assert_eq!(req.headers()["x-jitter"], "7");
        assert_eq!(req.headers()["x-echo-set-header"], "X-A:b");
        let plain = build_request(&target(), &exp("request: {path: /}"), &[]).unwrap();
        assert_eq!(plain.headers()["host"], "127.0.100.1");
        assert_eq!(plain.headers()["x-echo-set-header"], "");
    }

    #[test]
    fn h2c_requests_carry_the_host_as_authority() {
        let e = exp("request: {path: /, protocol: H2C_PRIOR_KNOWLEDGE}");
        let req = build_request(&target(), &e, &[]).unwrap();
        assert_eq!(req.uri(), "http://127.0.100.1/");
        assert!(req.headers().get("host").is_none());
        let named = exp("request: {host: example.com, path: /a, protocol: H2C_PRIOR_KNOWLEDGE}");
        let req = build_request(&target(), &named, &[]).unwrap();
        assert_eq!(req.uri(), "http://example.com/a");
        assert!(from_yaml::<Expectation>("request: {path: /, protocol: H3}").is_err());
    }

    #[test]
    fn https_requests_use_the_https_scheme() {
        let e = exp("request: {path: /a}");
        let req = build_request(&https_target(443), &e, &[]).unwrap();
        assert_eq!(req.uri(), "https://127.0.100.1:443/a");
        assert_eq!(req.headers()["host"], "127.0.100.1");
        let h2 = exp("request: {host: example.org, path: /b, protocol: H2}");
        let req = build_request(&https_target(443), &h2, &[]).unwrap();
        assert_eq!(req.uri(), "https://example.org/b");
        assert!(req.headers().get("host").is_none());
    }

    /// A server on loopback answering with `statuses` in turn (the last one from then on),
    /// closing the connection without a reply for a 0. Also returns how many connections
    /// it has taken.
    async fn status_server(
        statuses: Vec<u16>,
    ) -> (Target, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = std::sync::Arc::new(AtomicUsize::new(0));
        let taken = served.clone();
        tokio::spawn(async move {
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                let n = served.fetch_add(1, Ordering::SeqCst);
                let status = statuses[n.min(statuses.len() - 1)];
                tokio::spawn(async move {
                    let mut head = [0u8; 1024];
                    let _ = tcp.read(&mut head).await;
                    if status != 0 {
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        let _ = tcp.write_all(reply.as_bytes()).await;
                    }
                });
            }
        });
        let target = Target {
            ip: addr.ip().to_string(),
            port: addr.port(),
            tls: None,
        };
        (target, taken)
    }

    #[tokio::test]
    async fn http_errors_must_come_five_times_in_a_row() {
        let exp = exp("request: {host: abc.example.com, path: /x}");
        let max_time = Duration::from_secs(3);
        // 502s after a dropped connection and a timeout, which restart the count.
        let (target, _) = status_server(vec![0, 502, 504, 503, 502, 404, 500, 502]).await;
        expect_http_error(&target, &exp, max_time).await.unwrap();
        // A 200 fails at once, whatever came before: no request follows it.
        let (target, requests) = status_server(vec![502, 200]).await;
        let err = expect_http_error(&target, &exp, max_time)
            .await
            .unwrap_err();
        assert!(err.contains("returned HTTP Status OK (200)"), "{err}");
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Timeouts never count.
        let (target, _) = status_server(vec![504]).await;
        let err = expect_http_error(&target, &exp, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.contains("timeout"), "{err}");
        // Nor do requests without a response.
        let (target, _) = status_server(vec![0]).await;
        assert!(
            expect_http_error(&target, &exp, Duration::from_secs(1))
                .await
                .is_err()
        );
    }

    #[test]
    fn locations_split_like_go_urls() {
        let abs = parse_location("https://[::1]:8443/a/b?q=1", &target()).unwrap();
        assert_eq!(
            abs,
            RedirectTarget {
                scheme: "https".into(),
                host: "::1".into(),
                port: "8443".into(),
                path: "/a/b".into(),
            }
        );
        let relative = parse_location("/elsewhere?x", &target()).unwrap();
        assert_eq!(relative.host, "127.0.100.1");
        assert_eq!(relative.port, "");
        assert_eq!(relative.path, "/elsewhere");
        let over_tls = parse_location("/x", &https_target(443)).unwrap();
        assert_eq!(
            (over_tls.scheme.as_str(), over_tls.port.as_str()),
            ("https", "")
        );
        let other_port = parse_location("/x", &https_target(8443)).unwrap();
        assert_eq!(other_port.port, "8443");
    }
}
