//! Kubernetes label selectors (matchLabels + matchExpressions) for allowedRoutes.

use std::collections::BTreeMap;

use gateway_api::gateways::GatewayListenersAllowedRoutesNamespacesSelector as Selector;

/// A selector checked once, when the listener is built.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct LabelSelector {
    match_labels: BTreeMap<String, String>,
    expressions: Vec<Expression>,
}

#[derive(Clone, Debug, PartialEq)]
enum Expression {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl LabelSelector {
    /// Validates a selector; the error says which expression is invalid.
    pub(super) fn parse(selector: &Selector) -> Result<Self, String> {
        let mut expressions = Vec::new();
        for e in selector.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let key = e.key.clone();
            let expression = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!(
                        "matchExpressions operator {} on {key:?} needs values",
                        e.operator
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!(
                        "matchExpressions operator {} on {key:?} takes no values",
                        e.operator
                    ));
                }
                "In" => Expression::In(key, values),
                "NotIn" => Expression::NotIn(key, values),
                "Exists" => Expression::Exists(key),
                "DoesNotExist" => Expression::DoesNotExist(key),
                other => return Err(format!("unknown matchExpressions operator {other:?}")),
            };
            expressions.push(expression);
        }
        Ok(LabelSelector {
            match_labels: selector.match_labels.clone().unwrap_or_default(),
            expressions,
        })
    }

    /// Whether labels satisfy every term; an empty selector matches everything.
    pub(super) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|e| match e {
                Expression::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
                Expression::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
                Expression::Exists(k) => labels.contains_key(k),
                Expression::DoesNotExist(k) => !labels.contains_key(k),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_api::gateways::GatewayListenersAllowedRoutesNamespacesSelectorMatchExpressions as Expr;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> Expr {
        Expr {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions_all_apply() {
        let selector = LabelSelector::parse(&Selector {
            match_labels: Some(labels(&[("team", "a")])),
            match_expressions: Some(vec![
                expr("env", "In", &["prod", "staging"]),
                expr("tier", "NotIn", &["db"]),
                expr("owner", "Exists", &[]),
                expr("legacy", "DoesNotExist", &[]),
            ]),
        })
        .unwrap();
        let good = labels(&[("team", "a"), ("env", "prod"), ("owner", "x")]);
        assert!(selector.matches(&good));
        let mut wrong_env = good.clone();
        wrong_env.insert("env".into(), "dev".into());
        assert!(!selector.matches(&wrong_env));
        let mut excluded_tier = good.clone();
        excluded_tier.insert("tier".into(), "db".into());
        assert!(!selector.matches(&excluded_tier));
        let mut legacy = good.clone();
        legacy.insert("legacy".into(), "".into());
        assert!(!selector.matches(&legacy));
        assert!(!selector.matches(&labels(&[("env", "prod"), ("owner", "x")])));
    }

    #[test]
    fn empty_selector_matches_everything() {
        let selector = LabelSelector::parse(&Selector::default()).unwrap();
        assert!(selector.matches(&labels(&[])));
    }

    #[test]
    fn invalid_operators_are_rejected() {
        let bad = |e| {
            LabelSelector::parse(&Selector {
                match_labels: None,
                match_expressions: Some(vec![e]),
            })
        };
        assert!(bad(expr("a", "Equals", &["x"])).is_err());
        assert!(bad(expr("a", "In", &[])).is_err());
        assert!(bad(expr("a", "Exists", &["x"])).is_err());
    }
}
