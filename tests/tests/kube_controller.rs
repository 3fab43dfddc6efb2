//! The controller in Kubernetes mode against a real kube-apiserver + etcd: statuses
//! written back, data planes provisioned and cleaned up, a real `nantian-host` connected
//! over xDS forwarding to echo pods named by hand-made EndpointSlices, and two replicas
//! electing a leader.
//!
//! Each test runs its own controller with its own `controllerName` and GatewayClass, in
//! its own namespaces, so the tests share one API server without seeing each other.

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use nantian_e2e::harness::tls::{certificate, get_tls, tls_secret};
use nantian_e2e::harness::{Env, get, send, wait_for};
use nantian_e2e::kube::{KubeControlPlane, apply_yaml, apply_yaml_in, shared_or_skip};
use nantian_e2e::kube_support::{
    Controller, Host, answered_by, backend_ip, class_names, condition, gateway_class,
    gateway_programmed, gateways, http_routes, object, resource, route_condition, service,
    set_available_replicas, wait_route,
};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_provisioning_and_endpoint_churn_reach_the_host() {
    let Some(kube) =
        shared_or_skip("statuses_provisioning_and_endpoint_churn_reach_the_host").await
    else {
        return;
    };
    let client = kube.client().await.unwrap();
    let ns = kube.create_namespace("k8s-gateway").await.unwrap();
    let (controller_name, class) = class_names(&ns);
    let mut env = Env::new();
    let ip = backend_ip();
    let (port_a, port_b) = (env.own_port(0), env.own_port(1));
    env.start_echo_at(&format!("{ip}:{port_a}"), "echo-a", &ns)
        .await;
    env.start_echo_at(&format!("{ip}:{port_b}"), "echo-b", &ns)
        .await;
    let bind = env.gateway_ip(1);

    let config = format!(
        r#"{class_yaml}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web, namespace: {ns}}}
spec:
  gatewayClassName: {class}
  infrastructure:
    labels: {{team: blue}}
    annotations: {{cost-center: "42"}}
  listeners:
  - {{name: http, port: 8080, protocol: HTTP}}
  - {{name: sctp, port: 9000, protocol: SCTP}}
{service}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: ok, namespace: {ns}}}
spec:
  parentRefs: [{{name: web, sectionName: http}}]
  rules:
  - backendRefs: [{{name: echo, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: missing, namespace: {ns}}}
spec:
  parentRefs: [{{name: web, sectionName: http}}]
  hostnames: [missing.example]
  rules:
  - backendRefs: [{{name: nope, port: 80}}]
"#,
        class_yaml = gateway_class(&class, &controller_name),
        service = service(&ns, "echo", &ip, port_a),
    );
    apply_yaml(&client, &config).await.unwrap();
    let controller = Controller::start(kube, &env, 90, &ns, &controller_name, &bind);
    let _host = Host::start(&controller, &format!("{ns}/web"), &format!("{bind}:15000"));

    // Routes: valid and with a missing backend, each with the spec's reason.
    wait_route(
        &client,
        &ns,
        "ok",
        &controller_name,
        "Accepted",
        ("True", "Accepted"),
    )
    .await;
    wait_route(
        &client,
        &ns,
        "ok",
        &controller_name,
        "ResolvedRefs",
        ("True", "ResolvedRefs"),
    )
    .await;
    wait_route(
        &client,
        &ns,
        "missing",
        &controller_name,
        "ResolvedRefs",
        ("False", "BackendNotFound"),
    )
    .await;
    // The problem is also a Warning event on the route, where `kubectl describe` shows it.
    let events = resource("events.k8s.io", "v1", "Event", "events");
    wait_for(
        || async {
            Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &events)
                .list(&Default::default())
                .await
                .is_ok_and(|list| {
                    list.items.iter().any(|e| {
                        e.data["regarding"]["kind"] == "HTTPRoute"
                            && e.data["regarding"]["name"] == "missing"
                            && e.data["type"] == "Warning"
                            && e.data["reason"] == "BackendNotFound"
                    })
                })
        },
        "a Warning event BackendNotFound on HTTPRoute missing",
    )
    .await;

    // The data plane: a Deployment and a Service, owned by the Gateway, carrying its
    // infrastructure labels and annotations.
    let deployments = resource("apps", "v1", "Deployment", "deployments");
    let services = resource("", "v1", "Service", "services");
    let gw = object(&client, &gateways(), &ns, "web").await.unwrap();
    wait_for(
        || async {
            object(&client, &services, &ns, "nantian-web")
                .await
                .is_some()
                && object(&client, &deployments, &ns, "nantian-web")
                    .await
                    .is_some()
        },
        "the Gateway's Deployment and Service",
    )
    .await;
    let provisioned = object(&client, &services, &ns, "nantian-web").await;
    let deployment = object(&client, &deployments, &ns, "nantian-web")
        .await
        .unwrap();
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Gateway", gw.metadata.uid.as_deref().unwrap())
    );
    for meta in [
        &deployment.metadata,
        &provisioned.as_ref().unwrap().metadata,
    ] {
        assert_eq!(meta.labels.as_ref().unwrap()["team"], "blue");
        assert_eq!(meta.annotations.as_ref().unwrap()["cost-center"], "42");
    }
    let template_labels = &deployment.data["spec"]["template"]["metadata"]["labels"];
    assert_eq!(template_labels["team"], "blue");
    let accounts = resource("", "v1", "ServiceAccount", "serviceaccounts");
    let account = object(&client, &accounts, &ns, "nantian-web")
        .await
        .expect("the hosts' ServiceAccount");
    assert_eq!(account.metadata.labels.as_ref().unwrap()["team"], "blue");
    assert_eq!(account.data["automountServiceAccountToken"], false);
    let cluster_ip = provisioned.unwrap().data["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();

    // Programmed waits for a pod of the Deployment to be available (no kubelet runs
    // here: the test sets the Deployment's status), and follows it when it goes away.
    let programmed = || gateway_programmed(&client, &ns, "web");
    let no_resources = Some(("False".to_string(), "NoResources".to_string()));
    let is_programmed = Some(("True".to_string(), "Programmed".to_string()));
    wait_for(
        || async { programmed().await == no_resources },
        "Gateway Programmed=False/NoResources before a pod is available",
    )
    .await;
    set_available_replicas(&client, &ns, "nantian-web", 1).await;
    wait_for(
        || async { programmed().await == is_programmed },
        "Gateway Programmed once a pod is available",
    )
    .await;
    set_available_replicas(&client, &ns, "nantian-web", 0).await;
    wait_for(
        || async { programmed().await == no_resources },
        "Gateway not Programmed once no pod is available",
    )
    .await;
    set_available_replicas(&client, &ns, "nantian-web", 1).await;

    // The Gateway: Accepted with one listener not valid, Programmed, its address the
    // Service's, and attachedRoutes counted per listener.
    wait_for(
        || async {
            let Some(gw) = object(&client, &gateways(), &ns, "web").await else {
                return false;
            };
            let status = &gw.data["status"];
            let listeners = status["listeners"].as_array().cloned().unwrap_or_default();
            let listener = |name: &str| listeners.iter().find(|l| l["name"] == name).cloned();
            condition(&status["conditions"], "Accepted")
                == Some(("True".into(), "ListenersNotValid".into()))
                && condition(&status["conditions"], "Programmed")
                    == Some(("True".into(), "Programmed".into()))
                && status["addresses"][0]["value"] == cluster_ip.as_str()
                && listener("http").is_some_and(|l| l["attachedRoutes"] == 2)
                && listener("sctp").is_some_and(|l| {
                    condition(&l["conditions"], "Accepted")
                        == Some(("False".into(), "UnsupportedProtocol".into()))
                })
        },
        "Gateway status (Accepted/ListenersNotValid, Programmed, address, listeners)",
    )
    .await;

    // Traffic through the host, and an EndpointSlice change moving it to the other pod.
    let addr = format!("{bind}:8080");
    wait_for(
        || async { answered_by(&addr, "any.example", "/").await.as_deref() == Some("echo-a") },
        "traffic to echo-a",
    )
    .await;
    // ...which changes no status, so none is written (resourceVersion stays).
    let untouched = object(&client, &http_routes(), &ns, "missing")
        .await
        .unwrap()
        .metadata
        .resource_version;
    apply_yaml(&client, &service(&ns, "echo", &ip, port_b))
        .await
        .unwrap();
    wait_for(
        || async { answered_by(&addr, "any.example", "/").await.as_deref() == Some("echo-b") },
        "traffic moved to echo-b by the EndpointSlice edit",
    )
    .await;
    assert_eq!(
        object(&client, &http_routes(), &ns, "missing")
            .await
            .unwrap()
            .metadata
            .resource_version,
        untouched,
        "a re-translation that changes no status writes none"
    );

    // A generation bump: the new rule is served and observedGeneration follows.
    let before = route_condition(&client, &ns, "ok", &controller_name, "Accepted")
        .await
        .unwrap()
        .2;
    apply_yaml(
        &client,
        &format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: ok, namespace: {ns}}}
