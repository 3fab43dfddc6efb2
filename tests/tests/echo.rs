//! `nantian-echo` as a process: the JSON over HTTP/1.1 and h2c, the conformance routes,
//! the h2c-only listener, WebSocket echo, the gRPC echo service, the request log and a
//! clean exit on SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nantian_e2e::echo::grpc_client::{self, EchoMethod, GrpcCall};
use nantian_e2e::echo::request_log::{parse_request_log_line, request_log_line};
use nantian_e2e::echo::websocket::{Frame, Opcode, WebSocketClient};
use nantian_e2e::echo::{BENCH_BODY, EchoProcess, EchoResponse, ListenerMode};
use nantian_e2e::harness::{self, Env, LogMark};
use tokio::net::TcpStream;

fn echo_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nantian-echo"))
}

fn start_echo() -> EchoProcess {
    EchoProcess::spawn(
        echo_binary(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--pod",
            "echo-pod-1",
            "--namespace",
            "echo-ns",
            "--service",
            "echo-svc",
            "--workers",
            "1",
        ],
    )
    .expect("start nantian-echo")
}

/// Sends requests over one HTTP/1.1 connection.
async fn http1_requests(
    addr: SocketAddr,
    requests: Vec<Request<Full<Bytes>>>,
) -> Vec<(Response<()>, Bytes)> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut out = Vec::new();
    for request in requests {
        let response = sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        out.push((Response::from_parts(parts, ()), body));
    }
    out
}

async fn http1(addr: SocketAddr, request: Request<Full<Bytes>>) -> (Response<()>, Bytes) {
    http1_requests(addr, vec![request]).await.remove(0)
}

/// Sends one request over an h2c (prior knowledge) connection.
async fn h2c(addr: SocketAddr, request: Request<Full<Bytes>>) -> (Response<()>, Bytes) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (Response::from_parts(parts, ()), body)
}

fn get(uri: &str) -> http::request::Builder {
    Request::get(uri)
}

fn empty() -> Full<Bytes> {
    Full::default()
}

