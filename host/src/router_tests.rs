//! Router cases taken from the Gateway API v1.5.1 conformance tests (manifests in
//! conformance/tests/*.yaml, expectations in the matching *.go files).

use super::*;
use nantian_proto::config as pb;

const V1: &str = "infra-backend-v1";
const V2: &str = "infra-backend-v2";
const V3: &str = "infra-backend-v3";

#[derive(Default, Clone)]
struct M(pb::RouteMatch);

impl M {
    fn path(mut self, kind: &str, value: &str) -> Self {
        self.0.path = Some(pb::PathMatch {
            r#type: kind.into(),
            value: value.into(),
        });
        self
    }
    fn prefix(self, value: &str) -> Self {
        self.path("PathPrefix", value)
    }
    fn exact(self, value: &str) -> Self {
        self.path("Exact", value)
    }
    fn header(mut self, name: &str, value: &str) -> Self {
        self.0.headers.push(pb::ValueMatch {
            r#type: "Exact".into(),
            name: name.into(),
            value: value.into(),
        });
        self
    }
    fn query(mut self, name: &str, value: &str) -> Self {
        self.0.query_params.push(pb::ValueMatch {
            r#type: "Exact".into(),
            name: name.into(),
            value: value.into(),
        });
        self
    }
    fn method(mut self, m: &str) -> Self {
        self.0.method = m.into();
        self
    }
    /// A GRPCRoute method match (empty strings: absent).
    fn grpc(mut self, kind: &str, service: &str, method: &str) -> Self {
        self.0.grpc_method = Some(pb::GrpcMethodMatch {
            r#type: kind.into(),
            service: service.into(),
            method: method.into(),
        });
        self
    }
}

fn m() -> M {
    M::default()
}

/// An HTTPRoute: its rules become one RouteSpec each, like the controller emits them.
struct HttpRoute {
    name: &'static str,
    created: i64,
    listeners: Vec<&'static str>,
    hostnames: Vec<&'static str>,
    /// (matches, backend)
    rules: Vec<(Vec<M>, &'static str)>,
    /// "GRPCRoute", or empty for an HTTPRoute.
    kind: &'static str,
}

fn route(name: &'static str, listeners: &[&'static str], hostnames: &[&'static str]) -> HttpRoute {
    HttpRoute {
        name,
        created: 100,
        listeners: listeners.to_vec(),
        hostnames: hostnames.to_vec(),
        rules: Vec::new(),
        kind: "",
    }
}

impl HttpRoute {
    fn rule(mut self, matches: Vec<M>, backend: &'static str) -> Self {
        self.rules.push((matches, backend));
        self
    }
    fn created(mut self, t: i64) -> Self {
        self.created = t;
        self
    }
    fn grpc(mut self) -> Self {
        self.kind = "GRPCRoute";
        self
    }
    fn specs(&self) -> Vec<RouteSpec> {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, (matches, backend))| {
                let pb = pb::Route {
                    name: format!("route/ns/{}/rule/{i}", self.name),
                    route_namespace: "ns".into(),
                    route_name: self.name.into(),
                    rule_index: i as u32,
                    creation_timestamp: self.created,
                    listeners: self
                        .listeners
                        .iter()
                        .map(|l| format!("listener/ns/gw/{l}"))
                        .collect(),
                    hostnames: self.hostnames.iter().map(|h| h.to_string()).collect(),
                    matches: matches.iter().map(|m| m.0.clone()).collect(),
                    backends: vec![pb::BackendRef {
                        backend: backend.to_string(),
                        weight: 1,
                        filters: vec![],
                    }],
                    kind: self.kind.into(),
                    ..Default::default()
                };
                RouteSpec::try_from(&pb).expect("valid route")
            })
            .collect()
    }
}

/// (host, method, uri, headers, expected backend or None for 404)
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
);

struct Fixture {
    routes: Vec<RouteSpec>,
    table: BindTable,
}

