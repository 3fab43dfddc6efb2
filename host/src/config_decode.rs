//! Decoding a snapshot: `Any` bodies by type URL, listener/backend/module conversion and
//! the cross-resource checks. Route conversion is in `config_route`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use nantian_proto::config as pb;
use nantian_proto::type_url;
use prost::Message;

use crate::balancer::BalancingSpec;
use crate::config::{
    BackendSpec, ConfigError, ConfigSet, FilterSpec, ListenerSpec, ModuleSource, ModuleSpec,
    Rejections, RouteSpec, StreamKind, StreamMode, UpstreamProtocol, invalid,
};
use crate::hostname::Hostname;
use crate::upstream_tls::UpstreamTls;
use crate::xds_client::ResourceMap;

/// Decodes and validates a whole snapshot.
pub fn decode(resources: &ResourceMap) -> Result<ConfigSet, Rejections> {
    let mut set = ConfigSet::default();
    let mut rejections = Rejections::default();
    for (name, resource) in resources {
        if let Err(e) = decode_one(&mut set, name, &resource.body) {
            rejections.add(name, e);
        }
    }
    check_references(&set, &mut rejections);
    if rejections.is_empty() {
        Ok(set)
    } else {
        Err(rejections)
    }
}

fn decode_one(
    set: &mut ConfigSet,
    name: &str,
    body: &nantian_proto::Any,
) -> Result<(), ConfigError> {
    fn body_of<T: Message + Default>(value: &[u8]) -> Result<T, ConfigError> {
        Ok(T::decode(value)?)
    }
    fn check_name(name: &str, body_name: &mut String) -> Result<(), ConfigError> {
        if body_name.is_empty() {
            *body_name = name.to_string();
        } else if body_name != name {
            return Err(ConfigError::NameMismatch {
                body: body_name.clone(),
            });
        }
        Ok(())
    }
    match body.type_url.as_str() {
        type_url::LISTENER => {
            let mut pb: pb::Listener = body_of(&body.value)?;
            check_name(name, &mut pb.name)?;
            set.listeners.push(ListenerSpec::try_from(&pb)?);
            set.dump.listeners.push(pb);
        }
        type_url::ROUTE => {
            let mut pb: pb::Route = body_of(&body.value)?;
            check_name(name, &mut pb.name)?;
            set.routes.push(RouteSpec::try_from(&pb)?);
            set.dump.routes.push(pb);
        }
        type_url::BACKEND => {
            let mut pb: pb::Backend = body_of(&body.value)?;
            check_name(name, &mut pb.name)?;
            set.backends.push(BackendSpec::try_from(&pb)?);
            set.dump.backends.push(pb);
        }
        type_url::FILTER_MODULE => {
            let mut pb: pb::FilterModule = body_of(&body.value)?;
            check_name(name, &mut pb.name)?;
            set.modules.push(ModuleSpec::try_from(&pb)?);
            set.dump.filter_modules.push(pb);
        }
        other => return Err(ConfigError::UnknownType(other.to_string())),
    }
    Ok(())
}

/// References between resources, and listeners that would be ambiguous on one socket.
/// One TCP socket speaks plain HTTP, HTTPS, TLSRoute streams or TCPRoute streams:
/// listeners needing different ones can't share it. UDP listeners have sockets of their
/// own.
fn mixes_protocols(set: &ConfigSet, l: &ListenerSpec) -> bool {
    set.listeners
        .iter()
        .filter(|other| other.is_udp() == l.is_udp() && other.socket_kind() != l.socket_kind())
        .any(|other| other.binds.iter().any(|b| l.binds.contains(b)))
}

