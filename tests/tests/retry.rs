//! HTTPRoute `retry` end to end: a real host retrying against real echo backends and an
//! endpoint nobody listens on.

use bytes::Bytes;
use nantian_e2e::harness::{Env, get, send, yaml};

const NS: &str = "app";
const POD: &str = "live-pod";

/// Service `flaky` has two endpoints: a live echo pod and an address nothing listens on.
/// `routes` go to it.
async fn flaky_env(routes: &str) -> (Env, String) {
    let mut env = Env::new();
    let gw = env.gateway_ip(1);
    env.start_echo(1, POD, NS).await;
    let dead = env.backend_ip(2);
    let base = format!(
        "{}{}{}",
        yaml::GATEWAY_CLASS,
        yaml::gateway(NS, "gw", &gw, &[("http", 8080, None)]),
        yaml::service(NS, "flaky", &[env.backend_ip(1), dead]),
    );
    env.write("base.yaml", &base);
    env.write("routes.yaml", routes);
    env.start_controller();
    env.wait_ready().await;
    (env, format!("{gw}:8080"))
}

/// Adds Service `live` (the live pod only) and waits until the routes reach it (they
/// had no backend before).
async fn add_live_service(env: &Env, addr: &str) {
    env.write(
        "live.yaml",
        &yaml::service(NS, "live", &[env.backend_ip(1)]),
    );
    nantian_e2e::harness::wait_for(
        || async {
            send(get(addr, "any", "/ready"))
                .await
                .is_ok_and(|r| r.status == 200)
        },
        "route to Service live",
    )
    .await;
}

/// The requests pod `live-pod` logged for `target` since `mark`.
fn logged(env: &Env, mark: nantian_e2e::harness::LogMark, target: &str) -> usize {
    let needle = format!("request made to {target} ");
    env.echo_log_lines(NS, POD, mark)
        .unwrap()
        .iter()
        .filter(|line| line.contains(&needle))
        .count()
}

#[tokio::test]
async fn retries_carry_requests_past_an_endpoint_that_refuses_connections() {
    let (_env, addr) = flaky_env(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /retried}}]
    retry: {attempts: 2, backoff: 10ms}
    backendRefs: [{name: flaky, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /plain}}]
    backendRefs: [{name: flaky, port: 80}]
"#,
    )
    .await;

    // Without retry, round robin sends every other request to the dead endpoint.
    let mut plain = Vec::new();
    for _ in 0..10 {
        plain.push(send(get(&addr, "any", "/plain")).await.unwrap().status);
    }
    assert!(plain.contains(&503), "{plain:?}");
    assert!(plain.contains(&200), "{plain:?}");

    for i in 0..10 {
        let r = send(get(&addr, "any", &format!("/retried/{i}")))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.echo().pod, POD);
    }

    // A request body is held and sent whole to the endpoint that answers.
    for _ in 0..4 {
        let body = Bytes::from(vec![b'x'; 10 * 1024]);
        let req = http::Request::post(format!("http://{addr}/retried/upload"))
            .header(http::header::HOST, "any")
            .body(body)
            .unwrap();
        let r = send(req).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.echo().header("content-length"), Some("10240"));
    }
}

#[tokio::test]
async fn listed_statuses_are_retried_and_the_last_answer_is_returned() {
    let (env, addr) = flaky_env(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - retry: {codes: [503], attempts: 3, backoff: 10ms}
    backendRefs: [{name: live, port: 80}]
"#,
    )
    .await;
    add_live_service(&env, &addr).await;

    let mark = env.echo_log_mark(NS, POD).unwrap();
    let r = send(get(&addr, "any", "/status/503")).await.unwrap();
    assert_eq!(r.status, 503);
    let r = send(get(&addr, "any", "/status/500")).await.unwrap();
    assert_eq!(r.status, 500);
    let r = send(get(&addr, "any", "/status/200")).await.unwrap();
    assert_eq!(r.status, 200);
    // The first attempt and three retries; a status not listed, or a success, once.
    assert_eq!(logged(&env, mark, "/status/503"), 4);
    assert_eq!(logged(&env, mark, "/status/500"), 1);
    assert_eq!(logged(&env, mark, "/status/200"), 1);
}

#[tokio::test]
async fn a_backend_request_timeout_ends_one_attempt_not_the_request() {
    let (env, addr) = flaky_env(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - retry: {attempts: 1, backoff: 10ms}
    timeouts: {request: 20s, backendRequest: 200ms}
    backendRefs: [{name: live, port: 80}]
"#,
    )
    .await;
    add_live_service(&env, &addr).await;

    let mark = env.echo_log_mark(NS, POD).unwrap();
    let r = send(get(&addr, "any", "/slow?delay=3s")).await.unwrap();
    assert_eq!(r.status, 504);
    // Two attempts reached the backend, each cut off by backendRequest.
    nantian_e2e::harness::wait_for(
        || async { logged(&env, mark, "/slow?delay=3s") == 2 },
        "both attempts logged",
    )
    .await;
}