fn fixture(listeners: &[(&str, &str)], routes: &[HttpRoute]) -> Fixture {
    let listeners: Vec<ListenerSpec> = listeners
        .iter()
        .map(|(name, host)| {
            ListenerSpec::try_from(&pb::Listener {
                name: format!("listener/ns/gw/{name}"),
                addresses: vec!["0.0.0.0".into()],
                port: 80,
                protocol: "HTTP".into(),
                hostname: host.to_string(),
                certificates: Vec::new(),
                client_validation: None,
                tls_mode: String::new(),
            })
            .unwrap()
        })
        .collect();
    let routes: Vec<RouteSpec> = routes.iter().flat_map(HttpRoute::specs).collect();
    let mut tables = build_tables(&listeners, &routes);
    assert_eq!(tables.len(), 1, "all test listeners share one socket");
    let table = tables.drain().next().unwrap().1;
    Fixture { routes, table }
}

/// A single listener without hostname, like the conformance "same-namespace" Gateway.
fn same_namespace(routes: &[HttpRoute]) -> Fixture {
    fixture(&[("http", "")], routes)
}

impl Fixture {
    fn pick(&self, host: &str, method: &str, uri: &str, headers: &[(&str, &str)]) -> Option<&str> {
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, None),
        };
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let host = crate::hostname::normalize_request_host(host);
        let view = RequestView {
            host: &host,
            method: &method,
            path,
            query,
            headers: &map,
        };
        match self.table.lookup(&view) {
            Lookup::Matched(_, c) => self.routes[c.route].backends[0].backend.as_deref(),
            Lookup::NoRoute(_) | Lookup::NoListener => None,
        }
    }

    fn check(&self, cases: &[Case<'_>]) {
        for (host, method, uri, headers, want) in cases {
            assert_eq!(
                self.pick(host, method, uri, headers),
                *want,
                "{method} {host}{uri} {headers:?}"
            );
        }
    }
}

const NO: &[(&str, &str)] = &[];

#[test]
fn httproute_matching() {
    let f = same_namespace(&[route("matching", &["http"], &[])
        .rule(vec![m().prefix("/"), m().header("version", "one")], V1)
        .rule(vec![m().prefix("/v2"), m().header("version", "two")], V2)]);
    f.check(&[
        ("h", "GET", "/", NO, Some(V1)),
        ("h", "GET", "/example", NO, Some(V1)),
        ("h", "GET", "/", &[("Version", "one")], Some(V1)),
        ("h", "GET", "/v2", NO, Some(V2)),
        ("h", "GET", "/v2/example", NO, Some(V2)),
        ("h", "GET", "/", &[("Version", "two")], Some(V2)),
        ("h", "GET", "/v2/", NO, Some(V2)),
        ("h", "GET", "/v2example", NO, Some(V1)),
        ("h", "GET", "/foo/v2/example", NO, Some(V1)),
    ]);
}

#[test]
fn httproute_path_match_order() {
    let f = same_namespace(&[route("path-matching-order", &["http"], &[])
        .rule(vec![m().exact("/match")], V1)
        .rule(vec![m().exact("/match/exact")], V2)
        .rule(vec![m().exact("/match/exact/one")], V3)
        .rule(vec![m().prefix("/match/")], V3)
        .rule(vec![m().prefix("/match/prefix/")], V1)
        .rule(vec![m().prefix("/match/prefix/one")], V2)]);
    f.check(&[
        ("h", "GET", "/match/exact/one", NO, Some(V3)),
        ("h", "GET", "/match/exact", NO, Some(V2)),
        ("h", "GET", "/match", NO, Some(V1)),
        ("h", "GET", "/match/prefix/one/any", NO, Some(V2)),
        ("h", "GET", "/match/prefix/any", NO, Some(V1)),
        ("h", "GET", "/match/any", NO, Some(V3)),
    ]);
}

