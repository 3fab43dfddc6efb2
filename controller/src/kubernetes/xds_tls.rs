//! Mutual TLS between the planes in Kubernetes mode.
//!
//! The controller keeps a CA in a Secret of its namespace (`--xds-tls-secret`: `ca.crt`,
//! `ca.key`, `tls.crt`, `tls.key`), made on first start by whichever replica gets there
//! first, or provided by the operator with the same keys. The xDS server presents
//! `tls.crt` and requires a client certificate from that CA. Each provisioned Gateway gets
//! its own client certificate (a Secret beside its Deployment) naming the Gateway as the
//! DNS name `<name>.<namespace>.gateway.nantian.internal`, and a host is only served the
//! Gateway its certificate names: a compromised data plane can't read another Gateway's
//! configuration (its certificates, its backends).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use tracing::info;

use crate::snapshot::GatewayKey;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// The DNS name a host's client certificate carries for its Gateway.
pub fn gateway_identity(gateway: &GatewayKey) -> String {
    format!(
        "{}.{}.gateway.nantian.internal",
        gateway.name, gateway.namespace
    )
}

/// The controller's CA and serving certificate, as PEM.
#[derive(Clone)]
pub struct XdsTls {
    pub ca_cert: String,
    ca_key: String,
    pub server_cert: String,
    pub server_key: String,
}

impl XdsTls {
    /// Reads the Secret, or creates it (CA plus a serving certificate for `server_names`)
    /// when it does not exist yet. Another replica creating it first is fine: its Secret
    /// is read back.
    pub async fn load_or_create(
        client: &Client,
        namespace: &str,
        name: &str,
        server_names: &[String],
    ) -> anyhow::Result<Self> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        if let Some(secret) = api.get_opt(name).await? {
            return Self::from_secret(&secret, namespace, name);
        }
        let fresh = Self::generate(server_names)?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".to_string()),
            data: Some(fresh.secret_data()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                info!(secret = %format!("{namespace}/{name}"), "made the xDS CA and serving certificate");
                Ok(fresh)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let secret = api.get(name).await?;
                Self::from_secret(&secret, namespace, name)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn from_secret(secret: &Secret, namespace: &str, name: &str) -> anyhow::Result<Self> {
        let data = secret.data.clone().unwrap_or_default();
        let get = |key: &str| {
            data.get(key)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "Secret {namespace}/{name} has no {key:?}: it needs {CA_CERT}, {CA_KEY}, {TLS_CERT} and {TLS_KEY} (delete it to have the controller make one)"
                    )
                })
        };
        Ok(XdsTls {
            ca_cert: get(CA_CERT)?,
            ca_key: get(CA_KEY)?,
            server_cert: get(TLS_CERT)?,
            server_key: get(TLS_KEY)?,
        })
    }

    /// A new CA and a serving certificate signed by it.
    pub fn generate(server_names: &[String]) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_certificate(&ca_key)?;

        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(server_names.to_vec())?;
        server.distinguished_name = name("nantian-controller");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;
        Ok(XdsTls {
            ca_cert: ca_cert.pem(),
            ca_key: ca_key.serialize_pem(),
            server_cert: server_cert.pem(),
            server_key: server_key.serialize_pem(),
        })
    }

    fn secret_data(&self) -> BTreeMap<String, ByteString> {
        [
            (CA_CERT, &self.ca_cert),
            (CA_KEY, &self.ca_key),
            (TLS_CERT, &self.server_cert),
            (TLS_KEY, &self.server_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
    }

    /// A client certificate for the hosts of `gateway`: (ca.crt, tls.crt, tls.key) as the
    /// data of the Secret mounted into its pods.
    pub fn client_secret_data(
        &self,
        gateway: &GatewayKey,
    ) -> anyhow::Result<BTreeMap<String, ByteString>> {
        let ca_key = KeyPair::from_pem(&self.ca_key)?;
        let issuer = ca_certificate(&ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::DnsName(gateway_identity(gateway).try_into()?)];
        params.distinguished_name = name(&gateway.to_string());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params.signed_by(&key, &issuer, &ca_key)?;
        Ok([
            (CA_CERT, self.ca_cert.clone()),
            (TLS_CERT, cert.pem()),
            (TLS_KEY, key.serialize_pem()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
        .collect())
    }
}

/// The CA certificate for `key`. Deterministic in everything an issued certificate refers
/// to (subject name, key identifier), so re-making it from the stored key signs
/// certificates that chain to the stored `ca.crt`.
fn ca_certificate(key: &KeyPair) -> Result<Certificate, rcgen::Error> {
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name = name("nantian xDS CA");
    ca.not_after = rcgen::date_time_ymd(2036, 1, 1);
    ca.self_signed(key)
}

/// Keys stay out of logs.
impl std::fmt::Debug for XdsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsTls").finish_non_exhaustive()
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Whether a verified client certificate (DER) names `gateway`.
pub fn certificate_names_gateway(cert_der: &[u8], gateway: &GatewayKey) -> bool {
    let der = rustls_pki_types::CertificateDer::from(cert_der);
    let Ok(cert) = webpki::EndEntityCert::try_from(&der) else {
        return false;
    };
    let Ok(name) = rustls_pki_types::ServerName::try_from(gateway_identity(gateway)) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    fn der(pem: &[u8]) -> Vec<u8> {
        rustls_pki_types::CertificateDer::from_pem_slice(pem)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn a_client_certificate_names_its_own_gateway_only() {
        let tls = XdsTls::generate(&["nantian-controller.ns.svc".into()]).unwrap();
        let web = GatewayKey::new("apps", "web");
        let data = tls.client_secret_data(&web).unwrap();
        let cert = der(&data[TLS_CERT].0);
        assert!(certificate_names_gateway(&cert, &web));
        assert!(!certificate_names_gateway(
            &cert,
            &GatewayKey::new("apps", "other")
        ));
        assert!(!certificate_names_gateway(
            &cert,
            &GatewayKey::new("other", "web")
        ));
        assert_eq!(data[CA_CERT].0, tls.ca_cert.as_bytes());
    }

    #[test]
    fn a_secret_without_the_ca_key_is_refused_with_what_is_missing() {
        let tls = XdsTls::generate(&["x".into()]).unwrap();
        let mut data = tls.secret_data();
        data.remove(CA_KEY);
        let secret = Secret {
            data: Some(data),
            ..Default::default()
        };
        let err = XdsTls::from_secret(&secret, "nantian-system", "xds")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("ca.key"), "{err}");
    }
}
