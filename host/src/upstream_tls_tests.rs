//! Backend TLS settings: what is refused when decoding, and the HTTP/1.1 pool's two
//! paths over real TLS connections to the raw test backend (end-to-end cases through a
//! gateway are in tests/proxy/backend_tls.rs).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::upstream::{ProxyBody, UpstreamError};
use crate::upstream_h1::Http1Pool;

/// A CA and, signed by it, a server certificate for `names` served by the acceptor.
struct TestPki {
    ca_pem: String,
    acceptor: TlsAcceptor,
}

fn pki(names: &[&str]) -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    TestPki {
        ca_pem: ca.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
}

fn settings(hostname: &str, ca_pem: &[&str]) -> pb::BackendTls {
    pb::BackendTls {
        hostname: hostname.into(),
        ca_certificates_pem: ca_pem.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    }
}

fn refusal(settings: &pb::BackendTls) -> String {
    UpstreamTls::new(settings, UpstreamProtocol::Http1)
        .unwrap_err()
        .to_string()
}

#[test]
fn invalid_settings_are_refused_with_their_reason() {
    let ca = pki(&["backend.test"]).ca_pem;
    let garbled = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
    assert!(refusal(&settings("backend.test", &[garbled])).contains("bad PEM"));
    assert!(
        refusal(&settings("backend.test", &["plain text"])).contains("no PEM certificate"),
        "a bundle without any certificate is a mistake, not an empty trust list"
    );
    assert!(refusal(&settings("", &[&ca])).contains("must not be empty"));
    assert!(refusal(&settings("*.backend.test", &[&ca])).contains("wildcard"));
    assert!(refusal(&settings("10.0.0.1", &[&ca])).contains("not an IP address"));

    let with_san = |kind: &str, value: &str| pb::BackendTls {
        subject_alt_names: vec![pb::SubjectAltName {
            r#type: kind.into(),
            value: value.into(),
        }],
        ..settings("backend.test", &[&ca])
    };
    assert!(refusal(&with_san("IPAddress", "10.0.0.1")).contains("subject alt name type"));
    assert!(refusal(&with_san("URI", "no scheme")).contains("absolute URI"));
    assert!(refusal(&with_san("URI", "spiffe://a b")).contains("absolute URI"));
    assert!(refusal(&with_san("Hostname", "a..b")).contains("invalid hostname"));
    assert!(
        UpstreamTls::new(
            &with_san("URI", "spiffe://td/ns/a"),
            UpstreamProtocol::Http1
        )
        .is_ok()
    );
    assert!(UpstreamTls::new(&with_san("Hostname", "*.b.test"), UpstreamProtocol::Http1).is_ok());

    let bad_client_cert = pb::BackendTls {
        client_certificate: Some(pb::TlsCertificate {
            source: "ns/client".into(),
            cert_chain_pem: "garbage".into(),
            private_key_pem: String::new(),
        }),
        ..settings("backend.test", &[&ca])
    };
    assert!(refusal(&bad_client_cert).contains("ns/client"));
}

#[test]
fn without_any_root_nothing_verifies_and_equal_settings_are_recognised() {
    let none = UpstreamTls::new(&settings("backend.test", &[]), UpstreamProtocol::Http1).unwrap();
    assert!(none.check_trust().is_err());
    let ca = pki(&["backend.test"]).ca_pem;
    let a = UpstreamTls::new(&settings("backend.test", &[&ca]), UpstreamProtocol::Http1).unwrap();
    let b = UpstreamTls::new(&settings("backend.test", &[&ca]), UpstreamProtocol::Http1).unwrap();
    assert!(a.check_trust().is_ok());
    assert!(a.same_settings(&b));
    assert!(!a.same_settings(&none));
}

fn pool(tls: UpstreamTls) -> Http1Pool {
    Http1Pool::new(
        Duration::from_secs(5),
        Duration::from_secs(90),
        Some(Arc::new(tls)),
    )
}

