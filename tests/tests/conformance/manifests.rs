//! The upstream manifests, rewritten for standalone mode.
//!
//! Upstream's suite applies them to an API server after `Applier.prepareResources` sets
//! each Gateway's `gatewayClassName` and each GatewayClass's `controllerName`; here they go
//! to the controller's config directory instead, with the changes a cluster would make for
//! us: every object starts at `metadata.generation: 1` (and [`patch`] bumps it, as the API
//! server does on a spec change), every Gateway gets a loopback address of its own, every
//! echo Deployment becomes `nantian-echo` processes (one per replica, serving HTTPS too when
//! the Deployment gives echo-basic a certificate), and every Service in front of them gets
//! the EndpointSlice Kubernetes would have written.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use nantian_e2e::harness::{ECHO_HTTPS_PORT, PodTls};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::pod_tls::pod_tls;

/// The GatewayClass every conformance Gateway uses (upstream's `--gateway-class`).
pub const GATEWAY_CLASS: &str = "nantian-conformance";
/// Nantian's controller name, as the standalone controller serves it.
pub const CONTROLLER_NAME: &str = "gateway.nantian.dev/controller";
/// The ports `harness::Env::start_echo_pod` listens on, those of upstream's echo-basic:
/// HTTP/1.1 (WebSocket included) on 3000, HTTP/2 with prior knowledge (h2c) on 3001. A
/// Service port targeting either is one we can back.
pub const ECHO_PORTS: [i64; 2] = [3000, 3001];

/// The environment variable that makes upstream's echo-basic its TCP test server (plain on
/// 3000, TLS on 8443) instead of the HTTP echo. `GRPC_ECHO_SERVER` changes nothing here:
/// `nantian-echo` answers gRPC calls on every port (upstream's serves gRPC on 3000).
const TCP_ECHO_ENV: &str = "TCP_ECHO_SERVER";

/// The plain port of echo-basic's TCP test server.
pub const TCP_ECHO_PORT: i64 = 3000;

/// Reads one manifest file (path relative to the release's `conformance/` directory) with
/// the `{GATEWAY_CLASS_NAME}` placeholder filled in, one JSON value per YAML document.
pub fn load(conformance_dir: &Path, relative: &str) -> anyhow::Result<Vec<Value>> {
    let path = conformance_dir.join(relative);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let text = text
        .replace("{GATEWAY_CLASS_NAME}", GATEWAY_CLASS)
        .replace("{GATEWAY_CONTROLLER_NAME}", CONTROLLER_NAME);
    parse_documents(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Splits a multi-document YAML stream; empty documents (a leading `---`) are dropped.
pub fn parse_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document)?;
        match value {
            Value::Null => {}
            Value::Object(_) => out.push(value),
            other => bail!("a manifest document must be a mapping, got {other}"),
        }
    }
    Ok(out)
}

/// One multi-document YAML stream.
pub fn to_yaml(objects: &[Value]) -> anyhow::Result<String> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(object)?);
    }
    Ok(out)
}

pub fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

pub fn namespace(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// The GatewayClass the conformance Gateways use, for our controller.
pub fn gateway_class() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS},
        "spec": {"controllerName": CONTROLLER_NAME},
    })
}

/// Upstream's `prepareResources` (Gateways use our class, GatewayClasses our controller),
/// plus the API server's `metadata.generation: 1` on creation.
pub fn prepare(objects: &mut [Value]) {
    for object in objects.iter_mut() {
        match kind(object) {
            "Gateway" => object["spec"]["gatewayClassName"] = json!(GATEWAY_CLASS),
            "GatewayClass" => object["spec"]["controllerName"] = json!(CONTROLLER_NAME),
            _ => {}
        }
        if object["metadata"]["generation"].is_null() {
            object["metadata"]["generation"] = json!(1);
        }
    }
}

pub fn generation(object: &Value) -> i64 {
    object["metadata"]["generation"].as_i64().unwrap_or(0)
}

