//! Requests over TLS, like upstream's `tls.MakeTLSRequestAndExpectEventuallyConsistentResponse`
//! through `roundtripper`: the client sends SNI = the server name and trusts only the
//! certificate of one Secret, as Go's `crypto/tls` does with that certificate as its only
//! root (`createTLSClientConfig`).
//!
//! The check is Go's, not webpki's: the server must present that very certificate (the
//! setup's certificates are their own roots: Go accepts a leaf found in the root pool), and
//! it must be valid for the server name by Go's `VerifyHostname`, where a wildcard stands
//! for exactly one label; so `*.org` covers `example.org`, which webpki would refuse.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nantian_e2e::harness::Reply;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::certificates::TrustedCertificate;

/// The application protocols of an HTTPS request, as ALPN names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `roundtripper.HTTPSProtocol`: HTTP/1.1.
    Http1,
    /// `roundtripper.H2Protocol`: HTTP/2, which the server must agree to.
    H2,
}

impl Alpn {
    fn id(self) -> &'static [u8] {
        match self {
            Alpn::Http1 => b"http/1.1",
            Alpn::H2 => b"h2",
        }
    }
}

/// Sends `req` over a fresh TLS connection to `addr` with SNI `server_name`, trusting only
/// `trusted`. For HTTP/1.1 the request's Host header names the virtual host; for HTTP/2 its
/// URI's authority does. A failed handshake is an `Err` that says so.
pub async fn send(
    addr: &str,
    trusted: &TrustedCertificate,
    server_name: &str,
    alpn: Alpn,
    req: http::Request<Bytes>,
) -> Result<Reply, String> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("bad server name {server_name:?}: {e}"))?;
    let config = client_config(trusted, alpn)?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: {e}"))?;
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let negotiated = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = TokioIo::new(stream);
    let resp = match alpn {
        Alpn::H2 => {
            if negotiated.as_deref() != Some(Alpn::H2.id()) {
                return Err(format!(
                    "unexpected ALPN protocol {:?}; want \"h2\"",
                    String::from_utf8_lossy(negotiated.as_deref().unwrap_or_default())
                ));
            }
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender.send_request(req.map(Full::new)).await
        }
        Alpn::Http1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender.send_request(origin_form(req)?.map(Full::new)).await
        }
    }
    .map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// An HTTP/1.1 connection carries the path only; the host is in the Host header.
fn origin_form(req: http::Request<Bytes>) -> Result<http::Request<Bytes>, String> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    parts.uri = path
        .parse()
        .map_err(|e| format!("bad path {path:?}: {e}"))?;
    Ok(http::Request::from_parts(parts, body))
}

fn client_config(trusted: &TrustedCertificate, alpn: Alpn) -> Result<ClientConfig, String> {
    let provider = Arc::new(ring::default_provider());
    let verifier = PinnedCertificate {
        trusted: trusted.clone(),
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.id().to_vec()];
    Ok(config)
}

