//! End to end: BackendLBPolicy / XBackendTrafficPolicy load balancing and session
//! persistence, and HTTPRoute rule sessionPersistence, through the real controller, host
//! and three echo pods behind several Services.

use std::collections::{BTreeMap, BTreeSet};

use nantian_e2e::harness::{Env, Reply, get, send, wait_for, yaml};

const PODS: [&str; 3] = ["pod-a", "pod-b", "pod-c"];

/// A Service `name` in `app` (port 80 → 3000) whose EndpointSlice holds `ips`.
fn service(name: &str, ips: &[String]) -> String {
    let addresses = ips
        .iter()
        .map(|ip| format!("- addresses: [\"{ip}\"]\n"))
        .collect::<String>();
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: app}}
spec:
  ports: [{{name: http, port: 80, targetPort: 3000}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: app
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: 3000}}]
endpoints:
{addresses}"#
    )
}

const ROUTES_AND_POLICIES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: lb, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /rr}}]
    backendRefs: [{name: rr, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /lr}}]
    backendRefs: [{name: lr, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /pin}}]
    backendRefs: [{name: pin, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /hash}}]
    backendRefs: [{name: hash, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /cookie}}]
    backendRefs: [{name: sticky, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /header}}]
    backendRefs: [{name: hdr, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /perm}}]
    backendRefs: [{name: rr, port: 80}]
    sessionPersistence:
      sessionName: perm
      absoluteTimeout: 1h
      cookieConfig: {lifetimeType: Permanent}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: BackendLBPolicy
metadata:
  name: least-request
  namespace: app
  annotations: {gateway.nantian.dev/load-balancer: LeastRequest}
spec:
  targetRefs:
  - {group: "", kind: Service, name: lr}
  - {group: "", kind: Service, name: pin}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata:
  name: hash-by-user
  namespace: app
  annotations:
    gateway.nantian.dev/load-balancer: ConsistentHash
    gateway.nantian.dev/hash-on: Header:X-User
spec:
  targetRefs: [{group: "", kind: Service, name: hash}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: BackendLBPolicy
metadata: {name: sticky-cookie, namespace: app}
spec:
  targetRefs: [{group: "", kind: Service, name: sticky}]
  sessionPersistence:
    sessionName: pod-session
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: sticky-header, namespace: app}
spec:
  targetRefs: [{group: "", kind: Service, name: hdr}]
  sessionPersistence:
    type: Header
    sessionName: x-session
    idleTimeout: 10m
"#;

/// Three echo pods; Services rr, lr, hash, sticky and hdr over all three, pin over pod-a
/// only; Gateway `app/gw`. Returns the env and the listener's address.
async fn lb_env() -> (Env, String) {
    let mut env = Env::new();
    let gw = env.gateway_ip(1);
    let mut base = format!(
        "{}{}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: app}}\n",
        yaml::GATEWAY_CLASS,
        yaml::gateway("app", "gw", &gw, &[("http", 8080, None)])
    );
    for (i, pod) in PODS.iter().enumerate() {
        env.start_echo(i as u8 + 1, pod, "app").await;
    }
    let all: Vec<String> = (1..=3).map(|n| env.backend_ip(n)).collect();
    for name in ["rr", "lr", "hash", "hdr"] {
        base.push_str(&service(name, &all));
    }
    base.push_str(&service("pin", &all[..1]));
    env.write("base.yaml", &base);
    env.write("sticky.yaml", &service("sticky", &all));
    env.write("routes.yaml", ROUTES_AND_POLICIES);
    env.start_controller();
    env.wait_ready().await;
    (env, format!("{gw}:8080"))
}

async fn ok(req: http::Request<bytes::Bytes>) -> Reply {
    let r = send(req).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r
}

fn with_header(
    mut req: http::Request<bytes::Bytes>,
    name: &'static str,
    value: &str,
) -> http::Request<bytes::Bytes> {
    req.headers_mut().insert(name, value.parse().unwrap());
    req
}

