//! xDS resources → validated runtime config.
//!
//! Every `Resource.body` is decoded by its type URL and converted with `TryFrom` into
//! types the data plane can use without further checks (regexes compiled and anchored,
//! methods and header names parsed, hostnames normalized). Cross-resource references are
//! checked afterwards. Any problem becomes a [`RejectedResource`] naming the resource, and
//! the whole snapshot is refused: the host never runs half a config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use nantian_proto::config as pb;
use nantian_proto::xds::{ErrorDetail, RejectedResource};
use nantian_wasm::CounterScope;
use regex::Regex;

use crate::hostname::{Hostname, HostnameError};

/// A whole snapshot, decoded and validated.
#[derive(Debug, Default)]
pub struct ConfigSet {
    pub listeners: Vec<ListenerSpec>,
    pub routes: Vec<RouteSpec>,
    pub backends: Vec<BackendSpec>,
    pub modules: Vec<ModuleSpec>,
    /// The resources as received, for `/config_dump`.
    pub dump: ConfigDump,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct ConfigDump {
    pub listeners: Vec<pb::Listener>,
    pub routes: Vec<pb::Route>,
    pub backends: Vec<pb::Backend>,
    pub filter_modules: Vec<pb::FilterModule>,
}

#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub name: Arc<str>,
    /// The sockets it is served on: one per address of its Gateway, all on one port.
    pub binds: Vec<SocketAddr>,
    pub hostname: Option<Hostname>,
    /// HTTPS: the certificates to offer (at least one). `None`: plain HTTP.
    pub tls: Option<Arc<[Arc<rustls::sign::CertifiedKey>]>>,
    /// HTTPS with client certificate validation.
    pub client_auth: Option<crate::tls::ClientAuth>,
    /// Protocols TLS, TCP and UDP: connections are byte streams for TLSRoutes or
    /// TCPRoutes (or datagram flows for UDPRoutes), not HTTP. `tls` holds the
    /// certificates when the gateway terminates TLS.
    pub stream: Option<StreamMode>,
}

/// What a listener whose connections are byte streams does with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    /// TLS routed by SNI; the backend does the handshake: the client's bytes go through
    /// untouched.
    TlsPassthrough,
    /// TLS routed by SNI; the gateway does the handshake and forwards the plaintext.
    TlsTerminate,
    /// TCP: every connection goes to the listener's route.
    Tcp,
    /// UDP: every flow (datagrams from one client address) goes to the listener's route.
    Udp,
}

/// The route kinds that carry byte streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Tls,
    Tcp,
    Udp,
}

impl StreamMode {
    pub fn route_kind(self) -> StreamKind {
        match self {
            StreamMode::TlsPassthrough | StreamMode::TlsTerminate => StreamKind::Tls,
            StreamMode::Tcp => StreamKind::Tcp,
            StreamMode::Udp => StreamKind::Udp,
        }
    }
}

impl ListenerSpec {
    /// Served on a UDP socket; every other listener on a TCP one (so a UDP and a TCP
    /// listener can share an address and port).
    pub fn is_udp(&self) -> bool {
        self.stream == Some(StreamMode::Udp)
    }

    /// Which kind of socket the listener needs: plain HTTP, HTTPS, TLSRoute streams,
    /// TCPRoute streams or UDPRoute datagrams. Listeners sharing a socket must need the
    /// same kind.
    pub fn socket_kind(&self) -> &'static str {
        match (self.stream.map(StreamMode::route_kind), &self.tls) {
            (Some(StreamKind::Tls), _) => "TLS",
            (Some(StreamKind::Tcp), _) => "TCP",
            (Some(StreamKind::Udp), _) => "UDP",
            (None, Some(_)) => "HTTPS",
            (None, None) => "HTTP",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: Arc<str>,
    pub namespace: String,
    pub route_name: String,
    pub rule_index: u32,
    pub creation_timestamp: i64,
    pub listeners: Vec<String>,
    pub hostnames: Vec<Hostname>,
    pub matches: Vec<MatchSpec>,
    pub filters: Vec<FilterSpec>,
    pub backends: Vec<BackendRefSpec>,
    pub timeouts: Timeouts,
    /// A GRPCRoute rule: what the gateway answers itself goes out as a gRPC status, and
    /// an invalid backend is UNAVAILABLE.
    pub grpc: bool,
    /// The rule's session persistence; replaces the backends' own.
    pub session: Option<Arc<crate::session::SessionSpec>>,
    pub retry: Option<RetrySpec>,
    /// The rule's backend is an AIService (`backends` is empty).
    pub ai: Option<Arc<crate::ai::AiServiceSpec>>,
    /// A TLSRoute rule (chosen by SNI) or a TCPRoute rule (by listener): it carries
    /// connections, not requests.
    pub stream: Option<StreamKind>,
}

/// HTTPRoute rule retry (see `retry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySpec {
    /// Sorted, 400-599.
    pub codes: Box<[u16]>,
    /// Retries after the first attempt.
    pub attempts: u32,
    pub backoff: Duration,
}

