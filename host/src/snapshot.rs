//! The immutable runtime config a request runs on: route tables per socket, rules with
//! their filter chains and weighted backends. Built whole from a validated [`ConfigSet`]
//! and swapped in atomically; each request loads it once and finishes on it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rand::Rng;

use crate::ai::AiService;
use crate::config::{ConfigDump, ConfigSet, FilterSpec, RetrySpec, Timeouts, WasmFilterSpec};
use crate::filter_chain::{ChainStep, WasmStep};
use crate::metrics::{Metrics, RouteMetrics};
use crate::mirror::MirrorStep;
use crate::router::{BindTable, build_tables};
use crate::session::SessionSpec;
use crate::stream_route::{self, StreamSocket};
use crate::tls::{BindTls, bind_configs};
use crate::upstream::Upstream;

pub struct Snapshot {
    pub version: String,
    /// The route tables of the TCP sockets (every protocol but UDP).
    pub binds: HashMap<SocketAddr, BindTable>,
    /// The route tables of the UDP sockets.
    pub udp_binds: HashMap<SocketAddr, BindTable>,
    /// Sockets with HTTPS listeners, or TLS listeners terminating TLS: their TLS
    /// configuration.
    pub tls: HashMap<SocketAddr, BindTls>,
    /// Sockets with TLS or TCP listeners: connections there are TLSRoute or TCPRoute
    /// streams.
    pub streams: HashMap<SocketAddr, StreamSocket>,
    /// Indexed like the router's candidates' `route`.
    pub rules: Vec<Rule>,
    pub dump: ConfigDump,
}

/// One HTTPRoute rule, ready to serve.
pub struct Rule {
    pub name: Arc<str>,
    pub metrics: RouteMetrics,
    pub filters: Box<[ChainStep]>,
    pub backends: Weighted<BackendChoice>,
    pub timeouts: Timeouts,
    /// A GRPCRoute rule (see [`crate::grpc_reply::to_grpc`]).
    pub grpc: bool,
    /// The rule's session persistence; replaces the backends' own.
    pub session: Option<Arc<SessionSpec>>,
    pub retry: Option<RetrySpec>,
    /// The rule's backend is an AIService (then `backends` is empty).
    pub ai: Option<Box<AiService>>,
}

pub struct BackendChoice {
    /// `None`: the reference is invalid; picking it answers 500.
    pub upstream: Option<Arc<Upstream>>,
    pub filters: Box<[ChainStep]>,
}

/// What a snapshot needs that outlives snapshots (bound filters, connection pools).
pub struct Resolved {
    pub steps: HashMap<WasmFilterSpec, Arc<WasmStep>>,
    pub upstreams: HashMap<Arc<str>, Arc<Upstream>>,
}

impl Snapshot {
    pub fn empty() -> Self {
        Snapshot {
            version: String::new(),
            binds: HashMap::new(),
            udp_binds: HashMap::new(),
            tls: HashMap::new(),
            streams: HashMap::new(),
            rules: Vec::new(),
            dump: ConfigDump::default(),
        }
    }

    /// Assembles a snapshot. `resolved` must cover every filter and backend `config`
    /// references (validation guarantees the references exist).
    pub fn build(version: &str, config: ConfigSet, resolved: &Resolved, metrics: &Metrics) -> Self {
        let chain = |filters: &[FilterSpec]| -> Box<[ChainStep]> {
            filters
                .iter()
                .map(|f| match f {
                    FilterSpec::Redirect(spec) => ChainStep::Redirect(spec.clone()),
                    FilterSpec::Rewrite(spec) => ChainStep::Rewrite(spec.clone()),
                    FilterSpec::Mirror(spec) => ChainStep::Mirror(Arc::new(MirrorStep::new(
                        resolved.upstreams[spec.backend.as_str()].clone(),
                        spec.numerator,
                        spec.denominator,
                    ))),
                    FilterSpec::Wasm(spec) => ChainStep::Wasm(resolved.steps[spec].clone()),
                })
                .collect()
        };
        let rules = config
            .routes
            .iter()
            .map(|route| Rule {
                name: route.name.clone(),
                metrics: metrics.route(route.name.clone()),
                filters: chain(&route.filters),
                timeouts: route.timeouts,
                grpc: route.grpc,
                session: route.session.clone(),
                retry: route.retry.clone(),
                ai: route.ai.as_deref().map(|spec| {
                    let policies = token_policies(&route.filters);
                    Box::new(AiService::new(spec, &route.name, metrics, policies, |i| {
                        let backend = &spec.backends[i];
                        (
                            resolved.upstreams[backend.backend.as_str()].clone(),
                            chain(&backend.filters),
                        )
                    }))
                }),
                backends: Weighted::new(route.backends.iter().map(|b| {
                    let choice = BackendChoice {
                        upstream: b
                            .backend
                            .as_deref()
                            .map(|name| resolved.upstreams[name].clone()),
                        filters: chain(&b.filters),
                    };
                    (b.weight, choice)
                })),
            })
            .collect();
        let (udp, tcp): (Vec<_>, Vec<_>) =
            config.listeners.iter().cloned().partition(|l| l.is_udp());
        Snapshot {
            version: version.to_string(),
            binds: build_tables(&tcp, &config.routes),
            udp_binds: build_tables(&udp, &config.routes),
            tls: bind_configs(&config.listeners),
            streams: stream_route::sockets(&config.listeners),
            rules,
            dump: config.dump,
        }
    }
}

