//! Requests over TLS, like upstream's `tls.MakeTLSRequestAndExpectEventuallyConsistentResponse`
//! through `roundtripper`: the client sends SNI = the server name and trusts only the
//! certificate of one Secret, as Go's `crypto/tls` does with that certificate as its only
//! root (`createTLSClientConfig`).
//!
//! The check is Go's, not webpki's: the server must present that very certificate (the
//! setup's certificates are their own roots: Go accepts a leaf found in the root pool), and
//! it must be valid for the server name by Go's `VerifyHostname`, where a wildcard stands
//! for exactly one label; so `*.org` covers `example.org`, which webpki would refuse.
//!
//! A request may present a client certificate, as upstream's `GetClientCertificateHook`
//! does: handed over whenever the server asks for one, which the request records so that a
//! step can check the server did ask.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nantian_e2e::harness::Reply;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::certificates::{ClientCertificate, TrustedCertificate};

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

/// A client certificate to present, and whether a server has asked for it since this value
/// was made (clones share the record; [`ClientAuth::fresh`] starts a new one).
#[derive(Debug, Clone)]
pub struct ClientAuth {
    key: Arc<CertifiedKey>,
    asked: Arc<AtomicBool>,
}

impl ClientAuth {
    /// Parses the pair like Go's `tls.X509KeyPair`: the certificate chain and its key.
    pub fn new(pair: &ClientCertificate) -> Result<Self, String> {
        let chain = CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("client certificate: {e}"))?;
        if chain.is_empty() {
            return Err("client certificate: no certificate in tls.crt".into());
        }
        let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())
            .map_err(|e| format!("client certificate key: {e}"))?;
        let signer = ring::sign::any_supported_type(&key)
            .map_err(|e| format!("client certificate key: {e}"))?;
        Ok(ClientAuth {
            key: Arc::new(CertifiedKey::new(chain, signer)),
            asked: Arc::default(),
        })
    }

    /// The same certificate with a record of its own.
    pub fn fresh(&self) -> Self {
        ClientAuth {
            key: self.key.clone(),
            asked: Arc::default(),
        }
    }

    /// Whether a server asked for a client certificate (and got this one).
    pub fn asked(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }
}

impl ResolvesClientCert for ClientAuth {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Sends `req` over a fresh TLS connection to `addr` with SNI `server_name`, trusting only
/// `trusted`, and presenting `client` if the server asks for a certificate. For HTTP/1.1
/// the request's Host header names the virtual host; for HTTP/2 its URI's authority does.
/// A failed handshake is an `Err` that says so.
pub async fn send(
    addr: &str,
    trusted: &TrustedCertificate,
    client: Option<&ClientAuth>,
    server_name: &str,
    alpn: Alpn,
    req: http::Request<Bytes>,
) -> Result<Reply, String> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("bad server name {server_name:?}: {e}"))?;
    let config = client_config(trusted, client, alpn)?;
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

/// A client config that trusts only `trusted` and offers no ALPN (upstream's TCP client).
pub fn pinned_config(trusted: &TrustedCertificate) -> Result<ClientConfig, String> {
    let mut config = client_config(trusted, None, Alpn::Http1)?;
    config.alpn_protocols.clear();
    Ok(config)
}

