use std::collections::BTreeMap;

use super::*;
use crate::xds_client::{Resource, ResourceMap};
use nantian_proto::ConfigResource;
use nantian_proto::type_url;

fn listener(name: &str, port: u32, hostname: &str) -> pb::Listener {
    pb::Listener {
        name: name.into(),
        addresses: vec!["127.0.0.1".into()],
        port,
        protocol: "HTTP".into(),
        hostname: hostname.into(),
        certificates: Vec::new(),
        client_validation: None,
        tls_mode: String::new(),
    }
}

fn route(name: &str) -> pb::Route {
    pb::Route {
        name: name.into(),
        route_namespace: "ns".into(),
        route_name: "r".into(),
        listeners: vec!["listener/ns/gw/http".into()],
        backends: vec![pb::BackendRef {
            backend: "backend/ns/svc:80".into(),
            weight: 1,
            filters: vec![],
        }],
        ..Default::default()
    }
}

fn backend() -> pb::Backend {
    pb::Backend {
        name: "backend/ns/svc:80".into(),
        protocol: "http".into(),
        endpoints: vec![pb::Endpoint {
            address: "10.0.0.1".into(),
            port: 8080,
        }],
        tls: None,
        load_balancing: None,
    }
}

fn map_of(items: Vec<(String, nantian_proto::Any)>) -> ResourceMap {
    items
        .into_iter()
        .map(|(name, body)| {
            (
                name,
                Resource {
                    version: "1".into(),
                    body,
                },
            )
        })
        .collect()
}

fn entry<T: ConfigResource>(r: &T) -> (String, nantian_proto::Any) {
    (r.resource_name().to_string(), r.to_any())
}

fn valid_base() -> Vec<(String, nantian_proto::Any)> {
    vec![
        entry(&listener("listener/ns/gw/http", 8080, "")),
        entry(&backend()),
    ]
}

/// Decodes base + `extra` and returns the rejection reasons by resource name.
fn rejected(extra: Vec<(String, nantian_proto::Any)>) -> BTreeMap<String, String> {
    let mut items = valid_base();
    items.extend(extra);
    match decode(&map_of(items)) {
        Ok(_) => BTreeMap::new(),
        Err(r) => r.0,
    }
}

fn assert_rejected(extra: Vec<(String, nantian_proto::Any)>, name: &str, reason_contains: &str) {
    let reasons = rejected(extra);
    let reason = reasons
        .get(name)
        .unwrap_or_else(|| panic!("{name} not rejected; rejections: {reasons:?}"));
    assert!(
        reason.contains(reason_contains),
        "{name}: {reason:?} lacks {reason_contains:?}"
    );
}

#[test]
fn a_valid_snapshot_decodes_with_its_dump() {
    let mut items = valid_base();
    items.push(entry(&route("route/ns/r/rule/0")));
    let set = decode(&map_of(items)).unwrap();
    assert_eq!(set.listeners.len(), 1);
    assert_eq!(set.routes.len(), 1);
    assert_eq!(
        set.routes[0].matches.len(),
        1,
        "no matches means one PathPrefix / match"
    );
    assert_eq!(set.backends[0].endpoints[0].as_str(), "10.0.0.1:8080");
    assert_eq!(set.dump.routes.len(), 1);
    let json = serde_json::to_value(&set.dump).unwrap();
    assert_eq!(json["listeners"][0]["name"], "listener/ns/gw/http");
}

#[test]
fn unknown_types_and_undecodable_bodies_are_rejected() {
    let unknown = nantian_proto::Any {
        type_url: "type.googleapis.com/nantian.config.v1.Mystery".into(),
        value: vec![],
    };
    assert_rejected(
        vec![("mystery".into(), unknown)],
        "mystery",
        "unknown resource type",
    );
    let garbage = nantian_proto::Any {
        type_url: type_url::ROUTE.into(),
        value: vec![0xff, 0xff, 0xff],
    };
    assert_rejected(
        vec![("route/ns/x/rule/0".into(), garbage)],
        "route/ns/x/rule/0",
        "cannot decode",
    );
}

