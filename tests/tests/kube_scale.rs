//! The Kubernetes scale benchmark (`cargo xtask bench` runs it; ignored by `cargo test`):
//! 5,000 HTTPRoutes created through a real API server, the time until every one is
//! Accepted and the last one serves traffic, the controller's RSS, and the time from one
//! route created to its traffic served (median and p99 over 20 edits).
//!
//! It prints one line, `NANTIAN_SCALE_RESULT key=value …`, which the bench copies into
//! `bench/README.md`. It fails (rather than report nonsense) when any step doesn't converge.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use nantian_e2e::harness::{Env, get, send};
use nantian_e2e::kube::{KubeControlPlane, apply_yaml};
use nantian_e2e::kube_support::{
    Controller, Host, backend_ip, class_names, gateway_class, http_routes, service,
};

const ROUTES: usize = 5000;
const EDITS: usize = 20;
/// Bounds how long a broken build takes to fail; not a target.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(600);

fn route(ns: &str, name: &str, path: &str) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"name": "web"}],
            "rules": [{
                "matches": [{"path": {"type": "Exact", "value": path}}],
                "backendRefs": [{"name": "echo", "port": 80}],
            }],
        },
    }))
    .unwrap()
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn served(addr: &str, path: &str) -> bool {
    send(get(addr, "any.example", path))
        .await
        .is_ok_and(|r| r.status == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: `cargo xtask bench` runs it"]
async fn five_thousand_routes_through_the_api_server() {
    let kube = KubeControlPlane::shared()
        .await
        .expect("the scale benchmark needs kube-apiserver and etcd (cargo xtask kube-assets)");
    let client = kube.client().await.unwrap();
    let ns = kube.create_namespace("scale").await.unwrap();
    let (controller_name, class) = class_names(&ns);
    let mut env = Env::new();
    let ip = backend_ip();
    let port = env.own_port(0);
    env.start_echo_at(&format!("{ip}:{port}"), "echo", &ns)
        .await;
    let bind = env.gateway_ip(1);
    apply_yaml(
        &client,
        &format!(
            "{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  gatewayClassName: {class}\n  listeners: [{{name: http, port: 8080, protocol: HTTP}}]\n{}",
            gateway_class(&class, &controller_name),
            service(&ns, "echo", &ip, port),
        ),
    )
    .await
    .unwrap();
    let controller = Controller::start(kube, &env, 90, &ns, &controller_name, &bind);
    let _host = Host::start(&controller, &format!("{ns}/web"), &format!("{bind}:15000"));
    let addr = format!("{bind}:8080");

    // 5,000 routes, created 32 at a time.
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &http_routes());
    let started = Instant::now();
    futures::stream::iter(0..ROUTES)
        .map(|i| {
            let api = api.clone();
            let object = route(&ns, &format!("r{i}"), &format!("/r{i}"));
            async move {
                api.create(&PostParams::default(), &object)
                    .await
                    .unwrap_or_else(|e| panic!("create route r{i}: {e}"))
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let created = started.elapsed();

    // Every route Accepted by us, and the last one served.
    let accepted_by_us = |route: &DynamicObject| {
        route.data["status"]["parents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["controllerName"] == controller_name.as_str())
            .any(|p| {
                p["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Accepted" && c["status"] == "True")
            })
    };
    let all_accepted = loop {
        let routes = api.list(&ListParams::default()).await.unwrap();
        let accepted = routes.items.iter().filter(|r| accepted_by_us(r)).count();
        if accepted == ROUTES {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < CONVERGENCE_LIMIT,
            "only {accepted} of {ROUTES} routes Accepted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let last = format!("/r{}", ROUTES - 1);
    while !served(&addr, &last).await {
        assert!(started.elapsed() < CONVERGENCE_LIMIT, "{last} never served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_served = started.elapsed();
    let controller_rss = rss_mib(controller.child.id());

    // One route more, 20 times: created → its path answers.
    let mut edits = Vec::with_capacity(EDITS);
    for i in 0..EDITS {
        let path = format!("/edit{i}");
        assert!(
            !served(&addr, &path).await,
            "{path} answered before its route existed"
        );
        let object = route(&ns, &format!("edit{i}"), &path);
        let t = Instant::now();
        api.create(&PostParams::default(), &object).await.unwrap();
        while !served(&addr, &path).await {
            assert!(t.elapsed() < CONVERGENCE_LIMIT, "{path} never served");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        edits.push(t.elapsed());
    }
    edits.sort();
    let quantile = |q: f64| {
        let i = ((EDITS as f64 * q).ceil() as usize).clamp(1, EDITS) - 1;
        edits[i].as_secs_f64() * 1000.0
    };
    let result = format!(
        "routes={ROUTES} created_s={:.3} all_accepted_s={:.3} all_served_s={:.3} controller_rss_mib={controller_rss:.1} edit_to_served_median_ms={:.2} edit_to_served_p99_ms={:.2} edits={EDITS}",
        created.as_secs_f64(),
        all_accepted.as_secs_f64(),
        all_served.as_secs_f64(),
        quantile(0.5),
        quantile(0.99),
    );
    println!("NANTIAN_SCALE_RESULT {result}");
}
