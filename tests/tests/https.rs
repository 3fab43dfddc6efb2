//! HTTPS listeners end to end: the real controller and host, certificates from Secrets,
//! a rustls client that trusts only the certificate it expects.

use nantian_e2e::harness::tls::{certificate, get_tls, get_tls_as, tls_secret};
use nantian_e2e::harness::{Env, wait_for, yaml};

const ROUTE: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: web, port: 80}]
"#;

fn gateway(address: &str, shop_secret_ns: &str) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: nantian
  addresses: [{{type: IPAddress, value: "{address}"}}]
  listeners:
  - name: www
    protocol: HTTPS
    port: 8443
    hostname: www.example.com
    tls: {{certificateRefs: [{{name: www-cert}}]}}
  - name: shops
    protocol: HTTPS
    port: 8443
    hostname: "*.shop.example.com"
    tls: {{certificateRefs: [{{name: shop-cert, namespace: {shop_secret_ns}}}]}}
"#
    )
}

#[tokio::test]
async fn https_listeners_pick_certificates_by_sni_and_rotate_them_live() {
    let mut env = Env::new();
    let gw = env.gateway_ip(1);
    env.start_echo(1, "web-pod", "app").await;
    let www = certificate(&["www.example.com"]);
    let shop = certificate(&["*.shop.example.com"]);
    let mut config = format!("{}{}", yaml::GATEWAY_CLASS, gateway(&gw, "app"));
    config.push_str(&yaml::service("app", "web", &[env.backend_ip(1)]));
    config.push_str(ROUTE);
    env.write("base.yaml", &config);
    env.write("www.yaml", &tls_secret("app", "www-cert", &www));
    env.write("shop.yaml", &tls_secret("app", "shop-cert", &shop));
    env.start_controller();
    env.wait_ready().await;
    let addr = format!("{gw}:8443");

    // Each listener's certificate, chosen by SNI; the backend sees https.
    let reply = get_tls(&addr, "www.example.com", "www.example.com", &www.0)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let echo = reply.echo();
    assert_eq!(echo.pod, "web-pod");
    assert_eq!(echo.headers["X-Forwarded-Proto"], ["https"]);
    let reply = get_tls(&addr, "a.shop.example.com", "a.shop.example.com", &shop.0)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    // The other listener's certificate is not offered for this name.
    assert!(
        get_tls(&addr, "a.shop.example.com", "a.shop.example.com", &www.0)
            .await
            .is_err()
    );

    // SNI picked www's certificate; a Host of the other listener is misdirected.
    let reply = get_tls(&addr, "www.example.com", "a.shop.example.com", &www.0)
        .await
        .unwrap();
    assert_eq!(reply.status, 421);

    // A new certificate in the Secret is served on new connections, no restart.
    let rotated = certificate(&["www.example.com"]);
    env.write("www.yaml", &tls_secret("app", "www-cert", &rotated));
    wait_for(
        || async {
            get_tls(&addr, "www.example.com", "www.example.com", &rotated.0)
                .await
                .is_ok_and(|r| r.status == 200)
        },
        "the rotated certificate",
    )
    .await;
    assert!(
        get_tls(&addr, "www.example.com", "www.example.com", &www.0)
            .await
            .is_err(),
        "the old certificate is no longer offered"
    );
}