spec:
  parentRefs: [{{name: web, sectionName: http}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /v2}}}}]
    backendRefs: [{{name: echo, port: 80}}]
"#
        ),
    )
    .await
    .unwrap();
    wait_for(
        || async {
            route_condition(&client, &ns, "ok", &controller_name, "Accepted")
                .await
                .is_some_and(|(s, _, generation)| s == "True" && generation > before)
        },
        "observedGeneration of the edited route",
    )
    .await;
    wait_for(
        || async {
            send(get(&addr, "any.example", "/"))
                .await
                .is_ok_and(|r| r.status == 404)
                && answered_by(&addr, "any.example", "/v2/x").await.as_deref() == Some("echo-b")
        },
        "the edited route served",
    )
    .await;

    // Deleting the Gateway removes its data plane (no garbage collector runs here: the
    // controller deletes what it provisioned).
    Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &gateways())
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        || async {
            object(&client, &deployments, &ns, "nantian-web")
                .await
                .is_none()
                && object(&client, &services, &ns, "nantian-web")
                    .await
                    .is_none()
                && object(&client, &accounts, &ns, "nantian-web")
                    .await
                    .is_none()
        },
        "the deleted Gateway's Deployment, Service and ServiceAccount removed",
    )
    .await;
    drop(controller);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_grants_and_secret_rotation_apply_live() {
    let Some(kube) = shared_or_skip("reference_grants_and_secret_rotation_apply_live").await else {
        return;
    };
    let client = kube.client().await.unwrap();
    let ns = kube.create_namespace("k8s-routes").await.unwrap();
    let backends = kube.create_namespace("k8s-backends").await.unwrap();
    let (controller_name, class) = class_names(&ns);
    let mut env = Env::new();
    let ip = backend_ip();
    let port = env.own_port(0);
    env.start_echo_at(&format!("{ip}:{port}"), "echo-x", &backends)
        .await;
    let bind = env.gateway_ip(1);
    let first = certificate(&["shop.example"]);
    let second = certificate(&["shop.example"]);

    let config = format!(
        r#"{class_yaml}{secret}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web, namespace: {ns}}}
spec:
  gatewayClassName: {class}
  listeners:
  - name: https
    port: 8443
    protocol: HTTPS
    hostname: shop.example
    tls: {{certificateRefs: [{{name: shop-cert}}]}}
{service}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: cross, namespace: {ns}}}
spec:
  parentRefs: [{{name: web}}]
  rules:
  - backendRefs: [{{name: echo, namespace: {backends}, port: 80}}]
