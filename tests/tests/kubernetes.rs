//! The Kubernetes test harness against a real etcd + kube-apiserver (`nantian_e2e::kube`):
//! the control plane comes up, serves the Gateway API CRDs with their validation, and
//! enforces RBAC for a ServiceAccount identity the way the controller will meet it.
//!
//! Skipped (loudly) without the binaries; failed instead under `CI`.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use nantian_e2e::kube::{apply_yaml, apply_yaml_in, shared_or_skip};

fn gateway_api(kind: &str, version: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        version,
        kind,
    ))
}

fn api_status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(e) => Some(e.code),
        _ => None,
    }
}

#[tokio::test]
async fn control_plane_is_ready_and_admin_can_write() {
    let Some(kube) = shared_or_skip("control_plane_is_ready_and_admin_can_write").await else {
        return;
    };
    assert!(kube.server_url().starts_with("https://127.0.0.1:"));
    assert!(kube.kubeconfig().is_file());
    let client = kube.client().await.unwrap();

    let readyz = client
        .request_text(http::Request::get("/readyz").body(Vec::new()).unwrap())
        .await
        .expect("GET /readyz is 200");
    assert_eq!(readyz.trim(), "ok");
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1", "{version:?}");

    // The admin certificate (group system:masters) may write; the namespace is listed back.
    let ns = kube.create_namespace("ready").await.unwrap();
    let names: Vec<_> = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&ns), "{ns} not in {names:?}");
}

#[tokio::test]
async fn gateway_api_crds_are_installed_and_validate() {
    let Some(kube) = shared_or_skip("gateway_api_crds_are_installed_and_validate").await else {
        return;
    };
    let client = kube.client().await.unwrap();

    // Every CRD of the experimental channel, Established.
    let crds = Api::<CustomResourceDefinition>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut established: Vec<_> = crds
        .items
        .iter()
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        })
        .map(|c| c.spec.names.kind.clone())
        .collect();
    established.sort();
    for kind in [
        "BackendTLSPolicy",
        "GRPCRoute",
        "Gateway",
        "GatewayClass",
        "HTTPRoute",
        "ListenerSet",
        "ReferenceGrant",
        "TCPRoute",
        "TLSRoute",
        "UDPRoute",
    ] {
        assert!(
            established.iter().any(|k| k == kind),
            "{kind} CRD not established: {established:?}"
        );
    }

    // The resources are served.
    Api::<DynamicObject>::all_with(client.clone(), &gateway_api("GatewayClass", "v1"))
        .list(&ListParams::default())
        .await
        .expect("list GatewayClasses");

    let ns = kube.create_namespace("crd-validation").await.unwrap();
    let routes: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &gateway_api("HTTPRoute", "v1"));
    let route = |name: &str, path_type: &str| -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": { "name": name },
            "spec": {
                "parentRefs": [{ "name": "gw" }],
                "rules": [{
                    "matches": [{ "path": { "type": path_type, "value": "/x" } }],
                    "backendRefs": [{ "name": "svc", "port": 80 }]
                }]
            }
        }))
        .unwrap()
    };

    // A valid route is stored (so the rejection below is about the one bad field).
    routes
        .create(&PostParams::default(), &route("good", "PathPrefix"))
        .await
        .expect("a valid HTTPRoute is accepted");
    // The CRD's OpenAPI schema (enum) refuses an unknown path match type: 422 Invalid.
    let err = routes
        .create(&PostParams::default(), &route("bad", "Sideways"))
        .await
        .expect_err("an HTTPRoute with path type Sideways is rejected");
    assert_eq!(api_status(&err), Some(422), "{err:?}");
    assert!(err.to_string().contains("Sideways"), "{err}");
    // So is one the CEL rules of the CRD refuse: a PathPrefix that does not start with '/'.
    let mut bad_prefix = route("bad-prefix", "PathPrefix");
    bad_prefix.data["spec"]["rules"][0]["matches"][0]["path"]["value"] = "no-slash".into();
    let err = routes
        .create(&PostParams::default(), &bad_prefix)
        .await
        .expect_err("a PathPrefix without a leading slash is rejected");
    assert_eq!(api_status(&err), Some(422), "{err:?}");

    // apply_yaml_in: namespaced documents without a namespace land in the one given.
    let applied = apply_yaml_in(
        &client,
        &ns,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\ndata:\n  a: \"1\"\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  \
         name: harness-test\nspec:\n  controllerName: example.com/harness-test\n",
    )
    .await
    .unwrap();
    assert_eq!(applied.len(), 2);
    assert_eq!(applied[0].metadata.namespace.as_deref(), Some(ns.as_str()));
    assert_eq!(applied[1].metadata.namespace, None);
}

#[tokio::test]
async fn service_account_needs_rbac_to_list_gateways() {
    let Some(kube) = shared_or_skip("service_account_needs_rbac_to_list_gateways").await else {
        return;
    };
    let ns = kube.create_namespace("rbac").await.unwrap();
    let sa = kube
        .service_account_client(&ns, "controller")
        .await
        .unwrap();
    let gateways: Api<DynamicObject> = Api::all_with(sa.clone(), &gateway_api("Gateway", "v1"));

    // Authenticated (not 401) but not authorized.
    let err = gateways
        .list(&ListParams::default())
        .await
        .expect_err("a ServiceAccount without bindings may not list Gateways");
    assert_eq!(api_status(&err), Some(403), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("system:serviceaccount:{ns}:controller")),
        "{err}"
    );

    // Grant it through a ClusterRole bound to the ServiceAccount (as a chart would).
    let admin = kube.client().await.unwrap();
    apply_yaml(
        &admin,
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {ns}-gateway-reader
rules:
- apiGroups: [gateway.networking.k8s.io]
  resources: [gateways]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {ns}-gateway-reader
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {ns}-gateway-reader
subjects:
- kind: ServiceAccount
  name: controller
  namespace: {ns}
"
        ),
    )
    .await
    .unwrap();

    // The RBAC authorizer reads bindings from an informer: allow a moment.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match gateways.list(&ListParams::default()).await {
            Ok(_) => break,
            Err(e) if api_status(&e) == Some(403) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("still not allowed after the binding: {e:?}"),
        }
    }
    // Only what was granted: HTTPRoutes stay forbidden.
    let routes: Api<DynamicObject> = Api::all_with(sa, &gateway_api("HTTPRoute", "v1"));
    let err = routes
        .list(&ListParams::default())
        .await
        .expect_err("HTTPRoutes were not granted");
    assert_eq!(api_status(&err), Some(403), "{err:?}");
}
