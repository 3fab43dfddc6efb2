//! TLS certificateRefs of HTTPS/TLS listeners: kind, ReferenceGrant, Secret shape.

use gateway_api::gateways::{GatewayListeners, GatewayListenersTlsMode};

use super::listener::GATEWAY_GROUP;
use super::reference_grant;
use crate::model::Resources;
use crate::status::{Problem, reason};

/// Checks tls.certificateRefs even though TLS is not served yet, so that the listener's
/// ResolvedRefs condition tells the truth about them.
pub(super) fn certificate_problems(
    res: &Resources,
    gateway_ns: &str,
    spec: &GatewayListeners,
) -> Vec<Problem> {
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
        return vec![Problem::new(
            reason::INVALID_CERTIFICATE_REF,
            "TLS termination needs tls.certificateRefs",
        )];
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
        }
    }
    problems
}
