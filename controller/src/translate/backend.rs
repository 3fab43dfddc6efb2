//! backendRefs → `config::Backend`: one Service port, its endpoints from EndpointSlices.

use gateway_api::experimental::httproutes::HttpRouteRulesBackendRefs;
use k8s_openapi::api::core::v1::ServicePort;
use nantian_proto::config;

use super::listener::GATEWAY_GROUP;
use super::policy::BackendPolicies;
use super::source::RouteSource;
use super::{ai_service, reference_grant};
use crate::model::{Key, MetaExt, Resources};
use crate::status::{Problem, reason};

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A backendRef resolved to a Service port.
pub(super) struct ResolvedBackend {
    pub backend: config::Backend,
    /// The Service (namespace, name).
    pub service: Key,
}

/// Resolves one backendRef of `route`, or says why it is invalid (the reason becomes the
/// route's ResolvedRefs=False reason).
pub(super) fn resolve(
    res: &Resources,
    policies: &BackendPolicies,
    route: &RouteSource,
    bref: &HttpRouteRulesBackendRefs,
) -> Result<ResolvedBackend, Problem> {
    let route_ns = route.namespace.as_str();
    let group = bref.group.as_deref().unwrap_or("");
    let kind = bref.kind.as_deref().unwrap_or("Service");
    let ns = bref.namespace.as_deref().unwrap_or(route_ns);
    let name = bref.name.as_str();
    // A rule's AIService is resolved by the rule itself: one that gets here is elsewhere
    // (a RequestMirror's backendRef).
    if ai_service::is_ref(bref) {
        return Err(Problem::new(
            reason::INVALID_KIND,
            format!(
                "backendRef {name}: an AIService can only be the one backendRef of an HTTPRoute rule"
            ),
        ));
    }
    if !group.is_empty() || kind != "Service" {
        let shown_group = if group.is_empty() { "core" } else { group };
        return Err(Problem::new(
            reason::INVALID_KIND,
            format!(
                "backendRef {name}: kind {shown_group}/{kind} is not supported, only core Service"
            ),
        ));
    }
    let permitted = reference_grant::permits(
        res,
        &reference_grant::From {
            group: GATEWAY_GROUP,
            kind: route.kind,
            namespace: route_ns,
        },
        &reference_grant::To {
            group: "",
            kind: "Service",
            namespace: ns,
            name,
        },
    );
    if !permitted {
        return Err(Problem::new(
            reason::REF_NOT_PERMITTED,
            format!(
                "backendRef to Service {ns}/{name} is not permitted: no ReferenceGrant in namespace {ns} allows {}s from namespace {route_ns}",
                route.kind
            ),
        ));
    }
    let Some(service) = res.services.get(&(ns.to_string(), name.to_string())) else {
        return Err(Problem::new(
            reason::BACKEND_NOT_FOUND,
            format!("Service {ns}/{name} not found"),
        ));
    };
    let Some(port) = bref.port else {
        return Err(Problem::new(
            reason::BACKEND_NOT_FOUND,
            format!("backendRef to Service {ns}/{name} has no port"),
        ));
    };
    let service_port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.port == port));
    let Some(service_port) = service_port else {
        return Err(Problem::new(
            reason::BACKEND_NOT_FOUND,
            format!("Service {ns}/{name} has no port {port}"),
        ));
    };
    let protocol = protocol(service_port).map_err(|app_protocol| {
        Problem::new(
            reason::UNSUPPORTED_PROTOCOL,
            format!("Service {ns}/{name} port {port}: appProtocol {app_protocol} is not supported"),
        )
    })?;
    let policy = policies
        .tls
        .for_port(ns, name, service_port.name.as_deref().unwrap_or(""));
    // gRPC is HTTP/2: a GRPCRoute's backends get it whatever the port's appProtocol says.
    // The name tells this backend apart from the same port reached over HTTP/1.1 by an
    // HTTPRoute.
    let (protocol, name_suffix) = if route.is_grpc() && protocol != "h2c" {
        ("h2c", "/h2c")
    } else {
        (protocol, "")
    };
    Ok(ResolvedBackend {
        backend: config::Backend {
            name: format!("backend/{ns}/{name}:{port}{name_suffix}"),
            protocol: protocol.to_string(),
            endpoints: endpoints(res, ns, name, service_port),
            tls: policy.map(|p| p.tls.clone()),
            load_balancing: policies.lb.for_service(ns, name).cloned(),
        },
        service: (ns.to_string(), name.to_string()),
    })
}

/// "http" (HTTP/1.1) unless the port's appProtocol asks for cleartext HTTP/2; any other
/// appProtocol comes back as Err.
///
/// `HTTPS` is HTTP/1.1 too: whether the host speaks TLS to the port, and how it verifies
/// it, is what a BackendTLSPolicy says, not the appProtocol.
///
/// `kubernetes.io/ws` (WebSocket over cleartext) is HTTP/1.1: the handshake is an HTTP/1.1
/// `Upgrade` request, which the host forwards and then tunnels, so it needs no protocol of
/// its own. `kubernetes.io/wss` needs TLS to the backend, which Nantian does not speak.
fn protocol(port: &ServicePort) -> Result<&'static str, String> {
    match port.app_protocol.as_deref() {
        None | Some("") => Ok("http"),
        Some(p) if p.eq_ignore_ascii_case("http") || p == "kubernetes.io/http" => Ok("http"),
        Some(p) if p.eq_ignore_ascii_case("https") || p == "kubernetes.io/https" => Ok("http"),
        Some("kubernetes.io/ws") => Ok("http"),
        Some(p) if p.eq_ignore_ascii_case("h2c") || p == "kubernetes.io/h2c" => Ok("h2c"),
        Some(other) => Err(other.to_string()),
    }
}

/// Ready endpoints of the Service's EndpointSlices for one Service port. The slice port
/// is the container (target) port; it is found by the Service port's name, which is empty
/// for a single unnamed port on both sides.
fn endpoints(
    res: &Resources,
    ns: &str,
    service: &str,
    service_port: &ServicePort,
) -> Vec<config::Endpoint> {
    let port_name = service_port.name.as_deref().unwrap_or("");
    let mut out = Vec::new();
    let slices = res
        .endpoint_slices
        .values()
        .filter(|s| s.namespace() == ns)
        .filter(|s| s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(service))
        .filter(|s| matches!(s.address_type.as_str(), "IPv4" | "IPv6"));
    for slice in slices {
        let slice_port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u32::try_from(p).ok());
        let Some(port) = slice_port else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            // Unknown readiness counts as ready, as Kubernetes documents it.
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            for address in &endpoint.addresses {
                out.push(config::Endpoint {
                    address: address.clone(),
                    port,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.address, a.port).cmp(&(&b.address, b.port)));
    out.dedup();
    out
}
