//! Upstream connection pools and endpoint load balancing.
//!
//! A [`UpstreamClient`] (connection pools plus a round-robin cursor) belongs to a backend
//! *name* and outlives snapshots while the backend's protocol and TLS settings stay the
//! same, so endpoint changes keep warm connections and a TLS change gets new ones. The endpoints themselves are part of each
//! snapshot's immutable [`Upstream`], with its [`Balancer`]; picking one takes no lock.

use std::borrow::Cow;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::histogram::Histogram;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::balancer::{
    Algorithm, Balancer, BalancingSpec, InflightCounters, InflightGuard, PickContext,
};
use crate::config::UpstreamProtocol;
use crate::session::{SessionKey, SessionSpec};
use crate::upstream_h1::{EndpointIdle, Http1Pool};
use crate::upstream_io::{self, UpstreamIo};
use crate::upstream_tls::UpstreamTls;

pub type BoxError = Box<dyn StdError + Send + Sync>;
/// The one body type that flows through the proxy in both directions.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The pooled client of one backend name.
pub struct UpstreamClient {
    protocol: UpstreamProtocol,
    /// `None`: cleartext.
    tls: Option<Arc<UpstreamTls>>,
    transport: Transport,
    /// Round-robin cursor; shared across snapshots so rotation continues after a change.
    next: AtomicUsize,
}

enum Transport {
    /// Keep-alive connections, pooled per endpoint.
    Http1(Http1Pool),
    /// One multiplexed HTTP/2 connection per endpoint. Not hyper-util's pool: that one
    /// takes `:authority` from the URI it connects to, and a proxy must send the client's
    /// authority, not the endpoint's address.
    H2c(H2cConnections),
}

impl UpstreamClient {
    pub fn new(protocol: UpstreamProtocol, tls: Option<Arc<UpstreamTls>>) -> Self {
        let transport = match protocol {
            UpstreamProtocol::Http1 => Transport::Http1(Http1Pool::new(
                CONNECT_TIMEOUT,
                POOL_IDLE_TIMEOUT,
                tls.clone(),
            )),
            UpstreamProtocol::H2c => Transport::H2c(H2cConnections {
                tls: tls.clone(),
                by_endpoint: RwLock::default(),
            }),
        };
        UpstreamClient {
            protocol,
            tls,
            transport,
            next: AtomicUsize::new(0),
        }
    }

    pub fn protocol(&self) -> UpstreamProtocol {
        self.protocol
    }

    /// Whether this client's connections are what a backend with `protocol` and `tls`
    /// needs, so its pools can serve the backend in a new snapshot.
    pub fn fits(&self, protocol: UpstreamProtocol, tls: Option<&UpstreamTls>) -> bool {
        self.protocol == protocol
            && match (&self.tls, tls) {
                (None, None) => true,
                (Some(ours), Some(theirs)) => ours.same_settings(theirs),
                _ => false,
            }
    }
}

/// Live HTTP/2 connections by endpoint: prior knowledge in cleartext, or over TLS (ALPN
/// `h2`). The common path takes a read lock on this backend's map only to clone a
/// handle; connecting happens outside any lock.
struct H2cConnections {
    tls: Option<Arc<UpstreamTls>>,
    by_endpoint: RwLock<HashMap<Authority, http2::SendRequest<ProxyBody>>>,
}

impl H2cConnections {
    async fn sender(
        &self,
        endpoint: &Authority,
    ) -> Result<http2::SendRequest<ProxyBody>, UpstreamError> {
        if let Some(sender) = self.by_endpoint.read().unwrap().get(endpoint)
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        let io = upstream_io::connect(endpoint, self.tls.as_deref(), CONNECT_TIMEOUT).await?;
        // Each stream type gets its own connection task: no dispatch per read or write.
        let sender = match io {
            UpstreamIo::Plain(tcp) => h2_handshake(tcp, endpoint).await,
            UpstreamIo::Tls(tls) => h2_handshake(tls, endpoint).await,
        }
        .map_err(|source| UpstreamError::setup(endpoint, self.tls.is_some(), source))?;
        self.by_endpoint
            .write()
            .unwrap()
            .insert(endpoint.clone(), sender.clone());
        Ok(sender)
    }
}

async fn h2_handshake<T>(
    io: T,
    endpoint: &Authority,
) -> Result<http2::SendRequest<ProxyBody>, BoxError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(io))
        .await?;
    let name = endpoint.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(endpoint = %name, error = %e, "h2 upstream connection ended");
        }
    });
    Ok(sender)
}

/// A backend as one snapshot sees it.
pub struct Upstream {
    pub name: Arc<str>,
    client: Arc<UpstreamClient>,
    endpoints: Box<[Endpoint]>,
    duration: Histogram,
    balancer: Balancer,
    /// The backend's own session persistence.
    session: Option<Arc<SessionSpec>>,
    /// Endpoint indexes by their session-token id; empty without a key.
    ids: HashMap<u64, usize>,
    key: Option<Arc<SessionKey>>,
}

