//! Test fixtures: an echo backend, config builders, a gateway on loopback and clients.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use nantian_host::xds_client::{ConfigSink, Resource, ResourceMap};
use nantian_host::{Gateway, Metrics};
use nantian_proto::ConfigResource;
use nantian_proto::config as pb;
use nantian_proto::xds::ErrorDetail;
use nantian_wasm::{EngineConfig, WasmEngine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = BoxBody<Bytes, BoxError>;

/// A backend that reports what it received: `x-backend`, `x-path`, `x-version` response
/// headers and the request headers as `name: value` lines in the body. POST bodies are
/// streamed back instead. `/hold` signals [`Echo::arrived`], then waits for
/// [`Echo::release`] before answering. A
/// WebSocket handshake is accepted and the tunnel echoes bytes.
pub struct Echo {
    pub addr: SocketAddr,
    pub arrived: Arc<Notify>,
    pub release: Arc<Notify>,
    /// Notified when a `/hold` request was dropped (its connection closed) before release.
    pub abandoned: Arc<Notify>,
}

/// What `/hold` signals and waits for.
#[derive(Clone, Default)]
pub struct Hold {
    pub arrived: Arc<Notify>,
    pub release: Arc<Notify>,
    pub abandoned: Arc<Notify>,
}

/// Notifies `abandoned` when dropped still armed.
struct AbandonAlarm(Option<Arc<Notify>>);

impl Drop for AbandonAlarm {
    fn drop(&mut self) {
        if let Some(abandoned) = self.0.take() {
            abandoned.notify_one();
        }
    }
}

pub async fn start_echo(name: &'static str) -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = Hold::default();
    let started = Echo {
        addr,
        arrived: hold.arrived.clone(),
        release: hold.release.clone(),
        abandoned: hold.abandoned.clone(),
    };
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let hold = hold.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| echo(name, hold.clone(), req));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    started
}

/// The echo backend's answer to one request (also served over TLS by `support_tls`).
pub async fn echo(
    name: &'static str,
    hold: Hold,
    mut req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let is_websocket = req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v == "websocket");
    if is_websocket {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let mut io = TokioIo::new(upgrade.await.unwrap());
            let mut buf = [0u8; 1024];
            loop {
                let n = io.read(&mut buf).await.unwrap_or(0);
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let resp = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("x-backend", name)
            .body(empty())
            .unwrap();
        return Ok(resp);
    }
    if req.uri().path() == "/hold" {
        let mut alarm = AbandonAlarm(Some(hold.abandoned.clone()));
        hold.arrived.notify_one();
        hold.release.notified().await;
        alarm.0 = None;
    }
    let builder = Response::builder()
        .header("x-backend", name)
        .header(
            "x-path",
            req.uri()
                .path_and_query()
                .map_or("", |p| p.as_str())
                .to_string(),
        )
        .header("x-version", format!("{:?}", req.version()))
        // HTTP/2 carries the virtual host as :authority (the URI's), not as a Host header.
        .header(
            "x-authority",
            req.uri().authority().map_or("", |a| a.as_str()).to_string(),
        )
        // Hop-by-hop: the gateway must not pass it on.
        .header("keep-alive", "timeout=5");
    let resp = if req.method() == http::Method::POST {
        builder.body(req.into_body().map_err(BoxError::from).boxed())
    } else {
        let mut dump = String::new();
        for (k, v) in req.headers() {
            dump.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
        }
        builder.body(full(dump))
    };
    Ok(resp.unwrap())
}

pub fn full(body: impl Into<Bytes>) -> TestBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> TestBody {
    full(Bytes::new())
}

