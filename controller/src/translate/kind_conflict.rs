//! HTTPRoutes and GRPCRoutes on one listener: GRPCRoute's spec says that when routes of
//! the two kinds attach to one listener with hostnames in common, exactly one of them is
//! accepted there: the older, then the first by `namespace/name`. Routes are attached in
//! that order, so the first route of a kind to claim a listener's hostnames keeps them.

use std::collections::BTreeMap;

use super::hostname;
use super::source::RouteSource;
use crate::model::Key;
use crate::status::{Problem, reason};

/// The routes accepted so far, per Gateway, listener index and route kind: a route only
/// looks at the other kind's claims (a listener with only HTTPRoutes costs nothing per
/// route, not a scan of every route before it), and lookups borrow the Gateway's key.
#[derive(Default)]
pub(super) struct Claims {
    by_gateway: BTreeMap<Key, BTreeMap<usize, BTreeMap<&'static str, Vec<Claim>>>>,
}

struct Claim {
    route: String,
    /// Empty: any hostname.
    hostnames: Vec<String>,
}

/// The order routes attach in: oldest first, then by `namespace/name` (across kinds).
pub(super) fn attach_order(routes: &mut [RouteSource]) {
    routes.sort_by(|a, b| {
        (a.creation_seconds, &a.namespace, &a.name).cmp(&(
            b.creation_seconds,
            &b.namespace,
            &b.name,
        ))
    });
}

impl Claims {
    /// The listeners of `listeners` (of Gateway `gw`) no route of the other kind has
    /// claimed with a hostname `route` shares; Err when that leaves none.
    pub(super) fn admit(
        &self,
        gw: &Key,
        route: &RouteSource,
        listeners: Vec<usize>,
    ) -> Result<Vec<usize>, Problem> {
        let Some(claimed) = self.by_gateway.get(gw) else {
            return Ok(listeners);
        };
        let mut blocked_by = None;
        let free: Vec<usize> = listeners
            .into_iter()
            .filter(|i| {
                let rival = claimed
                    .get(i)
                    .into_iter()
                    .flatten()
                    .filter(|(kind, _)| **kind != route.kind)
                    .find_map(|(kind, claims)| {
                        claims
                            .iter()
                            .find(|c| share_hosts(&c.hostnames, &route.hostnames))
                            .map(|c| (kind, c))
                    });
                if let Some((kind, rival)) = rival {
                    blocked_by = Some(format!("{kind} {}", rival.route));
                }
                rival.is_none()
            })
            .collect();
        match (free.is_empty(), blocked_by) {
            (true, Some(rival)) => Err(Problem::new(
                reason::NOT_ALLOWED_BY_LISTENERS,
                format!(
                    "{rival} is older (or first by namespace/name) and shares hostnames with this {} on every matching listener: one listener serves one kind of route per hostname",
                    route.kind
                ),
            )),
            _ => Ok(free),
        }
    }

    /// Records `route` as accepted on `listeners` of Gateway `gw`.
    pub(super) fn record(&mut self, gw: &Key, route: &RouteSource, listeners: &[usize]) {
        if listeners.is_empty() {
            return;
        }
        if !self.by_gateway.contains_key(gw) {
            self.by_gateway.insert(gw.clone(), BTreeMap::new());
        }
        let claimed = self.by_gateway.get_mut(gw).expect("inserted above");
        for &i in listeners {
            claimed
                .entry(i)
                .or_default()
                .entry(route.kind)
                .or_default()
                .push(Claim {
                    route: format!("{}/{}", route.namespace, route.name),
                    hostnames: route.hostnames.clone(),
                });
        }
    }
}

/// Whether two routes' hostnames (empty = any) have a host in common.
fn share_hosts(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|h| hostname::intersects(Some(h), b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hostnames_are_shared_through_wildcards_and_absence() {
        assert!(share_hosts(&[], &names(&["a.com"])));
        assert!(share_hosts(&names(&["*.a.com"]), &names(&["x.a.com"])));
        assert!(!share_hosts(&names(&["a.com"]), &names(&["b.com"])));
        assert!(!share_hosts(&names(&["*.a.com"]), &names(&["a.com"])));
    }
}