"#,
        class_yaml = gateway_class(&class, &controller_name),
        secret = tls_secret(&ns, "shop-cert", &first),
        service = service(&backends, "echo", &ip, port),
    );
    apply_yaml(&client, &config).await.unwrap();
    let controller = Controller::start(kube, &env, 90, &ns, &controller_name, &bind);
    let _host = Host::start(&controller, &format!("{ns}/web"), &format!("{bind}:15000"));
    let addr = format!("{bind}:8443");

    // No ReferenceGrant: the backend is refused.
    wait_route(
        &client,
        &ns,
        "cross",
        &controller_name,
        "ResolvedRefs",
        ("False", "RefNotPermitted"),
    )
    .await;
    wait_for(
        || async {
            get_tls(&addr, "shop.example", "shop.example", &first.0)
                .await
                .is_ok_and(|r| r.status == 500)
        },
        "500 from a route whose only backend is not permitted",
    )
    .await;

    // The grant makes it resolve and serve; removing it takes that back.
    let grant = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: allow-routes, namespace: {backends}}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {ns}}}]
  to: [{{group: "", kind: Service}}]
"#
    );
    apply_yaml(&client, &grant).await.unwrap();
    wait_route(
        &client,
        &ns,
        "cross",
        &controller_name,
        "ResolvedRefs",
        ("True", "ResolvedRefs"),
    )
    .await;
    wait_for(
        || async {
            get_tls(&addr, "shop.example", "shop.example", &first.0)
                .await
                .is_ok_and(|r| r.status == 200 && r.echo().pod == "echo-x")
        },
        "traffic to the granted backend",
    )
    .await;
    let grants = resource(
        "gateway.networking.k8s.io",
        "v1beta1",
        "ReferenceGrant",
        "referencegrants",
    );
    Api::<DynamicObject>::namespaced_with(client.clone(), &backends, &grants)
        .delete("allow-routes", &DeleteParams::default())
        .await
        .unwrap();
    wait_route(
        &client,
        &ns,
        "cross",
        &controller_name,
        "ResolvedRefs",
        ("False", "RefNotPermitted"),
    )
    .await;

    // Rotating the Secret's certificate: the host presents the new one, no restart.
    apply_yaml(&client, &grant).await.unwrap();
    apply_yaml(&client, &tls_secret(&ns, "shop-cert", &second))
        .await
        .unwrap();
    wait_for(
        || async {
            get_tls(&addr, "shop.example", "shop.example", &second.0)
                .await
                .is_ok_and(|r| r.status == 200)
        },
        "the rotated certificate served",
    )
    .await;
    assert!(
        get_tls(&addr, "shop.example", "shop.example", &first.0)
            .await
            .is_err(),
        "the old certificate is no longer presented"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_writes_status_and_another_takes_over() {
    let Some(kube) = shared_or_skip("one_leader_writes_status_and_another_takes_over").await else {
        return;
    };
    let client = kube.client().await.unwrap();
    let ns = kube.create_namespace("k8s-leader").await.unwrap();
    let (controller_name, class) = class_names(&ns);
    let env = Env::new();
    let bind = env.gateway_ip(1);
    let route = |name: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: web}}]\n  rules:\n  - backendRefs: [{{name: echo, port: 80}}]\n"
        )
    };
    let config = format!(
        "{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  gatewayClassName: {class}\n  listeners: [{{name: http, port: 8080, protocol: HTTP}}]\n{}---\n{}",
        gateway_class(&class, &controller_name),
        service(&ns, "echo", &backend_ip(), env.own_port(0)),
        route("first"),
    );
    apply_yaml(&client, &config).await.unwrap();
    let mut replicas = vec![
        Controller::start(kube, &env, 90, &ns, &controller_name, &bind),
        Controller::start(kube, &env, 91, &ns, &controller_name, &bind),
    ];
    wait_route(
        &client,
        &ns,
        "first",
        &controller_name,
        "Accepted",
        ("True", "Accepted"),
    )
    .await;

    // Exactly one replica leads, and the Lease names it.
    let leader = async |replicas: &[Controller]| -> Option<usize> {
        let mut leading = Vec::new();
        for (i, r) in replicas.iter().enumerate() {
            match r.leading().await {
                Some(true) => leading.push(i),
                Some(false) => {}
                None => return None,
            }
        }
        (leading.len() == 1).then(|| leading[0])
    };
    wait_for(
        || async { leader(&replicas).await.is_some() },
        "exactly one leading replica",
    )
    .await;
    let first_leader = leader(&replicas).await;
    let leases = resource("coordination.k8s.io", "v1", "Lease", "leases");
    let holder = async || {
        object(&client, &leases, &ns, "nantian-controller")
            .await
            .and_then(|l| {
                l.data["spec"]["holderIdentity"]
                    .as_str()
                    .map(str::to_string)
            })
    };
    let first_leader = first_leader.unwrap();
    let slot = [90, 91][first_leader];
    assert_eq!(
        holder().await.as_deref(),
        Some(format!("replica-{slot}").as_str())
    );

    // Kill the leader outright: the follower takes the Lease once it expires and writes
    // the status of a route created after the kill.
    replicas[first_leader].signal("-KILL");
    let survivor = 1 - first_leader;
    apply_yaml(&client, &route("second")).await.unwrap();
    wait_route(
        &client,
        &ns,
        "second",
        &controller_name,
        "Accepted",
        ("True", "Accepted"),
    )
    .await;
    assert_eq!(replicas[survivor].leading().await, Some(true));
    let survivor_slot = [90, 91][survivor];
    assert_eq!(
        holder().await.as_deref(),
        Some(format!("replica-{survivor_slot}").as_str())
    );

    // A graceful stop hands over at once: a new replica leads after the survivor's SIGTERM.
    replicas.push(Controller::start(
        kube,
        &env,
        92,
        &ns,
        &controller_name,
        &bind,
    ));
    wait_for(
        || async { replicas[2].leading().await == Some(false) },
        "the new replica following",
    )
    .await;
    replicas[survivor].signal("-TERM");
    wait_for(
        || async { holder().await.as_deref() == Some("replica-92") },
        "the Lease handed to the new replica",
    )
    .await;
    apply_yaml(&client, &route("third")).await.unwrap();
    wait_route(
        &client,
        &ns,
        "third",
        &controller_name,
        "Accepted",
        ("True", "Accepted"),
    )
    .await;
}