/// Trusts one certificate: the server must present it, valid for the server name.
#[derive(Debug)]
struct PinnedCertificate {
    trusted: TrustedCertificate,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() != self.trusted.der.as_ref() {
            return Err(CertificateError::UnknownIssuer.into());
        }
        if !valid_for(&self.trusted, server_name) {
            return Err(CertificateError::NotValidForName.into());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Go's `Certificate.VerifyHostname`: an IP against the IP SANs, a name against the DNS
/// SANs (the common name is not looked at).
fn valid_for(cert: &TrustedCertificate, name: &ServerName<'_>) -> bool {
    match name {
        ServerName::DnsName(dns) => cert
            .names
            .dns
            .iter()
            .any(|pattern| matches_hostname(pattern, dns.as_ref())),
        ServerName::IpAddress(ip) => cert.names.ips.contains(&IpAddr::from(*ip)),
        _ => false,
    }
}

/// Go's `matchHostnames`: label by label, ASCII case-insensitively, where a leftmost `*`
/// label matches any one label.
fn matches_hostname(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    let (pattern, host): (Vec<&str>, Vec<&str>) =
        (pattern.split('.').collect(), host.split('.').collect());
    pattern.len() == host.len()
        && pattern
            .iter()
            .zip(&host)
            .enumerate()
            .all(|(i, (p, h))| (i == 0 && *p == "*") || p == h)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::server::conn::auto;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    use serde_json::json;
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::certificates::{self, Setup};
    use crate::model::NsName;

    fn nn(s: &str) -> NsName {
        s.parse().unwrap()
    }

    /// A TLS echo server with the certificate of Secret `secret`, speaking HTTP/1.1 and
    /// HTTP/2 as ALPN settles; its echo names the SNI and HTTP version it saw.
    async fn tls_echo(setup: &Setup, secret: &str) -> String {
        let object = setup
            .objects
            .iter()
            .find(|o| {
                let meta = &o["metadata"];
                o["kind"] == "Secret"
                    && format!(
                        "{}/{}",
                        meta["namespace"].as_str().unwrap(),
                        meta["name"].as_str().unwrap()
                    ) == secret
            })
            .unwrap();
        let chain = CertificateDer::pem_slice_iter(
            object["stringData"]["tls.crt"].as_str().unwrap().as_bytes(),
        )
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
        let key = PrivateKeyDer::from_pem_slice(
            object["stringData"]["tls.key"].as_str().unwrap().as_bytes(),
        )
        .unwrap();
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls
                        .get_ref()
                        .1
                        .server_name()
                        .unwrap_or_default()
                        .to_string();
                    let service = service_fn(move |req: http::Request<Incoming>| {
                        let host = req
                            .headers()
                            .get(http::header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .or(req.uri().host())
                            .unwrap_or_default()
                            .to_string();
                        let echo = json!({
                            "path": req.uri().path(),
                            "host": host,
                            "method": req.method().as_str(),
                            "namespace": "tls",
                            "pod": "tls-echo",
                            "headers": {"X-Sni": [sni.clone()], "X-Version": [format!("{:?}", req.version())]},
                        });
                        let resp = if req.uri().path() == "/redirect" {
                            http::Response::builder()
                                .status(302)
                                .header(http::header::LOCATION, "/elsewhere")
                                .body(Full::new(Bytes::new()))
                        } else {
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(echo.to_string())))
                        }
                        .unwrap();
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        addr
    }

    fn get(uri: &str, host: Option<&str>) -> http::Request<Bytes> {
        let mut req = http::Request::get(uri);
        if let Some(host) = host {
            req = req.header(http::header::HOST, host);
        }
        req.body(Bytes::new()).unwrap()
    }

    #[test]
    fn hostnames_match_like_go() {
        assert!(matches_hostname("*.org", "example.org"));
        assert!(matches_hostname("*.org", "Unknown-Example.ORG."));
        assert!(!matches_hostname("*.org", "a.example.org"));
        assert!(!matches_hostname("*.org", "org"));
        assert!(matches_hostname(
            "*.wildcard.org",
            "third-example.wildcard.org"
        ));
        assert!(!matches_hostname("*.wildcard.org", "wildcard.org"));
        assert!(matches_hostname("abc.example.com", "ABC.example.com"));
        assert!(!matches_hostname("abc.example.com", "x.example.com"));
    }

    #[tokio::test]
    async fn requests_trust_one_certificate_valid_for_the_server_name() {
        let setup = certificates::generate().unwrap();
        let secret = "gateway-conformance-infra/tls-validity-checks-certificate";
        let addr = tls_echo(&setup, secret).await;
        let trusted = &setup.certificates[&nn(secret)];

        let reply = send(
            &addr,
            trusted,
            "example.org",
            Alpn::Http1,
            get("https://127.0.0.1/a?b=c", Some("other.example.org")),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200);
        let echo = reply.echo();
        assert_eq!(echo.path, "/a");
        assert_eq!(echo.host, "other.example.org");
        assert_eq!(echo.headers["X-Sni"], ["example.org"]);
        assert_eq!(echo.headers["X-Version"], ["HTTP/1.1"]);

        let reply = send(
            &addr,
            trusted,
            "third-example.wildcard.org",
            Alpn::H2,
            get("https://fith-example.wildcard.org/h2", None),
        )
        .await
        .unwrap();
        let echo = reply.echo();
        assert_eq!(echo.host, "fith-example.wildcard.org");
        assert_eq!(echo.headers["X-Sni"], ["third-example.wildcard.org"]);
        assert_eq!(echo.headers["X-Version"], ["HTTP/2.0"]);

        // Not a name of the certificate: `*.org` covers one label only.
        let wrong_name = send(
            &addr,
            trusted,
            "a.example.org",
            Alpn::Http1,
            get("https://127.0.0.1/", Some("a.example.org")),
        )
        .await
        .unwrap_err();
        assert!(wrong_name.starts_with("TLS handshake"), "{wrong_name}");
        // Another Secret's certificate is not trusted.
        let other = &setup.certificates[&nn("gateway-conformance-web-backend/certificate")];
        let untrusted = send(
            &addr,
            other,
            "example.org",
            Alpn::Http1,
            get("https://127.0.0.1/", Some("example.org")),
        )
        .await
        .unwrap_err();
        assert!(untrusted.starts_with("TLS handshake"), "{untrusted}");
    }

    #[tokio::test]
    async fn expectations_compare_over_tls_with_https_defaults() {
        use crate::compare::compare;
        use crate::model::{Expectation, from_yaml};
        use crate::roundtrip::{Target, TlsTarget, round_trip};

        let setup = certificates::generate().unwrap();
        let secret = "gateway-conformance-infra/tls-validity-checks-certificate";
        let addr: std::net::SocketAddr = tls_echo(&setup, secret).await.parse().unwrap();
        let target = Target {
            ip: addr.ip().to_string(),
            port: addr.port(),
            tls: Some(TlsTarget {
                request: from_yaml(&format!("secret: {secret}")).unwrap(),
                certificate: setup.certificates[&nn(secret)].clone(),
            }),
        };
        let exp = |yaml: &str| -> Expectation { from_yaml(yaml).unwrap() };

        let echoed =
            exp("request: {host: example.org, path: /a}\nbackend: tls-echo\nnamespace: tls");
        let captured = round_trip(&target, &echoed, &[]).await.unwrap();
        compare(&echoed, &captured).unwrap();

        // A relative Location is against the https URL; the expected scheme defaults to it.
        let redirect = exp(&format!(
            "request: {{host: example.org, path: /redirect}}\nresponse: {{statusCodes: [302]}}\nredirect: {{path: /elsewhere, port: '{}'}}",
            addr.port()
        ));
        let captured = round_trip(&target, &redirect, &[]).await.unwrap();
        assert_eq!(captured.request_scheme, "https");
        assert_eq!(captured.redirect.as_ref().unwrap().scheme, "https");
        compare(&redirect, &captured).unwrap();
        let mut to_http = redirect.clone();
        to_http.redirect.as_mut().unwrap().scheme = "http".into();
        let scheme = compare(&to_http, &captured).unwrap_err();
        assert!(scheme.contains("scheme"), "{scheme}");

        // No host and no serverName: upstream refuses to send it.
        let nameless = exp("request: {path: /a}");
        let err = round_trip(&target, &nameless, &[]).await.unwrap_err();
        assert!(err.contains("no server name"), "{err}");
    }
}
