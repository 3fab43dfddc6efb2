//! Prometheus metrics (prometheus-client), exported by the admin server.
//!
//! Label values are `Arc<str>`s created when a snapshot is built, and the series a request
//! touches are resolved ahead of time where the label set is known (upstream histograms,
//! filter calls) or cached on first use (per-route status counters). The request path then
//! only bumps atomics instead of hashing labels under the family's lock.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterPhaseLabels {
    filter: Arc<str>,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterErrorLabels {
    filter: Arc<str>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct XdsLabels {
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    retries: Family<RouteLabels, Counter>,
    upstream_duration: HistogramFamily<BackendLabels>,
    filter_calls: Family<FilterPhaseLabels, Counter>,
    filter_errors: Family<FilterErrorLabels, Counter>,
    filter_duration: HistogramFamily<FilterPhaseLabels>,
    xds_updates: Family<XdsLabels, Counter>,
    /// LLM traffic's series (AIService routes).
    pub ai: crate::ai::AiMetrics,
    unrouted: RouteMetrics,
}

fn upstream_buckets() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn filter_buckets() -> Histogram {
    // 1 µs .. ~16 ms: a filter call is micro-seconds unless something is wrong.
    Histogram::new(exponential_buckets(0.000_001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let retries = Family::<RouteLabels, Counter>::default();
        let upstream_duration: HistogramFamily<BackendLabels> =
            Family::new_with_constructor(upstream_buckets);
        let filter_calls = Family::<FilterPhaseLabels, Counter>::default();
        let filter_errors = Family::<FilterErrorLabels, Counter>::default();
        let filter_duration: HistogramFamily<FilterPhaseLabels> =
            Family::new_with_constructor(filter_buckets);
        let xds_updates = Family::<XdsLabels, Counter>::default();
        registry.register(
            "nantian_requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "nantian_retries",
            "Upstream requests sent again under the route's retry rule",
            retries.clone(),
        );
        registry.register(
            "nantian_upstream_request_duration_seconds",
            "Time from sending a request upstream to its response head",
            upstream_duration.clone(),
        );
        registry.register(
            "nantian_filter_calls",
            "Wasm filter phase calls",
            filter_calls.clone(),
        );
        registry.register(
            "nantian_filter_errors",
            "Wasm filter failures, by kind",
            filter_errors.clone(),
        );
        registry.register(
            "nantian_filter_call_duration_seconds",
            "Duration of one Wasm filter phase call, by phase",
            filter_duration.clone(),
        );
        registry.register(
            "nantian_xds_updates",
            "Config snapshots received, by outcome",
            xds_updates.clone(),
        );
        let ai = crate::ai::AiMetrics::register(&mut registry);
        let unrouted = RouteMetrics::new(Arc::from("none"), requests.clone(), retries.clone());
        Metrics {
            registry,
            requests,
            retries,
            upstream_duration,
            filter_calls,
            filter_errors,
            filter_duration,
            xds_updates,
            ai,
            unrouted,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn xds_update(&self, accepted: bool) {
        let result = if accepted { "ack" } else { "nack" };
        self.xds_updates.get_or_create(&XdsLabels { result }).inc();
    }

    pub fn route(&self, route: Arc<str>) -> RouteMetrics {
        RouteMetrics::new(route, self.requests.clone(), self.retries.clone())
    }

    /// Counters for requests that matched no route.
    pub fn unrouted(&self) -> &RouteMetrics {
        &self.unrouted
    }

    pub fn upstream(&self, backend: Arc<str>) -> Histogram {
        self.upstream_duration
            .get_or_create_owned(&BackendLabels { backend })
    }

    pub fn filter(&self, filter: Arc<str>) -> FilterMetrics {
        let calls = PHASES.map(|phase| {
            self.filter_calls.get_or_create_owned(&FilterPhaseLabels {
                filter: filter.clone(),
                phase,
            })
        });
        // Per phase: a filter's request and response calls do different work, and an
        // average over them would hide which one is slow.
        let duration = PHASES.map(|phase| {
            self.filter_duration
                .get_or_create_owned(&FilterPhaseLabels {
                    filter: filter.clone(),
                    phase,
                })
        });
        FilterMetrics {
            duration,
            errors: self.filter_errors.clone(),
            calls,
            filter,
        }
    }
}

/// Statuses whose counters a route caches after first use; others go through the family.
const CACHED_STATUSES: [u16; 20] = [
    200, 201, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 429, 500, 502, 503,
    504,
];

/// `nantian_requests_total` for one route.
pub struct RouteMetrics {
    route: Arc<str>,
    family: Family<RequestLabels, Counter>,
    cached: [OnceLock<Counter>; CACHED_STATUSES.len()],
    retries: Family<RouteLabels, Counter>,
}

impl RouteMetrics {
    fn new(
        route: Arc<str>,
        family: Family<RequestLabels, Counter>,
        retries: Family<RouteLabels, Counter>,
    ) -> Self {
        RouteMetrics {
            route,
            family,
            cached: Default::default(),
            retries,
        }
    }

    /// A retry is rare: the family lookup is fine here.
    pub fn retried(&self) {
        let labels = RouteLabels {
            route: self.route.clone(),
        };
        self.retries.get_or_create(&labels).inc();
    }

    pub fn request_done(&self, status: u16) {
        let labels = || RequestLabels {
            route: self.route.clone(),
            status,
        };
        match CACHED_STATUSES.binary_search(&status) {
            Ok(i) => self.cached[i]
                .get_or_init(|| self.family.get_or_create_owned(&labels()))
                .inc(),
            Err(_) => self.family.get_or_create(&labels()).inc(),
        };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    RequestHeaders = 0,
    RequestBody = 1,
    ResponseHeaders = 2,
    ResponseBody = 3,
}

const PHASES: [&str; 4] = [
    "request_headers",
    "request_body",
    "response_headers",
    "response_body",
];

/// The series of one bound filter.
#[derive(Clone)]
pub struct FilterMetrics {
    filter: Arc<str>,
    calls: [Counter; 4],
    duration: [Histogram; 4],
    errors: Family<FilterErrorLabels, Counter>,
}

impl FilterMetrics {
    pub fn call(&self, phase: Phase, took: Duration) {
        self.calls[phase as usize].inc();
        self.duration[phase as usize].observe(took.as_secs_f64());
    }

    /// Errors are rare: resolving the series on the spot is fine.
    pub fn error(&self, kind: &'static str) {
        self.errors
            .get_or_create(&FilterErrorLabels {
                filter: self.filter.clone(),
                kind,
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_every_family_with_its_labels() {
        let m = Metrics::new();
        m.route(Arc::from("route/ns/r/rule/0")).request_done(200);
        m.route(Arc::from("route/ns/r/rule/0")).request_done(418);
        m.unrouted().request_done(404);
        m.upstream(Arc::from("backend/ns/svc:80")).observe(0.01);
        let f = m.filter(Arc::from("RequestHeaderModifier"));
        f.call(Phase::RequestHeaders, Duration::from_micros(3));
        f.error("trap");
        m.xds_update(true);
        m.xds_update(false);
        let text = m.encode();
        for want in [
            r#"nantian_requests_total{route="route/ns/r/rule/0",status="200"} 1"#,
            r#"nantian_requests_total{route="route/ns/r/rule/0",status="418"} 1"#,
            r#"nantian_requests_total{route="none",status="404"} 1"#,
            r#"nantian_upstream_request_duration_seconds_count{backend="backend/ns/svc:80"} 1"#,
            r#"nantian_filter_calls_total{filter="RequestHeaderModifier",phase="request_headers"} 1"#,
            r#"nantian_filter_errors_total{filter="RequestHeaderModifier",kind="trap"} 1"#,
            r#"nantian_filter_call_duration_seconds_count{filter="RequestHeaderModifier",phase="request_headers"} 1"#,
            r#"nantian_xds_updates_total{result="ack"} 1"#,
            r#"nantian_xds_updates_total{result="nack"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
