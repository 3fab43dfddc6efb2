//! BackendTLSPolicy: which Service ports the host must reach over TLS, how it verifies
//! them, and the policies' status.
//!
//! Policies are resolved before routes: a backendRef to a targeted Service port picks up
//! the policy's [`config::BackendTls`] (see [`BackendTlsPolicies::for_port`]). A policy
//! whose CA references are all unusable still applies, with nothing to trust: the spec
//! wants connections through it to fail, never to go out in cleartext. Its status has one
//! ancestor per Gateway of ours whose routes reach a Service port it targets.

use std::collections::{BTreeMap, BTreeSet};

use super::certificate::ca_bundle_pem;
use super::policy::{PolicyObject, policy_reason, policy_status, precedence, service_target};
use super::{ObjectStatus, TranslateOptions};
use crate::model::{Key, MetaExt, Resources};
use crate::status::{Condition, Problem, combine, kind, reason, sorted};
use gateway_api::backendtlspolicies::{
    BackendTlsPolicyValidation, BackendTlsPolicyValidationSubjectAltNamesType,
};
use nantian_proto::config;

const BACKEND_TLS_POLICY: &str = "BackendTLSPolicy";

/// Reasons the spec defines for BackendTLSPolicy conditions only.
mod tls_reason {
    pub const NO_VALID_CA_CERTIFICATE: &str = "NoValidCACertificate";
    pub const INVALID_CA_CERTIFICATE_REF: &str = "InvalidCACertificateRef";
}

/// The policy a Service port is under: the one naming the port (sectionName) wins over
/// one naming the whole Service.
type PortKey = (String, String, Option<String>);

/// A policy applied to a Service port.
#[derive(Clone, Debug)]
pub(super) struct AppliedPolicy {
    /// The policy, for its ancestors.
    pub policy: Key,
    pub tls: config::BackendTls,
}

/// Every BackendTLSPolicy's verdict, and what applies to which Service port.
#[derive(Debug, Default)]
pub(super) struct BackendTlsPolicies {
    applied: BTreeMap<PortKey, AppliedPolicy>,
    verdicts: BTreeMap<Key, Verdict>,
}

#[derive(Debug)]
struct Verdict {
    generation: i64,
    /// The Services it targets (namespace, name).
    services: BTreeSet<Key>,
    accepted: Result<(), Problem>,
    resolved_refs: Result<(), Problem>,
}

impl BackendTlsPolicies {
    /// The policy for port `port_name` of Service `namespace/service`, if any.
    pub fn for_port(
        &self,
        namespace: &str,
        service: &str,
        port_name: &str,
    ) -> Option<&AppliedPolicy> {
        let key = |section: Option<String>| (namespace.to_string(), service.to_string(), section);
        self.applied
            .get(&key(Some(port_name.to_string())))
            .or_else(|| self.applied.get(&key(None)))
    }

    /// One status per policy (see [`policy_status`]).
    pub fn statuses(
        &self,
        opts: &TranslateOptions,
        reached: &BTreeMap<Key, BTreeSet<Key>>,
        statuses: &mut Vec<ObjectStatus>,
    ) {
        for ((ns, name), verdict) in &self.verdicts {
            let g = verdict.generation;
            let conditions = sorted(vec![
                Condition::from_outcome(
                    kind::ACCEPTED,
                    &verdict.accepted,
                    reason::ACCEPTED,
                    "Policy is accepted",
                    g,
                ),
                Condition::from_outcome(
                    kind::RESOLVED_REFS,
                    &verdict.resolved_refs,
                    reason::RESOLVED_REFS,
                    "All references resolved",
                    g,
                ),
            ]);
            let object = PolicyObject {
                api_version: super::GATEWAY_API_VERSION,
                kind: BACKEND_TLS_POLICY,
                namespace: ns,
                name,
                generation: g,
            };
            statuses.push(policy_status(
                opts,
                reached,
                object,
                &verdict.services,
                conditions,
            ));
        }
    }
}

