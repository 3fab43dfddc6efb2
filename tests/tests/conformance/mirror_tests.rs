//! Unit tests of `mirror`: log matching, the tolerance maths, and the checks against
//! hand-written logs and a stand-in gateway that mirrors by writing log lines.

use std::convert::Infallible;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use nantian_e2e::echo::EchoResponse;
use nantian_e2e::echo::request_log::request_log_line;

use super::*;
use crate::model::from_yaml;

const NAMESPACE: &str = "gateway-conformance-infra";

fn backend(yaml: &str) -> MirroredBackend {
    from_yaml(yaml).unwrap()
}

fn pod(deployment: &str, n: u32) -> Pod {
    Pod {
        namespace: "gateway-conformance-infra".into(),
        deployment: deployment.into(),
        name: format!("{deployment}-nantian-{n}"),
        labels: Default::default(),
        ip: String::new(),
        tcp: false,
        tls: None,
    }
}

fn append(env: &Env, pod: &Pod, lines: &[&str]) {
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.echo_log_path(&pod.namespace, &pod.name))
        .unwrap();
    for line in lines {
        writeln!(log, "{line}").unwrap();
    }
}

const V2: &str = "{name: infra-backend-v2, namespace: gateway-conformance-infra}";

#[test]
fn only_lines_for_exactly_the_path_count() {
    let line =
        |target: &str| format!("Echoing back request made to {target} to client (127.0.0.1:5)");
    assert!(is_request_to(&line("/mirror"), "/mirror"));
    assert!(!is_request_to(
        &line("/mirror-and-modify-headers"),
        "/mirror"
    ));
    assert!(!is_request_to(&line("/x/mirror"), "/mirror"));
    assert!(!is_request_to(&line("/mirror?a=1"), "/mirror"));
    assert!(is_request_to(&line("/mirror?a=1"), "/mirror?a=1"));
    assert!(!is_request_to("listening on 127.0.0.1:3000", "/mirror"));
}

#[test]
fn share_tolerance_is_relative() {
    // 20 % of 500 is 100, give or take 5 %.
    for ok in [95, 100, 105] {
        check_share(ok, 20).unwrap();
    }
    for miss in [94, 106, 0] {
        let err = check_share(miss, 20).unwrap_err();
        assert!(err.contains("expected 20 %"), "{err}");
    }
    // 35 %: 175 ± 8.75.
    check_share(167, 35).unwrap();
    check_share(183, 35).unwrap();
    check_share(166, 35).unwrap_err();
    check_share(184, 35).unwrap_err();
    // Nothing mirrored is only right for 0 %; everything within 5 % of 100 %.
    check_share(0, 0).unwrap();
    check_share(1, 0).unwrap_err();
    check_share(475, 100).unwrap();
    check_share(474, 100).unwrap_err();
}

#[test]
fn mirror_pods_are_the_deployments_replicas() {
    let pods = [
        pod("infra-backend-v1", 0),
        pod("infra-backend-v2", 0),
        pod("infra-backend-v2", 1),
    ];
    let names: Vec<&str> = mirror_pods(&pods, &backend(V2))
        .unwrap()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["infra-backend-v2-nantian-0", "infra-backend-v2-nantian-1"]
    );
    let other_ns = backend("{name: infra-backend-v2, namespace: elsewhere}");
    assert!(
        mirror_pods(&pods, &other_ns)
            .unwrap_err()
            .contains("no echo pods")
    );
    assert!(from_yaml::<MirroredBackend>("{name: a, namespace: b, weight: 1}").is_err());
}

#[test]
fn settle_waits_for_quiet_polls() {
    let mut settle = Settle::default();
    assert!(!settle.observe(3));
    for _ in 1..QUIET_POLLS {
        assert!(!settle.observe(3));
    }
    assert!(!settle.observe(4), "a new line starts the wait over");
    for _ in 1..QUIET_POLLS {
        assert!(!settle.observe(4));
    }
    assert!(settle.observe(4));
}

#[tokio::test]
async fn counts_lines_after_the_mark_across_pods() {
    let env = Env::new();
    let pods = [
        pod("infra-backend-v2", 0),
        pod("infra-backend-v2", 1),
        pod("infra-backend-v3", 0),
    ];
    let request =
        |target: &str| format!("Echoing back request made to {target} to client (127.0.0.1:9)");
    for p in &pods {
        append(
            &env,
            p,
            &["listening on 127.0.0.1:3000", &request("/mirror")],
        );
    }
    let over =
        backend("{name: infra-backend-v2, namespace: gateway-conformance-infra, percent: 101}");
    assert!(
        MirrorLog::mark(&env, &pods, &over)
            .err()
            .unwrap()
            .contains("over 100")
    );
    let v2 = backend(V2);
    let mirror = MirrorLog::mark(&env, &pods, &v2).unwrap();
    assert_eq!(mirror.count("/mirror").unwrap(), 0, "lines before the mark");
    let short = Duration::from_millis(300);
    assert!(
        mirror
            .expect_logged("/mirror", short)
            .await
            .unwrap_err()
            .contains("no mirrored request to /mirror")
    );

    append(&env, &pods[0], &[&request("/mirror"), &request("/other")]);
    append(&env, &pods[1], &[&request("/mirror")]);
    append(&env, &pods[2], &[&request("/mirror")]);
    mirror.expect_logged("/mirror", short).await.unwrap();
    assert_eq!(
        mirror
            .settled_count("/mirror", Duration::from_secs(5))
            .await
            .unwrap(),
        2
    );
    assert_eq!(mirror.count("/other").unwrap(), 1);

    let later = mirror.remark().unwrap();
    assert_eq!(later.count("/mirror").unwrap(), 0);
    append(&env, &pods[1], &[&request("/mirror")]);
    assert_eq!(
        (
            later.count("/mirror").unwrap(),
            mirror.count("/mirror").unwrap()
        ),
        (1, 3)
    );
}