/// [`set_values`], then bumps `metadata.generation`, like an API server update of the spec.
pub fn patch(object: &mut Value, set: &BTreeMap<String, Value>) -> Result<(), String> {
    set_values(object, set)?;
    object["metadata"]["generation"] = json!(generation(object) + 1);
    Ok(())
}

/// Removes the value at each JSON pointer, in order: a mapping's key or an array's element
/// (the elements after it move up).
pub fn remove_values(object: &mut Value, pointers: &[String]) -> Result<(), String> {
    for pointer in pointers {
        let (parent, key) = pointer
            .rsplit_once('/')
            .ok_or_else(|| format!("{pointer:?} is not a JSON pointer"))?;
        let key = key.replace("~1", "/").replace("~0", "~");
        let removed = match object.pointer_mut(parent) {
            Some(Value::Object(map)) => map.remove(&key).is_some(),
            Some(Value::Array(items)) => match key.parse::<usize>() {
                Ok(i) if i < items.len() => {
                    items.remove(i);
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !removed {
            return Err(format!("{pointer} does not exist"));
        }
    }
    Ok(())
}

/// Sets each JSON pointer of `set` to its value: an existing value is replaced, a new key
/// is added to the mapping before it, and a pointer ending in `/-` appends to the array
/// before it.
pub fn set_values(object: &mut Value, set: &BTreeMap<String, Value>) -> Result<(), String> {
    for (pointer, value) in set {
        if let Some(array) = pointer.strip_suffix("/-") {
            object
                .pointer_mut(array)
                .and_then(Value::as_array_mut)
                .ok_or_else(|| format!("{array} is not an array"))?
                .push(value.clone());
        } else if let Some(existing) = object.pointer_mut(pointer) {
            *existing = value.clone();
        } else {
            let (parent, key) = pointer
                .rsplit_once('/')
                .ok_or_else(|| format!("{pointer:?} is not a JSON pointer"))?;
            // RFC 6901 escapes, in the order it gives.
            let key = key.replace("~1", "/").replace("~0", "~");
            object
                .pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| format!("{pointer} does not exist"))?
                .insert(key, value.clone());
        }
    }
    Ok(())
}

/// Gives a Gateway `address` unless its manifest asks for addresses itself.
pub fn assign_address(gateway: &mut Value, address: &str) {
    let spec = &mut gateway["spec"];
    if spec["addresses"].as_array().is_none_or(Vec::is_empty) {
        spec["addresses"] = json!([{"type": "IPAddress", "value": address}]);
    }
}

/// A Deployment of upstream's echo-basic that we stand in for with `nantian-echo`.
#[derive(Debug, Clone, PartialEq)]
pub struct EchoDeployment {
    pub namespace: String,
    pub name: String,
    pub replicas: u32,
    /// The pod template's labels, for Service selectors.
    pub labels: BTreeMap<String, String>,
    /// Its pods are echo-basic's TCP test server (`TCP_ECHO_SERVER`), not the HTTP echo.
    pub tcp: bool,
    /// What its pods serve HTTPS (or, TCP test servers, TLS) with, when they do.
    pub tls: Option<PodTls>,
}

/// One replica of an [`EchoDeployment`], on its own loopback address.
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub namespace: String,
    pub deployment: String,
    /// `<deployment>-nantian-<n>`: two dash-separated parts after the Deployment name, like
    /// a ReplicaSet pod, so upstream's `extractBackendName` gives the Deployment back.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ip: String,
    /// echo-basic's TCP test server rather than the HTTP echo.
    pub tcp: bool,
    /// Serves HTTPS (TCP test servers: TLS) on [`ECHO_HTTPS_PORT`] with this.
    pub tls: Option<PodTls>,
}

impl Pod {
    /// Whether the pod listens on `port`.
    fn serves(&self, port: i64) -> bool {
        let plain = if self.tcp {
            port == TCP_ECHO_PORT
        } else {
            ECHO_PORTS.contains(&port)
        };
        plain || (self.tls.is_some() && port == i64::from(ECHO_HTTPS_PORT))
    }
}

/// The echo-basic Deployments among `objects` (the others are skipped), HTTP echoes and
/// TCP test servers, with the TLS settings of those that have some read from `sources`,
/// the Secrets and ConfigMaps of the run.
pub fn echo_deployments(
    objects: &[Value],
    sources: &[&Value],
) -> Result<Vec<EchoDeployment>, String> {
    objects
        .iter()
        .filter(|o| kind(o) == "Deployment")
        .filter_map(|o| echo_basic_kind(o).map(|tcp| (o, tcp)))
        .map(|(o, tcp)| {
            Ok(EchoDeployment {
                namespace: namespace(o).to_string(),
                name: name(o).to_string(),
                replicas: o["spec"]["replicas"].as_u64().unwrap_or(1) as u32,
                labels: string_map(&o["spec"]["template"]["metadata"]["labels"]),
                tcp,
                tls: pod_tls(o, sources, tcp)?,
            })
        })
        .collect()
}

/// Whether `deployment` runs echo-basic: `Some(true)` as its TCP test server,
/// `Some(false)` as the HTTP echo.
fn echo_basic_kind(deployment: &Value) -> Option<bool> {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let [container] = containers.as_slice() else {
        return None;
    };
    let image = container["image"].as_str().unwrap_or_default();
    let env = container["env"].as_array().cloned().unwrap_or_default();
    image
        .contains("/echo-basic:")
        .then(|| env.iter().any(|e| e["name"] == TCP_ECHO_ENV))
}

/// Names the replicas of `deployments`, taking one address each from `next_ip`.
pub fn plan_pods(deployments: &[EchoDeployment], mut next_ip: impl FnMut() -> String) -> Vec<Pod> {
    deployments
        .iter()
        .flat_map(|d| (0..d.replicas).map(move |n| (d, n)))
        .map(|(d, n)| Pod {
            namespace: d.namespace.clone(),
            deployment: d.name.clone(),
            name: format!("{}-nantian-{n}", d.name),
            labels: d.labels.clone(),
            ip: next_ip(),
            tcp: d.tcp,
            tls: d.tls.clone(),
        })
        .collect()
}

/// The EndpointSlice of each Service whose selector picks some of `pods`, with the ports
/// that target a port those pods serve. Services with nothing behind them get none.
pub fn endpoint_slices(objects: &[Value], pods: &[Pod]) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| kind(o) == "Service")
        .filter_map(|service| endpoint_slice(service, pods))
        .collect()
}