#[test]
fn httproute_hostname_intersection() {
    // Routes without sectionName attach to every listener; the intersection decides.
    let all = ["listener-1", "listener-2", "listener-3"];
    let f = fixture(
        &[
            ("listener-1", "very.specific.com"),
            ("listener-2", "*.wildcard.io"),
            ("listener-3", "*.anotherwildcard.io"),
        ],
        &[
            route(
                "specific-host-matches-listener-specific-host",
                &all,
                &[
                    "non.matching.com",
                    "*.nonmatchingwildcard.io",
                    "very.specific.com",
                ],
            )
            .rule(vec![m().prefix("/s1")], V1),
            route(
                "specific-host-matches-listener-wildcard-host",
                &all,
                &[
                    "non.matching.com",
                    "wildcard.io",
                    "foo.wildcard.io",
                    "bar.wildcard.io",
                    "foo.bar.wildcard.io",
                ],
            )
            .rule(vec![m().prefix("/s2")], V2),
            route(
                "wildcard-host-matches-listener-specific-host",
                &all,
                &["non.matching.com", "*.specific.com"],
            )
            .rule(vec![m().prefix("/s3")], V3),
            route(
                "wildcard-host-matches-listener-wildcard-host",
                &all,
                &["*.anotherwildcard.io"],
            )
            .rule(vec![m().prefix("/s4")], V1),
            route(
                "no-intersecting-hosts",
                &all,
                &["specific.but.wrong.com", "wildcard.io"],
            )
            .rule(vec![m().prefix("/s5")], V2),
        ],
    );
    f.check(&[
        ("very.specific.com", "GET", "/s1", NO, Some(V1)),
        ("very.specific.com:1234", "GET", "/s1", NO, Some(V1)),
        ("non.matching.com", "GET", "/s1", NO, None),
        ("foo.nonmatchingwildcard.io", "GET", "/s1", NO, None),
        ("foo.wildcard.io", "GET", "/s1", NO, None),
        ("very.specific.com", "GET", "/non-matching-prefix", NO, None),
        ("foo.wildcard.io", "GET", "/s2", NO, Some(V2)),
        ("bar.wildcard.io", "GET", "/s2", NO, Some(V2)),
        ("foo.bar.wildcard.io", "GET", "/s2", NO, Some(V2)),
        ("non.matching.com", "GET", "/s2", NO, None),
        ("wildcard.io", "GET", "/s2", NO, None),
        ("very.specific.com", "GET", "/s2", NO, None),
        ("foo.wildcard.io", "GET", "/non-matching-prefix", NO, None),
        ("very.specific.com", "GET", "/s3", NO, Some(V3)),
        ("non.matching.com", "GET", "/s3", NO, None),
        ("foo.specific.com", "GET", "/s3", NO, None),
        ("foo.wildcard.io", "GET", "/s3", NO, None),
        ("foo.anotherwildcard.io", "GET", "/s4", NO, Some(V1)),
        ("bar.anotherwildcard.io", "GET", "/s4", NO, Some(V1)),
        ("foo.bar.anotherwildcard.io", "GET", "/s4", NO, Some(V1)),
        ("anotherwildcard.io", "GET", "/s4", NO, None),
        ("foo.wildcard.io", "GET", "/s4", NO, None),
        ("very.specific.com", "GET", "/s4", NO, None),
        ("specific.but.wrong.com", "GET", "/s5", NO, None),
        ("wildcard.io", "GET", "/s5", NO, None),
    ]);

    let unspecified = fixture(
        &[("listener-1", "")],
        &[route(
            "httproute-hostname-intersection-all",
            &["listener-1"],
            &["first.com", "sub.first.com", "second.com", "sub.second.com"],
        )
        .rule(vec![], V2)],
    );
    unspecified.check(&[
        ("first.com", "GET", "/", NO, Some(V2)),
        ("sub.first.com", "GET", "/", NO, Some(V2)),
        ("second.com", "GET", "/", NO, Some(V2)),
        ("sub.second.com", "GET", "/", NO, Some(V2)),
        ("third.com", "GET", "/", NO, None),
        ("sub.third.com", "GET", "/", NO, None),
    ]);
}

#[test]
fn httproute_listener_hostname_matching() {
    let f = fixture(
        &[
            ("listener-1", "bar.com"),
            ("listener-2", "foo.bar.com"),
            ("listener-3", "*.bar.com"),
            ("listener-4", "*.foo.com"),
        ],
        &[
            route("backend-v1", &["listener-1"], &[]).rule(vec![], V1),
            route("backend-v2", &["listener-2"], &[]).rule(vec![], V2),
            route("backend-v3", &["listener-3", "listener-4"], &[]).rule(vec![], V3),
        ],
    );
    f.check(&[
        ("bar.com", "GET", "/", NO, Some(V1)),
        ("foo.bar.com", "GET", "/", NO, Some(V2)),
        ("baz.bar.com", "GET", "/", NO, Some(V3)),
        ("boo.bar.com", "GET", "/", NO, Some(V3)),
        ("multiple.prefixes.bar.com", "GET", "/", NO, Some(V3)),
        ("multiple.prefixes.foo.com", "GET", "/", NO, Some(V3)),
        ("foo.com", "GET", "/", NO, None),
        ("no.matching.host", "GET", "/", NO, None),
    ]);
}