/// Items picked at random in proportion to their weights. Weight 0 is never picked.
pub struct Weighted<T> {
    /// (exclusive upper bound of the item's slice of `0..total`, item)
    items: Box<[(u64, T)]>,
    total: u64,
}

impl<T> Weighted<T> {
    pub fn new(items: impl IntoIterator<Item = (u32, T)>) -> Self {
        let mut total = 0u64;
        let items = items
            .into_iter()
            .filter(|(w, _)| *w > 0)
            .map(|(w, item)| {
                total += u64::from(w);
                (total, item)
            })
            .collect();
        Weighted { items, total }
    }

    /// `None` when there is nothing to pick (no items, or all weights 0).
    pub fn pick(&self) -> Option<&T> {
        match self.items.len() {
            0 => None,
            1 => Some(&self.items[0].1),
            _ => Some(self.pick_at(rand::rng().random_range(0..self.total))),
        }
    }

    /// The item a key's hash falls on: the same hash picks the same item while the
    /// weights stay the same (sticky picks). `None` when there is nothing to pick.
    pub fn pick_by(&self, hash: u64) -> Option<&T> {
        (self.total > 0).then(|| self.pick_at(hash % self.total))
    }

    /// Every item that can be picked (weight above 0).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().map(|(_, item)| item)
    }

    /// The item whose slice contains `n` (`n < total`).
    fn pick_at(&self, n: u64) -> &T {
        let i = self.items.partition_point(|(upper, _)| *upper <= n);
        &self.items[i].1
    }
}

/// The display name the controller gives a TokenPolicy's token-limit binding is
/// `TokenPolicy <namespace>/<name>`: the policies a rule's rejections are counted under.
fn token_policies(filters: &[FilterSpec]) -> Vec<Arc<str>> {
    filters
        .iter()
        .filter_map(|f| match f {
            FilterSpec::Wasm(w) => w.display_name.strip_prefix("TokenPolicy "),
            _ => None,
        })
        .map(Arc::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_zero_is_never_picked_and_slices_follow_weights() {
        let w = Weighted::new([(1, "a"), (0, "never"), (3, "b")]);
        assert_eq!(w.total, 4);
        let picks: Vec<&str> = (0..4).map(|n| *w.pick_at(n)).collect();
        assert_eq!(picks, ["a", "b", "b", "b"]);
        for _ in 0..200 {
            assert_ne!(*w.pick().unwrap(), "never");
        }
    }

    #[test]
    fn nothing_to_pick_when_empty_or_all_zero() {
        assert!(Weighted::<u8>::new([]).pick().is_none());
        assert!(Weighted::new([(0, 1u8), (0, 2u8)]).pick().is_none());
        assert_eq!(Weighted::new([(0, 1u8), (7, 2u8)]).pick(), Some(&2));
    }

    #[test]
    fn random_picks_reach_every_weighted_item() {
        let w = Weighted::new([(1, 0usize), (1, 1usize), (2, 2usize)]);
        let mut seen = [0u32; 3];
        for _ in 0..2000 {
            seen[*w.pick().unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
        assert!(
            seen[2] > seen[0],
            "weight 2 should be picked more often than weight 1: {seen:?}"
        );
    }
}
