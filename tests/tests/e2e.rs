//! End to end: YAML in a directory → standalone controller → delta xDS → host → Wasm filter
//! chain → echo backends, all real processes on loopback.

#[path = "e2e/addresses.rs"]
mod addresses;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use nantian_e2e::harness::{Env, get, send, send_h2c, wait_for, yaml};

/// One Gateway, two backends in `app`, routes exercising matching precedence.
async fn matching_env() -> (Env, String) {
    Env::serve(
        &[("app", "v1"), ("app", "v2")],
        &[("http", 8080, None)],
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: precedence, namespace: app}
spec:
  parentRefs: [{name: gw}]
  hostnames: [example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: v2, port: 80}]
  - matches: [{path: {type: Exact, value: /api/exact}}]
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /hdr}, headers: [{name: X-Version, value: two}]}]
    backendRefs: [{name: v2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /hdr}}]
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /q}, queryParams: [{name: v, value: "2"}]}, {method: DELETE}]
    backendRefs: [{name: v2, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wildcard, namespace: app}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["*.example.com"]
  rules:
  - backendRefs: [{name: v2, port: 80}]
"#,
    )
    .await
}

async fn pod_for(req: http::Request<Bytes>) -> String {
    let r = send(req).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.echo().pod
}

#[tokio::test]
async fn routes_by_path_header_query_method_with_spec_precedence() {
    let (_env, addr) = matching_env().await;
    let host = "example.com";
    assert_eq!(pod_for(get(&addr, host, "/")).await, "v1-pod");
    assert_eq!(pod_for(get(&addr, host, "/api")).await, "v2-pod");
    assert_eq!(pod_for(get(&addr, host, "/api/x")).await, "v2-pod");
    // Exact beats the longer-matching prefix, prefix matching is segment-aware.
    assert_eq!(pod_for(get(&addr, host, "/api/exact")).await, "v1-pod");
    assert_eq!(pod_for(get(&addr, host, "/apix")).await, "v1-pod");
    // More header matches win over the same prefix.
    let mut with_header = get(&addr, host, "/hdr");
    with_header
        .headers_mut()
        .insert("x-version", "two".parse().unwrap());
    assert_eq!(pod_for(with_header).await, "v2-pod");
    assert_eq!(pod_for(get(&addr, host, "/hdr")).await, "v1-pod");
    // Matches are ORed: query param, or method.
    assert_eq!(pod_for(get(&addr, host, "/q?v=2")).await, "v2-pod");
    assert_eq!(pod_for(get(&addr, host, "/q?v=1")).await, "v1-pod");
    let delete = http::Request::delete(format!("http://{addr}/anything"))
        .header("host", host)
        .body(Bytes::new())
        .unwrap();
    assert_eq!(pod_for(delete).await, "v2-pod");
    // HTTP/2 prior knowledge on the same port routes the same way.
    let h2 = http::Request::get(format!("http://{host}/api/exact"))
        .body(Bytes::new())
        .unwrap();
    let r = send_h2c(&addr, h2).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().pod, "v1-pod");
}

#[tokio::test]
async fn hostnames_exact_beats_wildcard_and_unknown_host_is_404() {
    let (_env, addr) = matching_env().await;
    assert_eq!(pod_for(get(&addr, "example.com", "/")).await, "v1-pod");
    assert_eq!(pod_for(get(&addr, "a.example.com", "/")).await, "v2-pod");
    assert_eq!(
        pod_for(get(&addr, "a.b.example.com:8080", "/")).await,
        "v2-pod"
    );
    let r = send(get(&addr, "other.org", "/")).await.unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn listener_hostname_intersects_route_hostnames() {
    let (env, addr) = Env::serve(
        &[("app", "v1")],
        &[("wild", 8080, Some("*.example.com"))],
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{name: gw}]
  hostnames: [foo.example.com, bar.other.org]
  rules:
  - backendRefs: [{name: v1, port: 80}]
"#,
    )
    .await;
    assert_eq!(pod_for(get(&addr, "foo.example.com", "/")).await, "v1-pod");
    // bar.other.org is outside the listener's hostname: not served.
    assert_eq!(
        send(get(&addr, "bar.other.org", "/")).await.unwrap().status,
        404
    );
    assert_eq!(
        send(get(&addr, "baz.example.com", "/"))
            .await
            .unwrap()
            .status,
        404
    );
    let status = env.object_status("Gateway", "app", "gw").await;
    assert_eq!(status["listeners"][0]["attachedRoutes"], 1, "{status}");
}