#[test]
fn httproute_matching_across_routes() {
    let f = same_namespace(&[
        route("matching-part1", &["http"], &["example.com", "example.net"])
            .rule(vec![m().prefix("/"), m().header("version", "one")], V1),
        route("matching-part2", &["http"], &["example.com"])
            .rule(vec![m().prefix("/v2"), m().header("version", "two")], V2),
    ]);
    f.check(&[
        ("example.com", "GET", "/", NO, Some(V1)),
        ("example.com", "GET", "/example", NO, Some(V1)),
        ("example.net", "GET", "/example", NO, Some(V1)),
        (
            "example.com",
            "GET",
            "/example",
            &[("Version", "one")],
            Some(V1),
        ),
        ("example.com", "GET", "/v2", NO, Some(V2)),
        ("example.net", "GET", "/v2", NO, Some(V1)),
        ("example.com", "GET", "/v2/example", NO, Some(V2)),
        ("example.com", "GET", "/", &[("Version", "two")], Some(V2)),
    ]);
}

#[test]
fn httproute_query_param_matching() {
    let f = same_namespace(&[route("query-param-matching", &["http"], &[])
        .rule(vec![m().query("animal", "whale")], V1)
        .rule(vec![m().query("animal", "dolphin")], V2)
        .rule(
            vec![
                m().query("animal", "dolphin").query("color", "blue"),
                m().query("ANIMAL", "Whale"),
            ],
            V3,
        )
        .rule(vec![m().prefix("/path1").query("animal", "whale")], V1)
        .rule(
            vec![m().header("version", "one").query("animal", "whale")],
            V2,
        )
        .rule(
            vec![
                m().prefix("/path2")
                    .header("version", "two")
                    .query("animal", "whale"),
            ],
            V3,
        )
        .rule(
            vec![
                m().prefix("/path3").query("animal", "shark"),
                m().prefix("/path4")
                    .header("version", "three")
                    .query("animal", "kraken"),
            ],
            V1,
        )
        .rule(vec![m().prefix("/path5")], V1)
        .rule(vec![m().query("animal", "hydra")], V2)
        .rule(vec![m().header("version", "four")], V3)]);
    f.check(&[
        ("h", "GET", "/?animal=whale", NO, Some(V1)),
        ("h", "GET", "/?animal=dolphin", NO, Some(V2)),
        ("h", "GET", "/?animal=dolphin&color=blue", NO, Some(V3)),
        ("h", "GET", "/?ANIMAL=Whale", NO, Some(V3)),
        (
            "h",
            "GET",
            "/?animal=whale&otherparam=irrelevant",
            NO,
            Some(V1),
        ),
        ("h", "GET", "/?animal=dolphin&color=yellow", NO, Some(V2)),
        ("h", "GET", "/?color=blue", NO, None),
        ("h", "GET", "/?animal=dog", NO, None),
        ("h", "GET", "/?animal=whaledolphin", NO, None),
        ("h", "GET", "/", NO, None),
        ("h", "GET", "/path1?animal=whale", NO, Some(V1)),
        (
            "h",
            "GET",
            "/?animal=whale",
            &[("version", "one")],
            Some(V2),
        ),
        (
            "h",
            "GET",
            "/path2?animal=whale",
            &[("version", "two")],
            Some(V3),
        ),
        ("h", "GET", "/path3?animal=shark", NO, Some(V1)),
        (
            "h",
            "GET",
            "/path4?animal=kraken",
            &[("version", "three")],
            Some(V1),
        ),
        ("h", "GET", "/?animal=shark", NO, None),
        ("h", "GET", "/path4?animal=kraken", NO, None),
        ("h", "GET", "/path5?animal=hydra", NO, Some(V1)),
        (
            "h",
            "GET",
            "/?animal=hydra",
            &[("version", "four")],
            Some(V3),
        ),
    ]);
}

