//! TLS certificateRefs of HTTPS/TLS listeners: kind, ReferenceGrant, Secret shape, and
//! the PEM the host will serve (checked here with the same parser the host uses, so a
//! bad Secret is reported on the listener instead of being refused by the host).

use gateway_api::gateways::{GatewayListeners, GatewayListenersTlsMode};

use super::listener::GATEWAY_GROUP;
use super::reference_grant;
use crate::model::Resources;
use crate::status::{Problem, reason};
use k8s_openapi::api::core::v1::Secret;
use nantian_proto::config;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The usable certificates of a listener's tls.certificateRefs, and what is wrong with
/// the others (for its ResolvedRefs condition).
pub(super) fn listener_certificates(
    res: &Resources,
    owner: &Owner<'_>,
    spec: &GatewayListeners,
) -> (Vec<config::TlsCertificate>, Vec<Problem>) {
    let gateway_ns = owner.namespace;
    let mut certificates = Vec::new();
    let refs = spec
        .tls
        .as_ref()
        .and_then(|tls| tls.certificate_refs.clone())
        .unwrap_or_default();
    let passthrough = spec
        .tls
        .as_ref()
        .and_then(|tls| tls.mode.as_ref())
        .is_some_and(|m| matches!(m, GatewayListenersTlsMode::Passthrough));
    if refs.is_empty() && !passthrough {
        return (
            certificates,
            vec![Problem::new(
                reason::INVALID_CERTIFICATE_REF,
                "TLS termination needs tls.certificateRefs",
            )],
        );
    }
    let mut problems = Vec::new();
    for r in refs {
        let reference = SecretRef {
            group: r.group.as_deref().unwrap_or(""),
            kind: r.kind.as_deref().unwrap_or("Secret"),
            namespace: r.namespace.as_deref().unwrap_or(gateway_ns),
            name: &r.name,
        };
        match secret_certificate(res, owner, &reference, reason::INVALID_CERTIFICATE_REF) {
            Ok(certificate) => certificates.push(certificate),
            Err(problem) => problems.push(problem),
        }
    }
    (certificates, problems)
}

/// The object that refers to a Secret: a Gateway, or a ListenerSet for its listeners
/// (ReferenceGrants name the referring kind).
pub(super) struct Owner<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
}

/// A Gateway's reference to a kubernetes.io/tls Secret.
pub(super) struct SecretRef<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// The certificate and key of the Secret `owner` refers to, or why it can't be used:
/// `invalid_reason` for a wrong kind or a bad Secret, RefNotPermitted for a
/// cross-namespace reference without a ReferenceGrant.
pub(super) fn secret_certificate(
    res: &Resources,
    owner: &Owner<'_>,
    r: &SecretRef<'_>,
    invalid_reason: &'static str,
) -> Result<config::TlsCertificate, Problem> {
    let ns = r.namespace;
    let what = format!("certificateRef {ns}/{}", r.name);
    let invalid = |why: String| Problem::new(invalid_reason, format!("{what}: {why}"));
    if !r.group.is_empty() || r.kind != "Secret" {
        return Err(invalid(format!(
            "kind {} is not supported, only core Secret",
            r.kind
        )));
    }
    let permitted = reference_grant::permits(
        res,
        &reference_grant::From {
            group: GATEWAY_GROUP,
            kind: owner.kind,
            namespace: owner.namespace,
        },
        &reference_grant::To {
            group: "",
            kind: "Secret",
            namespace: ns,
            name: r.name,
        },
    );
    if !permitted {
        return Err(Problem::new(
            reason::REF_NOT_PERMITTED,
            format!("{what}: no ReferenceGrant in namespace {ns} allows it"),
        ));
    }
    let Some(secret) = res.secrets.get(&(ns.to_string(), r.name.to_string())) else {
        return Err(invalid("Secret not found".into()));
    };
    let has = |key: &str| {
        secret.data.as_ref().is_some_and(|d| d.contains_key(key))
            || secret
                .string_data
                .as_ref()
                .is_some_and(|d| d.contains_key(key))
    };
    if secret.type_.as_deref() != Some("kubernetes.io/tls") || !has("tls.crt") || !has("tls.key") {
        return Err(invalid(
            "not a kubernetes.io/tls Secret with tls.crt and tls.key".into(),
        ));
    }
    let certificate = config::TlsCertificate {
        source: format!("{ns}/{}", r.name),
        cert_chain_pem: secret_text(secret, "tls.crt"),
        private_key_pem: secret_text(secret, "tls.key"),
    };
    check_pem(&certificate).map_err(invalid)?;
    Ok(certificate)
}

/// The PEM CA bundle of ConfigMap `ns/name` (its `ca.crt`), or why it is unusable.
pub(super) fn ca_bundle_pem(res: &Resources, ns: &str, name: &str) -> Result<String, String> {
    let map = res
        .config_maps
        .get(&(ns.to_string(), name.to_string()))
        .ok_or("ConfigMap not found")?;
    let pem = map
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .ok_or("no ca.crt key")?;
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca.crt is not PEM: {e}"))?;
    if certificates.is_empty() {
        return Err("ca.crt holds no certificate".into());
    }
    Ok(pem.clone())
}

/// A Secret key's value: `data` (already base64-decoded), else `stringData`.
fn secret_text(secret: &Secret, key: &str) -> String {
    if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8_lossy(&bytes.0).into_owned();
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
        .unwrap_or_default()
}

/// Whether the host can serve this chain and key.
fn check_pem(c: &config::TlsCertificate) -> Result<(), String> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(c.cert_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("tls.crt is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(c.private_key_pem.as_bytes())
        .map_err(|e| format!("tls.key is not a PEM private key: {e}"))?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("tls.key is not a usable key: {e}"))?;
    rustls::sign::CertifiedKey::new(chain, signing_key)
        .keys_match()
        .map_err(|e| format!("tls.key does not match tls.crt: {e}"))
}