fn parse(body: &Bytes) -> EchoResponse {
    serde_json::from_slice(body)
        .unwrap_or_else(|err| panic!("not echo JSON ({err}): {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn http1_request_is_echoed_as_conformance_json() {
    let echo = start_echo();
    let addr = echo.addr();
    let request = get("/some/path?x=1&y=2")
        .header("host", "example.com")
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-multi", "a")
        .header("x-multi", "b")
        .header("X-Echo-Set-Header", "X-Foo: value1,x-bar:two")
        .body(empty())
        .unwrap();
    let (response, body) = http1(addr, request).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["x-foo"], "value1");
    assert_eq!(response.headers()["x-bar"], "two");

    let echoed = parse(&body);
    assert_eq!(echoed.path, "/some/path?x=1&y=2");
    assert_eq!(echoed.host, "example.com");
    assert_eq!(echoed.method, "GET");
    assert_eq!(echoed.proto, "HTTP/1.1");
    assert_eq!(echoed.http_port, addr.port().to_string());
    assert_eq!(echoed.pod, "echo-pod-1");
    assert_eq!(echoed.namespace, "echo-ns");
    assert_eq!(echoed.service, "echo-svc");
    assert_eq!(echoed.ingress, "");
    // Go's canonical keys, every value in order, and no Host among the headers.
    assert_eq!(echoed.headers["X-Forwarded-For"], ["10.0.0.1"]);
    assert_eq!(echoed.headers["X-Multi"], ["a", "b"]);
    assert!(!echoed.headers.contains_key("Host"));
    assert_eq!(
        echoed.header("x-echo-set-header"),
        Some("X-Foo: value1,x-bar:two")
    );
}

#[tokio::test]
async fn h2c_request_reports_http2_and_authority() {
    let echo = start_echo();
    let request = get("http://h2.example:8080/h2?q=v")
        .header("x-h2", "yes")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(empty())
        .unwrap();
    let (response, body) = h2c(echo.addr(), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let echoed = parse(&body);
    assert_eq!(echoed.proto, "HTTP/2.0");
    assert_eq!(echoed.host, "h2.example:8080");
    assert_eq!(echoed.path, "/h2?q=v");
    assert_eq!(echoed.header("X-H2"), Some("yes"));
    assert_eq!(echoed.headers["Cookie"], ["a=1; b=2"]);
}

#[tokio::test]
async fn bodies_are_drained_and_the_connection_is_reused() {
    let echo = start_echo();
    let post = |path: &str| {
        Request::post(path)
            .header("host", "reuse")
            .body(Full::new(Bytes::from(vec![b'x'; 100_000])))
            .unwrap()
    };
    let responses = http1_requests(echo.addr(), vec![post("/one"), post("/two")]).await;
    let paths: Vec<String> = responses.iter().map(|(_, body)| parse(body).path).collect();
    assert_eq!(paths, ["/one", "/two"]);
    assert_eq!(parse(&responses[0].1).method, "POST");
    assert_eq!(
        parse(&responses[0].1).header("content-length"),
        Some("100000")
    );
}

#[tokio::test]
async fn conformance_routes_health_status_delay_and_bench() {
    let echo = start_echo();
    let addr = echo.addr();
    let status = |uri: &'static str| async move {
        let (response, body) =
            http1(addr, get(uri).header("host", "h").body(empty()).unwrap()).await;
        (response.status(), body)
    };

    assert_eq!(status("/health").await, (StatusCode::OK, Bytes::from("OK")));
    assert_eq!(
        status("/status/503").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(status("/status/404").await.0, StatusCode::NOT_FOUND);
    assert_eq!(status("/status/503?x=1").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(status("/status/nope").await.0, StatusCode::BAD_REQUEST);
    // "//" is collapsed for routing only.
    assert_eq!(status("//health").await.0, StatusCode::OK);
    // A plain request to the upstream WebSocket path is a failed handshake.
    assert_eq!(status("/ws").await.0, StatusCode::BAD_REQUEST);

    let (code, body) = status("/timeout?delay=10ms").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(parse(&body).path, "/timeout?delay=10ms");
    let (code, body) = status("/timeout?delay=soon").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    let message: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(message["message"], "time: invalid duration \"soon\"");

    let (code, body) = status("/bench").await;
    assert_eq!((code, body.as_ref()), (StatusCode::OK, BENCH_BODY));
    let (response, body) = h2c(addr, get("http://b/bench").body(empty()).unwrap()).await;
    assert_eq!(
        (response.status(), body.as_ref()),
        (StatusCode::OK, BENCH_BODY)
    );
}

#[tokio::test]
async fn h2c_only_listener_refuses_http1() {
    let echo = EchoProcess::spawn(
        echo_binary(),
        &["--listen", "127.0.0.1:0", "--h2c-listen", "127.0.0.1:0"],
    )
    .unwrap();
    assert_eq!(echo.listeners.len(), 2);
    assert_eq!(echo.listeners[0].mode, ListenerMode::Mixed);
    assert_eq!(echo.listeners[1].mode, ListenerMode::H2cOnly);
    let h2c_addr = echo.listeners[1].addr;

    let (response, body) = http1(
        h2c_addr,
        get("/x").header("host", "h").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body, "Expected h2c request");

    let (response, body) = h2c(h2c_addr, get("http://h/status/503").body(empty()).unwrap()).await;
    // Like upstream's h2c port, every path echoes (no /status routing there).
    assert_eq!(response.status(), StatusCode::OK);
    let echoed = parse(&body);
    assert_eq!(echoed.proto, "HTTP/2.0");
    assert_eq!(echoed.http_port, h2c_addr.port().to_string());
}

#[tokio::test]
async fn context_comes_from_the_environment_too() {
    let mut command = std::process::Command::new(echo_binary());
    command
        .args(["--listen", "127.0.0.1:0"])
        .env("POD_NAME", "env-pod")
        .env("NAMESPACE", "env-ns")
        .env("SERVICE_NAME", "env-svc");
    let echo = EchoProcess::spawn_command(command, 1).unwrap();
    let (_, body) = http1(
        echo.addr(),
        get("/").header("host", "h").body(empty()).unwrap(),
    )
    .await;
    let echoed = parse(&body);
    assert_eq!(
        (echoed.pod.as_str(), echoed.namespace.as_str()),
        ("env-pod", "env-ns")
    );
    assert_eq!(echoed.service, "env-svc");
}

#[tokio::test]
async fn websocket_messages_come_back_with_their_type() {
    let echo = start_echo();
    let stream = TcpStream::connect(echo.addr()).await.unwrap();
    let mut client = WebSocketClient::handshake(stream, "ws.example", "/any/path")
        .await
        .unwrap();
    assert!(
        client.response_head.starts_with("HTTP/1.1 101"),
        "{}",
        client.response_head
    );

    client
        .send(&Frame::new(Opcode::Text, "hello"))
        .await
        .unwrap();
    let frame = client.recv().await.unwrap().unwrap();
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (Opcode::Text, b"hello".as_slice())
    );
    assert!(!frame.masked, "servers must not mask");

    let binary: Vec<u8> = (0..70_000u32).map(|i| (i % 256) as u8).collect();
    client
        .send(&Frame::new(Opcode::Binary, binary.clone()))
        .await
        .unwrap();
    let frame = client.recv().await.unwrap().unwrap();
    assert_eq!(frame.opcode, Opcode::Binary);
    assert_eq!(frame.payload, binary);

    // A fragmented message comes back fragmented the same way.
    let mut first = Frame::new(Opcode::Text, "frag");
    first.fin = false;
    client.send(&first).await.unwrap();
    client
        .send(&Frame::new(Opcode::Continuation, "ment"))
        .await
        .unwrap();
    let echoed_first = client.recv().await.unwrap().unwrap();
    let echoed_last = client.recv().await.unwrap().unwrap();
    assert_eq!(
        (echoed_first.fin, echoed_first.opcode),
        (false, Opcode::Text)
    );
    assert_eq!(
        (echoed_last.fin, echoed_last.opcode),
        (true, Opcode::Continuation)
    );
    assert_eq!(
        [echoed_first.payload, echoed_last.payload].concat(),
        b"fragment"
    );

    client.send(&Frame::new(Opcode::Ping, "p")).await.unwrap();
    let pong = client.recv().await.unwrap().unwrap();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (Opcode::Pong, b"p".as_slice())
    );

    client.send(&Frame::close(1000)).await.unwrap();
    let close = client.recv().await.unwrap().unwrap();
    assert_eq!(close.close_code(), Some(1000));
    assert!(
        client.recv().await.unwrap().is_none(),
        "server closes after the close frame"
    );
}

#[tokio::test]
async fn websocket_handshake_with_wrong_version_is_refused() {
    let echo = start_echo();
    let request = get("/ws")
        .header("host", "h")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "8")
        .body(empty())
        .unwrap();
    let (response, _) = http1(echo.addr(), request).await;
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(response.headers()["sec-websocket-version"], "13");
}