#[test]
fn httproute_method_matching() {
    let f = same_namespace(&[route("method-matching", &["http"], &[])
        .rule(vec![m().method("POST")], V1)
        .rule(vec![m().method("GET")], V2)
        .rule(vec![m().prefix("/path1").method("GET")], V1)
        .rule(vec![m().header("version", "one").method("PUT")], V2)
        .rule(
            vec![m().prefix("/path2").header("version", "two").method("POST")],
            V3,
        )
        .rule(
            vec![
                m().prefix("/path3").method("PATCH"),
                m().prefix("/path4")
                    .header("version", "three")
                    .method("DELETE"),
            ],
            V1,
        )
        .rule(vec![m().prefix("/path5")], V1)
        .rule(vec![m().method("PATCH")], V2)
        .rule(vec![m().header("version", "four")], V3)]);
    f.check(&[
        ("h", "POST", "/", NO, Some(V1)),
        ("h", "GET", "/", NO, Some(V2)),
        ("h", "HEAD", "/", NO, None),
        ("h", "GET", "/path1", NO, Some(V1)),
        ("h", "PUT", "/", &[("version", "one")], Some(V2)),
        ("h", "POST", "/path2", &[("version", "two")], Some(V3)),
        ("h", "PATCH", "/path3", NO, Some(V1)),
        ("h", "DELETE", "/path4", &[("version", "three")], Some(V1)),
        ("h", "PUT", "/", NO, None),
        ("h", "DELETE", "/path4", NO, None),
        ("h", "PATCH", "/path5", NO, Some(V1)),
        ("h", "PATCH", "/", &[("version", "four")], Some(V2)),
    ]);
}

#[test]
fn httproute_header_matching() {
    let f = same_namespace(&[route("header-matching", &["http"], &[])
        .rule(vec![m().header("version", "one")], V1)
        .rule(vec![m().header("version", "two")], V2)
        .rule(
            vec![m().header("version", "two").header("color", "orange")],
            V1,
        )
        .rule(
            vec![m().header("color", "blue"), m().header("color", "green")],
            V1,
        )
        .rule(
            vec![m().header("color", "red"), m().header("color", "yellow")],
            V2,
        )]);
    f.check(&[
        ("h", "GET", "/", &[("Version", "one")], Some(V1)),
        ("h", "GET", "/", &[("Version", "two")], Some(V2)),
        (
            "h",
            "GET",
            "/",
            &[("Version", "two"), ("Color", "orange")],
            Some(V1),
        ),
        (
            "h",
            "GET",
            "/",
            &[("Version", "two"), ("Color", "blue")],
            Some(V2),
        ),
        ("h", "GET", "/", &[("Color", "orange")], None),
        ("h", "GET", "/", &[("Some-Other-Header", "one")], None),
        ("h", "GET", "/", &[("Color", "blue")], Some(V1)),
        ("h", "GET", "/", &[("Color", "green")], Some(V1)),
        ("h", "GET", "/", &[("Color", "red")], Some(V2)),
        ("h", "GET", "/", &[("Color", "yellow")], Some(V2)),
        ("h", "GET", "/", &[("Color", "purple")], None),
    ]);
}

#[test]
fn ties_go_to_the_older_route_then_to_namespace_and_name() {
    let f = same_namespace(&[
        route("b-newer", &["http"], &[])
            .created(200)
            .rule(vec![m().prefix("/x")], V1),
        route("a-older", &["http"], &[])
            .created(100)
            .rule(vec![m().prefix("/x")], V2),
    ]);
    f.check(&[("h", "GET", "/x", NO, Some(V2))]);
    let same_age = same_namespace(&[
        route("zeta", &["http"], &[]).rule(vec![m().prefix("/x")], V1),
        route("alpha", &["http"], &[]).rule(vec![m().prefix("/x")], V3),
    ]);
    same_age.check(&[("h", "GET", "/x", NO, Some(V3))]);
}

