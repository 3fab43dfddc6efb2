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
    gateway_ns: &str,
    spec: &GatewayListeners,
) -> (Vec<config::TlsCertificate>, Vec<Problem>) {
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
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Secret");
        let ns = r.namespace.as_deref().unwrap_or(gateway_ns);
        let what = format!("certificateRef {ns}/{}", r.name);
        if !group.is_empty() || kind != "Secret" {
            problems.push(Problem::new(
                reason::INVALID_CERTIFICATE_REF,
                format!("{what}: kind {kind} is not supported, only core Secret"),
            ));
            continue;
        }
        let permitted = reference_grant::permits(
            res,
            &reference_grant::From {
                group: GATEWAY_GROUP,
                kind: "Gateway",
                namespace: gateway_ns,
            },
            &reference_grant::To {
                group: "",
                kind: "Secret",
                namespace: ns,
                name: &r.name,
            },
        );
        if !permitted {
            problems.push(Problem::new(
                reason::REF_NOT_PERMITTED,
                format!("{what}: no ReferenceGrant in namespace {ns} allows it"),
            ));
            continue;
        }
        let Some(secret) = res.secrets.get(&(ns.to_string(), r.name.clone())) else {
            problems.push(Problem::new(
                reason::INVALID_CERTIFICATE_REF,
                format!("{what}: Secret not found"),
            ));
            continue;
        };
        let has = |key: &str| {
            secret.data.as_ref().is_some_and(|d| d.contains_key(key))
                || secret
                    .string_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(key))
        };
        if secret.type_.as_deref() != Some("kubernetes.io/tls")
            || !has("tls.crt")
            || !has("tls.key")
        {
            problems.push(Problem::new(
                reason::INVALID_CERTIFICATE_REF,
                format!("{what}: not a kubernetes.io/tls Secret with tls.crt and tls.key"),
            ));
            continue;
        }
        let certificate = config::TlsCertificate {
            source: format!("{ns}/{}", r.name),
            cert_chain_pem: secret_text(secret, "tls.crt"),
            private_key_pem: secret_text(secret, "tls.key"),
        };
        match check_pem(&certificate) {
            Ok(()) => certificates.push(certificate),
            Err(why) => problems.push(Problem::new(
                reason::INVALID_CERTIFICATE_REF,
                format!("{what}: {why}"),
            )),
        }
    }
    (certificates, problems)
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
