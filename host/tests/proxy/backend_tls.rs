//! TLS from the gateway to backends (BackendTLSPolicy): verification by CA and hostname
//! or subject alt names, SNI, client certificates, connection reuse and resumption, the
//! streamed bodies and upgrades that take hyper's path, HTTP/2 by ALPN, settings changes,
//! NACKs.

use std::sync::Arc;

use http::{Request, StatusCode};
use nantian_proto::config as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;
use crate::support_tls::*;

const WORKLOAD_URI: &str = "spiffe://cluster.local/ns/test/sa/backend";

/// A gateway with one rule per backend, `/<name>` → backend `<name>`.
async fn serve(backends: Vec<pb::Backend>) -> (Arc<nantian_host::Gateway>, u16) {
    let port = free_port();
    let gw = gateway();
    apply(&gw, port, backends, "1").await.expect("valid config");
    (gw, port)
}

async fn apply(
    gw: &nantian_host::Gateway,
    port: u16,
    backends: Vec<pb::Backend>,
    version: &str,
) -> Result<(), nantian_proto::xds::ErrorDetail> {
    let mut snapshot = Snapshot::default().with(listener("http", port, ""));
    for b in backends {
        let name = b.name.strip_prefix("backend/test/").unwrap().to_string();
        snapshot = snapshot
            .with(rule(
                &name,
                &format!("/{name}"),
                vec![backend_ref(&name, 1)],
            ))
            .with(b);
    }
    snapshot.apply(gw, version).await
}

fn tls_backend(name: &str, echo: &TlsEcho, tls: pb::BackendTls) -> pb::Backend {
    pb::Backend {
        tls: Some(tls),
        ..backend(name, "http", &[echo.addr])
    }
}

async fn post(client: &TestClient, port: u16, path: &str, body: &'static str) -> Reply {
    let req = Request::post(format!("http://127.0.0.1:{port}{path}"))
        .header("host", "gw.test")
        .body(full(body))
        .unwrap();
    send(client, req).await
}