#[test]
fn exact_hostname_beats_wildcard_and_falls_through_by_path() {
    let f = same_namespace(&[
        route("wild", &["http"], &["*.example.com"]).rule(vec![m().prefix("/")], V1),
        route("deeper-wild", &["http"], &["*.foo.example.com"]).rule(vec![m().prefix("/")], V3),
        route("exact", &["http"], &["foo.example.com"]).rule(vec![m().prefix("/only")], V2),
    ]);
    f.check(&[
        ("foo.example.com", "GET", "/only/here", NO, Some(V2)),
        // The exact-hostname route doesn't match the path: the wildcard one serves it.
        ("foo.example.com", "GET", "/elsewhere", NO, Some(V1)),
        ("a.foo.example.com", "GET", "/", NO, Some(V3)),
        ("example.com", "GET", "/", NO, None),
    ]);
}

#[test]
fn regex_matches_are_full_matches_and_rank_after_prefixes() {
    let f = same_namespace(&[route("re", &["http"], &[])
        .rule(vec![m().path("RegularExpression", "/api/v[0-9]+")], V1)
        .rule(vec![m().prefix("/api")], V2)
        .rule(
            vec![
                M::default()
                    .path("RegularExpression", "/other/.*")
                    .header("x", "1"),
            ],
            V3,
        )]);
    f.check(&[
        ("h", "GET", "/api/v1", NO, Some(V2)),
        ("h", "GET", "/other/thing", &[("x", "1")], Some(V3)),
        ("h", "GET", "/xx/other/thing", &[("x", "1")], None),
    ]);
    assert!(
        PathMatch::try_from(&pb::PathMatch {
            r#type: "RegularExpression".into(),
            value: "/api/v[0-9]+".into()
        })
        .unwrap()
        .matches("/api/v12")
    );
    assert!(
        !PathMatch::try_from(&pb::PathMatch {
            r#type: "RegularExpression".into(),
            value: "/api/v[0-9]+".into()
        })
        .unwrap()
        .matches("/api/v12/x")
    );
}

#[test]
fn prefix_is_segment_aware_and_ignores_trailing_slash() {
    assert!(prefix_matches("/foo", "/foo"));
    assert!(prefix_matches("/foo", "/foo/"));
    assert!(prefix_matches("/foo", "/foo/bar"));
    assert!(!prefix_matches("/foo", "/foobar"));
    assert!(prefix_matches("/foo/", "/foo"));
    assert!(prefix_matches("/foo/", "/foo/bar"));
    assert!(!prefix_matches("/foo/", "/foobar"));
    assert!(prefix_matches("/", "/anything"));
}

#[test]
fn query_values_are_first_wins_and_percent_decoded() {
    assert_eq!(first_query_value("a=1&a=2", "a").as_deref(), Some("1"));
    assert_eq!(first_query_value("flag&b=2", "flag").as_deref(), Some(""));
    assert_eq!(
        first_query_value("na%6De=v%20x", "name").as_deref(),
        Some("v x")
    );
    assert_eq!(first_query_value("a=1", "b"), None);
}

#[test]
fn repeated_headers_are_joined_for_matching() {
    let f =
        same_namespace(&[route("h", &["http"], &[]).rule(vec![m().header("x-tag", "a, b")], V1)]);
    f.check(&[
        ("h", "GET", "/", &[("x-tag", "a"), ("x-tag", "b")], Some(V1)),
        ("h", "GET", "/", &[("x-tag", "a")], None),
    ]);
}

