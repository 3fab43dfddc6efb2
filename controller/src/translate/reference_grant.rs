//! Cross-namespace references: allowed only by a ReferenceGrant in the target namespace.

use crate::model::{MetaExt, Resources};

/// The referring side: group and kind of the object holding the reference, and its namespace.
pub(super) struct From<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
}

/// The referenced object.
pub(super) struct To<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Same-namespace references are always allowed; others need a ReferenceGrant in the
/// target's namespace listing the referrer in `from` and the target in `to` (a `to`
/// without a name covers every object of that kind).
pub(super) fn permits(res: &Resources, from: &From<'_>, to: &To<'_>) -> bool {
    if from.namespace == to.namespace {
        return true;
    }
    res.reference_grants
        .values()
        .filter(|grant| grant.namespace() == to.namespace)
        .any(|grant| {
            let from_ok = grant.spec.from.iter().any(|f| {
                f.group == from.group && f.kind == from.kind && f.namespace == from.namespace
            });
            let to_ok = grant.spec.to.iter().any(|t| {
                t.group == to.group
                    && t.kind == to.kind
                    && t.name
                        .as_deref()
                        .is_none_or(|n| n.is_empty() || n == to.name)
            });
            from_ok && to_ok
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_api::referencegrants::{
        ReferenceGrant, ReferenceGrantFrom, ReferenceGrantSpec, ReferenceGrantTo,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn grant(ns: &str, from_ns: &str, to_name: Option<&str>) -> ReferenceGrant {
        ReferenceGrant {
            metadata: ObjectMeta {
                name: Some("g".into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: ReferenceGrantSpec {
                from: vec![ReferenceGrantFrom {
                    group: "gateway.networking.k8s.io".into(),
                    kind: "HTTPRoute".into(),
                    namespace: from_ns.into(),
                }],
                to: vec![ReferenceGrantTo {
                    group: "".into(),
                    kind: "Service".into(),
                    name: to_name.map(str::to_string),
                }],
            },
        }
    }

    fn check(res: &Resources, from_ns: &str, to_ns: &str, name: &str) -> bool {
        permits(
            res,
            &From {
                group: "gateway.networking.k8s.io",
                kind: "HTTPRoute",
                namespace: from_ns,
            },
            &To {
                group: "",
                kind: "Service",
                namespace: to_ns,
                name,
            },
        )
    }

    #[test]
    fn grants_apply_only_in_the_target_namespace_and_to_named_objects() {
        let mut res = Resources::default();
        assert!(check(&res, "a", "a", "svc"));
        assert!(!check(&res, "a", "b", "svc"));
        res.reference_grants
            .insert(("b".into(), "g".into()), grant("b", "a", Some("svc")));
        assert!(check(&res, "a", "b", "svc"));
        assert!(!check(&res, "a", "b", "other"));
        assert!(!check(&res, "c", "b", "svc"));
        // A grant living in the referrer's namespace does not count.
        res.reference_grants
            .insert(("a".into(), "g".into()), grant("a", "a", None));
        assert!(!check(&res, "a", "c", "svc"));
        res.reference_grants
            .insert(("c".into(), "g".into()), grant("c", "a", None));
        assert!(check(&res, "a", "c", "anything"));
    }
}
