//! Route tables: built once per snapshot, matched per request. Pure: no I/O, no clocks.
//!
//! A request on one socket (address:port) first picks a **listener** by Host: exact
//! hostname > most specific wildcard > listener without hostname. Only routes attached to
//! that listener are considered. Their candidates — one per (effective hostname, match) —
//! are bucketed by hostname and each bucket is sorted by Gateway API precedence at build
//! time, so a lookup walks buckets from the most to the least specific hostname and returns
//! the first candidate whose conditions hold, without allocating in the common case.
//!
//! Precedence inside a bucket: Exact path > PathPrefix (longer first) > RegularExpression
//! (implementation-specific: after every prefix, longer pattern first) > has method > more
//! header matches > more query matches > older route > `namespace/name` > rule index >
//! match index. GRPCRoute matches rank by GRPCRoute's own rules instead: more characters
//! of service, then of method, then more header matches, then the same tie-breakers. The
//! controller never attaches both kinds to one listener with intersecting hostnames, so
//! the two orders do not meet in a bucket.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, Method};

use crate::config::{
    HeaderMatch, ListenerSpec, MatchSpec, PathMatch, QueryMatch, RouteSpec, ValueMatch,
};
use crate::hostname::Hostname;

/// What the router looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Lowercase, without port.
    pub host: &'a str,
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// The listeners sharing one socket.
#[derive(Debug, Default)]
pub struct BindTable {
    exact: HashMap<Box<str>, usize>,
    /// Most specific (longest suffix) first.
    wildcards: Vec<(Hostname, usize)>,
    catch_all: Option<usize>,
    listeners: Vec<Arc<ListenerTable>>,
}

#[derive(Debug)]
pub struct ListenerTable {
    pub name: Arc<str>,
    pub port: u16,
    exact: HashMap<Box<str>, Vec<Candidate>>,
    /// Most specific first.
    wildcards: Vec<(Hostname, Vec<Candidate>)>,
    any: Vec<Candidate>,
}

/// One (route, effective hostname, match) the router can pick.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index of the route in the `routes` slice the table was built from.
    pub route: usize,
    pub match_index: usize,
    pub spec: MatchSpec,
}

#[derive(Debug)]
pub enum Lookup<'a> {
    NoListener,
    NoRoute(&'a ListenerTable),
    Matched(&'a ListenerTable, &'a Candidate),
}

/// Builds one table per socket from validated listeners and routes.
pub fn build_tables(
    listeners: &[ListenerSpec],
    routes: &[RouteSpec],
) -> HashMap<SocketAddr, BindTable> {
    let mut binds: HashMap<SocketAddr, BindTable> = HashMap::new();
    for listener in listeners {
        // Built once, shared by every socket (Gateway address) the listener is served on.
        let built = Arc::new(ListenerTable::build(listener, routes));
        for bind in &listener.binds {
            let table = binds.entry(*bind).or_default();
            let index = table.listeners.len();
            match &listener.hostname {
                None => table.catch_all = Some(index),
                Some(Hostname::Exact(h)) => {
                    table.exact.insert(h.clone(), index);
                }
                Some(w @ Hostname::Wildcard(_)) => table.wildcards.push((w.clone(), index)),
            }
            table.listeners.push(Arc::clone(&built));
        }
    }
    for table in binds.values_mut() {
        table
            .wildcards
            .sort_by_key(|(h, _)| Reverse(h.written_len()));
    }
    binds
}

impl BindTable {
    /// The route for a connection or flow that names only a host (a TLS server name; empty
    /// for TCP and UDP): what a bodiless `GET /` with that Host would match.
    pub fn lookup_host(&self, host: &str) -> Lookup<'_> {
        static NO_HEADERS: std::sync::LazyLock<HeaderMap> =
            std::sync::LazyLock::new(HeaderMap::new);
        self.lookup(&RequestView {
            host,
            method: &Method::GET,
            path: "/",
            query: None,
            headers: &NO_HEADERS,
        })
    }

    pub fn lookup(&self, req: &RequestView<'_>) -> Lookup<'_> {
        let Some(listener) = self.select_listener(req.host) else {
            return Lookup::NoListener;
        };
        match listener.find(req) {
            Some(candidate) => Lookup::Matched(listener, candidate),
            None => Lookup::NoRoute(listener),
        }
    }

    fn select_listener(&self, host: &str) -> Option<&ListenerTable> {
        let index = self
            .exact
            .get(host)
            .copied()
            .or_else(|| {
                self.wildcards
                    .iter()
                    .find(|(w, _)| w.matches(host))
                    .map(|(_, i)| *i)
            })
            .or(self.catch_all)?;
        self.listeners.get(index).map(|l| &**l)
    }
}