/// One endpoint of a snapshot's backend; for HTTP/1.1 with its idle connections at hand.
struct Endpoint {
    authority: Authority,
    http1: Option<Arc<EndpointIdle>>,
    /// Requests in flight to it (least request).
    inflight: Arc<AtomicUsize>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("backend {0} has no endpoints")]
    NoEndpoints(Arc<str>),
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: Authority,
        source: BoxError,
    },
    /// The TLS handshake failed, the certificate did not verify, or nothing can verify it.
    #[error("TLS to {endpoint} failed: {source}")]
    Tls {
        endpoint: Authority,
        source: BoxError,
    },
    #[error("request to {endpoint} failed: {source}")]
    Request {
        endpoint: Authority,
        source: BoxError,
    },
}

impl UpstreamError {
    /// A connection that failed after connecting but before taking a request. Over TLS
    /// this is typically the backend refusing what the handshake brought (TLS 1.3
    /// reports a refused client certificate only after the client's handshake is
    /// done), so it counts as a TLS failure; in cleartext, as not reaching the backend.
    pub(crate) fn setup(endpoint: &Authority, tls: bool, source: BoxError) -> Self {
        let endpoint = endpoint.clone();
        if tls {
            UpstreamError::Tls { endpoint, source }
        } else {
            UpstreamError::Connect { endpoint, source }
        }
    }

    /// No endpoint or none reachable: 503. A failure after connecting (TLS included):
    /// 502.
    pub fn status(&self) -> http::StatusCode {
        match self {
            UpstreamError::NoEndpoints(_) | UpstreamError::Connect { .. } => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamError::Tls { .. } | UpstreamError::Request { .. } => {
                http::StatusCode::BAD_GATEWAY
            }
        }
    }
}

impl Upstream {
    pub fn new(
        name: Arc<str>,
        client: Arc<UpstreamClient>,
        endpoints: Vec<Authority>,
        duration: Histogram,
    ) -> Self {
        let endpoints = endpoints
            .into_iter()
            .map(|authority| Endpoint {
                http1: match &client.transport {
                    Transport::Http1(pool) => Some(pool.endpoint(&authority)),
                    Transport::H2c(_) => None,
                },
                inflight: Arc::default(),
                authority,
            })
            .collect::<Box<[_]>>();
        let authorities: Vec<_> = endpoints.iter().map(|e| e.authority.clone()).collect();
        Upstream {
            name,
            client,
            duration,
            balancer: Balancer::new(Algorithm::RoundRobin, &authorities),
            endpoints,
            session: None,
            ids: HashMap::new(),
            key: None,
        }
    }

    /// Picks endpoints as `spec` says, with in-flight counts shared through `counters`
    /// and session tokens keyed by `key`.
    pub fn with_balancing(
        mut self,
        spec: &BalancingSpec,
        key: Arc<SessionKey>,
        counters: &InflightCounters,
    ) -> Self {
        let authorities: Vec<_> = self.endpoints.iter().map(|e| e.authority.clone()).collect();
        self.balancer = Balancer::new(spec.algorithm.clone(), &authorities);
        for (i, endpoint) in self.endpoints.iter_mut().enumerate() {
            endpoint.inflight = counters.get(&endpoint.authority);
            self.ids
                .insert(key.endpoint_id(&self.name, endpoint.authority.as_str()), i);
        }
        self.session = spec.session.clone();
        self.key = Some(key);
        self
    }

    /// The backend's own session persistence.
    pub fn session(&self) -> Option<&Arc<SessionSpec>> {
        self.session.as_ref()
    }

    /// The key session tokens for this backend are sealed with.
    pub fn session_key(&self) -> Option<&SessionKey> {
        self.key.as_deref()
    }

    /// The endpoint a session token's id names, if it is still one of this backend's.
    pub fn endpoint_by_id(&self, id: u64) -> Option<usize> {
        self.ids.get(&id).copied()
    }

    /// The session-token id of endpoint `i`.
    pub fn endpoint_id(&self, i: usize) -> Option<u64> {
        let key = self.key.as_deref()?;
        Some(key.endpoint_id(&self.name, self.endpoints.get(i)?.authority.as_str()))
    }

    /// An endpoint index by the backend's algorithm; `None` without endpoints.
    pub fn balance(&self, ctx: Option<&PickContext<'_>>) -> Option<usize> {
        if self.endpoints.is_empty() {
            return None;
        }
        Some(
            self.balancer
                .pick(self.endpoints.len(), ctx, &self.client.next, |i| {
                    self.endpoints[i].inflight.load(Ordering::Relaxed)
                }),
        )
    }