/// A POST whose body is streamed (chunked, no length known ahead): it goes upstream on
/// hyper's path.
async fn post_streamed(client: &TestClient, port: u16, path: &str, body: &'static str) -> Reply {
    let frames = futures::stream::iter([Ok(http_body::Frame::data(bytes::Bytes::from(body)))]);
    let req = Request::post(format!("http://127.0.0.1:{port}{path}"))
        .header("host", "gw.test")
        .body(http_body_util::BodyExt::boxed(
            http_body_util::StreamBody::new(frames),
        ))
        .unwrap();
    send(client, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_and_posts_reach_the_backend_over_tls_on_reused_and_resumed_connections() {
    let ca = Ca::new("backend CA");
    let echo = start_tls_echo("tls", &ca.server(&["backend.test"], &[]), None).await;
    let tls = backend_tls("backend.test", &[&ca.pem()]);
    let port = free_port();
    let gw = gateway();
    Snapshot::default()
        .with(listener("http", port, ""))
        .with(tls_backend("tls", &echo, tls))
        .with(rule("tls", "/tls", vec![backend_ref("tls", 1)]))
        .with(rule("hold", "/hold", vec![backend_ref("tls", 1)]))
        .apply(&gw, "1")
        .await
        .expect("valid config");
    let client = http1_client();

    for _ in 0..3 {
        let ok = get(&client, port, "gw.test", "/tls/get").await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        assert_eq!(ok.header("x-backend"), "tls");
        assert_eq!(ok.header("x-sni"), "backend.test");
        assert_eq!(ok.seen("host"), Some("gw.test"), "Host is the client's");
        let posted = post(&client, port, "/tls/post", "a body over TLS").await;
        assert_eq!(posted.status, StatusCode::OK);
        assert_eq!(posted.body, "a body over TLS");
        assert_eq!(posted.header("x-sni"), "backend.test");
        let streamed = post_streamed(&client, port, "/tls/post", "a stream over TLS").await;
        assert_eq!(streamed.status, StatusCode::OK);
        assert_eq!(streamed.body, "a stream over TLS");
    }
    // One connection for the direct path (no body, or one in memory), one for hyper's
    // (streamed bodies): both were reused.
    let accepted = echo.accepted();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    for a in &accepted {
        assert_eq!(a.sni.as_deref(), Some("backend.test"));
        assert_eq!(a.alpn.as_deref(), Some("http/1.1"));
        assert!(!a.client_certificate);
    }

    // A request held by the backend keeps its connection busy: the next one needs a new
    // connection, which resumes the session of an earlier one.
    let held = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, port, "gw.test", "/hold").await })
    };
    echo.arrived.notified().await;
    let ok = get(&client, port, "gw.test", "/tls/get").await;
    assert_eq!(ok.status, StatusCode::OK);
    echo.release.notify_one();
    assert_eq!(held.await.unwrap().status, StatusCode::OK);
    let accepted = echo.accepted();
    assert_eq!(accepted.len(), 3, "{accepted:?}");
    assert!(accepted[2].resumed, "{accepted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_that_do_not_verify_fail_with_502() {
    let ca = Ca::new("backend CA");
    let other_ca = Ca::new("another CA");
    let echo = start_tls_echo("tls", &ca.server(&["backend.test"], &[]), None).await;
    let system_only = pb::BackendTls {
        system_roots: true,
        ..backend_tls("backend.test", &[])
    };
    let san_mismatch = pb::BackendTls {
        subject_alt_names: vec![san("Hostname", "nope.test")],
        ..backend_tls("backend.test", &[&ca.pem()])
    };
    let backends = vec![
        tls_backend(
            "wrong-ca",
            &echo,
            backend_tls("backend.test", &[&other_ca.pem()]),
        ),
        tls_backend("mismatch", &echo, backend_tls("other.test", &[&ca.pem()])),
        tls_backend("no-roots", &echo, backend_tls("backend.test", &[])),
        tls_backend("system-only", &echo, system_only),
        tls_backend("san-mismatch", &echo, san_mismatch),
        tls_backend("good", &echo, backend_tls("backend.test", &[&ca.pem()])),
    ];
    let (_gw, port) = serve(backends).await;
    let client = http1_client();

    for name in [
        "wrong-ca",
        "mismatch",
        "no-roots",
        "system-only",
        "san-mismatch",
    ] {
        let path = format!("/{name}");
        let failed = get(&client, port, "gw.test", &path).await;
        assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "GET {name}");
        let failed = post(&client, port, &path, "body").await;
        assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "POST {name}");
    }
    assert!(echo.accepted().is_empty(), "no handshake completed");
    let ok = get(&client, port, "gw.test", "/good").await;
    assert_eq!(ok.status, StatusCode::OK, "the backend itself is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_alt_names_replace_the_hostname_in_verification() {
    let ca = Ca::new("backend CA");
    let server = ca.server(&["backend.test", "*.svc.test"], &[WORKLOAD_URI]);
    let echo = start_tls_echo("tls", &server, None).await;
    let with_sans = |sans: Vec<pb::SubjectAltName>, hostname: &str| pb::BackendTls {
        subject_alt_names: sans,
        ..backend_tls(hostname, &[&ca.pem()])
    };
    let backends = vec![
        tls_backend(
            "dns",
            &echo,
            with_sans(
                vec![
                    san("Hostname", "nope.test"),
                    san("Hostname", "backend.test"),
                ],
                "unrelated.test",
            ),
        ),
        tls_backend(
            "under-wildcard",
            &echo,
            with_sans(vec![san("Hostname", "api.svc.test")], "unrelated.test"),
        ),
        tls_backend(
            "same-wildcard",
            &echo,
            with_sans(vec![san("Hostname", "*.svc.test")], "unrelated.test"),
        ),
        tls_backend(
            "uri",
            &echo,
            with_sans(vec![san("URI", WORKLOAD_URI)], "unrelated.test"),
        ),
        tls_backend(
            "other-uri",
            &echo,
            with_sans(
                vec![san("URI", "spiffe://cluster.local/ns/test/sa/other")],
                "backend.test",
            ),
        ),
        tls_backend(
            "other-wildcard",
            &echo,
            with_sans(vec![san("Hostname", "*.other.test")], "backend.test"),
        ),
    ];
    let (_gw, port) = serve(backends).await;
    let client = http1_client();

    for name in ["dns", "under-wildcard", "same-wildcard", "uri"] {
        let ok = get(&client, port, "gw.test", &format!("/{name}")).await;
        assert_eq!(ok.status, StatusCode::OK, "{name}: {}", ok.body);
        assert_eq!(
            ok.header("x-sni"),
            "unrelated.test",
            "{name}: SNI is the hostname"
        );
    }
    // The hostname matches the certificate, but it is not what is checked.
    for name in ["other-uri", "other-wildcard"] {
        let failed = get(&client, port, "gw.test", &format!("/{name}")).await;
        assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_when_the_backend_requires_one() {
    let ca = Ca::new("backend CA");
    let client_ca = Ca::new("gateway client CA");
    let stranger_ca = Ca::new("unknown client CA");
    let echo = start_tls_echo("mtls", &ca.server(&["backend.test"], &[]), Some(&client_ca)).await;
    let with_client = |cert: Option<pb::TlsCertificate>| pb::BackendTls {
        client_certificate: cert,
        ..backend_tls("backend.test", &[&ca.pem()])
    };
    let backends = vec![
        tls_backend(
            "with-cert",
            &echo,
            with_client(Some(client_ca.client("gateway").as_pb())),
        ),
        tls_backend("without-cert", &echo, with_client(None)),
        pb::Backend {
            tls: Some(with_client(None)),
            ..backend("h2-without-cert", "h2c", &[echo.addr])
        },
        tls_backend(
            "unknown-cert",
            &echo,
            with_client(Some(stranger_ca.client("gateway").as_pb())),
        ),
    ];
    let (_gw, port) = serve(backends).await;
    let client = http1_client();

    let ok = get(&client, port, "gw.test", "/with-cert").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let posted = post(&client, port, "/with-cert", "mutual").await;
    assert_eq!(posted.body, "mutual");
    assert!(echo.accepted().iter().all(|a| a.client_certificate));
    // TLS 1.3 reports the refusal after the client's handshake: on the first read, or
    // when the connection is readied for its first request. Either way a 502.
    for name in ["without-cert", "unknown-cert", "h2-without-cert"] {
        let path = format!("/{name}");
        let failed = get(&client, port, "gw.test", &path).await;
        assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "GET {name}");
        let failed = post(&client, port, &path, "body").await;
        assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "POST {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_backends_get_h2_over_tls() {
    let ca = Ca::new("backend CA");
    let echo = start_tls_echo("h2", &ca.server(&["backend.test"], &[]), None).await;
    let h2 = pb::Backend {
        tls: Some(backend_tls("backend.test", &[&ca.pem()])),
        ..backend("h2", "h2c", &[echo.addr])
    };
    let (_gw, port) = serve(vec![h2]).await;
    let client = http1_client();
    for _ in 0..2 {
        let ok = get(&client, port, "gw.test", "/h2/x").await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        assert_eq!(ok.header("x-version"), "HTTP/2.0");
        assert_eq!(ok.header("x-authority"), "gw.test");
        let posted = post(&client, port, "/h2/x", "multiplexed").await;
        assert_eq!(posted.body, "multiplexed");
    }
    let accepted = echo.accepted();
    assert_eq!(
        accepted.len(),
        1,
        "one multiplexed connection: {accepted:?}"
    );
    assert_eq!(accepted[0].alpn.as_deref(), Some("h2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_tunnel_over_tls() {
    let ca = Ca::new("backend CA");
    let echo = start_tls_echo("ws", &ca.server(&["backend.test"], &[]), None).await;
    let tls = backend_tls("backend.test", &[&ca.pem()]);
    let (_gw, port) = serve(vec![tls_backend("ws", &echo, tls)]).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(
            b"GET /ws/chat HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("x-sni: backend.test"), "{head}");
    stream.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = [0u8; 23];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tls_settings_get_new_connections() {
    let ca = Ca::new("backend CA");
    let other_ca = Ca::new("another CA");
    let echo = start_tls_echo("tls", &ca.server(&["backend.test", "alt.test"], &[]), None).await;
    let with = |hostname: &str, ca_pem: &str| {
        vec![tls_backend("tls", &echo, backend_tls(hostname, &[ca_pem]))]
    };
    let port = free_port();
    let gw = gateway();
    let client = http1_client();
    apply(&gw, port, with("backend.test", &ca.pem()), "1")
        .await
        .unwrap();
    assert_eq!(
        get(&client, port, "gw.test", "/tls").await.status,
        StatusCode::OK
    );

    // The same settings again: the pooled connection goes on serving.
    apply(&gw, port, with("backend.test", &ca.pem()), "2")
        .await
        .unwrap();
    let ok = get(&client, port, "gw.test", "/tls").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(echo.accepted().len(), 1);

    // A CA that does not sign the backend's certificate: the connection verified under
    // the old CA must not serve the new settings.
    apply(&gw, port, with("backend.test", &other_ca.pem()), "3")
        .await
        .unwrap();
    let failed = get(&client, port, "gw.test", "/tls").await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);

    // A new hostname: new connections with the new SNI.
    apply(&gw, port, with("alt.test", &ca.pem()), "4")
        .await
        .unwrap();
    let ok = get(&client, port, "gw.test", "/tls").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("x-sni"), "alt.test");

    // TLS to cleartext is a new pool too: the backend only speaks TLS.
    apply(&gw, port, vec![backend("tls", "http", &[echo.addr])], "5")
        .await
        .unwrap();
    let failed = get(&client, port, "gw.test", "/tls").await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_backend_tls_is_nacked_and_the_last_good_config_kept() {
    let ca = Ca::new("backend CA");
    let echo = start_tls_echo("tls", &ca.server(&["backend.test"], &[]), None).await;
    let port = free_port();
    let gw = gateway();
    let good = backend_tls("backend.test", &[&ca.pem()]);
    apply(
        &gw,
        port,
        vec![tls_backend("tls", &echo, good.clone())],
        "1",
    )
    .await
    .unwrap();

    let bad_pem = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
    let cases = [
        (backend_tls("backend.test", &[bad_pem]), "backend CA"),
        (
            backend_tls("backend.test", &["no PEM here"]),
            "no PEM certificate",
        ),
        (backend_tls("", &[&ca.pem()]), "must not be empty"),
        (
            pb::BackendTls {
                subject_alt_names: vec![san("IPAddress", "10.0.0.1")],
                ..good.clone()
            },
            "subject alt name type",
        ),
        (
            pb::BackendTls {
                client_certificate: Some(pb::TlsCertificate {
                    source: "test/broken".into(),
                    cert_chain_pem: "garbage".into(),
                    private_key_pem: String::new(),
                }),
                ..good.clone()
            },
            "test/broken",
        ),
    ];
    for (i, (tls, reason)) in cases.into_iter().enumerate() {
        let version = format!("bad-{i}");
        let nack = apply(&gw, port, vec![tls_backend("tls", &echo, tls)], &version)
            .await
            .unwrap_err();
        // The backend, named with the reason; the route then references nothing valid.
        let backend = nack.rejected.iter().find(|r| r.name == "backend/test/tls");
        let backend = backend.unwrap_or_else(|| panic!("{nack:?}"));
        assert!(backend.reason.contains(reason), "{reason}: {nack:?}");
        assert_eq!(gw.snapshot().version, "1");
    }
    let client = http1_client();
    assert_eq!(
        get(&client, port, "gw.test", "/tls").await.status,
        StatusCode::OK
    );
}