fn endpoint_slice(service: &Value, pods: &[Pod]) -> Option<Value> {
    let ns = namespace(service);
    let selector = string_map(&service["spec"]["selector"]);
    if selector.is_empty() {
        return None;
    }
    let selected: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.namespace == ns && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
        .collect();
    let endpoints: Vec<Value> = selected.iter().map(|p| endpoint(p)).collect();
    let ports: Vec<Value> = service["spec"]["ports"]
        .as_array()?
        .iter()
        .filter_map(|p| {
            let target = p["targetPort"].as_i64().or(p["port"].as_i64())?;
            selected
                .iter()
                .all(|pod| pod.serves(target))
                .then_some((p, target))
        })
        .map(|(p, target)| {
            let mut port = json!({"port": target, "protocol": "TCP"});
            for field in ["name", "appProtocol"] {
                if let Some(v) = p[field].as_str() {
                    port[field] = json!(v);
                }
            }
            port
        })
        .collect();
    if endpoints.is_empty() || ports.is_empty() {
        return None;
    }
    let service_name = name(service);
    Some(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service_name}-nantian"),
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
}

/// Upstream's `setupEndpointSlices`: the endpoints of a hand-written EndpointSlice become
/// `pods`, those of its address family; a slice no pod fits stays as it is.
pub fn fill_endpoint_slice(slice: &mut Value, pods: &[&Pod]) {
    let ipv6 = slice["addressType"] == "IPv6";
    let endpoints: Vec<Value> = pods
        .iter()
        .filter(|p| p.ip.contains(':') == ipv6)
        .map(|p| endpoint(p))
        .collect();
    if !endpoints.is_empty() {
        slice["endpoints"] = Value::Array(endpoints);
    }
}