/// Resolves every policy: its TLS settings, conflicts between policies on one target,
/// and its conditions.
pub(super) fn resolve(res: &Resources) -> BackendTlsPolicies {
    let mut out = BackendTlsPolicies::default();
    // Candidates per target, in precedence order: oldest first, then by name.
    let mut by_target: BTreeMap<PortKey, Vec<(i64, Key)>> = BTreeMap::new();
    let mut settings: BTreeMap<Key, config::BackendTls> = BTreeMap::new();
    for (key, policy) in &res.backend_tls_policies {
        let ns = policy.namespace();
        let (tls, mut accepted, resolved_refs) = validation(res, ns, &policy.spec.validation);
        let mut targets = Vec::new();
        let mut services = BTreeSet::new();
        for target in &policy.spec.target_refs {
            let service = match service_target(res, ns, &target.group, &target.kind, &target.name) {
                Ok(service) => service,
                Err(problem) => {
                    accepted = accepted.and(Err(problem));
                    continue;
                }
            };
            services.insert(service);
            targets.push((
                ns.to_string(),
                target.name.clone(),
                target.section_name.clone(),
            ));
        }
        for target in targets {
            by_target
                .entry(target)
                .or_default()
                .push((policy.creation_seconds(), key.clone()));
        }
        settings.insert(key.clone(), tls);
        out.verdicts.insert(
            key.clone(),
            Verdict {
                generation: policy.generation(),
                services,
                accepted,
                resolved_refs,
            },
        );
    }
    for (target, candidates) in by_target {
        let Some((winner, losers)) = precedence(candidates) else {
            continue;
        };
        for loser in losers {
            if let Some(verdict) = out.verdicts.get_mut(&loser) {
                verdict.accepted = Err(Problem::new(
                    policy_reason::CONFLICTED,
                    format!(
                        "BackendTLSPolicy {}/{} takes precedence for this target",
                        winner.0, winner.1
                    ),
                ));
            }
        }
        if let Some(tls) = settings.get(&winner) {
            out.applied.insert(
                target,
                AppliedPolicy {
                    policy: winner,
                    tls: tls.clone(),
                },
            );
        }
    }
    // A policy that lost on one target is not in force on its others either: it is
    // not accepted as a whole.
    out.applied.retain(|_, applied| {
        out.verdicts.get(&applied.policy).is_none_or(|v| {
            v.accepted
                .as_ref()
                .err()
                .is_none_or(|p| p.reason != policy_reason::CONFLICTED)
        })
    });
    out
}