fn client_config(
    trusted: &TrustedCertificate,
    client: Option<&ClientAuth>,
    alpn: Alpn,
) -> Result<ClientConfig, String> {
    let provider = Arc::new(ring::default_provider());
    let verifier = PinnedCertificate {
        trusted: trusted.clone(),
        algorithms: provider.signature_verification_algorithms,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match client {
        Some(client) => builder.with_client_cert_resolver(Arc::new(client.clone())),
        None => builder.with_no_client_auth(),
    };
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
    use rustls::server::WebPkiClientVerifier;
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
        tls_echo_checking_clients(setup, secret, None).await
    }

    /// [`tls_echo`] that asks for client certificates of the CA in ConfigMap `ca` and
    /// refuses the handshake without one.
    async fn tls_echo_checking_clients(setup: &Setup, secret: &str, ca: Option<&str>) -> String {
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
        let provider = Arc::new(ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let config_map = setup
                    .objects
                    .iter()
                    .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == ca)
                    .unwrap();
                let mut roots = rustls::RootCertStore::empty();
                let pem = config_map["data"]["ca.crt"].as_str().unwrap().as_bytes();
                roots
                    .add(CertificateDer::from_pem_slice(pem).unwrap())
                    .unwrap();
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
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
            None,
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
            None,
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
            None,
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
            None,
            "example.org",
            Alpn::Http1,
            get("https://127.0.0.1/", Some("example.org")),
        )
        .await
        .unwrap_err();
        assert!(untrusted.starts_with("TLS handshake"), "{untrusted}");
    }

    #[tokio::test]
    async fn requests_present_a_client_certificate_when_asked() {
        let setup = certificates::generate().unwrap();
        let secret = "gateway-conformance-infra/tls-validity-checks-certificate";
        let trusted = &setup.certificates[&nn(secret)];
        let client = |name: &str| {
            let nn = nn(&format!("gateway-conformance-infra/{name}"));
            ClientAuth::new(&setup.client_certificates[&nn]).unwrap()
        };
        let default_client = client("tls-validity-checks-client-certificate");
        let per_port_client = client("tls-validity-checks-per-port-client-certificate");
        let checking =
            tls_echo_checking_clients(&setup, secret, Some("tls-validity-checks-ca-certificate"))
                .await;
        let request = async |addr: &str, client: Option<&ClientAuth>| {
            let req = get("https://127.0.0.1/", Some("example.org"));
            send(addr, trusted, client, "example.org", Alpn::Http1, req).await
        };

        // A certificate of the CA passes, and the server asked for it.
        let reply = request(&checking, Some(&default_client)).await.unwrap();
        assert_eq!(reply.status, 200);
        assert!(default_client.asked());
        // Another CA's certificate, or none, gets no response.
        assert!(request(&checking, Some(&per_port_client)).await.is_err());
        assert!(per_port_client.asked());
        assert!(request(&checking, None).await.is_err());

        // A server that does not ask never sees the certificate, and the record says so.
        let plain = tls_echo(&setup, secret).await;
        let unasked = default_client.fresh();
        let reply = request(&plain, Some(&unasked)).await.unwrap();
        assert_eq!(reply.status, 200);
        assert!(!unasked.asked());
        assert!(default_client.asked(), "fresh() starts a record of its own");
    }

    #[tokio::test]
    async fn a_step_target_expects_failure_and_checks_the_client_certificate_was_asked_for() {
        use crate::model::{Expectation, from_yaml};
        use crate::roundtrip::{Target, TlsTarget, expect_eventually, expect_failure};

        let setup = certificates::generate().unwrap();
        let secret = "gateway-conformance-infra/tls-validity-checks-certificate";
        let ca = "tls-validity-checks-ca-certificate";
        let checking: std::net::SocketAddr = tls_echo_checking_clients(&setup, secret, Some(ca))
            .await
            .parse()
            .unwrap();
        let plain: std::net::SocketAddr = tls_echo(&setup, secret).await.parse().unwrap();
        let target = |addr: std::net::SocketAddr, client: &str| {
            let yaml =
                format!("secret: {secret}\nclientCertificate: gateway-conformance-infra/{client}");
            let request: crate::model::TlsRequest = from_yaml(&yaml).unwrap();
            let pair = &setup.client_certificates[request.client_certificate.as_ref().unwrap()];
            Target {
                ip: addr.ip().to_string(),
                port: addr.port(),
                tls: Some(TlsTarget {
                    certificate: setup.certificates[&nn(secret)].clone(),
                    client: Some(ClientAuth::new(pair).unwrap()),
                    request,
                }),
            }
        };
        let exp: Expectation =
            from_yaml("request: {host: example.org, path: /}\nnamespace: tls").unwrap();
        let max_time = std::time::Duration::from_secs(5);

        let valid = target(checking, "tls-validity-checks-client-certificate");
        let fresh = valid.with_fresh_client_record();
        expect_eventually(&fresh, &exp, max_time).await.unwrap();
        fresh.client_certificate_presented().unwrap();
        let err = expect_failure(&valid.with_fresh_client_record(), &exp)
            .await
            .unwrap_err();
        assert!(err.contains("Request should fail"), "{err}");

        let other_ca = target(checking, "tls-validity-checks-per-port-client-certificate");
        expect_failure(&other_ca, &exp).await.unwrap();
        other_ca.client_certificate_presented().unwrap();

        // The server never asked: the request passes, the check after it does not.
        let unasked = target(plain, "tls-validity-checks-client-certificate");
        expect_eventually(&unasked, &exp, max_time).await.unwrap();
        let err = unasked.client_certificate_presented().unwrap_err();
        assert!(err.contains("not presented"), "{err}");
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
                client: None,
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
