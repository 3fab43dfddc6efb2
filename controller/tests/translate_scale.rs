//! Where a translation of 5,000 HTTPRoutes spends its time (by hand, not a target):
//! `cargo test --release -p nantian-controller --test translate_scale -- --ignored --nocapture`
//! prints the cost of copying the object set (as the Kubernetes provider does before each
//! translation), of the translation itself, and of turning it into host snapshots. Run it
//! under `perf record` to see inside.

use std::time::Instant;

use nantian_controller::load::load_str;
use nantian_controller::model::Resources;
use nantian_controller::snapshot::GatewaySnapshot;
use nantian_controller::status::GatewayAddress;
use nantian_controller::translate::{Addressing, ProvisionedGateway, TranslateOptions, translate};

const ROUTES: usize = 5000;

fn cluster() -> Resources {
    let mut yaml = String::from(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: nantian}
spec: {controllerName: gateway.nantian.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: scale}
spec:
  gatewayClassName: nantian
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: scale}
spec: {ports: [{name: http, port: 80, targetPort: 3000}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: scale, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: http, port: 3000}]
endpoints: [{addresses: [127.0.20.1]}]
"#,
    );
    for i in 0..ROUTES {
        yaml.push_str(&format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r{i}, namespace: scale}}
spec:
  parentRefs: [{{name: web}}]
  rules:
  - matches: [{{path: {{type: Exact, value: /r{i}}}}}]
    backendRefs: [{{name: echo, port: 80}}]
"#
        ));
    }
    let mut res = Resources::default();
    let errors = load_str("scale.yaml", &yaml, &mut res);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(res.http_routes.len(), ROUTES);
    res
}

#[test]
#[ignore = "a measurement, run by hand"]
fn translating_five_thousand_routes() {
    let res = cluster();
    // As the Kubernetes provider translates: the Gateway reached through its Service.
    let provisioned = ProvisionedGateway {
        addresses: vec![GatewayAddress {
            type_: "IPAddress".to_string(),
            value: "10.0.0.5".to_string(),
        }],
        available: Some(true),
    };
    let opts = TranslateOptions {
        addressing: Addressing::ServiceAddresses {
            bind: "0.0.0.0".parse().unwrap(),
            by_gateway: [(("scale".to_string(), "web".to_string()), provisioned)].into(),
        },
        ..TranslateOptions::default()
    };
    // Warm up once: lazily built regexes, allocator pools.
    let warm = translate(&res, &opts);
    assert_eq!(warm.gateways.len(), 1);
    for round in 1..=3 {
        let t = Instant::now();
        let copy = res.clone();
        let copied = t.elapsed();
        let t = Instant::now();
        let translation = translate(&copy, &opts);
        let translated = t.elapsed();
        let t = Instant::now();
        let snapshots: Vec<GatewaySnapshot> = translation
            .gateways
            .iter()
            .map(GatewaySnapshot::from_ir)
            .collect();
        let snapshotted = t.elapsed();
        assert_eq!(snapshots.len(), 1);
        assert_eq!(translation.statuses.len(), ROUTES + 2);
        println!(
            "round {round}: copy {copied:.1?}, translate {translated:.1?}, snapshots \
             {snapshotted:.1?} ({} statuses)",
            translation.statuses.len()
        );
    }
}
