//! Kubernetes-mode processes and objects shared by the Kubernetes tests and the scale
//! benchmark: the controller and host processes, the objects every test makes, and
//! readers of the statuses the controller writes.

use std::process::{Child, Command, Stdio};

use kube::Client;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::harness::{Env, bin, get, machine_ip, send, wait_for};
use crate::kube::KubeControlPlane;

/// A `nantian-controller kubernetes` process, killed when dropped.
pub struct Controller {
    pub child: Child,
    pub admin: String,
    pub xds: String,
}

impl Controller {
    /// Starts a replica serving GatewayClasses with `controller_name`, electing its leader
    /// in `namespace`, binding hosts' listeners on `bind`. `slot` picks its addresses.
    pub fn start(
        kube: &KubeControlPlane,
        env: &Env,
        slot: u8,
        namespace: &str,
        controller_name: &str,
        bind: &str,
    ) -> Self {
        Self::start_as(kube, env, slot, namespace, controller_name, bind, None)
    }

    /// [`Controller::start`] with another identity's kubeconfig (default: the admin's).
    pub fn start_as(
        kube: &KubeControlPlane,
        env: &Env,
        slot: u8,
        namespace: &str,
        controller_name: &str,
        bind: &str,
        kubeconfig: Option<&std::path::Path>,
    ) -> Self {
        Self::start_with(
            kube,
            env,
            slot,
            namespace,
            controller_name,
            bind,
            kubeconfig,
            &[],
        )
    }

    /// [`Controller::start_as`] with extra arguments.
    #[allow(clippy::too_many_arguments)]
    pub fn start_with(
        kube: &KubeControlPlane,
        env: &Env,
        slot: u8,
        namespace: &str,
        controller_name: &str,
        bind: &str,
        kubeconfig: Option<&std::path::Path>,
        extra: &[String],
    ) -> Self {
        let ip = env.gateway_ip(slot);
        let admin = format!("{ip}:19000");
        let xds = format!("{ip}:18000");
        let child = Command::new(bin("nantian-controller"))
            .args(["kubernetes", "--admin-addr", &admin, "--xds-addr", &xds])
            .args([
                "--namespace",
                namespace,
                "--identity",
                &format!("replica-{slot}"),
            ])
            .args(["--controller-name", controller_name, "--bind-address", bind])
            .args(["--host-image", "nantian-host:test"])
            .args(["--xds-service-url", &format!("http://{xds}")])
            .args(extra)
            .env("KUBECONFIG", kubeconfig.unwrap_or(kube.kubeconfig()))
            .env("NANTIAN_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("start nantian-controller");
        Controller { child, admin, xds }
    }

    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
    }

    /// How many times this replica has translated the cluster (`/api/v1/status`).
    pub async fn translations(&self) -> Option<u64> {
        let reply = send(get(&self.admin, "admin", "/api/v1/status"))
            .await
            .ok()?;
        let status: Value = serde_json::from_slice(&reply.body).ok()?;
        status["translations"].as_u64()
    }

