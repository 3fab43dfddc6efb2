//! Routing, gateway error statuses, redirects, forwarding headers, HTTP/1.1 + h2c.

use std::sync::Arc;

use http::{Request, StatusCode};
use nantian_proto::config as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

async fn serve_test_config() -> (Arc<nantian_host::Gateway>, u16) {
    let a = start_echo("a").await;
    let b = start_echo("b").await;
    let port = free_port();
    let refused: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = gateway();
    let mut redirect = rule("redirect", "/old", vec![]);
    redirect.filters.push(pb::RouteFilter {
        kind: Some(pb::route_filter::Kind::RequestRedirect(
            pb::RequestRedirect {
                hostname: "example.org".into(),
                path: Some(pb::PathModifier {
                    r#type: "ReplacePrefixMatch".into(),
                    value: "/new".into(),
                }),
                status_code: 301,
                ..Default::default()
            },
        )),
    });
    let mut host_only = rule("host-only", "/host", vec![backend_ref("b", 1)]);
    host_only.hostnames = vec!["only.example.com".into()];
    Snapshot::default()
        .with(listener("http", port, ""))
        .with(backend("a", "http", &[a.addr]))
        .with(backend("b", "http", &[b.addr]))
        .with(backend("h2", "h2c", &[a.addr]))
        .with(backend("empty", "http", &[]))
        .with(backend("down", "http", &[refused]))
        .with(rule("echo", "/echo", vec![backend_ref("a", 1)]))
        .with(rule(
            "weighted",
            "/weighted",
            vec![backend_ref("a", 0), backend_ref("b", 5)],
        ))
        .with(rule("h2", "/h2", vec![backend_ref("h2", 1)]))
        .with(rule("invalid", "/invalid", vec![backend_ref("", 1)]))
        .with(rule("none", "/none", vec![]))
        .with(rule("zero", "/zero", vec![backend_ref("a", 0)]))
        .with(rule("empty", "/empty", vec![backend_ref("empty", 1)]))
        .with(rule("down", "/down", vec![backend_ref("down", 1)]))
        .with(redirect)
        .with(host_only)
        .apply(&gw, "1")
        .await
        .expect("valid config");
    (gw, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_requests_and_answers_gateway_errors() {
    let (gw, port) = serve_test_config().await;
    let client = http1_client();

    let ok = get(&client, port, "echo.test", "/echo/x?y=1").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("x-backend"), "a");
    assert_eq!(ok.header("x-path"), "/echo/x?y=1");
    assert_eq!(ok.header("x-version"), "HTTP/1.1");
    assert_eq!(ok.seen("host"), Some("echo.test"), "Host is preserved");
    assert_eq!(ok.seen("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(ok.seen("x-forwarded-proto"), Some("http"));
    assert!(
        ok.headers.get("keep-alive").is_none(),
        "hop-by-hop response header stripped"
    );

    for (path, status) in [
        ("/nothing", StatusCode::NOT_FOUND),
        ("/echoes", StatusCode::NOT_FOUND),
        ("/invalid", StatusCode::INTERNAL_SERVER_ERROR),
        ("/none", StatusCode::INTERNAL_SERVER_ERROR),
        ("/zero", StatusCode::INTERNAL_SERVER_ERROR),
        ("/empty", StatusCode::SERVICE_UNAVAILABLE),
        ("/down", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        assert_eq!(
            get(&client, port, "echo.test", path).await.status,
            status,
            "{path}"
        );
    }
    for _ in 0..20 {
        assert_eq!(
            get(&client, port, "echo.test", "/weighted")
                .await
                .header("x-backend"),
            "b"
        );
    }
    assert_eq!(
        get(&client, port, "only.example.com", "/host").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&client, port, "Only.Example.com:81", "/host")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&client, port, "other.example.com", "/host")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let redirected = get(&client, port, "echo.test", "/old/page?q=1").await;
    assert_eq!(redirected.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        redirected.header("location"),
        format!("http://example.org:{port}/new/page?q=1")
    );

    let text = gw.metrics().encode();
    assert!(
        text.contains(r#"nantian_requests_total{route="route/test/echo/rule/0",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"nantian_requests_total{route="none",status="404"}"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"nantian_upstream_request_duration_seconds_count{backend="backend/test/a"}"#
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_headers_and_streams_bodies() {
    let (_gw, port) = serve_test_config().await;
    let client = http1_client();

    let req = Request::post(format!("http://127.0.0.1:{port}/echo"))
        .header("host", "echo.test")
        .header("connection", "x-secret")
        .header("x-secret", "1")
        .header("x-forwarded-for", "10.1.2.3")
        .body(full("hello body"))
        .unwrap();
    let echoed = send(&client, req).await;
    assert_eq!(echoed.status, StatusCode::OK);
    assert_eq!(echoed.body, "hello body");

    let req = Request::get(format!("http://127.0.0.1:{port}/echo"))
        .header("host", "echo.test")
        .header("connection", "x-secret")
        .header("x-secret", "1")
        .header("te", "gzip")
        .header("x-forwarded-for", "10.1.2.3")
        .body(empty())
        .unwrap();
    let seen = send(&client, req).await;
    assert_eq!(
        seen.seen("x-secret"),
        None,
        "headers named by Connection are dropped"
    );
    assert_eq!(seen.seen("te"), None);
    assert_eq!(seen.seen("x-forwarded-for"), Some("10.1.2.3, 127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_h2c_clients_and_h2c_backends() {
    let (_gw, port) = serve_test_config().await;

    let h2 = get(&h2c_client(), port, "ignored-by-h2", "/echo").await;
    assert_eq!(h2.status, StatusCode::OK);
    assert_eq!(
        h2.header("x-version"),
        "HTTP/1.1",
        "HTTP/2 client, HTTP/1.1 backend"
    );
    // :authority (the URI's host:port) wins over a Host header and becomes Host upstream.
    assert_eq!(
        h2.seen("host"),
        Some(format!("127.0.0.1:{port}").as_str()),
        "{}",
        h2.body
    );

    let to_h2 = get(&http1_client(), port, "echo.test", "/h2").await;
    assert_eq!(to_h2.status, StatusCode::OK);
    assert_eq!(
        to_h2.header("x-version"),
        "HTTP/2.0",
        "h2c backend spoken to with prior knowledge"
    );
    // The client's authority travels as :authority, and no Host header contradicts it.
    assert_eq!(to_h2.header("x-authority"), "echo.test");
    assert_eq!(to_h2.seen("host"), None, "{}", to_h2.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400() {
    let (_gw, port) = serve_test_config().await;
    let no_host = raw_exchange(port, "GET /echo HTTP/1.1\r\n\r\n").await;
    assert!(no_host.starts_with("HTTP/1.1 400"), "{no_host}");
    let two_hosts = raw_exchange(port, "GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await;
    assert!(two_hosts.starts_with("HTTP/1.1 400"), "{two_hosts}");
    let garbage = raw_exchange(port, "NOT HTTP AT ALL\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let http10 = raw_exchange(port, "GET /echo HTTP/1.0\r\n\r\n").await;
    assert!(
        http10.starts_with("HTTP/1.0 200"),
        "HTTP/1.0 may omit Host: {http10}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_websocket_upgrades() {
    let (_gw, port) = serve_test_config().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(
            b"GET /echo/ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
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
    assert!(head.contains("upgrade: websocket"), "{head}");
    stream.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = [0u8; 23];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reports_readiness_config_and_metrics() {
    let gw = gateway();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_port = admin.local_addr().unwrap().port();
    tokio::spawn(nantian_host::admin::serve(admin, gw.clone()));
    let client = http1_client();

    assert_eq!(
        get(&client, admin_port, "admin", "/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let a = start_echo("a").await;
    Snapshot::default()
        .with(listener("http", free_port(), ""))
        .with(backend("a", "http", &[a.addr]))
        .with(rule("echo", "/", vec![backend_ref("a", 1)]))
        .apply(&gw, "v7")
        .await
        .unwrap();
    assert_eq!(
        get(&client, admin_port, "admin", "/readyz").await.status,
        StatusCode::OK
    );

    let dump = get(&client, admin_port, "admin", "/config_dump").await;
    let json: serde_json::Value = serde_json::from_str(&dump.body).unwrap();
    assert_eq!(json["version"], "v7");
    assert_eq!(json["listeners"][0]["name"], "listener/test/gw/http");
    assert_eq!(json["routes"][0]["routeName"], "echo");
    assert_eq!(json["backends"][0]["endpoints"][0]["port"], a.addr.port());

    let metrics = get(&client, admin_port, "admin", "/metrics").await;
    assert!(
        metrics
            .body
            .contains(r#"nantian_xds_updates_total{result="ack"} 1"#),
        "{}",
        metrics.body
    );
}