#[test]
fn a_body_named_differently_from_its_resource_is_rejected() {
    let r = route("route/ns/r/rule/0");
    assert_rejected(
        vec![("route/ns/other/rule/0".into(), r.to_any())],
        "route/ns/other/rule/0",
        "named",
    );
}

#[test]
fn invalid_matches_are_rejected_with_reasons() {
    let with_match = |name: &str, m: pb::RouteMatch| {
        let mut r = route(name);
        r.matches = vec![m];
        entry(&r)
    };
    let regex = pb::RouteMatch {
        path: Some(pb::PathMatch {
            r#type: "RegularExpression".into(),
            value: "/(unclosed".into(),
        }),
        ..Default::default()
    };
    let method = pb::RouteMatch {
        method: "BREW".into(),
        ..Default::default()
    };
    let relative = pb::RouteMatch {
        path: Some(pb::PathMatch {
            r#type: "Exact".into(),
            value: "no-slash".into(),
        }),
        ..Default::default()
    };
    let header = pb::RouteMatch {
        headers: vec![pb::ValueMatch {
            r#type: "Exact".into(),
            name: "bad header".into(),
            value: "v".into(),
        }],
        ..Default::default()
    };
    assert_rejected(
        vec![with_match("route/ns/r/rule/0", regex)],
        "route/ns/r/rule/0",
        "regular expression",
    );
    assert_rejected(
        vec![with_match("route/ns/r/rule/0", method)],
        "route/ns/r/rule/0",
        "method",
    );
    assert_rejected(
        vec![with_match("route/ns/r/rule/0", relative)],
        "route/ns/r/rule/0",
        "must start with '/'",
    );
    assert_rejected(
        vec![with_match("route/ns/r/rule/0", header)],
        "route/ns/r/rule/0",
        "header name",
    );
}

#[test]
fn references_to_missing_resources_are_rejected() {
    let mut r = route("route/ns/r/rule/0");
    r.listeners.push("listener/ns/gw/missing".into());
    assert_rejected(vec![entry(&r)], "route/ns/r/rule/0", "unknown listener");

    let mut r = route("route/ns/r/rule/0");
    r.backends[0].backend = "backend/ns/missing:80".into();
    assert_rejected(vec![entry(&r)], "route/ns/r/rule/0", "unknown backend");

    let mut r = route("route/ns/r/rule/0");
    r.filters.push(pb::RouteFilter {
        kind: Some(pb::route_filter::Kind::Wasm(pb::WasmFilter {
            display_name: "RequestHeaderModifier".into(),
            module: "module/header-modifier@abc".into(),
            config: "{}".into(),
            fail_policy: "FailClosed".into(),
            ..Default::default()
        })),
    });
    assert_rejected(
        vec![entry(&r)],
        "route/ns/r/rule/0",
        "unknown filter module",
    );

    // An empty backend name is an invalid ref the data plane answers with 500, not an error.
    let mut r = route("route/ns/r/rule/0");
    r.backends[0].backend.clear();
    assert!(rejected(vec![entry(&r)]).is_empty());
}

