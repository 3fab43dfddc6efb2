//! Stage 1: GatewayClasses. Ours are those whose controllerName matches; each is accepted.

use std::collections::BTreeMap;

use super::{GATEWAY_API_VERSION, ObjectStatus, TranslateOptions};
use crate::model::{MetaExt, Resources};
use crate::status::{Condition, GatewayClassStatus, Problem, SupportedFeature, kind, reason};

/// Conformance features Nantian claims, in the ascending order the spec requires. Only
/// features whose behaviour the translator and host implement end to end belong here.
pub const SUPPORTED_FEATURES: &[&str] = &[
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    "GRPCRoute",
    "GRPCRouteNamedRouteRule",
    "Gateway",
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteBackendTimeout",
    "HTTPRouteCORS",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteSchemeRedirect",
    "ListenerSet",
    "ReferenceGrant",
    "TLSRoute",
    "TLSRouteModeMixed",
    "TLSRouteModeTerminate",
];

/// Our classes by name: Ok when accepted, else why not (its Gateways are then rejected).
pub(super) type OurClasses = BTreeMap<String, Result<(), Problem>>;

/// Emits a status for each of our classes and returns them.
pub(super) fn translate_classes(
    res: &Resources,
    opts: &TranslateOptions,
    statuses: &mut Vec<ObjectStatus>,
) -> OurClasses {
    let mut ours = OurClasses::new();
    for class in res.gateway_classes.values() {
        if class.spec.controller_name != opts.controller_name {
            continue;
        }
        let generation = class.generation();
        // Nantian takes no parameters, so any parametersRef points at something unsupported.
        let accepted = match &class.spec.parameters_ref {
            None => Ok(()),
            Some(p) => Err(Problem::new(
                reason::INVALID_PARAMETERS,
                format!(
                    "parametersRef {}/{} {} is not supported: Nantian GatewayClasses take no parameters",
                    if p.group.is_empty() { "core" } else { &p.group },
                    p.kind,
                    p.name
                ),
            )),
        };
        let status = GatewayClassStatus {
            conditions: vec![Condition::from_outcome(
                kind::ACCEPTED,
                &accepted,
                reason::ACCEPTED,
                "Accepted by the Nantian controller",
                generation,
            )],
            supported_features: SUPPORTED_FEATURES
                .iter()
                .map(|name| SupportedFeature {
                    name: name.to_string(),
                })
                .collect(),
        };
        statuses.push(ObjectStatus {
            api_version: GATEWAY_API_VERSION.to_string(),
            kind: "GatewayClass".to_string(),
            namespace: String::new(),
            name: class.name().to_string(),
            generation,
            status: serde_json::to_value(status).unwrap_or_default(),
        });
        ours.insert(class.name().to_string(), accepted);
    }
    ours
}

#[cfg(test)]
mod tests {
    #[test]
    fn supported_features_are_sorted() {
        let mut sorted = super::SUPPORTED_FEATURES.to_vec();
        sorted.sort();
        assert_eq!(sorted, super::SUPPORTED_FEATURES);
    }
}