    /// Whether this replica says it leads (None while it has not translated yet).
    pub async fn leading(&self) -> Option<bool> {
        let reply = send(get(&self.admin, "admin", "/api/v1/status"))
            .await
            .ok()?;
        let status: Value = serde_json::from_slice(&reply.body).ok()?;
        status["leading"].as_bool()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `nantian-host` serving one Gateway, connected to `controller`, killed when dropped.
pub struct Host(pub Child);

impl Host {
    /// The host command for `gateway`, reaching the controller's xDS over `scheme`.
    fn command(controller: &Controller, scheme: &str, gateway: &str, admin: &str) -> Command {
        let mut command = Command::new(bin("nantian-host"));
        command
            .args(["--xds-address", &format!("{scheme}://{}", controller.xds)])
            .args([
                "--gateway",
                gateway,
                "--admin-addr",
                admin,
                "--workers",
                "1",
            ])
            .stdin(Stdio::null());
        command
    }

    pub fn start(controller: &Controller, gateway: &str, admin: &str) -> Self {
        let child = Self::command(controller, "http", gateway, admin)
            .spawn()
            .expect("start nantian-host");
        Host(child)
    }

    /// A host speaking mutual TLS to the controller with the PEM files in `tls_dir`
    /// (`ca.crt`, `tls.crt`, `tls.key`), logging to `log`.
    pub fn start_tls(
        controller: &Controller,
        gateway: &str,
        admin: &str,
        tls_dir: &std::path::Path,
        log: &std::path::Path,
    ) -> Self {
        let file = |name: &str| tls_dir.join(name).display().to_string();
        let child = Self::command(controller, "https", gateway, admin)
            .args(["--xds-ca-file", &file("ca.crt")])
            .args(["--xds-cert-file", &file("tls.crt")])
            .args(["--xds-key-file", &file("tls.key")])
            .env("NANTIAN_LOG", "info")
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start nantian-host");
        Host(child)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub async fn object(
    client: &Client,
    ar: &ApiResource,
    namespace: &str,
    name: &str,
) -> Option<DynamicObject> {
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, ar)
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

/// Plays the Deployment controller and kubelet, which this control plane lacks: sets how
/// many pods of Deployment `name` are available, once the provisioner has created it.
pub async fn set_available_replicas(client: &Client, namespace: &str, name: &str, available: i32) {
    let ar = resource("apps", "v1", "Deployment", "deployments");
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &ar);
    let status = serde_json::json!({"status": {
        "replicas": 1,
        "readyReplicas": available,
        "availableReplicas": available,
        "unavailableReplicas": 1 - available,
    }});
    wait_for(
        || async {
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .is_ok()
        },
        &format!("Deployment {namespace}/{name} to take status {status}"),
    )
    .await;
}

/// The Gateway's Programmed condition as (status, reason).
pub async fn gateway_programmed(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Option<(String, String)> {
    let gw = object(client, &gateways(), namespace, name).await?;
    condition(&gw.data["status"]["conditions"], "Programmed")
}

pub fn gateways() -> ApiResource {
    resource("gateway.networking.k8s.io", "v1", "Gateway", "gateways")
}

pub fn http_routes() -> ApiResource {
    resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
}

/// The condition `type_` in `conditions` (a JSON array), as (status, reason).
pub fn condition(conditions: &Value, type_: &str) -> Option<(String, String)> {
    conditions.as_array()?.iter().find_map(|c| {
        (c["type"] == type_).then(|| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
    })
}

/// Our parent entry's condition of a route, with the generation it was observed at.
pub async fn route_condition(
    client: &Client,
    namespace: &str,
    name: &str,
    controller_name: &str,
    type_: &str,
) -> Option<(String, String, i64)> {
    let route = object(client, &http_routes(), namespace, name).await?;
    let generation = route.metadata.generation?;
    let parents = route.data["status"]["parents"].as_array()?.clone();
    let ours = parents
        .iter()
        .find(|p| p["controllerName"] == controller_name)?;
    let (status, reason) = condition(&ours["conditions"], type_)?;
    let observed = ours["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?["observedGeneration"]
        .as_i64()?;
    (observed == generation).then_some((status, reason, generation))
}

pub async fn wait_route(
    client: &Client,
    namespace: &str,
    name: &str,
    controller_name: &str,
    type_: &str,
    want: (&str, &str),
) {
    wait_for(
        || async {
            route_condition(client, namespace, name, controller_name, type_)
                .await
                .is_some_and(|(s, r, _)| s == want.0 && r == want.1)
        },
        &format!("HTTPRoute {namespace}/{name} {type_}={}/{}", want.0, want.1),
    )
    .await;
}

/// The controllerName and GatewayClass name a test owns, derived from its namespace, so
/// tests sharing one API server never serve each other's Gateways.
pub fn class_names(ns: &str) -> (String, String) {
    (format!("gateway.nantian.dev/{ns}"), format!("class-{ns}"))
}

pub fn gateway_class(name: &str, controller_name: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {name}}}\nspec: {{controllerName: {controller_name}}}\n"
    )
}

/// A Service `name` (port 80 → the port named http) and its EndpointSlice: `ip` on `port`.
pub fn service(ns: &str, name: &str, ip: &str, port: u16) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints:
- addresses: ["{ip}"]
  conditions: {{ready: true}}
"#
    )
}

/// The address backends listen on: Kubernetes refuses loopback endpoints.
pub fn backend_ip() -> String {
    machine_ip().expect("a non-loopback IPv4 address for backends (hostname -I)")
}

/// The echo pod that answered a GET through the Gateway, if any did.
pub async fn answered_by(addr: &str, host: &str, path: &str) -> Option<String> {
    let reply = send(get(addr, host, path)).await.ok()?;
    (reply.status == 200).then(|| reply.echo().pod)
}