#[test]
fn redirect_validation() {
    let redirect = |rr: pb::RequestRedirect, matches: Vec<pb::RouteMatch>| {
        let mut r = route("route/ns/r/rule/0");
        r.matches = matches;
        r.filters.push(pb::RouteFilter {
            kind: Some(pb::route_filter::Kind::RequestRedirect(rr)),
        });
        entry(&r)
    };
    let status = pb::RequestRedirect {
        status_code: 200,
        ..Default::default()
    };
    assert_rejected(
        vec![redirect(status, vec![])],
        "route/ns/r/rule/0",
        "status code",
    );
    let scheme = pb::RequestRedirect {
        scheme: "ftp".into(),
        ..Default::default()
    };
    assert_rejected(
        vec![redirect(scheme, vec![])],
        "route/ns/r/rule/0",
        "scheme",
    );
    let prefix_on_exact = pb::RequestRedirect {
        path: Some(pb::PathModifier {
            r#type: "ReplacePrefixMatch".into(),
            value: "/new".into(),
        }),
        ..Default::default()
    };
    let exact = pb::RouteMatch {
        path: Some(pb::PathMatch {
            r#type: "Exact".into(),
            value: "/old".into(),
        }),
        ..Default::default()
    };
    assert_rejected(
        vec![redirect(prefix_on_exact.clone(), vec![exact])],
        "route/ns/r/rule/0",
        "PathPrefix",
    );
    assert!(rejected(vec![redirect(prefix_on_exact, vec![])]).is_empty());
}

#[test]
fn listener_problems_are_rejected() {
    let mut sctp = listener("listener/ns/gw/sctp", 8443, "");
    sctp.protocol = "SCTP".into();
    assert_rejected(vec![entry(&sctp)], "listener/ns/gw/sctp", "protocol");
    let mut https = listener("listener/ns/gw/tls", 8443, "");
    https.protocol = "HTTPS".into();
    assert_rejected(
        vec![entry(&https)],
        "listener/ns/gw/tls",
        "needs a certificate",
    );
    https.certificates.push(pb::TlsCertificate {
        source: "ns/broken".into(),
        cert_chain_pem: "not a certificate".into(),
        private_key_pem: String::new(),
    });
    assert_rejected(vec![entry(&https)], "listener/ns/gw/tls", "ns/broken");
    // HTTP and HTTPS cannot share a socket (listener/ns/gw/http is on 8080).
    let cert = rcgen::generate_simple_self_signed(vec!["a.example.com".to_string()]).unwrap();
    let mut mixed = listener("listener/ns/gw/mixed", 8080, "a.example.com");
    mixed.protocol = "HTTPS".into();
    mixed.certificates.push(pb::TlsCertificate {
        source: "ns/a".into(),
        cert_chain_pem: cert.cert.pem(),
        private_key_pem: cert.key_pair.serialize_pem(),
    });
    assert_rejected(
        vec![entry(&mixed)],
        "listener/ns/gw/mixed",
        "another protocol",
    );
    let bad_host = listener("listener/ns/gw/bad", 8080, "*.*.example.com");
    assert_rejected(vec![entry(&bad_host)], "listener/ns/gw/bad", "hostname");
    let mut bad_addr = listener("listener/ns/gw/addr", 8080, "");
    bad_addr.addresses = vec!["127.0.0.1".into(), "localhost".into()];
    assert_rejected(
        vec![entry(&bad_addr)],
        "listener/ns/gw/addr",
        "not an IP address",
    );
    // Same socket and hostname as listener/ns/gw/http: ambiguous.
    let twin = listener("listener/ns/gw/twin", 8080, "");
    assert_rejected(
        vec![entry(&twin)],
        "listener/ns/gw/twin",
        "conflicts with listener listener/ns/gw/http",
    );
    // Another Gateway address with the same port and hostname is one socket more.
    let mut elsewhere = listener("listener/ns/gw/second-address", 8080, "");
    elsewhere.addresses = vec!["127.0.0.2".into()];
    assert!(rejected(vec![entry(&elsewhere)]).is_empty());
    // ...unless one of its addresses is the first listener's.
    elsewhere.addresses.push("127.0.0.1".into());
    assert_rejected(
        vec![entry(&elsewhere)],
        "listener/ns/gw/second-address",
        "conflicts with listener listener/ns/gw/http",
    );
    // Same socket, different hostname: fine.
    assert!(
        rejected(vec![entry(&listener(
            "listener/ns/gw/named",
            8080,
            "a.example.com"
        ))])
        .is_empty()
    );
}