/// A namespace of its own with a Gateway and a route whose only backend does not exist
/// (so its `ResolvedRefs` is False), for a controller of its own class.
struct UnresolvedRoute {
    client: Client,
    ns: String,
    controller_name: String,
    env: Env,
    bind: String,
}

impl UnresolvedRoute {
    async fn apply(kube: &KubeControlPlane, namespace: &str) -> Self {
        let client = kube.client().await.unwrap();
        let ns = kube.create_namespace(namespace).await.unwrap();
        let (controller_name, class) = class_names(&ns);
        let env = Env::new();
        let bind = env.gateway_ip(1);
        let config = format!(
            r#"{class_yaml}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web, namespace: {ns}}}
spec:
  gatewayClassName: {class}
  listeners:
  - {{name: http, port: 8080, protocol: HTTP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: route, namespace: {ns}}}
spec:
  parentRefs: [{{name: web}}]
  rules:
  - backendRefs: [{{name: nope, port: 80}}]
"#,
            class_yaml = gateway_class(&class, &controller_name),
        );
        apply_yaml(&client, &config).await.unwrap();
        UnresolvedRoute {
            client,
            ns,
            controller_name,
            env,
            bind,
        }
    }
}

/// Patches a route's `status.parents` as another writer would; `edit` gets the live list.
async fn patch_route_parents(
    client: &Client,
    ns: &str,
    route: &str,
    edit: impl FnOnce(&mut Value),
) -> DynamicObject {
    let mut parents = object(client, &http_routes(), ns, route)
        .await
        .unwrap()
        .data["status"]["parents"]
        .clone();
    edit(&mut parents);
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &http_routes())
        .patch_status(
            route,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"parents": parents}})),
        )
        .await
        .unwrap()
}

