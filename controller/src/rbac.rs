//! The controller's RBAC, as tables: what it reads, what it writes, and nothing more.
//!
//! [`RULES`] become the ClusterRole (everything across namespaces); [`NAMESPACE_RULES`] a Role
//! in the controller's own namespace (leader election). `charts/nantian/templates/
//! clusterrole.yaml` and `role.yaml` are generated from [`cluster_role`] and [`role`] by
//! `cargo xtask gen`, and `controller/tests/manifests.rs` fails when they drift apart. Change
//! the tables here, never the YAML.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The name of the ClusterRole and of the Role, bound by the chart's bindings.
pub const CLUSTER_ROLE_NAME: &str = "nantian-controller";

/// One RBAC rule: these verbs on these resources of these API groups.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// API groups (`""` is the core group).
    pub api_groups: &'static [&'static str],
    /// Resources, plural, or `resource/subresource`.
    pub resources: &'static [&'static str],
    /// Verbs. Never `*`.
    pub verbs: &'static [&'static str],
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE_STATUS: &[&str] = &["patch", "update"];
/// Objects provisioned per Gateway: read (to watch what it owns) and managed whole.
const MANAGE: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];

const GATEWAY_API: &str = "gateway.networking.k8s.io";
const GATEWAY_API_X: &str = "gateway.networking.x-k8s.io";
const NANTIAN: &str = crate::crd::GROUP;

/// Every rule of the controller's ClusterRole: what it does in any namespace.
pub const RULES: &[Rule] = &[
    // Gateway API, read.
    Rule {
        api_groups: &[GATEWAY_API],
        resources: &[
            "gatewayclasses",
            "gateways",
            "httproutes",
            "grpcroutes",
            "tlsroutes",
            "tcproutes",
            "udproutes",
            "referencegrants",
            "backendtlspolicies",
            "backendlbpolicies",
            "listenersets",
        ],
        verbs: READ,
    },
    // Gateway API statuses (ReferenceGrant has none).
    Rule {
        api_groups: &[GATEWAY_API],
        resources: &[
            "gatewayclasses/status",
            "gateways/status",
            "httproutes/status",
            "grpcroutes/status",
            "tlsroutes/status",
            "tcproutes/status",
            "udproutes/status",
            "backendtlspolicies/status",
            "backendlbpolicies/status",
            "listenersets/status",
        ],
        verbs: WRITE_STATUS,
    },
    // The experimental group: XBackendTrafficPolicy.
    Rule {
        api_groups: &[GATEWAY_API_X],
        resources: &["xbackendtrafficpolicies"],
        verbs: READ,
    },
    Rule {
        api_groups: &[GATEWAY_API_X],
        resources: &["xbackendtrafficpolicies/status"],
        verbs: WRITE_STATUS,
    },
    // Nantian's own kinds.
    Rule {
        api_groups: &[NANTIAN],
        resources: &["aiservices", "tokenpolicies", "wasmplugins"],
        verbs: READ,
    },
    Rule {
        api_groups: &[NANTIAN],
        resources: &[
            "aiservices/status",
            "tokenpolicies/status",
            "wasmplugins/status",
        ],
        verbs: WRITE_STATUS,
    },
    // Read only: where routes may attach (namespace selectors).
    Rule {
        api_groups: &[""],
        resources: &["namespaces"],
        verbs: READ,
    },
    // Backends, certificates and CA bundles are read; the Services, ServiceAccounts,
    // ConfigMaps and Secrets of each Gateway's hosts are provisioned.
    Rule {
        api_groups: &[""],
        resources: &["services", "serviceaccounts", "configmaps", "secrets"],
        verbs: MANAGE,
    },
    Rule {
        api_groups: &["discovery.k8s.io"],
        resources: &["endpointslices"],
        verbs: READ,
    },
    // Each Gateway's host Deployment.
    Rule {
        api_groups: &["apps"],
        resources: &["deployments"],
        verbs: MANAGE,
    },
    // Events (kube's Recorder creates them and patches repeats into a series).
    Rule {
        api_groups: &["events.k8s.io"],
        resources: &["events"],
        verbs: &["create", "patch"],
    },
];