#[tokio::test]
async fn weights_split_traffic_and_weight_zero_gets_none() {
    let (_env, addr) = Env::serve(
        &[("app", "v1"), ("app", "v2"), ("app", "v3")],
        &[("http", 8080, None)],
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs:
    - {name: v1, port: 80, weight: 70}
    - {name: v2, port: 80, weight: 30}
    - {name: v3, port: 80, weight: 0}
"#,
    )
    .await;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    const N: u32 = 1000;
    for _ in 0..N {
        *counts
            .entry(pod_for(get(&addr, "any", "/")).await)
            .or_default() += 1;
    }
    let v1 = counts.get("v1-pod").copied().unwrap_or(0);
    // Binomial(1000, 0.7): sd ≈ 14.5; ±6 sd keeps a false failure below one in 10^8.
    assert!((613..=787).contains(&v1), "{counts:?}");
    assert_eq!(
        counts.get("v3-pod"),
        None,
        "weight 0 must never be picked: {counts:?}"
    );
    assert_eq!(counts.values().sum::<u32>(), N);
}

#[tokio::test]
async fn header_modifier_wasm_filter_rewrites_request_and_response_headers() {
    let (_env, addr) = Env::serve(
        &[("app", "v1")],
        &[("http", 8080, None)],
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Set, value: set-by-wasm}]
        add: [{name: X-Add, value: added}]
        remove: [X-Remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: X-Resp, value: from-wasm}]
    backendRefs: [{name: v1, port: 80}]
"#,
    )
    .await;
    let mut req = get(&addr, "any", "/filtered");
    req.headers_mut()
        .insert("x-set", "original".parse().unwrap());
    req.headers_mut().insert("x-add", "first".parse().unwrap());
    req.headers_mut()
        .insert("x-remove", "gone".parse().unwrap());
    let r = send(req).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("x-resp").unwrap(), "from-wasm");
    let echo = r.echo();
    assert_eq!(echo.headers["X-Set"], ["set-by-wasm"]);
    assert_eq!(echo.headers["X-Add"], ["first", "added"]);
    assert!(echo.header("x-remove").is_none(), "{:?}", echo.headers);
    assert!(echo.header("x-forwarded-for").is_some());
}

#[tokio::test]
async fn cross_namespace_backend_needs_a_reference_grant() {
    let (env, addr) = Env::serve(
        &[("other", "svc")],
        &[("http", 8080, None)],
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: app}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: svc, namespace: other, port: 80}]
"#,
    )
    .await;
    // No grant: the ref is invalid, the route answers 500 and says why.
    assert_eq!(send(get(&addr, "any", "/")).await.unwrap().status, 500);
    let status = env.object_status("HTTPRoute", "app", "r").await;
    let conditions = status["parents"][0]["conditions"].as_array().unwrap();
    assert!(
        conditions.iter().any(|c| c["type"] == "ResolvedRefs"
            && c["status"] == "False"
            && c["reason"] == "RefNotPermitted"),
        "{status}"
    );
    env.write(
        "grant.yaml",
        r#"
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow-app, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: app}]
  to: [{group: "", kind: Service}]
"#,
    );
    wait_for(
        || async { send(get(&addr, "any", "/")).await.map(|r| r.status) == Ok(200) },
        "route served after the ReferenceGrant",
    )
    .await;
    assert_eq!(pod_for(get(&addr, "any", "/")).await, "svc-pod");
}