fn endpoint(pod: &Pod) -> Value {
    json!({
        "addresses": [pod.ip],
        "conditions": {"ready": true, "serving": true, "terminating": false},
        "targetRef": {"kind": "Pod", "namespace": pod.namespace, "name": pod.name},
    })
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Kinds the controller reads; everything else (Deployments, ...) stays out of the config.
pub fn is_config_kind(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace"
            | "GatewayClass"
            | "Gateway"
            | "ListenerSet"
            | "HTTPRoute"
            | "GRPCRoute"
            | "TLSRoute"
            | "ReferenceGrant"
            | "Service"
            | "EndpointSlice"
            | "Secret"
            | "ConfigMap"
            | "BackendTLSPolicy"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENT_AND_SERVICE: &str = r#"
---
apiVersion: v1
kind: Service
metadata: {name: infra-backend-v1, namespace: infra}
spec:
  selector: {app: infra-backend-v1}
  ports:
  - {name: first-port, protocol: TCP, port: 8080, targetPort: 3000}
  - {name: second-port, protocol: TCP, appProtocol: kubernetes.io/h2c, port: 8081, targetPort: 3001}
  - {name: third-port, protocol: TCP, appProtocol: kubernetes.io/ws, port: 8082, targetPort: 3000}
  - {name: tls-port, protocol: TCP, port: 443, targetPort: 8443}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: infra-backend-v1, namespace: infra}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: infra-backend-v1}}
    spec:
      containers:
      - name: echo
        image: gcr.io/k8s-staging-gateway-api/echo-basic:v1
        env: [{name: POD_NAME}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: tcp-backend, namespace: infra}
spec:
  template:
    metadata: {labels: {app: tcp-backend}}
    spec:
      containers:
      - name: tcp
        image: gcr.io/k8s-staging-gateway-api/echo-basic:v1
        env: [{name: TCP_ECHO_SERVER, value: "1"}]
---
apiVersion: v1
kind: Service
metadata: {name: tls-backend, namespace: infra}
spec:
  selector: {app: tls-backend}
  ports:
  - {protocol: TCP, port: 443, targetPort: 8443}
  - {name: plain, protocol: TCP, port: 80, targetPort: 3000}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: tls-backend, namespace: infra}
spec:
  template:
    metadata: {labels: {app: tls-backend}}
    spec:
      containers:
      - name: tls
        image: gcr.io/k8s-staging-gateway-api/echo-basic:v1
        volumeMounts: [{name: secret-volume, mountPath: /etc/secret-volume}]
        env:
        - {name: TLS_SERVER_CERT, value: /etc/secret-volume/crt}
        - {name: TLS_SERVER_PRIVKEY, value: /etc/secret-volume/key}
      volumes:
      - name: secret-volume
        secret:
          secretName: tls-checks-certificate
          items: [{key: tls.crt, path: crt}, {key: tls.key, path: key}]
