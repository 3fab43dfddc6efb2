//! Upstream connection pools and endpoint load balancing.
//!
//! A [`UpstreamClient`] (hyper-util's pooled client plus a round-robin cursor) belongs to a
//! backend *name* and outlives snapshots while the backend's protocol stays the same, so
//! endpoint changes keep warm connections. The endpoints themselves are part of each
//! snapshot's immutable [`Upstream`]; picking one is an atomic increment, no lock.

use std::error::Error as StdError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::histogram::Histogram;

use crate::config::UpstreamProtocol;

pub type BoxError = Box<dyn StdError + Send + Sync>;
/// The one body type that flows through the proxy in both directions.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The pooled client of one backend name.
pub struct UpstreamClient {
    protocol: UpstreamProtocol,
    client: Client<HttpConnector, ProxyBody>,
    /// Round-robin cursor; shared across snapshots so rotation continues after a change.
    next: AtomicUsize,
}

impl UpstreamClient {
    pub fn new(protocol: UpstreamProtocol) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        if protocol == UpstreamProtocol::H2c {
            // Prior knowledge: h2c backends speak HTTP/2 from the first byte.
            builder.http2_only(true).timer(TokioTimer::new());
        }
        UpstreamClient {
            protocol,
            client: builder.build(connector),
            next: AtomicUsize::new(0),
        }
    }

    pub fn protocol(&self) -> UpstreamProtocol {
        self.protocol
    }
}

/// A backend as one snapshot sees it.
pub struct Upstream {
    pub name: Arc<str>,
    client: Arc<UpstreamClient>,
    endpoints: Box<[Authority]>,
    duration: Histogram,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("backend {0} has no endpoints")]
    NoEndpoints(Arc<str>),
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: Authority,
        source: hyper_util::client::legacy::Error,
    },
    #[error("request to {endpoint} failed: {source}")]
    Request {
        endpoint: Authority,
        source: hyper_util::client::legacy::Error,
    },
}

impl UpstreamError {
    /// No endpoint or none reachable: 503. A failure after connecting: 502.
    pub fn status(&self) -> http::StatusCode {
        match self {
            UpstreamError::NoEndpoints(_) | UpstreamError::Connect { .. } => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamError::Request { .. } => http::StatusCode::BAD_GATEWAY,
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
        Upstream {
            name,
            client,
            endpoints: endpoints.into_boxed_slice(),
            duration,
        }
    }

    pub fn protocol(&self) -> UpstreamProtocol {
        self.client.protocol
    }

    pub fn pick_endpoint(&self) -> Option<&Authority> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.client.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        Some(&self.endpoints[i])
    }

    /// Sends a request whose headers are already prepared for forwarding (see
    /// `forwarding`); only the URI and version are set here.
    pub async fn send(
        &self,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let endpoint = self
            .pick_endpoint()
            .ok_or_else(|| UpstreamError::NoEndpoints(self.name.clone()))?
            .clone();
        let path_and_query = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(endpoint.clone())
            .path_and_query(path_and_query)
            .build()
            .expect("scheme, authority and path are valid");
        *req.version_mut() = match self.client.protocol {
            UpstreamProtocol::Http1 => Version::HTTP_11,
            UpstreamProtocol::H2c => Version::HTTP_2,
        };
        let started = Instant::now();
        let result = self.client.client.request(req).await;
        self.duration.observe(started.elapsed().as_secs_f64());
        result.map_err(|source| {
            if source.is_connect() {
                UpstreamError::Connect { endpoint, source }
            } else {
                UpstreamError::Request { endpoint, source }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(endpoints: &[&str]) -> Upstream {
        Upstream::new(
            Arc::from("backend/ns/svc:80"),
            Arc::new(UpstreamClient::new(UpstreamProtocol::Http1)),
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
