//! Data-plane provisioning: every Gateway of ours gets a Deployment of `nantian-host`,
//! a Service and a ServiceAccount in its namespace, owned by the Gateway (deleting the Gateway lets the
//! garbage collector remove them; the provisioner also deletes those of Gateways that
//! stopped being ours).
//!
//! The Gateway's `spec.infrastructure` labels and annotations are copied onto both
//! objects and the pod template (GatewayInfrastructurePropagation). The Service's
//! addresses become the Gateway's `status.addresses` ([`service_addresses`]).

use std::collections::{BTreeMap, BTreeSet};

use gateway_api::gateways::Gateway;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, Secret, SecretVolumeSource,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::status_writer::FIELD_MANAGER;
use super::xds_tls::{self, XdsTls};
use crate::model::MetaExt;
use crate::snapshot::GatewayKey;
use crate::status::GatewayAddress;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_US: &str = "nantian";
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// Which controller (a hash of its `controllerName`) provisioned an object: controllers
/// with different names sharing a cluster leave each other's data planes alone.
pub const CONTROLLER_LABEL: &str = "gateway.nantian.dev/controller-id";
const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The host's admin endpoint inside the pod (readiness, metrics).
pub const HOST_ADMIN_PORT: i32 = 19001;

/// How the provisioned data plane looks.
#[derive(Clone, Debug)]
pub struct ProvisionConfig {
    /// Image of `nantian-host`.
    pub host_image: String,
    /// The delta-xDS endpoint hosts connect to, e.g.
    /// `http://nantian-controller.nantian-system.svc:18000`.
    pub xds_address: String,
    /// Service type of provisioned Gateways: LoadBalancer (default), NodePort, ClusterIP.
    pub service_type: String,
    pub replicas: i32,
    /// Mutual TLS to the xDS server: each Gateway's hosts get a client certificate of
    /// their own, from this CA, in a Secret mounted into their pods.
    pub xds_tls: Option<XdsTls>,
}

/// Where a host pod finds its xDS client certificate.
const XDS_TLS_DIR: &str = "/etc/nantian/xds";

/// The Secret holding a Gateway's xDS client certificate.
pub fn xds_secret_name(gateway: &str) -> String {
    format!("{}-xds", object_name(gateway))
}

/// The label value naming a controller: a DNS-label-safe hash of its `controllerName`.
pub fn controller_id(controller_name: &str) -> String {
    Sha256::digest(controller_name.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The name of a Gateway's Deployment and Service: `nantian-<gateway>`, shortened with a
/// hash when that would exceed a DNS label.
pub fn object_name(gateway: &str) -> String {
    let name = format!("nantian-{gateway}");
    if name.len() <= 63 {
        return name;
    }
    let hash = Sha256::digest(gateway.as_bytes());
    let suffix: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{suffix}", &name[..54])
}

fn selector_labels(gateway: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (GATEWAY_NAME_LABEL.to_string(), gateway.to_string()),
        (COMPONENT_LABEL.to_string(), "gateway-host".to_string()),
    ])
}

/// Labels and annotations for every provisioned object: the Gateway's infrastructure
/// ones first, ours on top (ours decide selection and ownership, so they win).
fn metadata(gw: &Gateway, controller: &str, owner: Option<OwnerReference>) -> ObjectMeta {
    let infra = gw.spec.infrastructure.as_ref();
    let mut labels = infra.and_then(|i| i.labels.clone()).unwrap_or_default();
    labels.extend(selector_labels(gw.name()));
    labels.insert(MANAGED_BY.to_string(), MANAGED_BY_US.to_string());
    labels.insert(CONTROLLER_LABEL.to_string(), controller.to_string());
    let annotations = infra.and_then(|i| i.annotations.clone());
    ObjectMeta {
        name: Some(object_name(gw.name())),
        namespace: Some(gw.namespace().to_string()),
        labels: Some(labels),
        annotations: annotations.filter(|a| !a.is_empty()),
        owner_references: owner.map(|o| vec![o]),
        ..Default::default()
    }
}

fn owner_reference(gw: &Gateway) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "gateway.networking.k8s.io/v1".to_string(),
        kind: "Gateway".to_string(),
        name: gw.name().to_string(),
        uid: gw.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// The distinct listener ports of a Gateway, sorted.
fn listener_ports(gw: &Gateway) -> BTreeSet<i32> {
    gw.spec.listeners.iter().map(|l| l.port).collect()
}