/// A Gateway with several addresses: every listener is in the table of each of its
/// sockets, with the same routes.
#[test]
fn a_listener_on_two_addresses_routes_on_both_sockets() {
    let listeners = [("a", "a.example.com"), ("any", "")].map(|(name, host)| {
        ListenerSpec::try_from(&pb::Listener {
            name: format!("listener/ns/gw/{name}"),
            addresses: vec!["127.0.0.7".into(), "127.0.0.8".into()],
            port: 80,
            protocol: "HTTP".into(),
            hostname: host.to_string(),
            certificates: Vec::new(),
            client_validation: None,
            tls_mode: String::new(),
        })
        .unwrap()
    });
    let routes: Vec<RouteSpec> = [
        route("to-a", &["a"], &[]).rule(vec![m().prefix("/")], V1),
        route("to-any", &["any"], &[]).rule(vec![m().prefix("/")], V2),
    ]
    .iter()
    .flat_map(HttpRoute::specs)
    .collect();
    let mut tables = build_tables(&listeners, &routes);
    let mut binds: Vec<SocketAddr> = tables.keys().copied().collect();
    binds.sort();
    assert_eq!(
        binds,
        ["127.0.0.7:80", "127.0.0.8:80"].map(|a| a.parse::<SocketAddr>().unwrap())
    );
    for bind in binds {
        let f = Fixture {
            routes: routes.clone(),
            table: tables.remove(&bind).unwrap(),
        };
        f.check(&[
            ("a.example.com", "GET", "/", NO, Some(V1)),
            ("b.example.com", "GET", "/", NO, Some(V2)),
        ]);
    }
}

const ECHO: &str = "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";
const GRPC: &[(&str, &str)] = &[("content-type", "application/grpc")];

#[test]
fn grpcroute_exact_method_matching() {
    // GRPCExactMethodMatching: EchoThree matches no rule.
    let svc = &ECHO[1..];
    let f = same_namespace(&[route("exact-matching", &["http"], &[])
        .grpc()
        .rule(vec![m().grpc("Exact", svc, "Echo")], V1)
        .rule(vec![m().grpc("Exact", svc, "EchoTwo")], V2)]);
    f.check(&[
        ("gw", "POST", &format!("{ECHO}/Echo"), GRPC, Some(V1)),
        ("gw", "POST", &format!("{ECHO}/EchoTwo"), GRPC, Some(V2)),
        ("gw", "POST", &format!("{ECHO}/EchoThree"), GRPC, None),
        ("gw", "POST", &format!("{ECHO}2/Echo"), GRPC, None),
    ]);
}

#[test]
fn grpcroute_precedence_is_service_then_method_then_headers() {
    // GRPCRouteHeaderMatching's rules, plus method matches of every shape: more service
    // characters beat fewer, then more method characters, then more header matches;
    // a header-only rule loses to any rule naming a method.
    let f = same_namespace(&[route("r", &["http"], &[])
        .grpc()
        .rule(
            vec![m().grpc("Exact", "", "").header("version", "one")],
            "headers-one",
        )
        .rule(
            vec![m().grpc("Exact", "", "").header("version", "two")],
            "headers-two",
        )
        .rule(
            vec![
                m().grpc("Exact", "", "")
                    .header("version", "two")
                    .header("color", "orange"),
            ],
            "headers-two-orange",
        )
        .rule(vec![m().grpc("Exact", "", "Ping")], "method-only")
        .rule(vec![m().grpc("Exact", "pkg.Svc", "")], "service-only")
        .rule(
            vec![m().grpc("Exact", "pkg.Svc", "Ping")],
            "service-and-method",
        )
        .rule(
            vec![m().grpc("RegularExpression", "pkg\\.v[0-9]+\\.Svc", "")],
            "regex",
        )]);
    f.check(&[
        (
            "gw",
            "POST",
            "/pkg.Svc/Ping",
            GRPC,
            Some("service-and-method"),
        ),
        ("gw", "POST", "/pkg.Svc/Other", GRPC, Some("service-only")),
        ("gw", "POST", "/other.Svc/Ping", GRPC, Some("method-only")),
        (
            "gw",
            "POST",
            "/other.Svc/Ping",
            &[("version", "one")],
            Some("method-only"),
        ),
        (
            "gw",
            "POST",
            "/other.Svc/Pong",
            &[("version", "one")],
            Some("headers-one"),
        ),
        (
            "gw",
            "POST",
            "/a.B/C",
            &[("version", "two")],
            Some("headers-two"),
        ),
        (
            "gw",
            "POST",
            "/a.B/C",
            &[("version", "two"), ("color", "orange")],
            Some("headers-two-orange"),
        ),
        ("gw", "POST", "/pkg.v2.Svc/Any", GRPC, Some("regex")),
        ("gw", "POST", "/pkg.v2.Svc/Any/extra", GRPC, None),
        ("gw", "POST", "/a.B/C", GRPC, None),
    ]);
}