#[test]
fn backend_and_module_problems_are_rejected() {
    let mut b = backend();
    b.name = "backend/ns/grpc:80".into();
    b.protocol = "grpc".into();
    assert_rejected(vec![entry(&b)], "backend/ns/grpc:80", "backend protocol");
    let mut b = backend();
    b.name = "backend/ns/port:80".into();
    b.endpoints[0].port = 70000;
    assert_rejected(vec![entry(&b)], "backend/ns/port:80", "endpoint port");
    let m = pb::FilterModule {
        name: "module/x@1".into(),
        sha256: "not-hex".into(),
        source: Some(pb::filter_module::Source::Path("/tmp/x.wasm".into())),
    };
    assert_rejected(vec![entry(&m)], "module/x@1", "sha256");
}

#[test]
fn load_balancing_and_session_problems_are_rejected() {
    let mut b = backend();
    b.name = "backend/ns/lb:80".into();
    b.load_balancing = Some(pb::LoadBalancing {
        algorithm: "Fastest".into(),
        ..Default::default()
    });
    assert_rejected(
        vec![entry(&b)],
        "backend/ns/lb:80",
        "load balancing algorithm",
    );
    let mut b = backend();
    b.name = "backend/ns/hash:80".into();
    b.load_balancing = Some(pb::LoadBalancing {
        algorithm: "ConsistentHash".into(),
        hash_on: "Body".into(),
        ..Default::default()
    });
    assert_rejected(vec![entry(&b)], "backend/ns/hash:80", "hash_on");
    let mut r = route("route/ns/sticky/rule/0");
    r.session_persistence = Some(pb::SessionPersistence {
        r#type: "Cookie".into(),
        session_name: "bad name".into(),
        ..Default::default()
    });
    assert_rejected(
        vec![entry(&r)],
        "route/ns/sticky/rule/0",
        "session cookie name",
    );
    let mut good = backend();
    good.load_balancing = Some(pb::LoadBalancing {
        algorithm: "LeastRequest".into(),
        hash_on: String::new(),
        session_persistence: Some(pb::SessionPersistence {
            r#type: "Header".into(),
            session_name: "x-session".into(),
            ..Default::default()
        }),
    });
    let set = decode(&map_of(vec![entry(&good)])).unwrap();
    assert_eq!(
        set.backends[0].balancing.algorithm,
        crate::balancer::Algorithm::LeastRequest
    );
    assert!(set.backends[0].balancing.session.is_some());
}

#[test]
fn nack_detail_lists_every_rejected_resource() {
    let unknown = nantian_proto::Any {
        type_url: "type.googleapis.com/x".into(),
        value: vec![],
    };
    let mut r = route("route/ns/r/rule/0");
    r.backends[0].backend = "backend/ns/missing:80".into();
    let mut items = valid_base();
    items.push(("zzz".into(), unknown));
    items.push(entry(&r));
    let detail = decode(&map_of(items)).unwrap_err().into_error_detail();
    let names: Vec<&str> = detail.rejected.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["route/ns/r/rule/0", "zzz"]);
    assert!(
        detail.message.starts_with("2 resource(s) rejected"),
        "{}",
        detail.message
    );
}