/// The rules of the controller's Role in its own namespace.
pub const NAMESPACE_RULES: &[Rule] = &[
    // Leader election: one Lease, `--leader-election-id`.
    Rule {
        api_groups: &["coordination.k8s.io"],
        resources: &["leases"],
        verbs: &["get", "create", "update"],
    },
];

/// The controller's ClusterRole, built from [`RULES`].
pub fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: metadata(),
        rules: Some(policy_rules(RULES)),
        ..ClusterRole::default()
    }
}

/// The controller's Role, built from [`NAMESPACE_RULES`]. It has no namespace: it is created
/// in the namespace it is applied to (the Helm release's).
pub fn role() -> Role {
    Role {
        metadata: metadata(),
        rules: Some(policy_rules(NAMESPACE_RULES)),
    }
}

fn metadata() -> ObjectMeta {
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "nantian".to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "controller".to_owned(),
        ),
    ]);
    ObjectMeta {
        name: Some(CLUSTER_ROLE_NAME.to_owned()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

fn policy_rules(rules: &[Rule]) -> Vec<PolicyRule> {
    rules
        .iter()
        .map(|rule| PolicyRule {
            api_groups: Some(owned(rule.api_groups)),
            resources: Some(owned(rule.resources)),
            verbs: owned(rule.verbs),
            ..PolicyRule::default()
        })
        .collect()
}

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_wildcards_and_no_duplicates() {
        let mut seen = std::collections::BTreeSet::new();
        for rule in RULES.iter().chain(NAMESPACE_RULES) {
            for list in [rule.api_groups, rule.resources, rule.verbs] {
                assert!(!list.is_empty());
                assert!(list.iter().all(|s| !s.contains('*')), "{rule:?}");
            }
            for group in rule.api_groups {
                for resource in rule.resources {
                    for verb in rule.verbs {
                        assert!(
                            seen.insert((*group, *resource, *verb)),
                            "{group} {resource} {verb} twice"
                        );
                    }
                }
            }
        }
    }

    fn allows_in(rules: &[Rule], group: &str, resource: &str, verb: &str) -> bool {
        rules.iter().any(|r| {
            r.api_groups.contains(&group)
                && r.resources.contains(&resource)
                && r.verbs.contains(&verb)
        })
    }

    fn allows(group: &str, resource: &str, verb: &str) -> bool {
        allows_in(RULES, group, resource, verb)
    }

    #[test]
    fn covers_what_the_controller_does() {
        for crd in crate::crd::crds() {
            let plural = crd.spec.names.plural;
            assert!(allows(NANTIAN, &plural, "watch"), "{plural}");
            assert!(
                allows(NANTIAN, &format!("{plural}/status"), "patch"),
                "{plural}"
            );
        }
        assert!(allows(GATEWAY_API, "httproutes/status", "patch"));
        assert!(allows(GATEWAY_API_X, "xbackendtrafficpolicies", "list"));
        assert!(allows("discovery.k8s.io", "endpointslices", "watch"));
        assert!(allows("apps", "deployments", "delete"));
        assert!(allows("", "secrets", "get"));
        assert!(allows_in(
            NAMESPACE_RULES,
            "coordination.k8s.io",
            "leases",
            "update"
        ));
        assert!(
            !allows("coordination.k8s.io", "leases", "update"),
            "leases only at home"
        );
        assert!(allows("events.k8s.io", "events", "create"));
        // Nothing the controller has no use for.
        assert!(!allows("", "pods", "get"));
        assert!(!allows("", "namespaces", "delete"));
        assert!(!allows(GATEWAY_API, "gateways", "delete"));
        assert!(!allows_in(
            NAMESPACE_RULES,
            "coordination.k8s.io",
            "leases",
            "delete"
        ));
    }

    #[test]
    fn roles_have_every_rule() {
        let cluster = cluster_role();
        assert_eq!(cluster.metadata.name.as_deref(), Some(CLUSTER_ROLE_NAME));
        assert_eq!(cluster.rules.unwrap().len(), RULES.len());
        let role = role();
        assert_eq!(role.metadata.namespace, None);
        assert_eq!(role.rules.unwrap().len(), NAMESPACE_RULES.len());
    }
}