#[tokio::test]
async fn log_requests_prints_one_line_per_request() {
    let echo = EchoProcess::spawn(
        echo_binary(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--log-requests",
        ],
    )
    .unwrap();
    // The line names the client's address: connect by hand to know it.
    let stream = TcpStream::connect(echo.addr()).await.unwrap();
    let http1_client = stream.local_addr().unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    for path in ["/mirror?x=1", "/health"] {
        let request = get(path).header("host", "h").body(empty()).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let (response, _) = h2c(echo.addr(), get("http://h/over-h2").body(empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);

    // Lines arrive while the process runs, not at exit.
    let mut lines = Vec::new();
    while let Some(line) = echo.next_output_line(Duration::from_secs(5)) {
        lines.push(line);
        if lines.len() == 3 {
            break;
        }
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], request_log_line("/mirror?x=1", http1_client));
    assert_eq!(lines[1], request_log_line("/health", http1_client));
    assert!(
        lines[2].starts_with("Echoing back request made to /over-h2 to client (127.0.0.1:"),
        "{}",
        lines[2]
    );
    assert_eq!(echo.next_output_line(Duration::from_millis(200)), None);
}

#[tokio::test]
async fn requests_are_not_logged_by_default() {
    let echo = start_echo();
    let (response, _) = http1(
        echo.addr(),
        get("/quiet").header("host", "h").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(echo.next_output_line(Duration::from_millis(300)), None);
}

/// The harness's echo pods (what the conformance replay runs) log every request to a
/// file of their own, readable from a mark.
#[tokio::test]
async fn harness_echo_pods_log_requests_to_their_file() {
    let (namespace, pod) = ("gateway-conformance-infra", "infra-backend-v2-nantian-0");
    let mut env = Env::new();
    env.start_echo_pod(0, pod, namespace).await;
    let addr = format!("{}:3000", env.backend_ip(0));
    let before = harness::send(harness::get(&addr, "h", "/before")).await;
    assert_eq!(before.unwrap().status, 200);
    // Wait for the first line: it is written as the request comes in, before the reply,
    // but a read may still race it.
    harness::wait_for(
        || async {
            env.echo_log_lines(namespace, pod, LogMark::START)
                .unwrap()
                .len()
                >= 3
        },
        "the first request's line",
    )
    .await;
    let mark = env.echo_log_mark(namespace, pod).unwrap();
    assert_eq!(
        env.echo_log_lines(namespace, pod, mark).unwrap(),
        Vec::<String>::new()
    );

    let reply = harness::send(harness::get(&addr, "h", "/mirror?x=1")).await;
    assert_eq!(reply.unwrap().status, 200);
    harness::wait_for(
        || async { !env.echo_log_lines(namespace, pod, mark).unwrap().is_empty() },
        "the second request's line",
    )
    .await;
    let after = env.echo_log_lines(namespace, pod, mark).unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    let logged = parse_request_log_line(&after[0]).unwrap();
    assert_eq!(logged.target, "/mirror?x=1");
    assert!(logged.peer.starts_with("127."), "{}", logged.peer);

    let all = env.echo_log_lines(namespace, pod, LogMark::START).unwrap();
    assert!(all[0].starts_with("listening on"), "{all:?}");
    assert_eq!(all.len(), 4, "two listening lines, two requests: {all:?}");
}

#[test]
fn sigterm_exits_cleanly() {
    let echo = start_echo();
    let status = echo.terminate().unwrap();
    assert!(status.success(), "exit status {status}");
}

/// A CA, a server certificate it signed for `abc.example.com`, and a client certificate
/// it signed, as PEM; like the conformance setup's `tls-checks-*`.
struct TestPki {
    ca_pem: String,
    server_pem: String,
    server_key_pem: String,
    client_pem: String,
    client_key_pem: String,
}

fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["abc.example.com".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        server_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// `nantian-echo` serving HTTPS with `pki`'s server certificate, checking client
/// certificates against its CA when `check_clients`; the files live in the returned dir.
fn start_tls_echo(pki: &TestPki, check_clients: bool) -> (EchoProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, contents: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    };
    let mut args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--https-listen".into(),
        "127.0.0.1:0".into(),
        "--tls-cert".into(),
        file("crt", &pki.server_pem),
        "--tls-key".into(),
        file("key", &pki.server_key_pem),
        "--pod".into(),
        "tls-pod".into(),
    ];
    if check_clients {
        args.extend(["--tls-client-ca".into(), file("ca", &pki.ca_pem)]);
    }
    let echo = EchoProcess::spawn(echo_binary(), &args).unwrap();
    (echo, dir)
}

/// One GET over TLS to `addr` with SNI `server_name`, trusting `pki`'s CA, offering ALPN
/// `alpn`, presenting `client` (certificate and key PEM) if given.
async fn https_get(
    addr: SocketAddr,
    pki: &TestPki,
    server_name: &str,
    alpn: &[u8],
    client: Option<(&str, &str)>,
) -> Result<(Response<()>, Bytes), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let io = TokioIo::new(tls);
    let request = get("https://abc.example.com/tls?x=1")
        .header("host", "abc.example.com")
        .body(empty())
        .unwrap();
    let response = if alpn == b"h2" {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender.send_request(request).await
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let (mut parts, body) = request.into_parts();
        parts.uri = "/tls?x=1".parse().unwrap();
        sender.send_request(Request::from_parts(parts, body)).await
    }
    .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((Response::from_parts(parts, ()), body))
}