#[test]
fn tls_listeners_and_tls_routes_must_fit_each_other() {
    let mut passthrough = listener("listener/ns/gw/tls", 9443, "*.example.com");
    passthrough.protocol = "TLS".into();
    passthrough.tls_mode = "Passthrough".into();
    let mut tls_route = route("tlsroute/ns/t/rule/0");
    tls_route.kind = "TLSRoute".into();
    tls_route.listeners = vec!["listener/ns/gw/tls".into()];
    tls_route.hostnames = vec!["a.example.com".into()];
    // A passthrough listener needs no certificate; its TLSRoute has no matches.
    let set = {
        let mut items = valid_base();
        items.push(entry(&passthrough));
        items.push(entry(&tls_route));
        decode(&map_of(items)).unwrap()
    };
    let l = set.listeners.iter().find(|l| l.stream.is_some()).unwrap();
    assert_eq!(l.stream, Some(StreamMode::TlsPassthrough));
    assert!(l.tls.is_none());
    assert_eq!(set.routes[0].stream, Some(StreamKind::Tls));

    // Terminate (also the default mode) needs the listener's certificate.
    let mut terminate = passthrough.clone();
    terminate.name = "listener/ns/gw/term".into();
    terminate.port = 9444;
    terminate.tls_mode = String::new();
    assert_rejected(
        vec![entry(&terminate)],
        "listener/ns/gw/term",
        "needs a certificate",
    );
    let mut unknown_mode = passthrough.clone();
    unknown_mode.tls_mode = "Sideways".into();
    assert_rejected(vec![entry(&unknown_mode)], "listener/ns/gw/tls", "Sideways");

    // A TLS listener cannot share the HTTP listener's socket (8080).
    let mut shared = passthrough.clone();
    shared.name = "listener/ns/gw/shared".into();
    shared.port = 8080;
    assert_rejected(
        vec![entry(&shared)],
        "listener/ns/gw/shared",
        "another protocol",
    );

    // Route kinds stay on their own listeners, and TLSRoute rules match by SNI alone.
    let mut on_http = tls_route.clone();
    on_http.name = "tlsroute/ns/h/rule/0".into();
    on_http.listeners = vec!["listener/ns/gw/http".into()];
    assert_rejected(
        vec![entry(&on_http)],
        "tlsroute/ns/h/rule/0",
        "cannot attach to the HTTP listener",
    );
    let mut http_on_tls = route("route/ns/x/rule/0");
    http_on_tls.listeners = vec!["listener/ns/gw/tls".into()];
    assert_rejected(
        vec![entry(&passthrough), entry(&http_on_tls)],
        "route/ns/x/rule/0",
        "cannot attach to the TLS listener",
    );
    let mut with_match = tls_route.clone();
    with_match.matches = vec![pb::RouteMatch::default()];
    assert_rejected(
        vec![entry(&passthrough), entry(&with_match)],
        "tlsroute/ns/t/rule/0",
        "by SNI or listener alone",
    );
}

#[test]
fn tcp_listeners_take_tcp_routes_only() {
    let mut tcp = listener("listener/ns/gw/tcp", 9000, "");
    tcp.protocol = "TCP".into();
    let mut tcp_route = route("tcproute/ns/t/rule/0");
    tcp_route.kind = "TCPRoute".into();
    tcp_route.listeners = vec!["listener/ns/gw/tcp".into()];
    let set = {
        let mut items = valid_base();
        items.push(entry(&tcp));
        items.push(entry(&tcp_route));
        decode(&map_of(items)).unwrap()
    };
    let l = set.listeners.iter().find(|l| l.stream.is_some()).unwrap();
    assert_eq!(l.stream, Some(StreamMode::Tcp));
    assert_eq!(l.socket_kind(), "TCP");
    assert_eq!(set.routes[0].stream, Some(StreamKind::Tcp));

    // Not on the HTTP listener's socket, and no TLSRoute on it.
    let mut shared = tcp.clone();
    shared.name = "listener/ns/gw/shared".into();
    shared.port = 8080;
    assert_rejected(
        vec![entry(&shared)],
        "listener/ns/gw/shared",
        "another protocol",
    );
    let mut tls_route = tcp_route.clone();
    tls_route.name = "tlsroute/ns/t/rule/0".into();
    tls_route.kind = "TLSRoute".into();
    assert_rejected(
        vec![entry(&tcp), entry(&tls_route)],
        "tlsroute/ns/t/rule/0",
        "a TLSRoute cannot attach to the TCP listener",
    );
}

