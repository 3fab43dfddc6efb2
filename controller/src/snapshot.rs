//! The second translation stage: a Gateway's IR becomes named, versioned xDS resources.
//!
//! A resource's version is a hash of its encoding, so an unchanged object keeps its version
//! across re-translations and the delta to a host carries only what really changed.

use std::collections::BTreeMap;
use std::fmt;

use nantian_proto::ConfigResource;
use nantian_proto::xds::Resource;
use sha2::{Digest, Sha256};

use crate::translate::GatewayIr;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GatewayKey {
    pub namespace: String,
    pub name: String,
}

impl GatewayKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for GatewayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Everything one Gateway's hosts run on.
#[derive(Debug, Clone)]
pub struct GatewaySnapshot {
    pub gateway: GatewayKey,
    /// Hash of all resource names and versions.
    pub version: String,
    pub resources: BTreeMap<String, Resource>,
}

impl GatewaySnapshot {
    pub fn empty(gateway: GatewayKey) -> Self {
        Self::from_resources(gateway, std::iter::empty())
    }

    pub fn from_resources(
        gateway: GatewayKey,
        resources: impl IntoIterator<Item = Resource>,
    ) -> Self {
        let resources: BTreeMap<String, Resource> =
            resources.into_iter().map(|r| (r.name.clone(), r)).collect();
        let mut hasher = Sha256::new();
        for (name, r) in &resources {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(r.version.as_bytes());
            hasher.update([0]);
        }
        let version = hex_prefix(&hasher.finalize());
        Self {
            gateway,
            version,
            resources,
        }
    }

    pub fn from_ir(ir: &GatewayIr) -> Self {
        let mut resources = Vec::new();
        resources.extend(ir.listeners.iter().map(resource));
        resources.extend(ir.routes.iter().map(resource));
        resources.extend(ir.backends.iter().map(resource));
        resources.extend(ir.modules.iter().map(resource));
        Self::from_resources(GatewayKey::new(&ir.namespace, &ir.name), resources)
    }
}

fn resource<T: ConfigResource>(r: &T) -> Resource {
    let any = r.to_any();
    let version = hex_prefix(&Sha256::digest(&any.value));
    Resource {
        name: r.resource_name().to_string(),
        version,
        resource: Some(any),
    }
}

fn hex_prefix(digest: &[u8]) -> String {
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nantian_proto::config::{Listener, Route};

    fn ir(route_hostname: &str) -> GatewayIr {
        GatewayIr {
            namespace: "ns".into(),
            name: "gw".into(),
            addresses: vec!["127.0.10.1".parse().unwrap()],
            listeners: vec![Listener {
                name: "listener/ns/gw/http".into(),
                addresses: vec!["127.0.10.1".into()],
                port: 80,
                protocol: "HTTP".into(),
                hostname: String::new(),
                certificates: Vec::new(),
                client_validation: None,
                tls_mode: String::new(),
            }],
            routes: vec![Route {
                name: "route/ns/r/rule/0".into(),
                hostnames: vec![route_hostname.into()],
                ..Default::default()
            }],
            backends: vec![],
            modules: vec![],
        }
    }

    #[test]
    fn versions_follow_content() {
        let a = GatewaySnapshot::from_ir(&ir("a.example"));
        let b = GatewaySnapshot::from_ir(&ir("b.example"));
        let a2 = GatewaySnapshot::from_ir(&ir("a.example"));
        assert_eq!(a.version, a2.version);
        assert_ne!(a.version, b.version);
        let l = "listener/ns/gw/http";
        assert_eq!(a.resources[l].version, b.resources[l].version);
        let r = "route/ns/r/rule/0";
        assert_ne!(a.resources[r].version, b.resources[r].version);
    }
}