/// The translator reads no status, so a watch event that changes only an object's status
/// (most often our own status write coming back) must not cost a translation; a spec
/// change must. The controller's `translations` counter shows which happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_only_changes_are_not_translated_again_but_spec_changes_are() {
    let Some(kube) =
        shared_or_skip("status_only_changes_are_not_translated_again_but_spec_changes_are").await
    else {
        return;
    };
    let UnresolvedRoute {
        client,
        ns,
        controller_name,
        env,
        bind,
    } = UnresolvedRoute::apply(kube, "k8s-status-only").await;
    // The first periodic resync (a full translation) comes 60 s after the start; every
    // check below is made well before it.
    let controller = Controller::start(kube, &env, 90, &ns, &controller_name, &bind);
    wait_route(
        &client,
        &ns,
        "route",
        &controller_name,
        "ResolvedRefs",
        ("False", "BackendNotFound"),
    )
    .await;
    // Settled: our own status writes have come back through the watch by now.
    let mut settled = controller.translations().await.unwrap();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let now = controller.translations().await.unwrap();
        if now == settled {
            break;
        }
        settled = now;
    }

    // Another controller adds its own parent entry: a status-only change.
    patch_route_parents(&client, &ns, "route", |parents| {
        parents.as_array_mut().unwrap().push(serde_json::json!({
            "parentRef": {"name": "elsewhere"},
            "controllerName": "example.com/other-controller",
            "conditions": [{
                "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1
            }]
        }))
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        controller.translations().await.unwrap(),
        settled,
        "a status-only change was translated again"
    );
    let status = &object(&client, &http_routes(), &ns, "route")
        .await
        .unwrap()
        .data["status"];
    let owners: Vec<&str> = status["parents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["controllerName"].as_str())
        .collect();
    assert!(owners.contains(&controller_name.as_str()), "{status}");
    assert!(owners.contains(&"example.com/other-controller"), "{status}");

    // A spec change is translated.
    Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &http_routes())
        .patch(
            "route",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"hostnames": ["changed.example"]}})),
        )
        .await
        .unwrap();
    wait_for(
        || async { controller.translations().await.unwrap() > settled },
        "a translation of the spec change",
    )
    .await;
}