fn https_addr(echo: &EchoProcess) -> SocketAddr {
    let spec = echo
        .listeners
        .iter()
        .find(|l| l.mode == ListenerMode::Https)
        .expect("an HTTPS listener");
    spec.addr
}

#[tokio::test]
async fn https_echo_reports_sni_and_client_certificate() {
    let pki = test_pki();
    let (echo, _files) = start_tls_echo(&pki, true);
    let addr = https_addr(&echo);
    let client = Some((pki.client_pem.as_str(), pki.client_key_pem.as_str()));

    let (response, body) = https_get(addr, &pki, "abc.example.com", b"http/1.1", client)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echoed = parse(&body);
    assert_eq!(echoed.path, "/tls?x=1");
    assert_eq!(echoed.pod, "tls-pod");
    assert_eq!(echoed.http_port, addr.port().to_string());
    let tls = echoed.tls.expect("a tls object over TLS");
    assert_eq!(tls.server_name, "abc.example.com");
    // The certificate as the client's PEM wrote it: the conformance suite compares strings.
    assert_eq!(tls.peer_certificates, [pki.client_pem.as_str()]);
    assert_eq!(tls.version, "TLSv1.3");
    assert_eq!(tls.negotiated_protocol, "http/1.1");
    assert!(
        tls.cipher_suite.starts_with("TLS_") && !tls.cipher_suite.starts_with("TLS13_"),
        "{}",
        tls.cipher_suite
    );
    // The raw JSON has echo-basic's field names.
    let raw: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(raw["tls"]["serverName"], "abc.example.com");
    assert_eq!(raw["tls"]["peerCertificates"][0], pki.client_pem.as_str());

    // HTTP/2 by ALPN, and no client certificate: still served (VerifyClientCertIfGiven).
    let (response, body) = https_get(addr, &pki, "abc.example.com", b"h2", None)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echoed = parse(&body);
    assert_eq!(echoed.proto, "HTTP/2.0");
    let tls = echoed.tls.unwrap();
    assert_eq!(tls.negotiated_protocol, "h2");
    assert!(tls.peer_certificates.is_empty());

    // A certificate of another CA is refused (TLS 1.3: by the time the request is read).
    let other = test_pki();
    let stranger = Some((other.client_pem.as_str(), other.client_key_pem.as_str()));
    let refused = https_get(addr, &pki, "abc.example.com", b"http/1.1", stranger).await;
    assert!(refused.is_err(), "{refused:?}");

    // The cleartext listener echoes no tls object.
    let (_, body) = http1(
        echo.addr(),
        get("/").header("host", "h").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(parse(&body).tls, None);
    let raw: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(raw.get("tls").is_none(), "{raw}");
}

#[tokio::test]
async fn https_echo_without_client_ca_asks_for_no_certificate() {
    let pki = test_pki();
    let (echo, _files) = start_tls_echo(&pki, false);
    let client = Some((pki.client_pem.as_str(), pki.client_key_pem.as_str()));
    let (_, body) = https_get(
        https_addr(&echo),
        &pki,
        "abc.example.com",
        b"http/1.1",
        client,
    )
    .await
    .unwrap();
    let tls = parse(&body).tls.unwrap();
    assert!(tls.peer_certificates.is_empty(), "{tls:?}");
    assert_eq!(tls.server_name, "abc.example.com");
    // A cleartext request to the HTTPS port gets nothing back.
    let mut tcp = TcpStream::connect(https_addr(&echo)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tcp.read_to_end(&mut reply).await;
    assert!(!reply.starts_with(b"HTTP/"), "{reply:?}");
}

#[test]
fn https_listen_needs_a_certificate() {
    let refused = EchoProcess::spawn(echo_binary(), &["--https-listen", "127.0.0.1:0"]);
    assert!(refused.is_err());
}

#[tokio::test]
async fn harness_echo_pods_serve_https_and_stop() {
    let pki = test_pki();
    let mut env = Env::new();
    let tls = harness::PodTls {
        cert_pem: pki.server_pem.clone(),
        key_pem: pki.server_key_pem.clone(),
        client_ca_pem: Some(pki.ca_pem.clone()),
    };
    let id = env
        .start_echo_pod_with_tls(7, "tls-backend-nantian-0", "infra", Some(&tls))
        .await;
    let addr: SocketAddr = format!("{}:{}", env.backend_ip(7), harness::ECHO_HTTPS_PORT)
        .parse()
        .unwrap();
    let client = Some((pki.client_pem.as_str(), pki.client_key_pem.as_str()));
    let (_, body) = https_get(addr, &pki, "abc.example.com", b"http/1.1", client)
        .await
        .unwrap();
    let echoed = parse(&body);
    assert_eq!(
        (echoed.pod.as_str(), echoed.namespace.as_str()),
        ("tls-backend-nantian-0", "infra")
    );
    assert_eq!(
        echoed.tls.unwrap().peer_certificates,
        [pki.client_pem.as_str()]
    );

    env.stop_echo(id);
    assert!(TcpStream::connect(addr).await.is_err(), "stopped");
}

#[tokio::test]
async fn grpc_calls_are_echoed_with_method_authority_metadata_and_pod() {
    let echo = start_echo();
    let addr = echo.addr();
    let mut call = GrpcCall {
        addr,
        authority: Some("grpc.example.com".into()),
        method: EchoMethod::EchoTwo,
        metadata: vec![("Version".into(), "two".into())],
        timeout: Duration::from_secs(10),
    };
    let outcome = grpc_client::call(&call).await.expect("call");
    assert_eq!(outcome.code, tonic::Code::Ok, "{}", outcome.message);
    let assertions = outcome.response.unwrap().assertions.unwrap();
    assert_eq!(
        assertions.fully_qualified_method,
        "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/EchoTwo"
    );
    assert_eq!(assertions.authority, "grpc.example.com");
    let context = assertions.context.unwrap();
    assert_eq!(
        (context.pod.as_str(), context.namespace.as_str()),
        ("echo-pod-1", "echo-ns")
    );
    assert!(
        assertions
            .headers
            .iter()
            .any(|h| h.key == "version" && h.value == "two"),
        "{:?}",
        assertions.headers
    );

    call.method = EchoMethod::EchoThree;
    let outcome = grpc_client::call(&call).await.expect("call");
    assert_eq!(outcome.code, tonic::Code::Unimplemented);
}
