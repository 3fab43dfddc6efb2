//! Which endpoint of a backend a request goes to: round robin, least request (power of
//! two choices over in-flight counters), random, or a consistent-hash ring.
//!
//! A [`Balancer`] is built once per snapshot and backend, so a request only reads it: the
//! ring is a sorted array searched by bisection, the round-robin cursor and the in-flight
//! counters are atomics. In-flight counters belong to an endpoint address for the host's
//! lifetime ([`InflightCounters`]), so a config swap keeps counting requests still running
//! on the old snapshot, and requests reaching one pod through several Services all count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use http::header::{COOKIE, HeaderName};
use http::uri::Authority;
use http::{HeaderMap, Uri};
use nantian_proto::config as pb;
use rand::Rng;

use crate::config::{ConfigError, invalid};
use crate::session::SessionSpec;

/// A backend's load balancing, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BalancingSpec {
    pub algorithm: Algorithm,
    /// The backend's own session persistence (a route rule's replaces it).
    pub session: Option<Arc<SessionSpec>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Algorithm {
    #[default]
    RoundRobin,
    LeastRequest,
    Random,
    ConsistentHash(HashOn),
}

/// What a consistent hash is computed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    SourceIp,
    Header(HeaderName),
    Cookie(Box<str>),
    QueryParam(Box<str>),
}

impl TryFrom<&pb::LoadBalancing> for BalancingSpec {
    type Error = ConfigError;

    fn try_from(pb: &pb::LoadBalancing) -> Result<Self, ConfigError> {
        let algorithm = match pb.algorithm.as_str() {
            "" | "RoundRobin" => Algorithm::RoundRobin,
            "LeastRequest" => Algorithm::LeastRequest,
            "Random" => Algorithm::Random,
            "ConsistentHash" => Algorithm::ConsistentHash(hash_on(&pb.hash_on)?),
            other => {
                return Err(ConfigError::Unsupported {
                    field: "load balancing algorithm",
                    value: other.to_string(),
                });
            }
        };
        if !matches!(algorithm, Algorithm::ConsistentHash(_)) && !pb.hash_on.is_empty() {
            return Err(invalid(
                "hash_on",
                &pb.hash_on,
                "only for the ConsistentHash algorithm",
            ));
        }
        let session = pb
            .session_persistence
            .as_ref()
            .map(|s| SessionSpec::try_from(s).map(Arc::new))
            .transpose()?;
        Ok(BalancingSpec { algorithm, session })
    }
}

fn hash_on(text: &str) -> Result<HashOn, ConfigError> {
    let bad = |why: &str| invalid("hash_on", text, why);
    match text.split_once(':') {
        None if text == "SourceIP" => Ok(HashOn::SourceIp),
        Some(("Header", name)) => HeaderName::try_from(name)
            .map(HashOn::Header)
            .map_err(|_| bad("not a header name")),
        Some(("Cookie", name)) if !name.is_empty() && !name.contains([';', '=', ' ']) => {
            Ok(HashOn::Cookie(name.into()))
        }
        Some(("QueryParam", name)) if !name.is_empty() => Ok(HashOn::QueryParam(name.into())),
        _ => Err(bad(
            "must be SourceIP, Header:<name>, Cookie:<name> or QueryParam:<name>",
        )),
    }
}

/// In-flight request counters by endpoint address, shared by every snapshot's backends.
/// Locked only while a snapshot is built.
#[derive(Debug, Default)]
pub struct InflightCounters(Mutex<HashMap<Authority, Weak<AtomicUsize>>>);

impl InflightCounters {
    pub fn get(&self, endpoint: &Authority) -> Arc<AtomicUsize> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(counter) = map.get(endpoint).and_then(Weak::upgrade) {
            return counter;
        }
        let counter = Arc::new(AtomicUsize::new(0));
        map.insert(endpoint.clone(), Arc::downgrade(&counter));
        counter
    }
}

impl InflightCounters {
    /// Forgets endpoints no snapshot holds any more; once per snapshot, at config time.
    pub fn prune(&self) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, c| c.strong_count() > 0);
    }
}

/// Counts one request on an endpoint until dropped (the response body finished, or the
/// request failed).
#[derive(Debug)]
pub struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    pub fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InflightGuard(counter.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a pick may look at in the request.
#[derive(Clone, Copy)]
pub struct PickContext<'a> {
    pub headers: &'a HeaderMap,
    pub uri: &'a Uri,
    pub client_ip: Option<IpAddr>,
}

/// Virtual nodes per endpoint on the ring: with 160, each endpoint's share of the keys
/// stays within a few percent of even (Ketama uses 100–200).
const RING_POINTS: usize = 160;