/// The Deployment and Service a Gateway should have.
pub fn desired(gw: &Gateway, controller: &str, config: &ProvisionConfig) -> (Deployment, Service) {
    let owner = owner_reference(gw);
    let meta = metadata(gw, controller, owner);
    let ports = listener_ports(gw);
    let env = |name: &str, path: &str| EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let container = Container {
        name: "nantian-host".to_string(),
        image: Some(config.host_image.clone()),
        args: Some(vec![
            "--xds-address".into(),
            config.xds_address.clone(),
            "--gateway".into(),
            format!("{}/{}", gw.namespace(), gw.name()),
            "--node-id".into(),
            "$(POD_NAMESPACE)/$(POD_NAME)".into(),
            "--admin-addr".into(),
            format!("0.0.0.0:{HOST_ADMIN_PORT}"),
        ]),
        volume_mounts: config.xds_tls.is_some().then(|| {
            vec![VolumeMount {
                name: "xds-tls".into(),
                mount_path: XDS_TLS_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            }]
        }),
        env: Some(vec![
            env("POD_NAME", "metadata.name"),
            env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(
            ports
                .iter()
                .map(|p| ContainerPort {
                    container_port: *p,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .chain([ContainerPort {
                    name: Some("admin".into()),
                    container_port: HOST_ADMIN_PORT,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }])
                .collect(),
        ),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".into()),
                port: IntOrString::Int(HOST_ADMIN_PORT),
                ..Default::default()
            }),
            period_seconds: Some(2),
            ..Default::default()
        }),
        // Listeners on ports below 1024 without running as root.
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_BIND_SERVICE".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut container = container;
    if config.xds_tls.is_some()
        && let Some(args) = container.args.as_mut()
    {
        for (flag, file) in [
            ("--xds-ca-file", xds_tls::CA_CERT),
            ("--xds-cert-file", xds_tls::TLS_CERT),
            ("--xds-key-file", xds_tls::TLS_KEY),
        ] {
            args.push(flag.into());
            args.push(format!("{XDS_TLS_DIR}/{file}"));
        }
    }
    let volumes = config.xds_tls.is_some().then(|| {
        vec![Volume {
            name: "xds-tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(xds_secret_name(gw.name())),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });
    let pod_meta = ObjectMeta {
        labels: meta.labels.clone(),
        annotations: meta.annotations.clone(),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: meta.clone(),
        spec: Some(DeploymentSpec {
            replicas: Some(config.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(gw.name())),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(pod_meta),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes,
                    service_account_name: Some(object_name(gw.name())),
                    automount_service_account_token: Some(false),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let static_ips: Vec<String> = gw
        .spec
        .addresses
        .iter()
        .flatten()
        .filter(|a| a.r#type.as_deref().is_none_or(|t| t == "IPAddress"))
        .filter_map(|a| a.value.clone())
        .filter(|v| !v.is_empty())
        .collect();
    let service = Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(config.service_type.clone()),
            selector: Some(selector_labels(gw.name())),
            external_ips: (!static_ips.is_empty()).then_some(static_ips),
            ports: Some(
                ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(format!("port-{p}")),
                        port: *p,
                        target_port: Some(IntOrString::Int(*p)),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    (deployment, service)
}

/// The ServiceAccount a Gateway's host pods run as: their own, with no API token mounted
/// (a host talks to the controller, never to the API server).
pub fn desired_service_account(gw: &Gateway, controller: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(gw, controller, owner_reference(gw)),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// A Gateway's addresses from its Service: load-balancer ingress (IP or hostname), then
/// external IPs, else the cluster IP. Empty while the Service has none.
pub fn service_addresses(service: &Service) -> Vec<GatewayAddress> {
    let address = |type_: &str, value: &str| GatewayAddress {
        type_: type_.to_string(),
        value: value.to_string(),
    };
    let mut out: Vec<GatewayAddress> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| {
            if let Some(ip) = i.ip.as_deref().filter(|ip| !ip.is_empty()) {
                Some(address("IPAddress", ip))
            } else {
                i.hostname
                    .as_deref()
                    .filter(|h| !h.is_empty())
                    .map(|h| address("Hostname", h))
            }
        })
        .collect();
    let spec = service.spec.as_ref();
    if out.is_empty() {
        out.extend(
            spec.and_then(|s| s.external_ips.as_ref())
                .into_iter()
                .flatten()
                .map(|ip| address("IPAddress", ip)),
        );
    }
    if out.is_empty()
        && let Some(ip) = spec
            .and_then(|s| s.cluster_ip.as_deref())
            .filter(|ip| !ip.is_empty() && *ip != "None")
    {
        out.push(address("IPAddress", ip));
    }
    out
}

/// Applies the desired objects and deletes those of Gateways no longer ours.
pub struct Provisioner {
    client: Client,
    /// [`controller_id`] of this controller.
    controller: String,
    config: ProvisionConfig,
    /// Hash of what was last applied per Gateway: unchanged Gateways cost nothing.
    applied: BTreeMap<(String, String), String>,
    /// Set after a full pass found nothing stale; cleared when a Gateway goes away.
    clean: bool,
}

impl Provisioner {
    pub fn new(client: Client, controller_name: &str, config: ProvisionConfig) -> Self {
        Provisioner {
            client,
            controller: controller_id(controller_name),
            config,
            applied: BTreeMap::new(),
            clean: false,
        }
    }

    /// Forgets what was applied: the next [`Provisioner::sync`] applies every data plane
    /// again (server-side apply makes that a no-op where nothing drifted) and looks for
    /// stale ones.
    pub fn recheck_all(&mut self) {
        self.applied.clear();
        self.clean = false;
    }

    /// Makes the cluster hold exactly the data planes of `gateways`.
    pub async fn sync(&mut self, gateways: &[&Gateway]) {
        let mut wanted = BTreeSet::new();
        for gw in gateways {
            let key = (gw.namespace().to_string(), gw.name().to_string());
            wanted.insert(key.clone());
            let (deployment, service) = desired(gw, &self.controller, &self.config);
            let hash = fingerprint(&deployment, &service);
            if self.applied.get(&key) == Some(&hash) {
                continue;
            }
            if let Some(tls) = &self.config.xds_tls
                && let Err(e) = self.ensure_client_secret(gw, tls).await
            {
                warn!(gateway = %format!("{}/{}", key.0, key.1), error = %e,
                    "cannot issue the hosts' xDS client certificate; will retry");
                continue;
            }
            let account = desired_service_account(gw, &self.controller);
            match self.apply(&key.0, account, deployment, service).await {
                Ok(()) => {
                    info!(gateway = %format!("{}/{}", key.0, key.1), "data plane provisioned");
                    self.applied.insert(key, hash);
                }
                Err(e) => warn!(gateway = %format!("{}/{}", key.0, key.1), error = %e,
                    "cannot provision the data plane; will retry"),
            }
        }
        let before = self.applied.len();
        self.applied.retain(|k, _| wanted.contains(k));
        if self.applied.len() != before {
            self.clean = false;
        }
        if !self.clean {
            match self.delete_stale(&wanted).await {
                Ok(()) => self.clean = true,
                Err(e) => warn!(error = %e, "cannot list provisioned data planes; will retry"),
            }
        }
    }

    async fn apply(
        &self,
        namespace: &str,
        account: ServiceAccount,
        deployment: Deployment,
        service: Service,
    ) -> Result<(), kube::Error> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let mut account = serde_json::to_value(&account).unwrap_or_default();
        account["apiVersion"] = "v1".into();
        account["kind"] = "ServiceAccount".into();
        accounts
            .patch(&name, &params, &Patch::Apply(&account))
            .await?;
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let mut deployment = serde_json::to_value(&deployment).unwrap_or_default();
        deployment["apiVersion"] = "apps/v1".into();
        deployment["kind"] = "Deployment".into();
        deployments
            .patch(&name, &params, &Patch::Apply(&deployment))
            .await?;
        let services: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        let mut service = serde_json::to_value(&service).unwrap_or_default();
        service["apiVersion"] = "v1".into();
        service["kind"] = "Service".into();
        services
            .patch(&name, &params, &Patch::Apply(&service))
            .await?;
        Ok(())
    }

    /// Issues the Gateway's xDS client certificate into its Secret, once: an existing
    /// Secret is kept (hosts may have it mounted).
    async fn ensure_client_secret(&self, gw: &Gateway, tls: &XdsTls) -> anyhow::Result<()> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), gw.namespace());
        let name = xds_secret_name(gw.name());
        if api.get_opt(&name).await?.is_some() {
            return Ok(());
        }
        let mut metadata = metadata(gw, &self.controller, owner_reference(gw));
        metadata.name = Some(name);
        let secret = Secret {
            metadata,
            type_: Some("Opaque".into()),
            data: Some(tls.client_secret_data(&GatewayKey::new(gw.namespace(), gw.name()))?),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the objects of kind `K` matching `ours` that `stale` names (namespace, name).
    async fn delete_stale_of<K>(
        &self,
        ours: &ListParams,
        stale: &impl Fn(&ObjectMeta) -> Option<(String, String)>,
    ) -> Result<(), kube::Error>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let all: Api<K> = Api::all(self.client.clone());
        for (namespace, name) in all
            .list_metadata(ours)
            .await?
            .items
            .iter()
            .filter_map(|object| stale(&object.metadata))
        {
            info!(kind = %K::kind(&()), namespace = %namespace, name = %name, "deleting data-plane object of a Gateway that is gone");
            let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
            api.delete(&name, &DeleteParams::background()).await?;
        }
        Ok(())
    }

    async fn delete_stale(&self, wanted: &BTreeSet<(String, String)>) -> Result<(), kube::Error> {
        let ours = ListParams::default().labels(&format!(
            "{MANAGED_BY}={MANAGED_BY_US},{CONTROLLER_LABEL}={}",
            self.controller
        ));
        let stale = |meta: &ObjectMeta| {
            let namespace = meta.namespace.clone().unwrap_or_default();
            let gateway = meta
                .labels
                .as_ref()
                .and_then(|l| l.get(GATEWAY_NAME_LABEL))
                .cloned()
                .unwrap_or_default();
            (!wanted.contains(&(namespace.clone(), gateway)))
                .then(|| (namespace, meta.name.clone().unwrap_or_default()))
        };
        // The Deployment first: with it gone the pods stop, whatever else fails.
        self.delete_stale_of::<Deployment>(&ours, &stale).await?;
        self.delete_stale_of::<Service>(&ours, &stale).await?;
        self.delete_stale_of::<ServiceAccount>(&ours, &stale)
            .await?;
        self.delete_stale_of::<Secret>(&ours, &stale).await?;
        Ok(())
    }
}

fn fingerprint(deployment: &Deployment, service: &Service) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(deployment).unwrap_or_default());
    hasher.update(serde_json::to_vec(service).unwrap_or_default());
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProvisionConfig {
        ProvisionConfig {
            host_image: "ghcr.io/nantian/host:0.1.0".into(),
            xds_address: "http://nantian-controller.nantian-system.svc:18000".into(),
            service_type: "LoadBalancer".into(),
            replicas: 1,
            xds_tls: None,
        }
    }

    fn gateway(yaml: &str) -> Gateway {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn infrastructure_labels_and_annotations_reach_every_object_and_ours_win() {
        let gw = gateway(
            r#"
metadata: {name: web, namespace: apps, uid: "1234"}
spec:
  gatewayClassName: nantian
  infrastructure:
    labels: {team: blue, "gateway.networking.k8s.io/gateway-name": spoof}
    annotations: {cost-center: "42"}
  addresses: [{type: IPAddress, value: 10.0.0.5}]
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: other, port: 80, protocol: HTTP, hostname: a.example}
  - {name: https, port: 443, protocol: HTTPS}
"#,
        );
        let (deployment, service) = desired(&gw, "c0ffee", &config());
        for meta in [
            &deployment.metadata,
            &service.metadata,
            deployment
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap(),
        ] {
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels["team"], "blue");
            assert_eq!(labels[GATEWAY_NAME_LABEL], "web");
            assert_eq!(meta.annotations.as_ref().unwrap()["cost-center"], "42");
        }
        assert_eq!(deployment.metadata.name.as_deref(), Some("nantian-web"));
        let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Gateway", "1234")
        );
        let account = desired_service_account(&gw, "c0ffee");
        assert_eq!(account.metadata.labels.as_ref().unwrap()["team"], "blue");
        assert_eq!(account.automount_service_account_token, Some(false));
        let pod = deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("nantian-web"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let spec = service.spec.unwrap();
        let ports: Vec<i32> = spec.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, [80, 443]);
        assert_eq!(spec.external_ips.unwrap(), ["10.0.0.5"]);
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    }

    #[test]
    fn long_gateway_names_are_shortened_with_a_hash() {
        let long = "g".repeat(70);
        let name = object_name(&long);
        assert!(name.len() <= 63, "{name}");
        assert_ne!(object_name(&long), object_name(&"h".repeat(70)));
    }

    #[test]
    fn service_addresses_prefer_ingress_then_external_then_cluster_ip() {
        let mut service: Service = serde_yaml::from_str(
            "spec: {clusterIP: 10.96.0.7, externalIPs: [192.0.2.1]}\nstatus: {loadBalancer: {ingress: [{hostname: lb.example.com}]}}",
        )
        .unwrap();
        let values = |s: &Service| -> Vec<(String, String)> {
            service_addresses(s)
                .into_iter()
                .map(|a| (a.type_, a.value))
                .collect()
        };
        assert_eq!(
            values(&service),
            [("Hostname".into(), "lb.example.com".into())]
        );
        service.status = None;
        assert_eq!(values(&service), [("IPAddress".into(), "192.0.2.1".into())]);
        service.spec.as_mut().unwrap().external_ips = None;
        assert_eq!(values(&service), [("IPAddress".into(), "10.96.0.7".into())]);
        service.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        assert!(values(&service).is_empty());
    }
}