impl ListenerTable {
    fn build(listener: &ListenerSpec, routes: &[RouteSpec]) -> Self {
        let mut exact: HashMap<Box<str>, Vec<Candidate>> = HashMap::new();
        let mut wildcards: Vec<(Hostname, Vec<Candidate>)> = Vec::new();
        let mut any = Vec::new();
        for (route_index, route) in routes.iter().enumerate() {
            if !route.listeners.iter().any(|l| **l == *listener.name) {
                continue;
            }
            for hostname in effective_hostnames(listener.hostname.as_ref(), &route.hostnames) {
                let bucket = match hostname {
                    None => &mut any,
                    Some(Hostname::Exact(h)) => exact.entry(h).or_default(),
                    Some(w @ Hostname::Wildcard(_)) => {
                        match wildcards.iter().position(|(x, _)| *x == w) {
                            Some(i) => &mut wildcards[i].1,
                            None => {
                                wildcards.push((w, Vec::new()));
                                &mut wildcards.last_mut().expect("just pushed").1
                            }
                        }
                    }
                };
                for (match_index, spec) in route.matches.iter().enumerate() {
                    bucket.push(Candidate {
                        route: route_index,
                        match_index,
                        spec: spec.clone(),
                    });
                }
            }
        }
        let by_precedence = |a: &Candidate, b: &Candidate| {
            precedence_key(a, routes).cmp(&precedence_key(b, routes))
        };
        for bucket in exact
            .values_mut()
            .chain(wildcards.iter_mut().map(|(_, c)| c))
            .chain([&mut any])
        {
            bucket.sort_by(by_precedence);
        }
        wildcards.sort_by_key(|(h, _)| Reverse(h.written_len()));
        ListenerTable {
            name: listener.name.clone(),
            port: listener.binds.first().map_or(0, SocketAddr::port),
            exact,
            wildcards,
            any,
        }
    }

    pub fn find(&self, req: &RequestView<'_>) -> Option<&Candidate> {
        let first_match = |bucket: &'_ [Candidate]| -> Option<usize> {
            bucket.iter().position(|c| c.matches(req))
        };
        if let Some(bucket) = self.exact.get(req.host)
            && let Some(i) = first_match(bucket)
        {
            return Some(&bucket[i]);
        }
        for (hostname, bucket) in &self.wildcards {
            if hostname.matches(req.host)
                && let Some(i) = first_match(bucket)
            {
                return Some(&bucket[i]);
            }
        }
        first_match(&self.any).map(|i| &self.any[i])
    }
}

/// The hostnames a route serves on a listener (`None` = any host). Empty when the route's
/// hostnames and the listener's don't intersect: the route is then not reachable there.
pub fn effective_hostnames(
    listener: Option<&Hostname>,
    route: &[Hostname],
) -> Vec<Option<Hostname>> {
    let mut out: Vec<Option<Hostname>> = match (listener, route.is_empty()) {
        (None, true) => vec![None],
        (Some(l), true) => vec![Some(l.clone())],
        (None, false) => route.iter().cloned().map(Some).collect(),
        (Some(l), false) => route
            .iter()
            .filter_map(|r| l.intersect(r))
            .map(Some)
            .collect(),
    };
    out.sort();
    out.dedup();
    out
}

type PrecedenceKey<'a> = (
    u8,
    Reverse<usize>,
    Reverse<usize>,
    Reverse<usize>,
    Reverse<usize>,
    i64,
    &'a str,
    &'a str,
    u32,
    usize,
);

fn precedence_key<'a>(c: &Candidate, routes: &'a [RouteSpec]) -> PrecedenceKey<'a> {
    let route = &routes[c.route];
    let (path_rank, path_len, method_len) = match (&c.spec.grpc, &c.spec.path) {
        (Some(g), _) => (0, g.service_len, g.method_len),
        (None, PathMatch::Exact(p)) => (0, p.len(), 0),
        (None, PathMatch::Prefix(p)) => (1, p.len(), 0),
        (None, PathMatch::Regex(r)) => (2, r.as_str().len(), 0),
    };
    (
        path_rank,
        Reverse(path_len),
        Reverse(method_len + usize::from(c.spec.method.is_some())),
        Reverse(c.spec.headers.len()),
        Reverse(c.spec.query.len()),
        route.creation_timestamp,
        &route.namespace,
        &route.route_name,
        route.rule_index,
        c.match_index,
    )
}

impl Candidate {
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let spec = &self.spec;
        spec.method.as_ref().is_none_or(|m| m == req.method)
            && spec.path.matches(req.path)
            && spec.headers.iter().all(|h| h.matches(req.headers))
            && spec.query.iter().all(|q| q.matches(req.query))
    }
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => **p == *path,
            PathMatch::Prefix(p) => prefix_matches(p, path),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

/// Segment-aware: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`; a trailing
/// `/` in the prefix is ignored.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    path.starts_with(prefix)
        && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
}

impl ValueMatch {
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Exact(v) => v.as_bytes() == value,
            ValueMatch::Regex(r) => std::str::from_utf8(value).is_ok_and(|s| r.is_match(s)),
        }
    }
}

impl HeaderMatch {
    /// A repeated header is compared as its values joined by ", " (RFC 9110 §5.3).
    fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let Some(first) = values.next() else {
            return false;
        };
        let Some(second) = values.next() else {
            return self.value.matches(first.as_bytes());
        };
        let all: Vec<&[u8]> = [first, second]
            .into_iter()
            .chain(values)
            .map(|v| v.as_bytes())
            .collect();
        self.value.matches(&all.join(&b", "[..]))
    }
}

impl QueryMatch {
    /// Compares the first value of the parameter; names are case-sensitive.
    fn matches(&self, query: Option<&str>) -> bool {
        query
            .and_then(|q| first_query_value(q, &self.name))
            .is_some_and(|v| self.value.matches(v.as_bytes()))
    }
}

/// The first value of `name` in a query string, percent-decoded (`+` is kept as is).
pub fn first_query_value<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