fn request(method: Method, body: &'static [u8]) -> Request<ProxyBody> {
    let mut req = Request::new(crate::filter_chain::full_body(Bytes::from_static(body)));
    if body.is_empty() {
        *req.body_mut() = ProxyBody::default();
    }
    *req.method_mut() = method;
    *req.uri_mut() = "/x".parse().unwrap();
    req.headers_mut()
        .insert(http::header::HOST, "gw.test".parse().unwrap());
    req
}

/// A request whose body is a stream of unknown length: it goes on hyper's path.
fn streamed(method: Method, body: &'static [u8]) -> Request<ProxyBody> {
    let frames = futures::stream::iter([Ok(Frame::data(Bytes::from_static(body)))]);
    let (head, _) = request(method, b"").into_parts();
    Request::from_parts(head, StreamBody::new(frames).boxed_unsync())
}

async fn send(
    pool: &Http1Pool,
    addr: &str,
    req: Request<ProxyBody>,
) -> Result<Bytes, UpstreamError> {
    let endpoint = pool.endpoint(&addr.parse().unwrap());
    let resp = pool.send(&endpoint, req).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    Ok(resp.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn both_paths_read_answers_over_tls_and_reuse_their_connections() {
    let pki = pki(&["backend.test"]);
    let answer = |head: &[u8]| {
        let chunked = head.starts_with(b"GET");
        if chunked {
            let pieces: [&[u8]; 3] = [
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
                b"lo\r\n6\r\n world\r\n",
                b"0\r\n\r\n",
            ];
            pieces.iter().map(|p| p.to_vec()).collect()
        } else {
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n".to_vec(),
                b"sent".to_vec(),
            ]
        }
    };
    let (addr, connections) =
        crate::upstream_test_backend::tls_backend(answer, false, pki.acceptor).await;
    let tls = UpstreamTls::new(
        &settings("backend.test", &[&pki.ca_pem]),
        UpstreamProtocol::Http1,
    );
    let pool = pool(tls.unwrap());
    for _ in 0..3 {
        let body = send(&pool, &addr, request(Method::GET, b"")).await.unwrap();
        assert_eq!(body, "hello world");
        let body = send(&pool, &addr, request(Method::POST, b"x"))
            .await
            .unwrap();
        assert_eq!(body, "sent");
        let body = send(&pool, &addr, streamed(Method::POST, b"y"))
            .await
            .unwrap();
        assert_eq!(body, "sent");
    }
    // The direct path's connection (no body, or one in memory) and hyper's (a streamed
    // body), each reused.
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_tls_connection_the_backend_closed_while_idle_is_replaced() {
    let pki = pki(&["backend.test"]);
    let answer = |_: &[u8]| vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()];
    let (addr, connections) =
        crate::upstream_test_backend::tls_backend(answer, true, pki.acceptor).await;
    let tls = UpstreamTls::new(
        &settings("backend.test", &[&pki.ca_pem]),
        UpstreamProtocol::Http1,
    );
    let pool = pool(tls.unwrap());
    for wait in [0, 20] {
        send(&pool, &addr, request(Method::GET, b"")).await.unwrap();
        // Whether or not the close has reached the idle connection: no error either way.
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    send(&pool, &addr, request(Method::GET, b"")).await.unwrap();
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn failed_verification_is_a_tls_error_answered_with_502() {
    let pki = pki(&["backend.test"]);
    let answer = |_: &[u8]| vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()];
    let (addr, connections) =
        crate::upstream_test_backend::tls_backend(answer, false, pki.acceptor).await;
    for tls in [
        settings("other.test", &[&pki.ca_pem]),
        settings("backend.test", &[]),
    ] {
        let pool = pool(UpstreamTls::new(&tls, UpstreamProtocol::Http1).unwrap());
        for req in [request(Method::GET, b""), request(Method::POST, b"x")] {
            let err = send(&pool, &addr, req).await.unwrap_err();
            assert!(matches!(err, UpstreamError::Tls { .. }), "{err}");
            assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        }
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}