#[tokio::test]
async fn a_certificate_in_another_namespace_needs_a_reference_grant() {
    let mut env = Env::new();
    let gw = env.gateway_ip(1);
    env.start_echo(1, "web-pod", "app").await;
    let www = certificate(&["www.example.com"]);
    let shop = certificate(&["*.shop.example.com"]);
    let mut config = format!("{}{}", yaml::GATEWAY_CLASS, gateway(&gw, "certs"));
    config.push_str(&yaml::service("app", "web", &[env.backend_ip(1)]));
    config.push_str(ROUTE);
    config.push_str("---\napiVersion: v1\nkind: Namespace\nmetadata: {name: certs}\n");
    env.write("base.yaml", &config);
    env.write("www.yaml", &tls_secret("app", "www-cert", &www));
    env.write("shop.yaml", &tls_secret("certs", "shop-cert", &shop));
    env.start_controller();
    env.wait_ready().await;
    let addr = format!("{gw}:8443");

    let listener_refs = |s: serde_json::Value| {
        let items = s["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .find(|i| i["kind"] == "Gateway" && i["name"] == "gw")
            .and_then(|g| {
                g["status"]["listeners"]
                    .as_array()?
                    .iter()
                    .find(|l| l["name"] == "shops")?["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "ResolvedRefs")
                    .map(|c| (c["status"].clone(), c["reason"].clone()))
            })
    };
    let refs = listener_refs(env.status().await).unwrap();
    assert_eq!(refs, ("False".into(), "RefNotPermitted".into()));
    // The other listener is unaffected.
    let reply = get_tls(&addr, "www.example.com", "www.example.com", &www.0)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);

    env.write(
        "grant.yaml",
        r#"
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateways, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: app}]
  to: [{group: "", kind: Secret}]
"#,
    );
    wait_for(
        || async {
            get_tls(&addr, "a.shop.example.com", "a.shop.example.com", &shop.0)
                .await
                .is_ok_and(|r| r.status == 200)
        },
        "the shop listener served once granted",
    )
    .await;
    let refs = listener_refs(env.status().await).unwrap();
    assert_eq!(refs, ("True".into(), "ResolvedRefs".into()));
}

/// A CA and a client certificate it signed: (CA PEM, (client chain PEM, client key PEM)).
fn client_ca() -> (String, (String, String)) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client_params = rcgen::CertificateParams::new(vec!["client".to_string()]).unwrap();
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    (ca.pem(), (client.pem(), client_key.serialize_pem()))
}

fn validating_gateway(address: &str, mode: &str) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: nantian
  addresses: [{{type: IPAddress, value: "{address}"}}]
  tls:
    frontend:
      default:
        validation:
          mode: {mode}
          caCertificateRefs: [{{group: "", kind: ConfigMap, name: client-ca}}]
  listeners:
  - name: www
    protocol: HTTPS
    port: 8443
    hostname: www.example.com
    tls: {{certificateRefs: [{{name: www-cert}}]}}
"#
    )
}

#[tokio::test]
async fn client_certificates_are_checked_against_the_frontend_ca() {
    let mut env = Env::new();
    let gw = env.gateway_ip(1);
    env.start_echo(1, "web-pod", "app").await;
    let www = certificate(&["www.example.com"]);
    let (ca, client) = client_ca();
    let (_, stranger) = client_ca();
    let mut config = format!(
        "{}{}",
        yaml::GATEWAY_CLASS,
        yaml::service("app", "web", &[env.backend_ip(1)])
    );
    config.push_str(ROUTE);
    let indented: String = ca.lines().map(|l| format!("    {l}\n")).collect();
    config.push_str(&format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: client-ca, namespace: app}}\ndata:\n  ca.crt: |\n{indented}"
    ));
    env.write("base.yaml", &config);
    env.write("gateway.yaml", &validating_gateway(&gw, "AllowValidOnly"));
    env.write("www.yaml", &tls_secret("app", "www-cert", &www));
    env.start_controller();
    env.wait_ready().await;
    let addr = format!("{gw}:8443");
    let trusted = www.0.clone();
    let get = |client: Option<(String, String)>| {
        let (addr, trusted) = (addr.clone(), trusted.clone());
        async move {
            get_tls_as(
                &addr,
                "www.example.com",
                "www.example.com",
                &trusted,
                client.as_ref(),
            )
            .await
        }
    };

    assert_eq!(get(Some(client.clone())).await.unwrap().status, 200);
    assert!(get(None).await.is_err(), "no client certificate");
    assert!(
        get(Some(stranger.clone())).await.is_err(),
        "a certificate of another CA"
    );

    // AllowInsecureFallback lets both through (the backend decides).
    env.write(
        "gateway.yaml",
        &validating_gateway(&gw, "AllowInsecureFallback"),
    );
    wait_for(
        || async { get(None).await.is_ok_and(|r| r.status == 200) },
        "insecure fallback without a certificate",
    )
    .await;
    assert_eq!(get(Some(stranger.clone())).await.unwrap().status, 200);
    assert_eq!(get(Some(client.clone())).await.unwrap().status, 200);
}