/// HTTPRoute rule timeouts; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From the request's arrival until the response is complete.
    pub request: Option<Duration>,
    /// One exchange with the backend, until its response is complete.
    pub backend_request: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct MatchSpec {
    pub path: PathMatch,
    /// Deduplicated by name (the first entry wins, as Gateway API requires).
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
    pub method: Option<Method>,
    /// GRPCRoute matches rank by the service and method they name, not by their path.
    pub grpc: Option<GrpcRank>,
}

/// How specific a GRPCRoute method match is: characters of service and method (GRPCRoute
/// precedence, after the hostname, before header matches).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrpcRank {
    pub service_len: usize,
    pub method_len: usize,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(Box<str>),
    Prefix(Box<str>),
    /// Anchored (`^(?:…)$`) so it must match the whole path.
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub enum ValueMatch {
    Exact(Box<str>),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct HeaderMatch {
    pub name: HeaderName,
    pub value: ValueMatch,
}

#[derive(Debug, Clone)]
pub struct QueryMatch {
    pub name: Box<str>,
    pub value: ValueMatch,
}

#[derive(Debug, Clone)]
pub enum FilterSpec {
    Redirect(Arc<RedirectSpec>),
    Rewrite(Arc<RewriteSpec>),
    Mirror(MirrorSpec),
    Wasm(WasmFilterSpec),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectSpec {
    pub scheme: Option<Scheme>,
    pub hostname: Option<Box<str>>,
    pub port: Option<u16>,
    pub path: Option<PathModifier>,
    pub status: u16,
}

/// Gateway API RequestMirror: `numerator` of every `denominator` requests are copied to
/// `backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSpec {
    pub backend: String,
    pub numerator: u32,
    pub denominator: u32,
}

/// Gateway API URLRewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteSpec {
    pub hostname: Option<Box<str>>,
    pub path: Option<PathModifier>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    ReplaceFullPath(Box<str>),
    ReplacePrefixMatch(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WasmFilterSpec {
    pub display_name: Arc<str>,
    pub module: String,
    pub config: Vec<u8>,
    pub fail_open: bool,
    pub timeout: Option<Duration>,
    pub max_memory: Option<u64>,
    /// Where the filter's counters live; `None`: private to its binding on this host.
    pub counters: Option<CounterScope>,
}

#[derive(Debug, Clone)]
pub struct BackendRefSpec {
    /// `None`: the reference is invalid; picking it answers 500.
    pub backend: Option<String>,
    pub weight: u32,
    pub filters: Vec<FilterSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    H2c,
}

#[derive(Debug, Clone)]
pub struct BackendSpec {
    pub name: Arc<str>,
    pub protocol: UpstreamProtocol,
    /// `host:port` authorities (IPv6 bracketed).
    pub endpoints: Vec<http::uri::Authority>,
    /// TLS to the endpoints (BackendTLSPolicy); `None`: cleartext.
    pub tls: Option<Arc<crate::upstream_tls::UpstreamTls>>,
    /// Endpoint picking and session persistence (BackendLBPolicy).
    pub balancing: crate::balancer::BalancingSpec,
}

#[derive(Debug, Clone)]
pub struct ModuleSpec {
    pub name: String,
    pub sha256: String,
    pub source: ModuleSource,
}

#[derive(Debug, Clone)]
pub enum ModuleSource {
    Path(PathBuf),
    Inline(Vec<u8>),
}

/// Why one resource can't be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown resource type {0:?}")]
    UnknownType(String),
    #[error("cannot decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("body is named {body:?}, not like its xDS resource")]
    NameMismatch { body: String },
    #[error("unsupported {field} {value:?}")]
    Unsupported { field: &'static str, value: String },
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Hostname(#[from] HostnameError),
    #[error("invalid regular expression {pattern:?}: {source}")]
    Regex {
        pattern: String,
        source: Box<regex::Error>,
    },
    #[error("references unknown {kind} {name:?}")]
    UnknownReference { kind: &'static str, name: String },
    #[error("{0}")]
    Conflict(String),
}

pub(crate) fn invalid(
    field: &'static str,
    value: impl ToString,
    reason: impl ToString,
) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Per-resource reasons; becomes the NACK's `ErrorDetail`.
#[derive(Debug, Default)]
pub struct Rejections(pub BTreeMap<String, String>);

impl Rejections {
    pub fn add(&mut self, name: &str, reason: impl ToString) {
        // The first reason is the most useful one; later ones often follow from it.
        self.0
            .entry(name.to_string())
            .or_insert_with(|| reason.to_string());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_error_detail(self) -> ErrorDetail {
        let message = match self.0.iter().next() {
            Some((name, reason)) => format!(
                "{} resource(s) rejected; first: {name}: {reason}",
                self.0.len()
            ),
            None => "snapshot rejected".to_string(),
        };
        ErrorDetail {
            message,
            rejected: self
                .0
                .into_iter()
                .map(|(name, reason)| RejectedResource { name, reason })
                .collect(),
        }
    }
}

pub use crate::config_decode::decode;

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