#[tokio::test]
async fn hot_reload_under_load_fails_no_request() {
    let (env, addr) = matching_env().await;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, failures, ok, addr) = (stop.clone(), failures.clone(), ok.clone(), addr.clone());
        load.push(tokio::spawn(async move {
            // One keep-alive client per task: config swaps must not break its connection.
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            while !stop.load(Ordering::Relaxed) {
                match nantian_e2e::harness::send_with(&client, get(&addr, "example.com", "/api"))
                    .await
                {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // 20 edits: each adds a route rule and changes a header filter; the /api route stays.
    for i in 0..20 {
        env.write(
            "extra.yaml",
            &format!(
                r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: extra, namespace: app}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /extra{i}}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-edit, value: "{i}"}}]}}
    backendRefs: [{{name: v2, port: 80}}]
"#
            ),
        );
        let path = format!("/extra{i}/x");
        let a = addr.clone();
        wait_for(
            || {
                let (a, path) = (a.clone(), path.clone());
                async move {
                    match send(get(&a, "example.com", &path)).await {
                        Ok(r) if r.status == 200 => {
                            r.echo().header("x-edit") == Some(&i.to_string())
                        }
                        _ => false,
                    }
                }
            },
            "edit served",
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "{} ok",
        ok.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn host_keeps_serving_when_the_controller_dies() {
    let (mut env, addr) = matching_env().await;
    assert_eq!(pod_for(get(&addr, "example.com", "/api")).await, "v2-pod");
    env.kill_controller();
    for _ in 0..50 {
        assert_eq!(pod_for(get(&addr, "example.com", "/api")).await, "v2-pod");
    }
    // A new controller adopts the running host instead of starting a second one.
    env.start_controller();
    env.wait_ready().await;
    assert_eq!(
        pod_for(get(&addr, "example.com", "/api/exact")).await,
        "v1-pod"
    );
}

#[tokio::test]
async fn unbindable_listener_is_nacked_and_the_old_config_keeps_serving() {
    let (env, addr) = matching_env().await;
    // Something else holds the port the new listener wants: the host cannot apply the
    // snapshot, NACKs it and keeps the old one.
    let gw = env.gateway_ip(1);
    let _squatter = std::net::TcpListener::bind(format!("{gw}:9090")).unwrap();
    env.write(
        "base.yaml",
        &format!(
            "{}{}{}{}",
            yaml::GATEWAY_CLASS,
            yaml::gateway(
                "app",
                "gw",
                &gw,
                &[("http", 8080, None), ("more", 9090, None)]
            ),
            yaml::service("app", "v1", &[env.backend_ip(1)]),
            yaml::service("app", "v2", &[env.backend_ip(2)]),
        ),
    );
    wait_for(
        || async {
            let hosts = env.controller_hosts().await;
            hosts["streams"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|h| h["lastNack"].as_str().is_some_and(|m| m.contains("9090")))
            })
        },
        "NACK recorded by the controller",
    )
    .await;
    assert_eq!(pod_for(get(&addr, "example.com", "/api")).await, "v2-pod");
    let readyz = send(get(&env.controller_admin(), "x", "/readyz"))
        .await
        .unwrap();
    assert_eq!(readyz.status, 503, "a NACKed snapshot is not ready");
}

#[tokio::test]
async fn invalid_yaml_is_reported_and_the_rest_keeps_working() {
    let (env, addr) = matching_env().await;
    env.write(
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: [not, a, map\n",
    );
    wait_for(
        || async {
            let s = env.status().await;
            s["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e.to_string().contains("broken.yaml")))
        },
        "load error reported",
    )
    .await;
    assert_eq!(pod_for(get(&addr, "example.com", "/api")).await, "v2-pod");
}

#[tokio::test]
async fn an_unchanged_directory_is_translated_once_per_change() {
    let (env, addr) = matching_env().await;
    assert_eq!(pod_for(get(&addr, "example.com", "/api")).await, "v2-pod");
    let count = |s: serde_json::Value| s["translations"].as_u64().expect("translations");
    let settled = count(env.status().await);
    // Reading the files must not count as a change: the count stays put while idle…
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(count(env.status().await), settled);
    // …and moves when a file does.
    env.write("touch.yaml", "# a comment only\n");
    wait_for(
        || async { count(env.status().await) > settled },
        "a translation after the write",
    )
    .await;
}