/// `name=value` of a `Set-Cookie` header, and its attributes.
fn set_cookie(r: &Reply) -> (String, String) {
    let header = r
        .headers
        .get(http::header::SET_COOKIE)
        .unwrap_or_else(|| panic!("no Set-Cookie in {:?}", r.headers))
        .to_str()
        .unwrap();
    let (pair, attributes) = header.split_once("; ").unwrap_or((header, ""));
    (pair.to_string(), attributes.to_string())
}

#[tokio::test]
async fn round_robin_spreads_evenly_and_policies_are_accepted() {
    let (env, addr) = lb_env().await;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..30 {
        *counts
            .entry(ok(get(&addr, "any", "/rr")).await.echo().pod)
            .or_default() += 1;
    }
    let expected: BTreeMap<String, u32> = PODS.iter().map(|p| (p.to_string(), 10)).collect();
    assert_eq!(counts, expected);

    for (kind, name) in [
        ("BackendLBPolicy", "least-request"),
        ("XBackendTrafficPolicy", "hash-by-user"),
        ("BackendLBPolicy", "sticky-cookie"),
        ("XBackendTrafficPolicy", "sticky-header"),
    ] {
        let status = env.object_status(kind, "app", name).await;
        let ancestor = &status["ancestors"][0];
        assert_eq!(ancestor["ancestorRef"]["name"], "gw", "{status}");
        assert_eq!(ancestor["conditions"][0]["type"], "Accepted", "{status}");
        assert_eq!(ancestor["conditions"][0]["status"], "True", "{status}");
    }
}

#[tokio::test]
async fn least_request_avoids_a_pod_busy_with_held_requests() {
    let (env, addr) = lb_env().await;
    let mark = env.echo_log_mark("app", "pod-a").unwrap();
    // Three requests held open on pod-a (through Service pin, whose only endpoint it
    // is): its in-flight count, shared by every Service reaching it, is 3.
    let held: Vec<_> = (0..3)
        .map(|_| tokio::spawn(send(get(&addr, "any", "/pin/hold?delay=9s"))))
        .collect();
    wait_for(
        || async {
            let lines = env.echo_log_lines("app", "pod-a", mark).unwrap();
            lines.iter().filter(|l| l.contains("/pin/hold")).count() == 3
        },
        "three held requests on pod-a",
    )
    .await;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..30 {
        *counts
            .entry(ok(get(&addr, "any", "/lr")).await.echo().pod)
            .or_default() += 1;
    }
    assert_eq!(counts.get("pod-a"), None, "{counts:?}");
    assert!(
        counts.contains_key("pod-b") && counts.contains_key("pod-c"),
        "{counts:?}"
    );
    for h in held {
        h.abort();
    }
}

#[tokio::test]
async fn consistent_hash_keeps_a_key_on_one_pod_and_spreads_keys() {
    let (_env, addr) = lb_env().await;
    let mut pods_of_keys = BTreeSet::new();
    for user in 0..50 {
        let user = format!("user-{user}");
        let first = ok(with_header(get(&addr, "any", "/hash"), "x-user", &user))
            .await
            .echo()
            .pod;
        for _ in 0..4 {
            let again = ok(with_header(get(&addr, "any", "/hash"), "x-user", &user))
                .await
                .echo()
                .pod;
            assert_eq!(again, first, "{user} moved");
        }
        pods_of_keys.insert(first);
    }
    assert_eq!(pods_of_keys.len(), 3, "{pods_of_keys:?}");
}