/// Applies `yaml` and returns the API server's refusal message, if it refused.
async fn refusal(client: &Client, namespace: &str, yaml: &str) -> Option<String> {
    apply_yaml_in(client, namespace, yaml)
        .await
        .err()
        .map(|e| format!("{e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nantian_crds_stop_bad_objects_at_the_api_server() {
    let Some(kube) = shared_or_skip("nantian_crds_stop_bad_objects_at_the_api_server").await else {
        return;
    };
    let client = kube.client().await.unwrap();
    let ns = kube.create_namespace("k8s-crds").await.unwrap();
    let ai = |spec: &str| {
        format!(
            "apiVersion: gateway.nantian.dev/v1alpha1\nkind: AIService\nmetadata: {{name: llm}}\nspec:\n{spec}"
        )
    };
    let good = ai(r#"  backends:
  - {name: openai, provider: openai, endpoint: "https://api.openai.com/v1", models: [gpt-4o]}
  - {name: local, provider: ollama, endpoint: "http://ollama:11434"}
  routing: [{model: "gpt-4*", backends: [openai]}]
  fallback: [local]
"#);
    assert_eq!(refusal(&client, &ns, &good).await, None);
    let stored = object(
        &client,
        &resource("gateway.nantian.dev", "v1alpha1", "AIService", "aiservices"),
        &ns,
        "llm",
    )
    .await
    .expect("the valid AIService is stored");
    // Defaults are applied by the API server.
    assert_eq!(stored.data["spec"]["backends"][0]["weight"], 1);

    for (what, yaml, expect) in [
        (
            "an unknown provider",
            ai("  backends: [{name: a, provider: bard, endpoint: \"https://x\"}]\n"),
            "Unsupported value",
        ),
        (
            "a fallback naming no backend",
            ai("  backends: [{name: a, provider: openai, endpoint: \"https://x\"}]\n  fallback: [b]\n"),
            "fallback",
        ),
        (
            "a weight above the maximum",
            ai("  backends: [{name: a, provider: openai, endpoint: \"https://x\", weight: 2000000}]\n"),
            "weight",
        ),
        (
            "a TokenPolicy without limits",
            "apiVersion: gateway.nantian.dev/v1alpha1\nkind: TokenPolicy\nmetadata: {name: t}\nspec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat}]\n  limits: {}\n  key: {type: apiKey}\n".to_string(),
            "limits",
        ),
        (
            "a WasmPlugin with a url and no sha256",
            "apiVersion: gateway.nantian.dev/v1alpha1\nkind: WasmPlugin\nmetadata: {name: w}\nspec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat}]\n  url: \"https://plugins.example/p.wasm\"\n".to_string(),
            "sha256",
        ),
    ] {
        let message = refusal(&client, &ns, &yaml)
            .await
            .unwrap_or_else(|| panic!("{what} was accepted"));
        assert!(message.contains("422") || message.contains("Invalid"), "{what}: {message}");
        assert!(message.contains(expect), "{what}: expected {expect:?} in {message}");
    }
}

/// Statuses are compared with the live ones again at every resync, so one someone else
/// overwrote comes back: a status-only change is not translated, and the writer remembers
/// having written this status, so only the resync can restore it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_someone_else_overwrote_is_put_back_at_the_resync() {
    let Some(kube) =
        shared_or_skip("a_status_someone_else_overwrote_is_put_back_at_the_resync").await
    else {
        return;
    };
    let UnresolvedRoute {
        client,
        ns,
        controller_name,
        env,
        bind,
    } = UnresolvedRoute::apply(kube, "k8s-resync").await;
    // A resync every 2 s instead of 60: each wait below allows 30 s.
    let _controller = Controller::start_with(
        kube,
        &env,
        90,
        &ns,
        &controller_name,
        &bind,
        None,
        &["--resync-seconds".to_string(), "2".to_string()],
    );
    wait_route(
        &client,
        &ns,
        "route",
        &controller_name,
        "ResolvedRefs",
        ("False", "BackendNotFound"),
    )
    .await;

    // Someone rewrites our own entry's condition.
    let tampered = patch_route_parents(&client, &ns, "route", |parents| {
        for parent in parents.as_array_mut().unwrap() {
            for condition in parent["conditions"].as_array_mut().unwrap() {
                if condition["type"] == "ResolvedRefs" {
                    condition["status"] = "True".into();
                    condition["reason"] = "ResolvedRefs".into();
                }
            }
        }
    })
    .await;
    let ours = tampered.data["status"]["parents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["controllerName"] == controller_name.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        condition(&ours["conditions"], "ResolvedRefs"),
        Some(("True".into(), "ResolvedRefs".into())),
        "the overwrite took"
    );

    // The resync writes ours back.
    wait_route(
        &client,
        &ns,
        "route",
        &controller_name,
        "ResolvedRefs",
        ("False", "BackendNotFound"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_rbac_is_all_the_controller_needs() {
    let Some(kube) = shared_or_skip("the_generated_rbac_is_all_the_controller_needs").await else {
        return;
    };
    let client = kube.client().await.unwrap();
    let ns = kube.create_namespace("k8s-rbac").await.unwrap();
    let (controller_name, class) = class_names(&ns);
    let env = Env::new();
    let bind = env.gateway_ip(1);

    // The chart's generated roles, bound to a service account of the controller's own.
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/nantian/templates");
    let cluster_role = std::fs::read_to_string(chart.join("clusterrole.yaml"))
        .unwrap()
        .replace(
            "name: nantian-controller",
            &format!("name: nantian-controller-{ns}"),
        );
    let role = std::fs::read_to_string(chart.join("role.yaml")).unwrap();
    apply_yaml(&client, &cluster_role).await.unwrap();
    apply_yaml_in(&client, &ns, &role).await.unwrap();
    let role_name = serde_yaml::from_str::<Value>(&role).unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    apply_yaml_in(
        &client,
        &ns,
        &format!(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: nantian-controller-{ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: nantian-controller-{ns}}}
subjects: [{{kind: ServiceAccount, name: controller, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: nantian-controller, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {role_name}}}
subjects: [{{kind: ServiceAccount, name: controller, namespace: {ns}}}]
"#
        ),
    )
    .await
    .unwrap();
    let kubeconfig = kube
        .service_account_kubeconfig(&ns, "controller")
        .await
        .unwrap();
    apply_yaml(
        &client,
        &format!(
            "{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  gatewayClassName: {class}\n  listeners: [{{name: http, port: 8080, protocol: HTTP}}]\n{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: web}}]\n  rules:\n  - backendRefs: [{{name: echo, port: 80}}]\n",
            gateway_class(&class, &controller_name),
            service(&ns, "echo", &backend_ip(), env.own_port(0)),
        ),
    )
    .await
    .unwrap();

    // The controller as that service account: it watches, elects itself, provisions and
    // writes every status.
    let mut controller = Controller::start_as(
        kube,
        &env,
        90,
        &ns,
        &controller_name,
        &bind,
        Some(&kubeconfig),
    );
    wait_route(
        &client,
        &ns,
        "r",
        &controller_name,
        "Accepted",
        ("True", "Accepted"),
    )
    .await;
    set_available_replicas(&client, &ns, "nantian-web", 1).await;
    wait_for(
        || async {
            let gw = object(&client, &gateways(), &ns, "web").await;
            gw.is_some_and(|gw| {
                condition(&gw.data["status"]["conditions"], "Programmed")
                    == Some(("True".into(), "Programmed".into()))
            })
        },
        "the Gateway programmed by a controller holding only the generated roles",
    )
    .await;
    let classes = resource(
        "gateway.networking.k8s.io",
        "v1",
        "GatewayClass",
        "gatewayclasses",
    );
    wait_for(
        || async {
            Api::<DynamicObject>::all_with(client.clone(), &classes)
                .get_opt(&class)
                .await
                .ok()
                .flatten()
                .is_some_and(|c| {
                    condition(&c.data["status"]["conditions"], "Accepted")
                        == Some(("True".into(), "Accepted".into()))
                })
        },
        "the GatewayClass accepted",
    )
    .await;
    assert!(
        controller.child.try_wait().unwrap().is_none(),
        "the controller is still running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_is_mutual_tls_and_each_host_gets_only_its_gateway() {
    let Some(kube) = shared_or_skip("xds_is_mutual_tls_and_each_host_gets_only_its_gateway").await
    else {
        return;
    };
    let client = kube.client().await.unwrap();
    let ns = kube.create_namespace("k8s-mtls").await.unwrap();
    let (controller_name, class) = class_names(&ns);
    let mut env = Env::new();
    let ip = backend_ip();
    let port = env.own_port(0);
    env.start_echo_at(&format!("{ip}:{port}"), "echo-m", &ns)
        .await;
    let bind = env.gateway_ip(1);
    let gateway = |name: &str, listener_port: u16| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  gatewayClassName: {class}\n  listeners: [{{name: http, port: {listener_port}, protocol: HTTP}}]\n"
        )
    };
    apply_yaml(
        &client,
        &format!(
            "{}{}{}{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: web}}]\n  rules:\n  - backendRefs: [{{name: echo, port: 80}}]\n",
            gateway_class(&class, &controller_name),
            gateway("web", 8080),
            gateway("other", 8081),
            service(&ns, "echo", &ip, port),
        ),
    )
    .await
    .unwrap();
    let xds_ip = env.gateway_ip(90);
    let controller = Controller::start_with(
        kube,
        &env,
        90,
        &ns,
        &controller_name,
        &bind,
        None,
        &[
            "--xds-tls-secret".into(),
            "xds-tls".into(),
            "--xds-tls-san".into(),
            xds_ip.clone(),
        ],
    );

    // The provisioner issues each Gateway's hosts a client certificate in a Secret.
    let secrets = resource("", "v1", "Secret", "secrets");
    wait_for(
        || async {
            object(&client, &secrets, &ns, "nantian-web-xds")
                .await
                .is_some()
        },
        "the web Gateway's xDS client certificate Secret",
    )
    .await;
    let secret = object(&client, &secrets, &ns, "nantian-web-xds")
        .await
        .unwrap();
    let tls_dir = tempfile::tempdir().unwrap();
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        let data = secret.data["data"][key].as_str().unwrap();
        std::fs::write(tls_dir.path().join(key), base64_decode(data)).unwrap();
    }

    // With it, the web host gets its config and serves traffic.
    let logs = tempfile::tempdir().unwrap();
    let _web = Host::start_tls(
        &controller,
        &format!("{ns}/web"),
        &format!("{bind}:15000"),
        tls_dir.path(),
        &logs.path().join("web.log"),
    );
    wait_for(
        || async {
            answered_by(&format!("{bind}:8080"), "any.example", "/")
                .await
                .as_deref()
                == Some("echo-m")
        },
        "traffic through the host connected over mutual TLS",
    )
    .await;

    // The same certificate can't fetch another Gateway's config.
    let other_log = logs.path().join("other.log");
    let _other = Host::start_tls(
        &controller,
        &format!("{ns}/other"),
        &format!("{bind}:15001"),
        tls_dir.path(),
        &other_log,
    );
    wait_for(
        || async {
            std::fs::read_to_string(&other_log)
                .is_ok_and(|log| log.contains("does not name Gateway"))
        },
        "the host with another Gateway's certificate refused",
    )
    .await;

    // And a client without a certificate doesn't get past the handshake: the server's
    // alert says why.
    let ca = std::fs::read_to_string(tls_dir.path().join("ca.crt")).unwrap();
    let error = tls_read_without_certificate(&controller.xds, &xds_ip, &ca).await;
    assert!(error.contains("CertificateRequired"), "{error}");
}

/// Completes a TLS handshake with `addr` trusting `ca`, presenting no client certificate,
/// then reads: the error the read ends with.
async fn tls_read_without_certificate(addr: &str, server_name: &str, ca: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    let mut tls = match tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Ok(tls) => tls,
        Err(e) => return e.to_string(),
    };
    let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let mut buf = [0u8; 64];
    match tls.read(&mut buf).await {
        Ok(n) => format!("read {n} bytes"),
        Err(e) => e.to_string(),
    }
}

/// Standard base64, as a Secret's `data` values are.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().fold(0u32, |acc, c| (acc << 6) | value(*c)) << (6 * (4 - chunk.len()));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// TLSRoutes, TCPRoutes and UDPRoutes (v1alpha2) are watched and get their status from the API
/// server's objects: accepted on their listeners, with unresolved backends reported, and
/// counted on the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_routes_are_watched_and_get_status() {
    let Some(kube) = shared_or_skip("stream_routes_are_watched_and_get_status").await else {
        return;
    };
    let client = kube.client().await.unwrap();
    let ns = kube.create_namespace("k8s-tls-routes").await.unwrap();
    let (controller_name, class) = class_names(&ns);
    let env = Env::new();
    let bind = env.gateway_ip(1);
    let config = format!(
        r#"{class_yaml}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: tls, namespace: {ns}}}
spec:
  gatewayClassName: {class}
  listeners:
  - {{name: passthrough, port: 8443, protocol: TLS, tls: {{mode: Passthrough}}}}
  - {{name: tcp, port: 9000, protocol: TCP}}
  - {{name: udp, port: 9000, protocol: UDP}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {{name: dns, namespace: {ns}}}
spec:
  parentRefs: [{{name: tls, sectionName: udp}}]
  rules:
  - backendRefs: [{{name: nope, port: 53}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: db, namespace: {ns}}}
spec:
  parentRefs: [{{name: tls, sectionName: tcp}}]
  rules:
  - backendRefs: [{{name: nope, port: 5432}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: unresolved, namespace: {ns}}}
spec:
  parentRefs: [{{name: tls, sectionName: passthrough}}]
  hostnames: [a.example.com]
  rules:
  - backendRefs: [{{name: nope, port: 443}}]
"#,
        class_yaml = gateway_class(&class, &controller_name),
    );
    apply_yaml(&client, &config).await.unwrap();
    let _controller = Controller::start(kube, &env, 90, &ns, &controller_name, &bind);
    let tls_routes = resource("gateway.networking.k8s.io", "v1", "TLSRoute", "tlsroutes");
    let ours = |route: &DynamicObject| -> Option<(Value, i64)> {
        let generation = route.metadata.generation?;
        route.data["status"]["parents"]
            .as_array()?
            .iter()
            .find(|p| p["controllerName"] == controller_name.as_str())
            .map(|p| (p["conditions"].clone(), generation))
    };
    let tcp_routes = resource(
        "gateway.networking.k8s.io",
        "v1alpha2",
        "TCPRoute",
        "tcproutes",
    );
    let udp_routes = resource(
        "gateway.networking.k8s.io",
        "v1alpha2",
        "UDPRoute",
        "udproutes",
    );
    for (routes, name) in [
        (&tls_routes, "unresolved"),
        (&tcp_routes, "db"),
        (&udp_routes, "dns"),
    ] {
        wait_for(
            || async {
                let Some(route) = object(&client, routes, &ns, name).await else {
                    return false;
                };
                ours(&route).is_some_and(|(conditions, _)| {
                    condition(&conditions, "Accepted") == Some(("True".into(), "Accepted".into()))
                        && condition(&conditions, "ResolvedRefs")
                            == Some(("False".into(), "BackendNotFound".into()))
                })
            },
            &format!(
                "{} {name}: Accepted, ResolvedRefs False/BackendNotFound",
                routes.kind
            ),
        )
        .await;
    }
    wait_for(
        || async {
            object(&client, &gateways(), &ns, "tls")
                .await
                .is_some_and(|gw| {
                    let listeners = &gw.data["status"]["listeners"];
                    [
                        ("passthrough", "TLSRoute"),
                        ("tcp", "TCPRoute"),
                        ("udp", "UDPRoute"),
                    ]
                    .iter()
                    .all(|(name, kind)| {
                        listeners.as_array().into_iter().flatten().any(|l| {
                            l["name"] == *name
                                && l["attachedRoutes"] == 1
                                && l["supportedKinds"][0]["kind"] == *kind
                        })
                    })
                })
        },
        "each listener counting its route",
    )
    .await;
}