/// A gateway with one plain listener whose catch-all route goes to one echo backend.
pub async fn gateway_with_echo() -> (Arc<Gateway>, Echo, u16) {
    let echo = start_echo("a").await;
    let port = free_port();
    let gw = gateway();
    Snapshot::default()
        .with(listener("http", port, ""))
        .with(backend("a", "http", &[echo.addr]))
        .with(rule("echo", "/", vec![backend_ref("a", 1)]))
        .apply(&gw, "1")
        .await
        .expect("valid config");
    (gw, echo, port)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn gateway() -> Arc<Gateway> {
    let engine = WasmEngine::new(EngineConfig {
        max_instances: 64,
        ..EngineConfig::default()
    })
    .expect("wasm engine");
    Gateway::new(engine, Arc::new(Metrics::new()))
}

/// The resources of one snapshot, built up fluently.
#[derive(Default, Clone)]
pub struct Snapshot(pub Vec<(String, nantian_proto::Any)>);

impl Snapshot {
    pub fn with<T: ConfigResource>(mut self, r: T) -> Self {
        self.0.push((r.resource_name().to_string(), r.to_any()));
        self
    }

    pub async fn apply(&self, gateway: &Gateway, version: &str) -> Result<(), ErrorDetail> {
        let map: ResourceMap = self
            .0
            .iter()
            .map(|(name, body)| {
                let resource = Resource {
                    version: version.into(),
                    body: body.clone(),
                };
                (name.clone(), resource)
            })
            .collect();
        gateway.apply(&map, version).await
    }
}

pub fn listener(name: &str, port: u16, hostname: &str) -> pb::Listener {
    pb::Listener {
        name: format!("listener/test/gw/{name}"),
        addresses: vec!["127.0.0.1".into()],
        port: port.into(),
        protocol: "HTTP".into(),
        hostname: hostname.into(),
        certificates: Vec::new(),
        client_validation: None,
        tls_mode: String::new(),
    }
}

pub fn backend(name: &str, protocol: &str, endpoints: &[SocketAddr]) -> pb::Backend {
    pb::Backend {
        name: format!("backend/test/{name}"),
        protocol: protocol.into(),
        endpoints: endpoints
            .iter()
            .map(|e| pb::Endpoint {
                address: e.ip().to_string(),
                port: e.port().into(),
            })
            .collect(),
        tls: None,
        load_balancing: None,
    }
}

pub fn backend_ref(name: &str, weight: u32) -> pb::BackendRef {
    pb::BackendRef {
        backend: if name.is_empty() {
            String::new()
        } else {
            format!("backend/test/{name}")
        },
        weight,
        filters: vec![],
    }
}

/// A rule on listener `http` matching PathPrefix `prefix`.
pub fn rule(route: &str, prefix: &str, backends: Vec<pb::BackendRef>) -> pb::Route {
    pb::Route {
        name: format!("route/test/{route}/rule/0"),
        route_namespace: "test".into(),
        route_name: route.into(),
        listeners: vec!["listener/test/gw/http".into()],
        matches: vec![pb::RouteMatch {
            path: Some(pb::PathMatch {
                r#type: "PathPrefix".into(),
                value: prefix.into(),
            }),
            ..Default::default()
        }],
        backends,
        ..Default::default()
    }
}

pub type TestClient = Client<HttpConnector, TestBody>;

pub fn http1_client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2c_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// A request header as the echo backend saw it.
    pub fn seen(&self, name: &str) -> Option<&str> {
        self.body
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
    }
}

pub async fn send(client: &TestClient, req: Request<TestBody>) -> Reply {
    let resp = client
        .request(req)
        .await
        .expect("request reaches the gateway");
    read(resp).await
}

pub async fn read(resp: Response<Incoming>) -> Reply {
    let (head, body) = resp.into_parts();
    let bytes = body.collect().await.expect("whole body").to_bytes();
    Reply {
        status: head.status,
        headers: head.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get(client: &TestClient, port: u16, host: &str, path: &str) -> Reply {
    let req = Request::get(format!("http://127.0.0.1:{port}{path}"))
        .header("host", host)
        .body(empty())
        .unwrap();
    send(client, req).await
}

/// Writes raw bytes and reads until the peer closes or the head is complete.
pub async fn raw_exchange(port: u16, request: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
