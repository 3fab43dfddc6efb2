//! TLSRoutes end to end: the real controller and host, TLS echo backends with their own
//! certificates, and a rustls client that trusts only the certificate it expects, so a
//! passed-through connection is proven to end at the backend and a terminated one at the
//! gateway.

use nantian_e2e::harness::tls::{certificate, get_tls, tls_secret};
use nantian_e2e::harness::{Env, PodTls, wait_for, yaml};

/// A Service `name` on port 443 → the echo pod's HTTPS port, with one endpoint.
fn tls_service(ns: &str, name: &str, address: &str) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ports: [{{name: https, port: 443, targetPort: 8443}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: https, port: 8443}}]
endpoints: [{{addresses: ["{address}"]}}]
"#
    )
}

fn tls_route(name: &str, hostname: &str, service: &str, port: u16) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: {name}, namespace: app}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: ["{hostname}"]
  rules:
  - backendRefs: [{{name: {service}, port: {port}}}]
"#
    )
}

fn gateway(address: &str) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: nantian
  addresses: [{{type: IPAddress, value: "{address}"}}]
  listeners:
  - name: passthrough
    protocol: TLS
    port: 8443
    hostname: "*.example.com"
    tls: {{mode: Passthrough}}
  - name: terminate
    protocol: TLS
    port: 8443
    hostname: term.example.org
    tls: {{mode: Terminate, certificateRefs: [{{name: term-cert}}]}}
"#
    )
}

fn pod_tls((cert_pem, key_pem): &(String, String)) -> PodTls {
    PodTls {
        cert_pem: cert_pem.clone(),
        key_pem: key_pem.clone(),
        client_ca_pem: None,
    }
}

fn condition(conditions: &serde_json::Value, kind: &str) -> (String, String) {
    let c = conditions
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {conditions}"));
    (
        c["status"].as_str().unwrap().to_string(),
        c["reason"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn tls_routes_pass_through_or_terminate_by_sni() {
    let mut env = Env::new();
    let gw = env.gateway_ip(1);
    let a_cert = certificate(&["a.example.com", "c.example.com"]);
    let b_cert = certificate(&["*.b.example.com"]);
    let term_cert = certificate(&["term.example.org"]);
    env.start_echo_pod_with_tls(1, "secure-a", "app", Some(&pod_tls(&a_cert)))
        .await;
    env.start_echo_pod_with_tls(2, "secure-b", "app", Some(&pod_tls(&b_cert)))
        .await;
    env.start_echo(3, "plain", "app").await;

    let mut config = format!("{}{}", yaml::GATEWAY_CLASS, gateway(&gw));
    config.push_str(&yaml::service("app", "plain", &[env.backend_ip(3)]));
    config.push_str(&tls_service("app", "a", &env.backend_ip(1)));
    config.push_str(&tls_service("app", "b", &env.backend_ip(2)));
    config.push_str(&tls_route("route-a", "a.example.com", "a", 443));
    config.push_str(&tls_route("route-b", "*.b.example.com", "b", 443));
    config.push_str(&tls_route("route-term", "term.example.org", "plain", 80));
    // An HTTPRoute cannot attach to a TLS listener.
    config.push_str(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs: [{name: gw, sectionName: passthrough}]
  rules:
  - backendRefs: [{name: plain, port: 80}]
"#,
    );
    env.write("base.yaml", &config);
    env.write("cert.yaml", &tls_secret("app", "term-cert", &term_cert));
    env.start_controller();
    env.wait_ready().await;
    let addr = format!("{gw}:8443");

    // Passthrough: the client completes its handshake with the backend's own certificate,
    // which the gateway never had.
    let reply = get_tls(&addr, "a.example.com", "a.example.com", &a_cert.0)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echo().pod, "secure-a");
    let reply = get_tls(&addr, "x.b.example.com", "x.b.example.com", &b_cert.0)
        .await
        .unwrap();
    assert_eq!(reply.echo().pod, "secure-b");

    // Terminate: the gateway's certificate, and the plaintext reaches a cleartext backend
    // unchanged (a byte stream: no forwarding headers added).
    let reply = get_tls(&addr, "term.example.org", "term.example.org", &term_cert.0)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let echo = reply.echo();
    assert_eq!(echo.pod, "plain");
    assert!(
        !echo.headers.contains_key("X-Forwarded-For"),
        "{:?}",
        echo.headers
    );

    // A name the listener covers but no route does is refused in the handshake.
    let refused = get_tls(&addr, "c.example.com", "c.example.com", &a_cert.0).await;
    assert!(refused.is_err(), "{refused:?}");

    // Status: the routes are accepted on their listeners, the HTTPRoute is not.
    let route = env.object_status("TLSRoute", "app", "route-a").await;
    let parent = &route["parents"][0];
    assert_eq!(
        condition(&parent["conditions"], "Accepted"),
        ("True".into(), "Accepted".into())
    );
    assert_eq!(
        condition(&parent["conditions"], "ResolvedRefs"),
        ("True".into(), "ResolvedRefs".into())
    );
    let web = env.object_status("HTTPRoute", "app", "web").await;
    assert_eq!(
        condition(&web["parents"][0]["conditions"], "Accepted"),
        ("False".into(), "NotAllowedByListeners".into())
    );
    let gateway = env.object_status("Gateway", "app", "gw").await;
    let listener = |name: &str| {
        gateway["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .cloned()
            .unwrap()
    };
    let passthrough = listener("passthrough");
    assert_eq!(passthrough["attachedRoutes"], 2);
    assert_eq!(
        passthrough["supportedKinds"],
        serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "TLSRoute"}])
    );
    assert_eq!(
        condition(&passthrough["conditions"], "Programmed"),
        ("True".into(), "Programmed".into())
    );
    assert_eq!(listener("terminate")["attachedRoutes"], 1);

    // A route added later serves new connections: c.example.com, refused above, now
    // reaches a's backend (whose certificate covers it).
    env.write(
        "edit.yaml",
        &tls_route("route-c", "c.example.com", "a", 443),
    );
    wait_for(
        || async {
            get_tls(&addr, "c.example.com", "c.example.com", &a_cert.0)
                .await
                .is_ok_and(|r| r.echo().pod == "secure-a")
        },
        "the added route",
    )
    .await;
}