fn check_references(set: &ConfigSet, rejections: &mut Rejections) {
    let listeners: HashMap<&str, &ListenerSpec> =
        set.listeners.iter().map(|l| (&*l.name, l)).collect();
    let backends: HashMap<&str, _> = set.backends.iter().map(|b| (&*b.name, b)).collect();
    let modules: HashMap<&str, _> = set.modules.iter().map(|m| (m.name.as_str(), m)).collect();

    let mut by_socket_host: BTreeMap<(bool, SocketAddr, Option<String>), &str> = BTreeMap::new();
    let mut sorted: Vec<&ListenerSpec> = set.listeners.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for l in sorted {
        if mixes_protocols(set, l) {
            let why = "shares its address and port with a listener of another protocol (HTTP/HTTPS/TLS/TCP)";
            rejections.add(&l.name, ConfigError::Conflict(why.into()));
        }
        for bind in &l.binds {
            let key = (
                l.is_udp(),
                *bind,
                l.hostname.as_ref().map(|h| h.to_string()),
            );
            if let Some(first) = by_socket_host.insert(key, &l.name) {
                let why =
                    format!("conflicts with listener {first}: same address, port and hostname");
                rejections.add(&l.name, ConfigError::Conflict(why));
                break;
            }
        }
    }

    for route in &set.routes {
        let unknown = |kind, name: &str| ConfigError::UnknownReference {
            kind,
            name: name.to_string(),
        };
        for l in &route.listeners {
            match listeners.get(l.as_str()) {
                None => rejections.add(&route.name, unknown("listener", l)),
                Some(listener) if listener.stream.map(StreamMode::route_kind) != route.stream => {
                    let why = format!(
                        "a {} cannot attach to the {} listener {l}",
                        match route.stream {
                            Some(StreamKind::Tls) => "TLSRoute",
                            Some(StreamKind::Tcp) => "TCPRoute",
                            Some(StreamKind::Udp) => "UDPRoute",
                            None => "HTTP route",
                        },
                        listener.socket_kind()
                    );
                    rejections.add(&route.name, ConfigError::Conflict(why));
                }
                Some(_) => {}
            }
        }
        let mut filter_lists = vec![&route.filters];
        for backend_ref in &route.backends {
            if let Some(b) = &backend_ref.backend
                && !backends.contains_key(b.as_str())
            {
                rejections.add(&route.name, unknown("backend", b));
            }
            filter_lists.push(&backend_ref.filters);
        }
        for ai_backend in route.ai.iter().flat_map(|ai| &ai.backends) {
            if !backends.contains_key(ai_backend.backend.as_str()) {
                rejections.add(&route.name, unknown("backend", &ai_backend.backend));
            }
            filter_lists.push(&ai_backend.filters);
        }
        for filters in filter_lists {
            for filter in filters {
                match filter {
                    FilterSpec::Wasm(w) if !modules.contains_key(w.module.as_str()) => {
                        rejections.add(&route.name, unknown("filter module", &w.module));
                    }
                    FilterSpec::Mirror(m) if !backends.contains_key(m.backend.as_str()) => {
                        rejections.add(&route.name, unknown("backend", &m.backend));
                    }
                    _ => {}
                }
            }
        }
    }
}

impl TryFrom<&pb::Listener> for ListenerSpec {
    type Error = ConfigError;