/// A stand-in for a gateway with a mirroring route: answers every request as pod
/// `infra-backend-v1-nantian-0` would, and copies every `every`-th request to the next of
/// `mirror_logs` in turn, by appending the echo line there `delay` after answering, as a
/// mirror backend logs its copy a little after the client has its answer. Also returns
/// the number of requests it has answered so far.
async fn mirroring_gateway(
    mirror_logs: Vec<PathBuf>,
    every: usize,
    delay: Duration,
) -> (Target, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mirror_logs = Arc::new(mirror_logs);
    let requests = Arc::new(AtomicUsize::new(0));
    let answered = requests.clone();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let (mirror_logs, requests) = (mirror_logs.clone(), requests.clone());
            let service = service_fn(move |req: http::Request<Incoming>| {
                let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
                let target = req.uri().path_and_query().unwrap().to_string();
                if n % every == 0 {
                    let log = mirror_logs[(n / every) % mirror_logs.len()].clone();
                    let line = format!("{}\n", request_log_line(&target, peer));
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let mut file = OpenOptions::new().append(true).open(log).unwrap();
                        file.write_all(line.as_bytes()).unwrap();
                    });
                }
                let echoed = EchoResponse {
                    path: target,
                    method: req.method().to_string(),
                    namespace: NAMESPACE.into(),
                    pod: "infra-backend-v1-nantian-0".into(),
                    ..Default::default()
                };
                let response = http::Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(serde_json::to_vec(&echoed).unwrap())))
                    .unwrap();
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    let target = Target {
        ip: addr.ip().to_string(),
        port: addr.port(),
        tls: None,
    };
    (target, answered)
}

/// An Env whose echo logs exist for `pods`, as if they had started.
fn env_with_logs(pods: &[Pod]) -> Env {
    let env = Env::new();
    for p in pods {
        append(&env, p, &["listening on 127.0.0.1:3000"]);
    }
    env
}

fn log_paths(env: &Env, pods: &[&Pod]) -> Vec<PathBuf> {
    pods.iter()
        .map(|p| env.echo_log_path(&p.namespace, &p.name))
        .collect()
}

#[tokio::test]
async fn every_mirror_must_log_the_request() {
    let pods = [
        pod("infra-backend-v2", 0),
        pod("infra-backend-v2", 1),
        pod("infra-backend-v3", 0),
    ];
    let env = env_with_logs(&pods);
    let exp: Expectation = from_yaml(
        "request: {path: /multi-mirror}
backend: infra-backend-v1
namespace: gateway-conformance-infra
mirroredTo:
- {name: infra-backend-v2, namespace: gateway-conformance-infra}
- {name: infra-backend-v3, namespace: gateway-conformance-infra}",
    )
    .unwrap();
    let max_time = Duration::from_secs(2);

    // Copies go to v2's second pod and to v3, in turn.
    let (both, _) = mirroring_gateway(
        log_paths(&env, &[&pods[1], &pods[2]]),
        1,
        Duration::from_millis(50),
    )
    .await;
    expect_response_and_mirrors(&env, &pods, max_time, &both, &exp)
        .await
        .unwrap();

    // Copies only to v3: v2 is missing them, and only v2 is reported.
    let (v3_only, _) = mirroring_gateway(log_paths(&env, &[&pods[2]]), 1, Duration::ZERO).await;
    let err = expect_response_and_mirrors(&env, &pods, max_time, &v3_only, &exp)
        .await
        .unwrap_err();
    assert!(
        err.contains("gateway-conformance-infra/infra-backend-v2"),
        "{err}"
    );
    assert!(!err.contains("infra-backend-v3"), "{err}");
}

/// The copies of a batch land well after its last answer: the count waits for them, and
/// the copies of the requests before the batch stay out of it.
#[tokio::test]
async fn mirrored_share_counts_late_copies_in_their_own_batch() {
    let pods = [pod("infra-backend-v2", 0), pod("infra-backend-v2", 1)];
    let env = env_with_logs(&pods);
    let exp: Expectation = from_yaml(
        "request: {path: /percent-mirror}
expectedRequest: {path: /percent-mirror}
backend: infra-backend-v1
namespace: gateway-conformance-infra
mirroredTo:
- {name: infra-backend-v2, namespace: gateway-conformance-infra, percent: 20}",
    )
    .unwrap();
    let (every_fifth, answered) = mirroring_gateway(
        log_paths(&env, &[&pods[0], &pods[1]]),
        5,
        Duration::from_millis(300),
    )
    .await;
    expect_response_and_mirrors(&env, &pods, Duration::from_secs(10), &every_fifth, &exp)
        .await
        .unwrap();
    // Exactly a fifth of any batch is mirrored, so the first batch must be enough. Had the
    // late copies been missed, or the expectation's own copies been counted in it, the
    // share would have been off and a second batch sent.
    let answered = answered.load(Ordering::SeqCst);
    assert!(
        (SAMPLE_REQUESTS..2 * SAMPLE_REQUESTS).contains(&answered),
        "{answered} requests: not one batch"
    );
}