#[test]
fn udp_listeners_have_sockets_of_their_own() {
    // The same address and port as a TCP listener: a UDP socket, so no conflict.
    let mut tcp = listener("listener/ns/gw/tcp", 9000, "");
    tcp.protocol = "TCP".into();
    let mut udp = listener("listener/ns/gw/udp", 9000, "");
    udp.protocol = "UDP".into();
    let mut udp_route = route("udproute/ns/u/rule/0");
    udp_route.kind = "UDPRoute".into();
    udp_route.listeners = vec!["listener/ns/gw/udp".into()];
    let set = {
        let mut items = valid_base();
        items.extend([entry(&tcp), entry(&udp), entry(&udp_route)]);
        decode(&map_of(items)).unwrap()
    };
    let l = set.listeners.iter().find(|l| l.is_udp()).unwrap();
    assert_eq!(l.socket_kind(), "UDP");
    assert_eq!(set.routes[0].stream, Some(StreamKind::Udp));

    // Two UDP listeners on one socket are as ambiguous as two TCP ones.
    let mut twin = udp.clone();
    twin.name = "listener/ns/gw/udp-twin".into();
    assert_rejected(
        vec![entry(&udp), entry(&twin)],
        "listener/ns/gw/udp-twin",
        "conflicts with listener listener/ns/gw/udp",
    );
    // A UDPRoute only on UDP listeners.
    let mut on_tcp = udp_route.clone();
    on_tcp.listeners = vec!["listener/ns/gw/tcp".into()];
    assert_rejected(
        vec![entry(&tcp), entry(&on_tcp)],
        "udproute/ns/u/rule/0",
        "a UDPRoute cannot attach to the TCP listener",
    );
}

#[test]
fn wasm_filter_counters_are_parsed_and_an_empty_scope_is_rejected() {
    let module = pb::FilterModule {
        name: "module/limit@1".into(),
        sha256: "ab".repeat(32),
        source: Some(pb::filter_module::Source::Path("/tmp/limit.wasm".into())),
    };
    let with_counters = |name: &str, counters: Option<pb::CounterStore>| {
        let mut r = route(name);
        r.filters.push(pb::RouteFilter {
            kind: Some(pb::route_filter::Kind::Wasm(pb::WasmFilter {
                module: "module/limit@1".into(),
                counters,
                ..Default::default()
            })),
        });
        entry(&r)
    };
    let store = |scope: &str, redis_url: &str| pb::CounterStore {
        scope: scope.into(),
        redis_url: redis_url.into(),
    };
    let mut items = valid_base();
    items.extend([
        entry(&module),
        with_counters(
            "route/ns/r/rule/0",
            Some(store("tokenpolicy/ns/p", "redis://redis:6379/2")),
        ),
        with_counters("route/ns/r/rule/1", Some(store("tokenpolicy/ns/q", ""))),
        with_counters("route/ns/r/rule/2", None),
    ]);
    let set = decode(&map_of(items)).unwrap();
    let counters = |rule: &str| {
        let route = set.routes.iter().find(|r| &*r.name == rule).unwrap();
        match &route.filters[0] {
            FilterSpec::Wasm(spec) => spec.counters.clone(),
            other => panic!("not a wasm filter: {other:?}"),
        }
    };
    assert_eq!(
        counters("route/ns/r/rule/0"),
        Some(CounterScope::redis(
            "tokenpolicy/ns/p",
            "redis://redis:6379/2"
        ))
    );
    assert_eq!(
        counters("route/ns/r/rule/1"),
        Some(CounterScope::local("tokenpolicy/ns/q"))
    );
    assert_eq!(counters("route/ns/r/rule/2"), None);

    assert_rejected(
        vec![
            entry(&module),
            with_counters("route/ns/r/rule/0", Some(store("", "redis://redis:6379"))),
        ],
        "route/ns/r/rule/0",
        "counters scope",
    );
}