---
apiVersion: v1
kind: Secret
metadata: {name: tls-checks-certificate, namespace: infra}
type: kubernetes.io/tls
stringData: {tls.crt: CERT, tls.key: KEY}
"#;

    /// The echo Deployments of [`DEPLOYMENT_AND_SERVICE`], its Secret their source.
    fn deployments(objects: &[Value]) -> Vec<EchoDeployment> {
        let sources: Vec<&Value> = objects.iter().collect();
        echo_deployments(objects, &sources).unwrap()
    }

    #[test]
    fn empty_documents_are_dropped_and_scalars_rejected() {
        let docs = parse_documents("---\n---\nkind: A\n---\n").unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(kind(&docs[0]), "A");
        assert!(parse_documents("just a string").is_err());
    }

    #[test]
    fn prepare_sets_class_and_controller_and_addresses_are_kept_when_given() {
        let mut objects = parse_documents(
            "kind: Gateway\nspec: {gatewayClassName: other}\n---\nkind: GatewayClass\nspec: {controllerName: x}\n",
        )
        .unwrap();
        prepare(&mut objects);
        assert_eq!(objects[0]["spec"]["gatewayClassName"], GATEWAY_CLASS);
        assert_eq!(objects[1]["spec"]["controllerName"], CONTROLLER_NAME);
        assert_eq!(generation(&objects[0]), 1);

        assign_address(&mut objects[0], "127.0.100.1");
        assert_eq!(objects[0]["spec"]["addresses"][0]["value"], "127.0.100.1");
        assign_address(&mut objects[0], "127.0.100.2");
        assert_eq!(objects[0]["spec"]["addresses"][0]["value"], "127.0.100.1");
    }

    #[test]
    fn echo_deployments_become_named_pods() {
        let objects = parse_documents(DEPLOYMENT_AND_SERVICE).unwrap();
        let mut deployments = deployments(&objects);
        assert_eq!(deployments.len(), 3);
        let tls = deployments.pop().unwrap();
        assert_eq!(tls.name, "tls-backend");
        let tls = tls.tls.unwrap();
        assert_eq!(
            (tls.cert_pem.as_str(), tls.key_pem.as_str()),
            ("CERT", "KEY")
        );
        let tcp = deployments.pop().unwrap();
        assert_eq!((tcp.name.as_str(), tcp.tcp), ("tcp-backend", true));
        assert!(!deployments[0].tcp);
        assert_eq!(deployments[0].tls, None);
        let mut n = 0;
        let pods = plan_pods(&deployments, || {
            n += 1;
            format!("127.0.0.{n}")
        });
        let names: Vec<_> = pods
            .iter()
            .map(|p| (p.name.as_str(), p.ip.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("infra-backend-v1-nantian-0", "127.0.0.1"),
                ("infra-backend-v1-nantian-1", "127.0.0.2")
            ]
        );
    }

    #[test]
    fn services_get_slices_with_the_echo_ports_only() {
        let objects = parse_documents(DEPLOYMENT_AND_SERVICE).unwrap();
        let pods = plan_pods(&deployments(&objects), || "127.0.0.9".to_string());
        let slices = endpoint_slices(&objects, &pods);
        assert_eq!(slices.len(), 2);
        let slice = &slices[0];
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "infra-backend-v1"
        );
        assert_eq!(slice["metadata"]["namespace"], "infra");
        let ports: Vec<_> = slice["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].clone())
            .collect();
        assert_eq!(
            ports,
            [
                json!("first-port"),
                json!("second-port"),
                json!("third-port")
            ]
        );
        let targets: Vec<_> = slice["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].clone())
            .collect();
        assert_eq!(targets, [json!(3000), json!(3001), json!(3000)]);
        assert_eq!(slice["ports"][1]["appProtocol"], "kubernetes.io/h2c");
        assert_eq!(slice["ports"][2]["appProtocol"], "kubernetes.io/ws");
        assert_eq!(slice["endpoints"].as_array().unwrap().len(), 2);
        assert_eq!(
            slice["endpoints"][0]["targetRef"]["name"],
            "infra-backend-v1-nantian-0"
        );
        // The slice round-trips through YAML as the controller will read it.
        let back = parse_documents(&to_yaml(&slices).unwrap()).unwrap();
        assert_eq!(back, slices);
    }

    #[test]
    fn tcp_test_servers_serve_3000_and_with_a_certificate_8443() {
        let mut pod = Pod {
            namespace: "infra".into(),
            deployment: "tcp-backend".into(),
            name: "tcp-backend-nantian-0".into(),
            labels: BTreeMap::new(),
            ip: "127.0.0.9".into(),
            tcp: true,
            tls: None,
        };
        assert!(pod.serves(3000));
        assert!(!pod.serves(3001), "the TCP test server has no h2c port");
        assert!(!pod.serves(8443));
        pod.tls = Some(PodTls {
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
            client_ca_pem: None,
        });
        assert!(pod.serves(8443));
    }

    #[test]
    fn https_pods_back_the_service_ports_targeting_8443() {
        let objects = parse_documents(DEPLOYMENT_AND_SERVICE).unwrap();
        let pods = plan_pods(&deployments(&objects), || "127.0.0.9".to_string());
        let slices = endpoint_slices(&objects, &pods);
        let tls = &slices[1];
        assert_eq!(
            tls["metadata"]["labels"]["kubernetes.io/service-name"],
            "tls-backend"
        );
        assert_eq!(
            tls["ports"],
            json!([{"port": 8443, "protocol": "TCP"}, {"port": 3000, "protocol": "TCP", "name": "plain"}])
        );
        assert_eq!(
            tls["endpoints"][0]["targetRef"]["name"],
            "tls-backend-nantian-0"
        );
        // A plain echo pod does not serve 8443: infra-backend-v1's tls-port stays out.
        let plain = &slices[0];
        assert!(
            plain["ports"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["port"] != 8443)
        );
    }

    #[test]
    fn hand_written_slices_get_the_pods_of_their_family() {
        let objects = parse_documents(DEPLOYMENT_AND_SERVICE).unwrap();
        let pods = plan_pods(&deployments(&objects)[..1], || "127.0.0.9".to_string());
        let pods: Vec<&Pod> = pods.iter().collect();
        let mut v4 = json!({"addressType": "IPv4", "ports": []});
        let mut v6 = json!({"addressType": "IPv6", "ports": []});
        fill_endpoint_slice(&mut v4, &pods);
        fill_endpoint_slice(&mut v6, &pods);
        assert_eq!(v4["endpoints"].as_array().unwrap().len(), 2);
        assert_eq!(
            v4["endpoints"][1]["targetRef"]["name"],
            "infra-backend-v1-nantian-1"
        );
        assert!(
            v6.get("endpoints").is_none(),
            "no IPv6 pods: the slice stays empty"
        );
    }

    #[test]
    fn patches_set_or_append_and_bump_the_generation() {
        let mut route = json!({"metadata": {"generation": 1}, "spec": {"rules": [{"backendRefs": [{"name": "a"}]}]}});
        let set = [
            ("/spec/rules/0/backendRefs/0/name".to_string(), json!("b")),
            ("/spec/rules/-".to_string(), json!({"backendRefs": []})),
        ]
        .into();
        patch(&mut route, &set).unwrap();
        assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["name"], "b");
        assert_eq!(route["spec"]["rules"].as_array().unwrap().len(), 2);
        assert_eq!(generation(&route), 2);
        let missing = [("/spec/nothing/here".to_string(), json!(1))].into();
        assert!(patch(&mut route, &missing).is_err());
    }

    #[test]
    fn remove_values_drops_keys_and_array_elements() {
        let mut gw = json!({"spec": {"addresses": [{"value": "a"}, {"value": "b"}], "x": 1}});
        let pointers = ["/spec/addresses/0".to_string(), "/spec/x".to_string()];
        remove_values(&mut gw, &pointers).unwrap();
        assert_eq!(gw, json!({"spec": {"addresses": [{"value": "b"}]}}));
        assert!(remove_values(&mut gw, &["/spec/addresses/1".to_string()]).is_err());
        assert!(remove_values(&mut gw, &["/spec/nothing".to_string()]).is_err());
    }

    #[test]
    fn set_values_adds_keys_to_existing_mappings() {
        let mut config_map = json!({"metadata": {"generation": 1}, "data": {}});
        let set = [
            ("/data/ca.crt".to_string(), json!("PEM")),
            ("/data/a~1b".to_string(), json!("slash")),
        ]
        .into();
        set_values(&mut config_map, &set).unwrap();
        assert_eq!(config_map["data"], json!({"ca.crt": "PEM", "a/b": "slash"}));
        assert_eq!(
            generation(&config_map),
            1,
            "only patch bumps the generation"
        );
        let set = [("/data/ca.crt".to_string(), json!(""))].into();
        patch(&mut config_map, &set).unwrap();
        assert_eq!(config_map["data"]["ca.crt"], "");
        assert_eq!(generation(&config_map), 2);
    }
}