#[tokio::test]
async fn cookie_session_sticks_until_its_pod_leaves() {
    let (env, addr) = lb_env().await;
    let first = ok(get(&addr, "any", "/cookie")).await;
    let pod = first.echo().pod;
    let (cookie, attributes) = set_cookie(&first);
    assert!(cookie.starts_with("pod-session="), "{cookie}");
    // A session cookie: no Max-Age or Expires; HttpOnly, for the whole site (the
    // policy is the Service's, reached from any path).
    assert_eq!(attributes, "Path=/; HttpOnly");
    let ip_suffix = env.backend_ip(1);
    assert!(
        !cookie.contains(&ip_suffix),
        "the token must not show an address"
    );

    for _ in 0..10 {
        let r = ok(with_header(get(&addr, "any", "/cookie"), "cookie", &cookie)).await;
        assert_eq!(r.echo().pod, pod);
        assert!(r.headers.get(http::header::SET_COOKIE).is_none());
    }
    // Without the cookie, round robin moves on: stickiness is the cookie's doing.
    let unstuck: BTreeSet<String> = pods_reached(&addr, "/cookie", 6).await;
    assert_eq!(unstuck.len(), 3, "{unstuck:?}");
    // A forged token is ignored and replaced.
    let forged = ok(with_header(
        get(&addr, "any", "/cookie"),
        "cookie",
        &format!(
            "pod-session={}",
            "0".repeat(cookie.len() - "pod-session=".len())
        ),
    ))
    .await;
    assert_ne!(set_cookie(&forged).0, cookie);

    // The pod leaves the Service's EndpointSlice.
    let n = PODS.iter().position(|p| *p == pod).unwrap() as u8 + 1;
    let remaining: Vec<String> = (1..=3)
        .filter(|i| *i != n)
        .map(|i| env.backend_ip(i))
        .collect();
    env.write("sticky.yaml", &service("sticky", &remaining));
    wait_for(
        || async {
            let req = with_header(get(&addr, "any", "/cookie"), "cookie", &cookie);
            send(req)
                .await
                .is_ok_and(|r| r.status == 200 && r.echo().pod != pod)
        },
        "the session moving off the removed pod",
    )
    .await;
    let moved = ok(with_header(get(&addr, "any", "/cookie"), "cookie", &cookie)).await;
    let new_pod = moved.echo().pod;
    let (new_cookie, _) = set_cookie(&moved);
    assert_ne!(new_cookie, cookie, "a new session needs a new token");
    for _ in 0..5 {
        let r = ok(with_header(
            get(&addr, "any", "/cookie"),
            "cookie",
            &new_cookie,
        ))
        .await;
        assert_eq!(r.echo().pod, new_pod);
    }
}

/// The pods `n` cookie-less requests to `path` reach.
async fn pods_reached(addr: &str, path: &str, n: usize) -> BTreeSet<String> {
    let mut pods = BTreeSet::new();
    for _ in 0..n {
        pods.insert(ok(get(addr, "any", path)).await.echo().pod);
    }
    pods
}

#[tokio::test]
async fn header_session_sticks_and_the_rule_cookie_is_permanent_and_scoped() {
    let (_env, addr) = lb_env().await;
    let first = ok(get(&addr, "any", "/header")).await;
    let token = first
        .headers
        .get("x-session")
        .expect("a session header")
        .to_str()
        .unwrap()
        .to_string();
    assert!(first.headers.get(http::header::SET_COOKIE).is_none());
    let pod = first.echo().pod;
    for _ in 0..10 {
        let r = ok(with_header(
            get(&addr, "any", "/header"),
            "x-session",
            &token,
        ))
        .await;
        assert_eq!(r.echo().pod, pod);
    }
    assert_eq!(pods_reached(&addr, "/header", 6).await.len(), 3);

    // The route rule's own sessionPersistence: a Permanent cookie for its path only.
    let perm = ok(get(&addr, "any", "/perm/x")).await;
    let (cookie, attributes) = set_cookie(&perm);
    assert!(cookie.starts_with("perm="), "{cookie}");
    assert_eq!(attributes, "Path=/perm; HttpOnly; Max-Age=3600");
    let pod = perm.echo().pod;
    for _ in 0..6 {
        let r = ok(with_header(get(&addr, "any", "/perm/y"), "cookie", &cookie)).await;
        assert_eq!(r.echo().pod, pod);
    }
    // Service rr itself has no session: its own path still rotates.
    assert_eq!(pods_reached(&addr, "/rr", 3).await.len(), 3);
}