    fn try_from(pb: &pb::Listener) -> Result<Self, ConfigError> {
        type Certificates = Option<Arc<[Arc<rustls::sign::CertifiedKey>]>>;
        let certificates = || -> Result<Certificates, ConfigError> {
            if pb.certificates.is_empty() {
                return Err(invalid(
                    "listener",
                    &pb.name,
                    "terminating TLS needs a certificate",
                ));
            }
            let keys: Vec<_> = pb
                .certificates
                .iter()
                .map(crate::tls::certified_key)
                .collect::<Result<_, _>>()?;
            Ok(Some(keys.into()))
        };
        let (tls, stream) = match (pb.protocol.as_str(), pb.tls_mode.as_str()) {
            ("HTTP", _) => (None, None),
            ("HTTPS", _) => (certificates()?, None),
            ("TLS", "Passthrough") => (None, Some(StreamMode::TlsPassthrough)),
            ("TLS", "" | "Terminate") => (certificates()?, Some(StreamMode::TlsTerminate)),
            ("TCP", _) => (None, Some(StreamMode::Tcp)),
            ("UDP", _) => (None, Some(StreamMode::Udp)),
            ("TLS", other) => {
                return Err(ConfigError::Unsupported {
                    field: "listener TLS mode",
                    value: other.to_string(),
                });
            }
            (other, _) => {
                return Err(ConfigError::Unsupported {
                    field: "listener protocol",
                    value: other.to_string(),
                });
            }
        };
        let port = u16::try_from(pb.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("listener port", pb.port, "must be 1..=65535"))?;
        let mut binds = Vec::with_capacity(pb.addresses.len().max(1));
        for address in &pb.addresses {
            let ip: IpAddr = address
                .parse()
                .map_err(|_| invalid("listener address", address, "not an IP address"))?;
            let bind = SocketAddr::new(ip, port);
            // A repeated address would be bound twice: the second bind would fail.
            if !binds.contains(&bind) {
                binds.push(bind);
            }
        }
        if binds.is_empty() {
            binds.push(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port));
        }
        let hostname = match pb.hostname.as_str() {
            "" => None,
            h => Some(Hostname::parse(h)?),
        };
        let client_auth = match (&tls, &pb.client_validation, stream) {
            (Some(_), Some(v), None) => Some(crate::tls::ClientAuth::try_from(v)?),
            _ => None,
        };
        Ok(ListenerSpec {
            name: pb.name.as_str().into(),
            binds,
            hostname,
            tls,
            client_auth,
            stream,
        })
    }
}

impl TryFrom<&pb::Backend> for BackendSpec {
    type Error = ConfigError;

    fn try_from(pb: &pb::Backend) -> Result<Self, ConfigError> {
        let protocol = match pb.protocol.as_str() {
            "" | "http" => UpstreamProtocol::Http1,
            "h2c" => UpstreamProtocol::H2c,
            other => {
                return Err(ConfigError::Unsupported {
                    field: "backend protocol",
                    value: other.to_string(),
                });
            }
        };
        let endpoints = pb
            .endpoints
            .iter()
            .map(endpoint_authority)
            .collect::<Result<_, _>>()?;
        let tls = pb
            .tls
            .as_ref()
            .map(|tls| UpstreamTls::new(tls, protocol).map(Arc::new))
            .transpose()?;
        let balancing = pb
            .load_balancing
            .as_ref()
            .map(BalancingSpec::try_from)
            .transpose()?
            .unwrap_or_default();
        Ok(BackendSpec {
            name: pb.name.as_str().into(),
            protocol,
            endpoints,
            tls,
            balancing,
        })
    }
}

fn endpoint_authority(ep: &pb::Endpoint) -> Result<http::uri::Authority, ConfigError> {
    let port = u16::try_from(ep.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| invalid("endpoint port", ep.port, "must be 1..=65535"))?;
    let text = match ep.address.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => {
            // DNS names are allowed (resolved by the connector); they must be valid hostnames.
            Hostname::parse(&ep.address)
                .ok()
                .filter(|h| matches!(h, Hostname::Exact(_)))
                .ok_or_else(|| {
                    invalid(
                        "endpoint address",
                        &ep.address,
                        "not an IP address or hostname",
                    )
                })?;
            format!("{}:{port}", ep.address)
        }
    };
    text.parse()
        .map_err(|e| invalid("endpoint address", &ep.address, e))
}

impl TryFrom<&pb::FilterModule> for ModuleSpec {
    type Error = ConfigError;

    fn try_from(pb: &pb::FilterModule) -> Result<Self, ConfigError> {
        let sha256 = pb.sha256.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("sha256", &pb.sha256, "must be 64 hex digits"));
        }
        let source = match &pb.source {
            Some(pb::filter_module::Source::Path(p)) => ModuleSource::Path(PathBuf::from(p)),
            Some(pb::filter_module::Source::Inline(bytes)) => ModuleSource::Inline(bytes.clone()),
            None => {
                return Err(invalid(
                    "filter module source",
                    "",
                    "neither path nor inline bytes",
                ));
            }
        };
        Ok(ModuleSpec {
            name: pb.name.clone(),
            sha256,
            source,
        })
    }
}
