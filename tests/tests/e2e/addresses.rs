//! Gateway addresses end to end: every listener is served on every address of its Gateway,
//! unusable and unsupported addresses are reported with the spec's reasons, and changed
//! addresses take effect without restarting the controller.

use nantian_e2e::harness::{Env, Reply, get, send, wait_for, yaml};

const ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: v1, port: 80}]
"#;

/// Gateway `app/gw` with one HTTP listener on 8080 and `addresses` (YAML flow sequence).
fn gateway(addresses: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: nantian
  addresses: {addresses}
  listeners:
  - name: http
    port: 8080
    protocol: HTTP
"#
    )
}

async fn request(ip: &str) -> Result<Reply, String> {
    send(get(&format!("{ip}:8080"), "example.com", "/")).await
}

/// Waits until `ip` answers with the echo of `v1`.
async fn wait_served(ip: &str) {
    wait_for(
        || async { request(ip).await.is_ok_and(|r| r.status == 200) },
        &format!("Gateway served on {ip}"),
    )
    .await;
    assert_eq!(request(ip).await.unwrap().echo().pod, "v1-pod");
}

/// Waits until nothing listens on `ip`:8080 any more.
async fn wait_not_served(ip: &str) {
    wait_for(
        || async { request(ip).await.is_err() },
        &format!("nothing listening on {ip}:8080"),
    )
    .await;
}

/// The Gateway's status once its `condition` has `status` and `reason`.
async fn wait_condition(
    env: &Env,
    condition: &str,
    status: &str,
    reason: &str,
) -> serde_json::Value {
    let matches = |s: &serde_json::Value| {
        s["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == condition && c["status"] == status && c["reason"] == reason)
    };
    wait_for(
        || async { matches(&env.object_status("Gateway", "app", "gw").await) },
        &format!("Gateway {condition}={status} ({reason})"),
    )
    .await;
    env.object_status("Gateway", "app", "gw").await
}

/// `status.addresses` as (type, value) pairs.
fn status_addresses(status: &serde_json::Value) -> Vec<(String, String)> {
    status["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            (text(&a["type"]), text(&a["value"]))
        })
        .collect()
}

fn ip_addresses(values: &[&str]) -> Vec<(String, String)> {
    values
        .iter()
        .map(|v| ("IPAddress".to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn gateway_addresses_are_validated_served_and_changed_live() {
    let mut env = Env::new();
    let (first, second) = (env.gateway_ip(1), env.gateway_ip(2));
    env.start_echo(1, "v1-pod", "app").await;
    let base = format!(
        "{}{}",
        yaml::GATEWAY_CLASS,
        yaml::service("app", "v1", &[env.backend_ip(1)])
    );
    env.write("base.yaml", &base);
    env.write("route.yaml", ROUTE);
    env.write(
        "gateway.yaml",
        &gateway(&format!("[{{value: {first}}}, {{value: {second}}}]")),
    );
    env.start_controller();
    env.wait_ready().await;

    // Two static addresses: the listener is served on both, and both are in status.
    let status = wait_condition(&env, "Programmed", "True", "Programmed").await;
    assert_eq!(status_addresses(&status), ip_addresses(&[&first, &second]));
    wait_served(&first).await;
    wait_served(&second).await;

    // An address no interface has (TEST-NET-1): accepted, not programmed, and the usable
    // addresses keep serving.
    env.write(
        "gateway.yaml",
        &gateway(&format!(
            "[{{value: {first}}}, {{value: 192.0.2.1}}, {{value: {second}}}]"
        )),
    );
    let status = wait_condition(&env, "Programmed", "False", "AddressNotUsable").await;
    let programmed = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Programmed")
        .unwrap();
    assert!(
        programmed["message"]
            .as_str()
            .unwrap()
            .contains("192.0.2.1"),
        "the message names the address: {programmed}"
    );
    assert!(
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| { c["type"] == "Accepted" && c["status"] == "True" })
    );
    assert_eq!(status_addresses(&status), ip_addresses(&[&first, &second]));
    wait_served(&first).await;
    wait_served(&second).await;

    // An address type standalone can't serve: not accepted, nothing served, no addresses.
    env.write(
        "gateway.yaml",
        &gateway(&format!(
            "[{{type: Hostname, value: gw.example.com}}, {{value: {first}}}]"
        )),
    );
    let status = wait_condition(&env, "Accepted", "False", "UnsupportedAddress").await;
    assert_eq!(status_addresses(&status), []);
    wait_not_served(&first).await;
    wait_not_served(&second).await;

    // An IPAddress without a value: one from the controller's pool, served there only.
    env.write("gateway.yaml", &gateway("[{type: IPAddress}]"));
    let status = wait_condition(&env, "Programmed", "True", "Programmed").await;
    let addresses = status_addresses(&status);
    assert_eq!(addresses.len(), 1, "{addresses:?}");
    let (type_, allocated) = &addresses[0];
    assert_eq!(type_, "IPAddress");
    assert!(
        env.in_address_pool(allocated),
        "{allocated} is not from the pool"
    );
    wait_served(allocated).await;
    wait_not_served(&first).await;
}
