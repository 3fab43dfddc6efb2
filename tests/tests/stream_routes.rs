//! TLSRoutes, TCPRoutes and UDPRoutes end to end: the real controller and host, echo
//! backends (TLS ones with their own certificates, UDP ones answering datagrams), and
//! clients on loopback. The TLS client trusts only the certificate it expects, so a
//! passed-through connection is proven to end at the backend and a terminated one at the
//! gateway.

use std::time::Duration;

use nantian_e2e::echo::udp::UdpEcho;
use nantian_e2e::harness::tls::{certificate, get_tls, tls_handshake, tls_secret};
use nantian_e2e::harness::{Env, PodTls, get, send, wait_for, yaml};
use tokio::net::UdpSocket;

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

    // A name the listener covers but no route does: the connection is closed during the
    // handshake, without a TLS alert (the client sees EOF).
    let refused = tls_handshake(&addr, "c.example.com", &a_cert.0).await;
    assert_eq!(
        refused.as_ref().map_err(std::io::Error::kind).err(),
        Some(std::io::ErrorKind::UnexpectedEof),
        "{refused:?}"
    );

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

/// `yaml::service` without its Namespace document (an earlier service brought it).
fn service_only(ns: &str, name: &str, address: &str) -> String {
    let yaml = yaml::service(ns, name, &[address.to_string()]);
    let rest = yaml.trim_start_matches("---\n");
    let start = rest
        .find("\n---\n")
        .expect("a Namespace document, then the Service");
    rest[start + 1..].to_string()
}

/// A TCPRoute or UDPRoute (v1alpha2) `name` on listener `section` of Gateway `gw`, to
/// port 80 of `service`.
fn layer4_route(kind: &str, name: &str, section: &str, service: &str) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: {kind}
metadata: {{name: {name}, namespace: app}}
spec:
  parentRefs: [{{name: gw, sectionName: {section}}}]
  rules:
  - backendRefs: [{{name: {service}, port: 80}}]
"#
    )
}

fn tcp_route(service: &str) -> String {
    layer4_route("TCPRoute", "db", "tcp", service)
}

/// The GatewayClass, Gateway `app/gw` on `address` with `listeners` (name, protocol, port)
/// and two echo Services, `a` on backend 1 and `b` on backend 2.
fn layer4_setup(
    env: &Env,
    address: &str,
    listeners: &[(&str, &str, u16)],
    (a, b): (&str, &str),
) -> String {
    let mut config = format!(
        r#"{}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: nantian
  addresses: [{{type: IPAddress, value: "{address}"}}]
  listeners:
"#,
        yaml::GATEWAY_CLASS
    );
    for (name, protocol, port) in listeners {
        config.push_str(&format!(
            "  - {{name: {name}, protocol: {protocol}, port: {port}}}\n"
        ));
    }
    config.push_str(&yaml::service("app", a, &[env.backend_ip(1)]));
    config.push_str(&service_only("app", b, &env.backend_ip(2)));
    config
}

