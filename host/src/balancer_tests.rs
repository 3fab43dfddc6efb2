use super::*;

fn endpoints(n: usize) -> Vec<Authority> {
    (1..=n)
        .map(|i| format!("10.0.0.{i}:8080").parse().unwrap())
        .collect()
}

/// The endpoint (by address) each of `keys` lands on.
fn owners(eps: &[Authority], keys: &[u64]) -> Vec<Authority> {
    let ring = build_ring(eps);
    keys.iter()
        .map(|k| eps[ring_lookup(&ring, *k)].clone())
        .collect()
}

fn keys(n: u64) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let mut h = Fnv::new();
            h.write(&i.to_be_bytes());
            h.finish()
        })
        .collect()
}

#[test]
fn removing_an_endpoint_moves_only_its_keys() {
    let all = endpoints(5);
    let keys = keys(10_000);
    let before = owners(&all, &keys);
    let gone = all[2].clone();
    let rest: Vec<_> = all.iter().filter(|e| **e != gone).cloned().collect();
    let after = owners(&rest, &keys);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if *b == gone {
            moved += 1;
        } else {
            assert_eq!(b, a, "a key of a remaining endpoint moved");
        }
    }
    assert!(moved > 0);
}

#[test]
fn adding_an_endpoint_takes_about_its_share_and_nothing_else_moves() {
    let four = endpoints(4);
    let five = endpoints(5);
    let keys = keys(10_000);
    let before = owners(&four, &keys);
    let after = owners(&five, &keys);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            assert_eq!(*a, five[4], "a key moved between old endpoints");
            moved += 1;
        }
    }
    // Its fair share is 2,000 of 10,000.
    assert!((1_200..2_800).contains(&moved), "{moved} keys moved");
}

#[test]
fn the_ring_spreads_keys_over_every_endpoint() {
    let eps = endpoints(3);
    let keys = keys(9_000);
    let mut counts = HashMap::new();
    for owner in owners(&eps, &keys) {
        *counts.entry(owner).or_insert(0) += 1;
    }
    for ep in &eps {
        let n = counts.get(ep).copied().unwrap_or(0);
        assert!((2_200..3_800).contains(&n), "{ep}: {n} of 9000");
    }
}

#[test]
fn the_ring_does_not_depend_on_endpoint_order() {
    let eps = endpoints(4);
    let mut reversed = eps.clone();
    reversed.reverse();
    let keys = keys(1_000);
    assert_eq!(owners(&eps, &keys), owners(&reversed, &keys));
}

#[test]
fn a_header_key_always_picks_the_same_endpoint_and_no_key_falls_back_to_round_robin() {
    let eps = endpoints(3);
    let b = Balancer::new(
        Algorithm::ConsistentHash(HashOn::Header(HeaderName::from_static("x-user"))),
        &eps,
    );
    let cursor = AtomicUsize::new(0);
    let uri: Uri = "/".parse().unwrap();
    let pick = |user: Option<&str>| {
        let mut headers = HeaderMap::new();
        if let Some(user) = user {
            headers.insert("x-user", user.parse().unwrap());
        }
        let ctx = PickContext {
            headers: &headers,
            uri: &uri,
            client_ip: None,
        };
        b.pick(eps.len(), Some(&ctx), &cursor, |_| 0)
    };
    let alice = pick(Some("alice"));
    for _ in 0..20 {
        assert_eq!(pick(Some("alice")), alice);
    }
    let spread: std::collections::BTreeSet<_> =
        (0..50).map(|i| pick(Some(&format!("user-{i}")))).collect();
    assert_eq!(spread.len(), 3, "different keys reach every endpoint");
    let fallback: Vec<_> = (0..3).map(|_| pick(None)).collect();
    assert_eq!(fallback, [0, 1, 2]);
}

#[test]
fn query_param_cookie_and_source_ip_keys() {
    let headers: HeaderMap = [(COOKIE, "a=1; user=bob".parse().unwrap())]
        .into_iter()
        .collect();
    let uri: Uri = "/p?x=1&user=bob".parse().unwrap();
    let ctx = PickContext {
        headers: &headers,
        uri: &uri,
        client_ip: Some("192.0.2.1".parse().unwrap()),
    };
    let key = |on: HashOn| hash_key(&on, &ctx);
    let bob = {
        let mut h = Fnv::new();
        h.write(b"bob");
        h.finish()
    };
    assert_eq!(key(HashOn::Cookie("user".into())), Some(bob));
    assert_eq!(key(HashOn::QueryParam("user".into())), Some(bob));
    assert_eq!(key(HashOn::Cookie("nope".into())), None);
    assert_eq!(key(HashOn::QueryParam("nope".into())), None);
    assert!(key(HashOn::SourceIp).is_some());
    let no_ip = PickContext {
        client_ip: None,
        ..ctx
    };
    assert_eq!(hash_key(&HashOn::SourceIp, &no_ip), None);
}

#[test]
fn p2c_never_picks_the_busiest_of_several_and_is_fair_between_idle_ones() {
    let load = [5usize, 0, 0, 0];
    let mut rng = rand::rng();
    let mut counts = [0usize; 4];
    for _ in 0..4_000 {
        counts[p2c(4, &mut rng, |i| load[i])] += 1;
    }
    assert_eq!(counts[0], 0, "{counts:?}");
    for (i, c) in counts.iter().enumerate().skip(1) {
        assert!(*c > 1_000, "endpoint {i}: {counts:?}");
    }
    assert_eq!(p2c(1, &mut rng, |_| 9), 0);
    // Of two, the idler one always wins.
    for _ in 0..100 {
        assert_eq!(p2c(2, &mut rng, |i| [3, 1][i]), 1);
    }
}

#[test]
fn inflight_counters_are_shared_by_address_and_guards_release_them() {
    let counters = InflightCounters::default();
    let ep: Authority = "10.0.0.1:80".parse().unwrap();
    let a = counters.get(&ep);
    let b = counters.get(&ep);
    assert!(Arc::ptr_eq(&a, &b));
    {
        let _g1 = InflightGuard::new(&a);
        let _g2 = InflightGuard::new(&b);
        assert_eq!(a.load(Ordering::Relaxed), 2);
    }
    assert_eq!(a.load(Ordering::Relaxed), 0);
}

#[test]
fn decoding_rejects_unknown_algorithms_and_bad_hash_keys() {
    let pb = |algorithm: &str, hash_on: &str| pb::LoadBalancing {
        algorithm: algorithm.into(),
        hash_on: hash_on.into(),
        session_persistence: None,
    };
    let ok = |a, h| BalancingSpec::try_from(&pb(a, h)).unwrap().algorithm;
    assert_eq!(ok("", ""), Algorithm::RoundRobin);
    assert_eq!(ok("LeastRequest", ""), Algorithm::LeastRequest);
    assert_eq!(
        ok("ConsistentHash", "Header:X-User"),
        Algorithm::ConsistentHash(HashOn::Header(HeaderName::from_static("x-user")))
    );
    assert_eq!(
        ok("ConsistentHash", "SourceIP"),
        Algorithm::ConsistentHash(HashOn::SourceIp)
    );
    for (a, h) in [
        ("Fastest", ""),
        ("ConsistentHash", ""),
        ("ConsistentHash", "Body"),
        ("ConsistentHash", "Header:bad header"),
        ("ConsistentHash", "Cookie:"),
        ("RoundRobin", "SourceIP"),
    ] {
        assert!(BalancingSpec::try_from(&pb(a, h)).is_err(), "{a} {h}");
    }
}
