//! Runs cases against one standalone controller and one set of echo backends.
//!
//! The base manifests (namespaces, Gateways, echo Services) and the certificates upstream's
//! setup creates (see `certificates`) go into the config directory once, before the
//! controller starts. Each case then writes its own manifests as `case.yaml` (starting the
//! echo pods of its own Deployments), waits until the controller has published status for
//! them and every host has ACKed, runs its steps, and removes the file again, waiting until
//! its objects are gone, and stops its pods; so cases run one after another on a clean
//! base, like upstream's apply/cleanup.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nantian_e2e::harness::{self, EchoId, Env};
use serde_json::Value;

use crate::addresses::{self, AddressPools};
use crate::certificates::{self, ClientCertificate, TrustedCertificate};
use crate::manifests::{self, Pod};
use crate::model::{Case, Expectation, NsName, ObjectRef, TcpTls, TlsRequest};
use crate::roundtrip::{Target, TlsTarget};
use crate::status::{self, StatusDoc};
use crate::steps::{is_object, step_name};
use crate::tcp::{self, ClientTls};
use crate::tls::ClientAuth;

const BASE_FILE: &str = "base.yaml";
const CASE_FILE: &str = "case.yaml";
const POLL_PAUSE: Duration = Duration::from_millis(100);

pub struct Replay {
    pub(crate) env: Env,
    conformance_dir: PathBuf,
    /// Convergence deadline of every wait (upstream's `MaxTimeToConsistency` and friends).
    pub(crate) max_time: Duration,
    next_gateway_slot: u8,
    next_backend_slot: u8,
    /// Each Gateway's listeners (name, port) as its manifest declares them.
    listeners: BTreeMap<NsName, Vec<(String, u16)>>,
    /// The echo replicas running: the base's, then those of the case being replayed.
    pub(crate) pods: Vec<Pod>,
    /// The processes of the case's own echo replicas, stopped when the case is done.
    case_echoes: Vec<EchoId>,
    /// What `base.yaml` holds (the setup's Secrets and ConfigMaps among it): where echo
    /// pods read their certificates from, and what steps may copy data from.
    pub(crate) base_config: Vec<Value>,
    /// The server certificates of the setup's Secrets, for HTTPS requests to trust.
    certificates: BTreeMap<NsName, TrustedCertificate>,
    /// The client certificates of the setup's Secrets, for HTTPS requests to present.
    client_certificates: BTreeMap<NsName, ClientCertificate>,
    /// What the case's address placeholders stand for.
    pub(crate) address_pools: AddressPools,
}

impl Replay {
    /// Starts the echo backends of the base manifests and the controller on them.
    pub async fn start(conformance_dir: PathBuf, max_time: Duration) -> anyhow::Result<Self> {
        let mut replay = Replay {
            env: Env::new(),
            conformance_dir,
            max_time,
            next_gateway_slot: 1,
            next_backend_slot: 0,
            listeners: BTreeMap::new(),
            pods: Vec::new(),
            case_echoes: Vec::new(),
            base_config: Vec::new(),
            certificates: BTreeMap::new(),
            client_certificates: BTreeMap::new(),
            address_pools: AddressPools::default(),
        };
        let setup = certificates::generate()?;
        // The base's TLS echo pods mount the setup's certificates.
        replay.base_config = setup.objects.clone();
        let mut base = manifests::load(&replay.conformance_dir, "base/manifests.yaml")?;
        manifests::prepare(&mut base);
        let mut config = vec![manifests::gateway_class()];
        config.extend(
            replay
                .materialize(base, true)
                .await
                .map_err(anyhow::Error::msg)?,
        );
        config.extend(setup.objects);
        replay.certificates = setup.certificates;
        replay.client_certificates = setup.client_certificates;
        replay.env.write(BASE_FILE, &manifests::to_yaml(&config)?);
        replay.base_config = config;
        replay.env.start_controller();
        replay.env.wait_ready().await;
        Ok(replay)
    }