#[tokio::test]
async fn tcp_routes_carry_connections_to_their_backend() {
    let mut env = Env::new();
    let gw = env.gateway_ip(1);
    env.start_echo(1, "db-a", "app").await;
    env.start_echo(2, "db-b", "app").await;
    let config = layer4_setup(&env, &gw, &[("tcp", "TCP", 9000)], ("db-a", "db-b"));
    env.write("base.yaml", &config);
    env.write("route.yaml", &tcp_route("db-a"));
    env.start_controller();
    env.wait_ready().await;
    let addr = format!("{gw}:9000");

    // HTTP is only bytes to a TCP listener: the request reaches the backend as sent, with
    // no forwarding headers, whatever its Host.
    let reply = send(get(&addr, "anything.example", "/tcp")).await.unwrap();
    assert_eq!(reply.status, 200);
    let echo = reply.echo();
    assert_eq!(echo.pod, "db-a");
    assert_eq!(echo.host, "anything.example");
    assert!(
        !echo.headers.contains_key("X-Forwarded-For"),
        "{:?}",
        echo.headers
    );

    let route = env.object_status("TCPRoute", "app", "db").await;
    assert_eq!(
        condition(&route["parents"][0]["conditions"], "Accepted"),
        ("True".into(), "Accepted".into())
    );
    let gateway = env.object_status("Gateway", "app", "gw").await;
    assert_eq!(gateway["listeners"][0]["attachedRoutes"], 1);

    // The route's new backend gets the new connections.
    env.write("route.yaml", &tcp_route("db-b"));
    wait_for(
        || async {
            send(get(&addr, "anything.example", "/tcp"))
                .await
                .is_ok_and(|r| r.echo().pod == "db-b")
        },
        "connections moving to db-b",
    )
    .await;

    // Without a route, connections are closed rather than sent anywhere.
    env.remove("route.yaml");
    wait_for(
        || async { send(get(&addr, "anything.example", "/tcp")).await.is_err() },
        "connections refused without a route",
    )
    .await;
}

/// Sends `payload` from `socket` to `to` and reads the echo's answer (1 s at most).
async fn udp_exchange(socket: &UdpSocket, to: &str, payload: &str) -> Option<UdpEcho> {
    socket.send_to(payload.as_bytes(), to).await.ok()?;
    let mut buf = [0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice(&buf[..n]).ok()
}

async fn udp_client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

fn udp_route(service: &str) -> String {
    layer4_route("UDPRoute", "dns", "udp", service)
}

#[tokio::test]
async fn udp_routes_relay_flows_and_share_the_port_with_tcp() {
    let mut env = Env::new();
    let gw = env.gateway_ip(1);
    env.start_echo_udp(1, "dns-a", "app").await;
    env.start_echo_udp(2, "dns-b", "app").await;
    let mut config = layer4_setup(
        &env,
        &gw,
        &[("udp", "UDP", 5300), ("tcp", "TCP", 5300)],
        ("dns-a", "dns-b"),
    );
    // TCP on the same port goes elsewhere.
    config.push_str(&tcp_route("dns-b"));
    env.write("base.yaml", &config);
    env.write("route.yaml", &udp_route("dns-a"));
    env.start_controller();
    env.wait_ready().await;
    let addr = format!("{gw}:5300");

    // One flow: every datagram reaches dns-a, answers come back from the listener.
    wait_for(
        || async {
            udp_exchange(&udp_client().await, &addr, "ping")
                .await
                .is_some()
        },
        "a UDP answer through the gateway",
    )
    .await;
    let flow = udp_client().await;
    let first = udp_exchange(&flow, &addr, "hello").await.unwrap();
    assert_eq!(
        (first.pod.as_str(), first.payload.as_str()),
        ("dns-a", "hello")
    );
    let again = udp_exchange(&flow, &addr, "again").await.unwrap();
    assert_eq!(
        (again.pod.as_str(), again.payload.as_str()),
        ("dns-a", "again")
    );

    // The TCP listener on the same port serves its own route.
    let reply = send(get(&addr, "tcp.example", "/")).await.unwrap();
    assert_eq!(reply.echo().pod, "dns-b");

    let route = env.object_status("UDPRoute", "app", "dns").await;
    assert_eq!(
        condition(&route["parents"][0]["conditions"], "Accepted"),
        ("True".into(), "Accepted".into())
    );

    // A new backend takes new flows; the open flow keeps its endpoint.
    env.write("route.yaml", &udp_route("dns-b"));
    wait_for(
        || async {
            let fresh = udp_client().await;
            udp_exchange(&fresh, &addr, "new")
                .await
                .is_some_and(|e| e.pod == "dns-b")
        },
        "new flows reaching dns-b",
    )
    .await;
    let kept = udp_exchange(&flow, &addr, "still").await.unwrap();
    assert_eq!(kept.pod, "dns-a");
}
