//! Gateway `spec.tls.frontend`: client certificate validation for HTTPS listeners, per
//! port (`perPort`) or by default, with CA bundles from ConfigMaps (`ca.crt`).

use gateway_api::gateways::Gateway;
use nantian_proto::config;
use serde::Deserialize;

use super::certificate::ca_bundle_pem;
use super::listener::{GATEWAY_GROUP, ListenerState};
use super::reference_grant;
use crate::model::{MetaExt, Resources};
use crate::status::{Problem, reason};

const INVALID_CA_CERTIFICATE_REF: &str = "InvalidCACertificateRef";
const INVALID_CA_CERTIFICATE_KIND: &str = "InvalidCACertificateKind";
const NO_VALID_CA_CERTIFICATE: &str = "NoValidCACertificate";

/// The shape shared by `frontend.default.validation` and `perPort[].tls.validation`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Validation {
    #[serde(default)]
    ca_certificate_refs: Vec<ObjectRef>,
    mode: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ObjectRef {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: String,
    name: String,
    namespace: Option<String>,
}

/// Applies the Gateway's frontend validation for `listener`'s port to it: the CA bundles
/// the host checks client certificates against, and the conditions the spec asks for when
/// references are bad (ResolvedRefs False; Accepted False NoValidCACertificate when none
/// is usable).
pub(super) fn apply(res: &Resources, gateway: &Gateway, listener: &mut ListenerState) {
    if listener.protocol != "HTTPS" {
        return;
    }
    let Some(validation) = validation_for_port(gateway, listener.port) else {
        return;
    };
    let gateway_ns = gateway.namespace();
    let mut bundles = Vec::new();
    let mut problems = Vec::new();
    for r in &validation.ca_certificate_refs {
        match ca_bundle(res, gateway_ns, r) {
            Ok(pem) => bundles.push(pem),
            Err(problem) => problems.push(problem),
        }
    }
    if bundles.is_empty() {
        let why = "no usable CA certificate in tls.frontend validation";
        listener.accepted = listener
            .accepted
            .clone()
            .and(Err(Problem::new(NO_VALID_CA_CERTIFICATE, why)));
    }
    if !problems.is_empty() {
        let mut all: Vec<Problem> = listener.resolved_refs.clone().err().into_iter().collect();
        all.extend(problems);
        listener.resolved_refs = crate::status::combine(all);
    }
    listener.client_validation = Some(config::ClientValidation {
        ca_certificates_pem: bundles,
        allow_insecure_fallback: validation.mode.as_deref() == Some("AllowInsecureFallback"),
    });
}

/// `perPort` for this port, else `default`.
fn validation_for_port(gateway: &Gateway, port: i32) -> Option<Validation> {
    let frontend = gateway.spec.tls.as_ref()?.frontend.as_ref()?;
    let per_port = frontend
        .per_port
        .iter()
        .flatten()
        .find(|p| p.port == port)
        .map(|p| serde_json::to_value(&p.tls.validation));
    let value = match per_port {
        Some(value) => value,
        None => serde_json::to_value(&frontend.default.validation),
    }
    .ok()?;
    serde_json::from_value::<Option<Validation>>(value).ok()?
}

fn ca_bundle(res: &Resources, gateway_ns: &str, r: &ObjectRef) -> Result<String, Problem> {
    let ns = r.namespace.as_deref().unwrap_or(gateway_ns);
    let what = format!("caCertificateRef {ns}/{}", r.name);
    if !r.group.is_empty() || r.kind != "ConfigMap" {
        return Err(Problem::new(
            INVALID_CA_CERTIFICATE_KIND,
            format!(
                "{what}: kind {} is not supported, only core ConfigMap",
                r.kind
            ),
        ));
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
            kind: "ConfigMap",
            namespace: ns,
            name: &r.name,
        },
    );
    if !permitted {
        return Err(Problem::new(
            reason::REF_NOT_PERMITTED,
            format!("{what}: no ReferenceGrant in namespace {ns} allows it"),
        ));
    }
    ca_bundle_pem(res, ns, &r.name)
        .map_err(|why| Problem::new(INVALID_CA_CERTIFICATE_REF, format!("{what}: {why}")))
}