/// `spec.validation` → the host's settings, Accepted and ResolvedRefs.
fn validation(
    res: &Resources,
    ns: &str,
    v: &BackendTlsPolicyValidation,
) -> (config::BackendTls, Result<(), Problem>, Result<(), Problem>) {
    let mut tls = config::BackendTls {
        hostname: v.hostname.clone(),
        ..Default::default()
    };
    let mut invalid = Vec::new();
    if v.hostname.is_empty() {
        invalid.push("validation.hostname is required".to_string());
    }
    for san in v.subject_alt_names.iter().flatten() {
        let (type_, value) = match san.r#type {
            BackendTlsPolicyValidationSubjectAltNamesType::Hostname => ("Hostname", &san.hostname),
            BackendTlsPolicyValidationSubjectAltNamesType::Uri => ("URI", &san.uri),
        };
        match value.as_deref() {
            Some(value) if !value.is_empty() => {
                tls.subject_alt_names.push(config::SubjectAltName {
                    r#type: type_.to_string(),
                    value: value.to_string(),
                })
            }
            _ => invalid.push(format!("a subjectAltName of type {type_} needs a value")),
        }
    }
    let refs = v.ca_certificate_refs.as_deref().unwrap_or_default();
    match (v.well_known_ca_certificates.as_deref(), refs.is_empty()) {
        (Some("System"), true) => tls.system_roots = true,
        (Some(""), true) | (None, true) => invalid
            .push("validation needs caCertificateRefs or wellKnownCACertificates".to_string()),
        (Some(other), true) => invalid.push(format!(
            "wellKnownCACertificates {other:?} is not supported, only \"System\""
        )),
        (Some(_), false) => invalid.push(
            "only one of caCertificateRefs and wellKnownCACertificates may be set".to_string(),
        ),
        (None, false) => {}
    }
    let mut ref_problems = Vec::new();
    for r in refs {
        let what = format!("caCertificateRef {ns}/{}", r.name);
        if !r.group.is_empty() || r.kind != "ConfigMap" {
            let shown_group = if r.group.is_empty() { "core" } else { &r.group };
            ref_problems.push(Problem::new(
                reason::INVALID_KIND,
                format!(
                    "{what}: kind {shown_group}/{} is not supported, only core ConfigMap",
                    r.kind
                ),
            ));
            continue;
        }
        match ca_bundle_pem(res, ns, &r.name) {
            Ok(pem) => tls.ca_certificates_pem.push(pem),
            Err(why) => ref_problems.push(Problem::new(
                tls_reason::INVALID_CA_CERTIFICATE_REF,
                format!("{what}: {why}"),
            )),
        }
    }
    let mut accepted = match invalid.is_empty() {
        true => Ok(()),
        false => Err(Problem::new(reason::INVALID, invalid.join("; "))),
    };
    if !refs.is_empty() && tls.ca_certificates_pem.is_empty() {
        accepted = accepted.and(Err(Problem::new(
            tls_reason::NO_VALID_CA_CERTIFICATE,
            "none of the caCertificateRefs is usable",
        )));
    }
    if accepted.is_err() {
        // Nothing is trusted under a policy that is not accepted: connections through it
        // fail instead of being verified against less than the user asked for.
        tls.ca_certificates_pem.clear();
        tls.system_roots = false;
    }
    (tls, accepted, combine(ref_problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(yaml: &str) -> Resources {
        let mut res = Resources::default();
        let errors = crate::load::load_str("test.yaml", yaml, &mut res);
        assert!(errors.is_empty(), "{errors:?}");
        res
    }

    const SERVICE: &str = "
kind: Service
apiVersion: v1
metadata: {name: web, namespace: apps}
spec:
  ports: [{name: a, port: 443}, {name: b, port: 8443}]
";

    fn policy(name: &str, created: &str, section: Option<&str>, hostname: &str) -> String {
        let section = section.map_or(String::new(), |s| format!(", sectionName: {s}"));
        format!(
            "
kind: BackendTLSPolicy
apiVersion: gateway.networking.k8s.io/v1
metadata: {{name: {name}, namespace: apps, creationTimestamp: \"{created}\"}}
spec:
  targetRefs: [{{group: \"\", kind: Service, name: web{section}}}]
  validation:
    wellKnownCACertificates: System
    hostname: {hostname}
"
        )
    }

    #[test]
    fn the_oldest_policy_on_a_target_wins_and_a_section_beats_the_whole_service() {
        let yaml = [
            SERVICE.to_string(),
            policy("newer", "2024-01-02T00:00:00Z", None, "newer.example.com"),
            policy("older", "2024-01-01T00:00:00Z", None, "older.example.com"),
            policy("port-a", "2024-01-03T00:00:00Z", Some("a"), "a.example.com"),
        ]
        .join("---\n");
        let policies = resolve(&resources(&yaml));
        let a = policies.for_port("apps", "web", "a").unwrap();
        assert_eq!(a.tls.hostname, "a.example.com");
        let b = policies.for_port("apps", "web", "b").unwrap();
        assert_eq!(b.tls.hostname, "older.example.com");
        assert!(b.tls.system_roots);
        let newer = &policies.verdicts[&("apps".into(), "newer".into())];
        assert_eq!(newer.accepted.as_ref().unwrap_err().reason, "Conflicted");
        assert!(
            policies.verdicts[&("apps".into(), "older".into())]
                .accepted
                .is_ok()
        );
    }

    #[test]
    fn unusable_ca_refs_leave_nothing_trusted_and_say_why() {
        let yaml = format!(
            "{SERVICE}---
kind: ConfigMap
apiVersion: v1
metadata: {{name: empty, namespace: apps}}
data: {{}}
---
kind: BackendTLSPolicy
apiVersion: gateway.networking.k8s.io/v1
metadata: {{name: bad-ca, namespace: apps}}
spec:
  targetRefs: [{{group: \"\", kind: Service, name: web}}]
  validation:
    caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: empty}}]
    hostname: abc.example.com
---
kind: BackendTLSPolicy
apiVersion: gateway.networking.k8s.io/v1
metadata: {{name: bad-kind, namespace: apps}}
spec:
  targetRefs: [{{group: \"\", kind: Service, name: web, sectionName: b}}]
  validation:
    caCertificateRefs: [{{group: invalid.io, kind: InvalidKind, name: x}}]
    hostname: abc.example.com
"
        );
        let policies = resolve(&resources(&yaml));
        let applied = policies.for_port("apps", "web", "a").unwrap();
        assert!(applied.tls.ca_certificates_pem.is_empty() && !applied.tls.system_roots);
        let bad_ca = &policies.verdicts[&("apps".into(), "bad-ca".into())];
        assert_eq!(
            bad_ca.accepted.as_ref().unwrap_err().reason,
            "NoValidCACertificate"
        );
        assert_eq!(
            bad_ca.resolved_refs.as_ref().unwrap_err().reason,
            "InvalidCACertificateRef"
        );
        let bad_kind = &policies.verdicts[&("apps".into(), "bad-kind".into())];
        assert_eq!(
            bad_kind.resolved_refs.as_ref().unwrap_err().reason,
            "InvalidKind"
        );
        assert!(policies.for_port("apps", "web", "b").is_some());
    }
}