    pub fn protocol(&self) -> UpstreamProtocol {
        self.client.protocol
    }

    pub fn pick_endpoint(&self) -> Option<&Authority> {
        self.balance(None).map(|i| &self.endpoints[i].authority)
    }

    /// Sends a request whose headers are already prepared for forwarding (see
    /// `forwarding`) to an endpoint of the backend's algorithm, without looking at the
    /// request (mirrors).
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        self.send_to(self.balance(None), req).await
    }

    /// Sends a request to endpoint `endpoint` (an index from [`Upstream::balance`] or a
    /// session; `None`: there is none); only the URI and version are set here.
    pub async fn send_to(
        &self,
        endpoint: Option<usize>,
        req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        let endpoint = endpoint
            .and_then(|i| self.endpoints.get(i))
            .ok_or_else(|| UpstreamError::NoEndpoints(self.name.clone()))?;
        // Least request counts a request until its response body is done; the other
        // algorithms don't look, so their requests skip the counting.
        let counting = matches!(self.balancer.algorithm(), Algorithm::LeastRequest)
            .then(|| InflightGuard::new(&endpoint.inflight));
        let started = Instant::now();
        let result = match &self.client.transport {
            Transport::Http1(pool) => {
                let idle = match &endpoint.http1 {
                    Some(idle) => Cow::Borrowed(idle),
                    None => Cow::Owned(pool.endpoint(&endpoint.authority)),
                };
                pool.send(&idle, req).await
            }
            // Boxed: HTTP/2 allocates per request anyway, and inline its future would
            // grow every HTTP/1 request's future too.
            Transport::H2c(connections) => {
                let h2c = Box::pin(send_h2(connections, &endpoint.authority, req));
                h2c.await
            }
        };
        self.duration.observe(started.elapsed().as_secs_f64());
        match counting {
            Some(guard) => result.map(|resp| resp.map(|body| counted(body, guard))),
            None => result,
        }
    }
}

/// The body, holding `guard` until it ends or is dropped.
fn counted(body: ProxyBody, guard: InflightGuard) -> ProxyBody {
    body.map_frame(move |frame| {
        let _ = &guard;
        frame
    })
    .boxed_unsync()
}

fn path_and_query(uri: &Uri) -> PathAndQuery {
    uri.path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

/// HTTP/2: the client's authority (from `Host`) becomes `:authority`, and `Host` itself
/// is dropped so the two can never disagree (RFC 9113 §8.3.1). `:scheme` says whether
/// the connection to the backend is TLS.
async fn send_h2(
    connections: &H2cConnections,
    endpoint: &Authority,
    mut req: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, UpstreamError> {
    let authority = req
        .headers_mut()
        .remove(HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        .unwrap_or_else(|| endpoint.clone());
    let scheme = match connections.tls {
        Some(_) => Scheme::HTTPS,
        None => Scheme::HTTP,
    };
    *req.uri_mut() = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path_and_query(req.uri()))
        .build()
        .expect("scheme, authority and path are valid");
    *req.version_mut() = Version::HTTP_2;
    let mut sender = connections.sender(endpoint).await?;
    sender.ready().await.map_err(|source| {
        UpstreamError::setup(endpoint, connections.tls.is_some(), source.into())
    })?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|source| UpstreamError::Request {
            endpoint: endpoint.clone(),
            source: source.into(),
        })?;
    Ok(resp.map(|body| body.map_err(Into::into).boxed_unsync()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(endpoints: &[&str]) -> Upstream {
        Upstream::new(
            Arc::from("backend/ns/svc:80"),
            Arc::new(UpstreamClient::new(UpstreamProtocol::Http1, None)),
            endpoints.iter().map(|e| e.parse().unwrap()).collect(),
            Histogram::new([1.0]),
        )
    }

    #[tokio::test]
    async fn round_robin_visits_every_endpoint_in_turn() {
        let u = upstream(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
        let picked: Vec<String> = (0..6)
            .map(|_| u.pick_endpoint().unwrap().to_string())
            .collect();
        assert_eq!(
            picked,
            [
                "10.0.0.1:80",
                "10.0.0.2:80",
                "10.0.0.3:80",
                "10.0.0.1:80",
                "10.0.0.2:80",
                "10.0.0.3:80"
            ]
        );
    }

    #[tokio::test]
    async fn no_endpoints_is_503_and_refused_connect_is_503() {
        let empty = upstream(&[]);
        let err = empty
            .send(Request::new(ProxyBody::default()))
            .await
            .unwrap_err();
        assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);

        // A port nobody listens on: bind, learn the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = upstream(&[&format!("127.0.0.1:{port}")]);
        let err = refused
            .send(Request::new(ProxyBody::default()))
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Connect { .. }), "{err}");
        assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    }
}
