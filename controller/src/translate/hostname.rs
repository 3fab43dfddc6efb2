//! Hostname intersection between a listener and a route (Gateway API semantics).
//!
//! A wildcard `*.example.com` stands for one or more labels in front of `example.com`,
//! never for `example.com` itself. Comparison ignores ASCII case.

/// Whether a listener hostname (None or "" = any) and a route's hostnames (empty = any)
/// have at least one host in common.
pub fn intersects(listener: Option<&str>, route_hostnames: &[String]) -> bool {
    let listener = listener.filter(|h| !h.is_empty());
    match listener {
        None => true,
        Some(listener) => {
            route_hostnames.is_empty()
                || route_hostnames
                    .iter()
                    .any(|route| pair_intersects(listener, route))
        }
    }
}

fn pair_intersects(a: &str, b: &str) -> bool {
    let a = a.to_ascii_lowercase();
    let b = b.to_ascii_lowercase();
    match (wildcard_suffix(&a), wildcard_suffix(&b)) {
        (None, None) => a == b,
        (Some(suffix), None) => covers(suffix, &b),
        (None, Some(suffix)) => covers(suffix, &a),
        // Two wildcards share hosts when one's domain lies within the other's.
        (Some(x), Some(y)) => x.ends_with(y) || y.ends_with(x),
    }
}

/// For `*.example.com`, `.example.com`.
fn wildcard_suffix(host: &str) -> Option<&str> {
    host.strip_prefix('*').filter(|rest| rest.starts_with('.'))
}

/// Whether the exact `host` is one of the hosts `*<suffix>` stands for: it ends with the
/// suffix and has at least one non-empty label in front of it.
fn covers(suffix: &str, host: &str) -> bool {
    host.len() > suffix.len() && host.ends_with(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn any_side_empty_matches() {
        assert!(intersects(None, &hosts(&["a.com"])));
        assert!(intersects(Some(""), &hosts(&["a.com"])));
        assert!(intersects(Some("a.com"), &[]));
    }

    #[test]
    fn exact_hosts_compare_case_insensitively() {
        assert!(intersects(
            Some("Very.Specific.com"),
            &hosts(&["very.specific.com"])
        ));
        assert!(!intersects(Some("a.com"), &hosts(&["b.com"])));
    }

    #[test]
    fn wildcard_covers_one_or_more_labels_but_not_the_bare_domain() {
        let listener = Some("*.wildcard.io");
        assert!(intersects(listener, &hosts(&["foo.wildcard.io"])));
        assert!(intersects(listener, &hosts(&["foo.bar.wildcard.io"])));
        assert!(!intersects(listener, &hosts(&["wildcard.io"])));
        assert!(!intersects(listener, &hosts(&["foowildcard.io"])));
        // And the other way round: a route wildcard against an exact listener.
        assert!(intersects(
            Some("very.specific.com"),
            &hosts(&["*.specific.com"])
        ));
        assert!(!intersects(
            Some("specific.com"),
            &hosts(&["*.specific.com"])
        ));
    }

    #[test]
    fn wildcards_intersect_when_one_domain_contains_the_other() {
        assert!(intersects(
            Some("*.example.com"),
            &hosts(&["*.foo.example.com"])
        ));
        assert!(intersects(
            Some("*.foo.example.com"),
            &hosts(&["*.example.com"])
        ));
        assert!(intersects(
            Some("*.example.com"),
            &hosts(&["*.example.com"])
        ));
        assert!(!intersects(
            Some("*.example.com"),
            &hosts(&["*.example.org"])
        ));
        assert!(!intersects(Some("*.ample.com"), &hosts(&["*.example.com"])));
    }

    #[test]
    fn one_intersecting_hostname_is_enough() {
        assert!(intersects(
            Some("very.specific.com"),
            &hosts(&[
                "non.matching.com",
                "*.nonmatchingwildcard.io",
                "very.specific.com"
            ])
        ));
        assert!(!intersects(
            Some("*.wildcard.io"),
            &hosts(&["specific.but.wrong.com", "wildcard.io"])
        ));
    }
}