/// The per-snapshot picker of one backend.
#[derive(Debug)]
pub struct Balancer {
    algorithm: Algorithm,
    /// ConsistentHash: (point, endpoint index), sorted by point.
    ring: Box<[(u64, u32)]>,
}

impl Balancer {
    pub fn new(algorithm: Algorithm, endpoints: &[Authority]) -> Self {
        let ring = match algorithm {
            Algorithm::ConsistentHash(_) => build_ring(endpoints),
            _ => Box::default(),
        };
        Balancer { algorithm, ring }
    }

    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }

    /// An index into the backend's `n` endpoints (`n > 0`). `cursor` is the backend's
    /// round-robin cursor, `inflight(i)` endpoint i's in-flight requests.
    pub fn pick(
        &self,
        n: usize,
        ctx: Option<&PickContext<'_>>,
        cursor: &AtomicUsize,
        inflight: impl Fn(usize) -> usize,
    ) -> usize {
        debug_assert!(n > 0);
        let round_robin = || cursor.fetch_add(1, Ordering::Relaxed) % n;
        match &self.algorithm {
            Algorithm::RoundRobin => round_robin(),
            Algorithm::Random => rand::rng().random_range(0..n),
            Algorithm::LeastRequest => p2c(n, &mut rand::rng(), inflight),
            Algorithm::ConsistentHash(on) => match ctx.and_then(|ctx| hash_key(on, ctx)) {
                Some(key) => ring_lookup(&self.ring, key),
                // No key, no affinity to keep: spread like the default.
                None => round_robin(),
            },
        }
    }
}

/// Power of two choices: two distinct random endpoints, the one with fewer requests in
/// flight (the first on a tie).
fn p2c(n: usize, rng: &mut impl Rng, inflight: impl Fn(usize) -> usize) -> usize {
    if n == 1 {
        return 0;
    }
    let a = rng.random_range(0..n);
    let mut b = rng.random_range(0..n - 1);
    if b >= a {
        b += 1;
    }
    if inflight(b) < inflight(a) { b } else { a }
}

fn build_ring(endpoints: &[Authority]) -> Box<[(u64, u32)]> {
    let mut ring = Vec::with_capacity(endpoints.len() * RING_POINTS);
    for (i, endpoint) in endpoints.iter().enumerate() {
        for point in 0..RING_POINTS {
            // Points depend on the address only, so an endpoint keeps its arcs whatever
            // else joins or leaves.
            let mut h = Fnv::new();
            h.write(endpoint.as_str().as_bytes());
            h.write(&(point as u32).to_be_bytes());
            ring.push((h.finish(), i as u32));
        }
    }
    ring.sort_unstable();
    ring.into_boxed_slice()
}

/// The endpoint owning the first point at or after `key`, wrapping around.
fn ring_lookup(ring: &[(u64, u32)], key: u64) -> usize {
    let at = ring.partition_point(|(point, _)| *point < key);
    ring[at % ring.len()].1 as usize
}

fn hash_key(on: &HashOn, ctx: &PickContext<'_>) -> Option<u64> {
    let mut h = Fnv::new();
    match on {
        HashOn::SourceIp => match ctx.client_ip? {
            IpAddr::V4(ip) => h.write(&ip.octets()),
            IpAddr::V6(ip) => h.write(&ip.octets()),
        },
        HashOn::Header(name) => {
            let mut values = ctx.headers.get_all(name).iter().peekable();
            values.peek()?;
            for v in values {
                h.write(v.as_bytes());
                h.write(b"\n");
            }
        }
        HashOn::Cookie(name) => {
            let value = ctx.headers.get_all(COOKIE).iter().find_map(|v| {
                v.as_bytes().split(|&b| b == b';').find_map(|pair| {
                    let pair = pair.trim_ascii();
                    let eq = pair.iter().position(|&b| b == b'=')?;
                    (pair[..eq].trim_ascii() == name.as_bytes()).then(|| &pair[eq + 1..])
                })
            })?;
            h.write(value);
        }
        HashOn::QueryParam(name) => {
            let value = ctx.uri.query()?.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == name.as_ref()).then_some(v)
            })?;
            h.write(value.as_bytes());
        }
    }
    Some(h.finish())
}

/// FNV-1a with a final avalanche: stable across processes and releases (unlike std's
/// SipHash keys), which a ring shared by several hosts needs.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// splitmix64's finalizer: FNV alone clusters short, similar inputs.
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
#[path = "balancer_tests.rs"]
mod tests;