    /// Replays one case: `Ok` when every step held.
    pub async fn run_case(&mut self, case: &Case) -> Result<(), String> {
        self.address_pools = AddressPools::default();
        let mut objects = Vec::new();
        for manifest in &case.manifests {
            objects.extend(
                manifests::load(&self.conformance_dir, manifest).map_err(|e| format!("{e:#}"))?,
            );
        }
        manifests::prepare(&mut objects);
        let base_pods = self.pods.len();
        let materialized = self.materialize(objects, false).await;
        let (outcome, cleanup) = match materialized {
            Ok(mut config) => match self.write_case(&config) {
                Ok(()) => {
                    let outcome = match self.wait_applied(&config).await {
                        Ok(()) => self.run_steps(case, &mut config).await,
                        Err(e) => Err(format!("manifests not applied: {e}")),
                    };
                    (outcome, self.remove_case(&config).await)
                }
                Err(e) => (Err(e), Ok(())),
            },
            Err(e) => (Err(e), Ok(())),
        };
        self.stop_case_pods(base_pods);
        match (outcome, cleanup) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(format!("cleanup: {e}")),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    async fn run_steps(&mut self, case: &Case, config: &mut Vec<Value>) -> Result<(), String> {
        for (i, step) in case.steps.iter().enumerate() {
            self.run_step(step, config)
                .await
                .map_err(|e| format!("step {} ({}): {e}", i + 1, step_name(step)))?;
        }
        Ok(())
    }

    /// Adds Gateways (with addresses), echo processes and EndpointSlices for `objects`,
    /// returning what goes into the config directory. The base keeps only the Services
    /// with echo backends behind them (see `manifests`). A case's echo processes are noted
    /// for [`Replay::stop_case_pods`].
    async fn materialize(&mut self, objects: Vec<Value>, base: bool) -> Result<Vec<Value>, String> {
        let sources: Vec<&Value> = self.base_config.iter().chain(&objects).collect();
        let deployments = manifests::echo_deployments(&objects, &sources)?;
        let first_backend = self.next_backend_slot;
        let pods = manifests::plan_pods(&deployments, || {
            let ip = self.env.backend_ip(self.next_backend_slot);
            self.next_backend_slot += 1;
            ip
        });
        let echoes = self.start_echoes(first_backend, &pods).await;
        if !base {
            self.case_echoes.extend(echoes);
        }
        self.pods.extend(pods);
        // A case's Services may select the base's pods (the service-types test does).
        let slices = manifests::endpoint_slices(&objects, &self.pods);
        let backed: Vec<(String, String)> = slices
            .iter()
            .map(|s| {
                let service = s["metadata"]["labels"]["kubernetes.io/service-name"]
                    .as_str()
                    .unwrap_or_default();
                (manifests::namespace(s).to_string(), service.to_string())
            })
            .collect();
        let mut config = Vec::new();
        for mut object in objects {
            match manifests::kind(&object) {
                kind if !manifests::is_config_kind(kind) => continue,
                "Service"
                    if base
                        && !backed.contains(&(
                            manifests::namespace(&object).to_string(),
                            manifests::name(&object).to_string(),
                        )) =>
                {
                    continue;
                }
                "Gateway" => self.place_gateway(&mut object)?,
                _ => {}
            }
            config.push(object);
        }
        config.extend(slices);
        Ok(config)
    }

    async fn start_echoes(&mut self, first_slot: u8, pods: &[Pod]) -> Vec<EchoId> {
        let mut echoes = Vec::with_capacity(pods.len());
        for (slot, pod) in (first_slot..).zip(pods) {
            let tls = pod.tls.as_ref();
            let (name, namespace) = (&pod.name, &pod.namespace);
            let echo = if pod.tcp {
                self.env
                    .start_tcp_echo_pod(slot, name, namespace, tls)
                    .await
            } else {
                self.env
                    .start_echo_pod_with_tls(slot, name, namespace, tls)
                    .await
            };
            echoes.push(echo);
        }
        echoes
    }

    /// Stops the echo processes of the case's Deployments, leaving the first `base_pods`
    /// pods (the base's) running. Their addresses are not reused.
    fn stop_case_pods(&mut self, base_pods: usize) {
        for echo in self.case_echoes.drain(..) {
            self.env.stop_echo(echo);
        }
        self.pods.truncate(base_pods);
    }

    fn place_gateway(&mut self, gateway: &mut Value) -> Result<(), String> {
        let nn = NsName {
            namespace: manifests::namespace(gateway).to_string(),
            name: manifests::name(gateway).to_string(),
        };
        if addresses::has_placeholder(gateway, addresses::USABLE_PLACEHOLDER) {
            let usable = self.next_gateway_ip()?;
            self.address_pools.usable = Some(usable);
        }
        if addresses::has_placeholder(gateway, addresses::UNUSABLE_PLACEHOLDER) {
            self.address_pools.unusable = Some(addresses::UNUSABLE_ADDRESS.to_string());
        }
        addresses::overlay(gateway, &self.address_pools)?;
        // Only a Gateway without addresses gets one; an IPAddress entry without a value is
        // left to the controller's allocator.
        if gateway["spec"]["addresses"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            let ip = self.next_gateway_ip()?;
            manifests::assign_address(gateway, &ip);
        }
        let listeners = gateway["spec"]["listeners"]
            .as_array()
            .map(|ls| {
                ls.iter()
                    .map(|l| {
                        let name = l["name"].as_str().unwrap_or_default().to_string();
                        (name, l["port"].as_u64().unwrap_or(80) as u16)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.listeners.insert(nn, listeners);
        Ok(())
    }

    /// A Gateway address of the env no Gateway had yet (they are not reused: a host of an
    /// earlier case may still be letting go of its address).
    fn next_gateway_ip(&mut self) -> Result<String, String> {
        if self.next_gateway_slot >= 100 {
            return Err("out of Gateway addresses".into());
        }
        let ip = self.env.gateway_ip(self.next_gateway_slot);
        self.next_gateway_slot += 1;
        Ok(ip)
    }

    pub(crate) fn write_case(&self, config: &[Value]) -> Result<(), String> {
        let yaml = manifests::to_yaml(config).map_err(|e| e.to_string())?;
        self.env.write(CASE_FILE, &yaml);
        Ok(())
    }

    /// Waits until every Gateway and HTTPRoute of `config` that the controller reports on
    /// has status, then for `/readyz`.
    async fn wait_applied(&self, config: &[Value]) -> Result<(), String> {
        let wanted = status_objects(config, &self.listeners);
        self.poll(|doc| {
            match wanted
                .iter()
                .find(|(kind, nn)| doc.item(kind, nn).is_none())
            {
                None => Ok(()),
                Some((kind, nn)) => Err(format!(
                    "no status for {kind} {nn} yet{}",
                    doc.errors_suffix()
                )),
            }
        })
        .await?;
        self.wait_ready().await
    }

    async fn remove_case(&self, config: &[Value]) -> Result<(), String> {
        self.env.remove(CASE_FILE);
        // A policy's status (if the controller reports it) must go too, or a later case
        // could read it.
        let mut gone = status_objects(config, &self.listeners);
        gone.extend(policies(config));
        self.poll(
            |doc| match gone.iter().find(|(kind, nn)| doc.item(kind, nn).is_some()) {
                None => Ok(()),
                Some((kind, nn)) => Err(format!("{kind} {nn} still has status after removal")),
            },
        )
        .await?;
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> Result<(), String> {
        let url = format!("http://{}/readyz", self.env.controller_admin());
        let start = Instant::now();
        loop {
            let req = http::Request::get(&url)
                .body(Bytes::new())
                .map_err(|e| e.to_string())?;
            let status = harness::send(req).await.map(|r| r.status);
            if status == Ok(200) {
                return Ok(());
            }
            if start.elapsed() >= self.max_time {
                let hosts = self.env.controller_hosts().await;
                return Err(format!(
                    "controller /readyz is {status:?} after {:?}; hosts: {hosts}",
                    self.max_time
                ));
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }

    async fn status(&self) -> Result<StatusDoc, String> {
        let url = format!("http://{}/api/v1/status", self.env.controller_admin());
        let req = http::Request::get(url)
            .body(Bytes::new())
            .map_err(|e| e.to_string())?;
        let reply = harness::send(req)
            .await
            .map_err(|e| format!("status API: {e}"))?;
        serde_json::from_slice(&reply.body)
            .map(StatusDoc)
            .map_err(|e| format!("status API answered {} with no JSON: {e}", reply.status))
    }

    /// Re-checks `check` on fresh status until it holds, or returns its last complaint
    /// once the convergence deadline has passed.
    pub(crate) async fn poll(
        &self,
        mut check: impl FnMut(&StatusDoc) -> Result<(), String>,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let outcome = match self.status().await {
                Ok(doc) => check(&doc),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(e) if start.elapsed() >= self.max_time => return Err(e),
                Err(_) => tokio::time::sleep(POLL_PAUSE).await,
            }
        }
    }

    /// The setup's certificates that `request` names: the server's to trust, the client's
    /// to present.
    fn tls_target(&self, request: &TlsRequest) -> Result<TlsTarget, String> {
        let certificate = self.certificates.get(&request.secret).ok_or_else(|| {
            format!(
                "Secret {} holds no server certificate of the suite's setup",
                request.secret
            )
        })?;
        let client = match &request.client_certificate {
            None => None,
            Some(nn) => {
                let pair = self.client_certificates.get(nn).ok_or_else(|| {
                    format!("Secret {nn} holds no client certificate of the suite's setup")
                })?;
                Some(ClientAuth::new(pair).map_err(|e| format!("Secret {nn}: {e}"))?)
            }
        };
        Ok(TlsTarget {
            request: request.clone(),
            certificate: certificate.clone(),
            client,
        })
    }

    /// The client TLS of a `tcp` step: the certificate of a setup Secret as the only one
    /// trusted, or the `ca.crt` of a setup ConfigMap as the root.
    pub(crate) fn tcp_client_tls(&self, tls: &TcpTls) -> Result<ClientTls, String> {
        let config = match (&tls.secret, &tls.ca_config_map) {
            (Some(secret), None) => {
                let certificate = self.certificates.get(secret).ok_or_else(|| {
                    format!("Secret {secret} holds no server certificate of the suite's setup")
                })?;
                crate::tls::pinned_config(certificate)?
            }
            (None, Some(nn)) => {
                let config_map = ObjectRef {
                    kind: "ConfigMap".into(),
                    namespace: nn.namespace.clone(),
                    name: nn.name.clone(),
                };
                let ca = self
                    .base_config
                    .iter()
                    .find(|o| is_object(o, &config_map))
                    .and_then(|o| o["data"]["ca.crt"].as_str())
                    .ok_or_else(|| format!("ConfigMap {nn} of the setup has no ca.crt"))?;
                tcp::roots_config(ca).map_err(|e| format!("ConfigMap {nn}: {e}"))?
            }
            _ => return Err("a tcp step's tls names one secret or one caConfigMap".into()),
        };
        ClientTls::new(&tls.server_name, config)
    }

    /// `exp` with the PEM of each client certificate it names, from the setup's Secrets.
    pub(crate) fn with_client_certs(&self, exp: &Expectation) -> Result<Expectation, String> {
        let mut exp = exp.clone();
        let expected = exp.expected_request.as_mut();
        let certs = [
            exp.request.client_cert.as_mut(),
            expected.and_then(|e| e.client_cert.as_mut()),
        ];
        for cert in certs.into_iter().flatten() {
            let pair = self.client_certificates.get(&cert.secret).ok_or_else(|| {
                format!(
                    "Secret {} holds no client certificate of the suite's setup",
                    cert.secret
                )
            })?;
            cert.pem = Some(pair.cert_pem.clone());
        }
        Ok(exp)
    }

    /// The Gateway's address from its status, with the port of `listener` (default: the
    /// first listener), like upstream's `WaitForGatewayAddress`; over TLS with `tls`.
    pub(crate) async fn target(
        &self,
        gateway: &NsName,
        listener: Option<&str>,
        tls: Option<&TlsRequest>,
    ) -> Result<Target, String> {
        let tls = match tls {
            None => None,
            Some(request) => Some(self.tls_target(request)?),
        };
        let listeners = self
            .listeners
            .get(gateway)
            .ok_or_else(|| format!("Gateway {gateway} is not in the manifests"))?;
        let port = match listener {
            None => listeners.first().map(|(_, port)| *port),
            Some(name) => listeners
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, port)| *port),
        }
        .ok_or_else(|| format!("Gateway {gateway} has no listener {listener:?}"))?;
        let mut ip = String::new();
        self.poll(|doc| {
            ip = status::gateway_address(doc, gateway)?;
            Ok(())
        })
        .await?;
        Ok(Target { ip, port, tls })
    }
}

/// The objects the controller reports status for, as (kind, namespace/name): GatewayClasses,
/// Gateways, ListenerSets whose parent is among `gateways`, and routes with a parent
/// among `gateways` (a route whose parents are all missing has nobody to report on it, as
/// in a cluster).
fn status_objects<T>(config: &[Value], gateways: &BTreeMap<NsName, T>) -> Vec<(String, NsName)> {
    config
        .iter()
        .filter(|o| match manifests::kind(o) {
            "GatewayClass" | "Gateway" => true,
            "HTTPRoute" | "GRPCRoute" | "TLSRoute" => has_known_parent(o, gateways),
            "ListenerSet" => {
                let p = &o["spec"]["parentRef"];
                let nn = NsName {
                    namespace: p["namespace"]
                        .as_str()
                        .unwrap_or(manifests::namespace(o))
                        .to_string(),
                    name: p["name"].as_str().unwrap_or_default().to_string(),
                };
                p["kind"].as_str().unwrap_or("Gateway") == "Gateway" && gateways.contains_key(&nn)
            }
            _ => false,
        })
        .map(|o| {
            let nn = NsName {
                namespace: manifests::namespace(o).to_string(),
                name: manifests::name(o).to_string(),
            };
            (manifests::kind(o).to_string(), nn)
        })
        .collect()
}

/// The BackendTLSPolicies among `config`, as (kind, namespace/name).
fn policies(config: &[Value]) -> Vec<(String, NsName)> {
    config
        .iter()
        .filter(|o| manifests::kind(o) == "BackendTLSPolicy")
        .map(|o| {
            let nn = NsName {
                namespace: manifests::namespace(o).to_string(),
                name: manifests::name(o).to_string(),
            };
            ("BackendTLSPolicy".to_string(), nn)
        })
        .collect()
}

/// Whether a parentRef of `route` names one of `gateways` (group and kind default to a
/// Gateway's, the namespace to the route's).
fn has_known_parent<T>(route: &Value, gateways: &BTreeMap<NsName, T>) -> bool {
    let parents = route["spec"]["parentRefs"].as_array();
    parents.into_iter().flatten().any(|p| {
        let group = p["group"].as_str().unwrap_or("gateway.networking.k8s.io");
        let kind = p["kind"].as_str().unwrap_or("Gateway");
        let nn = NsName {
            namespace: p["namespace"]
                .as_str()
                .unwrap_or(manifests::namespace(route))
                .to_string(),
            name: p["name"].as_str().unwrap_or_default().to_string(),
        };
        group == "gateway.networking.k8s.io" && kind == "Gateway" && gateways.contains_key(&nn)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn routes_to_missing_gateways_get_no_status_to_wait_for() {
        let gateways = BTreeMap::from([("infra/gw".parse::<NsName>().unwrap(), ())]);
        let route = |parents: Value| {
            json!({"kind": "HTTPRoute", "metadata": {"namespace": "infra", "name": "r"},
                   "spec": {"parentRefs": parents}})
        };
        let config = [
            json!({"kind": "Gateway", "metadata": {"namespace": "infra", "name": "gw"}}),
            route(json!([{"name": "gw"}])),
            route(json!([{"name": "gone"}, {"name": "gw", "namespace": "infra"}])),
            route(json!([{"name": "gone"}])),
            route(json!([{"name": "gw", "namespace": "other"}])),
            route(json!([{"name": "gw", "kind": "Service", "group": ""}])),
        ];
        let kinds: Vec<String> = status_objects(&config, &gateways)
            .into_iter()
            .map(|(kind, _)| kind)
            .collect();
        assert_eq!(kinds, ["Gateway", "HTTPRoute", "HTTPRoute"]);
    }
}
