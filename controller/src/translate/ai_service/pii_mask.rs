//! An AIService's `piiMask` → the configuration of the built-in pii-mask filter, which
//! every rule using the AIService runs first among its own filters: on the way in it sees
//! the client's request before anything else rewrites it, on the way out the answer after
//! the backend's ai-adapter translated it back into the client's API.
//!
//! What the API server's schema and CEL rules refuse is checked here too (standalone mode
//! has neither), and so is what the filter's `init` would refuse: each custom pattern is
//! compiled as the filter compiles it. Problems make the AIService Invalid, naming each.

use std::collections::BTreeMap;

use nantian_proto::config;
use regex::RegexBuilder;
use serde::Serialize;

use crate::crd::AIServiceSpec;
use crate::translate::{PII_MASK, TranslateOptions, filter};

/// The filter holds a whole request (up to the host's 4 MiB) and its rewritten copy:
/// the engine's memory ceiling.
const MAX_MEMORY: u64 = 64 << 20;

/// The per-call budget. A request is scanned in the one call that gets its whole body
/// (the AI path reads it, up to 4 MiB, before the filters see it). Measured under the
/// engine (the filter's `costs` test, on a loaded 2-core machine): 30 ms per MiB of prose
/// and 122 ms per MiB of text dense with numbers, the worst the filter documents; scanning
/// is linear, so a 4 MiB request takes about 120 ms, or 490 ms of dense numbers. 1 s
/// leaves twice that. `init` (4-11 ms for the built-in detectors) and a streamed chunk
/// (about 5 ms per 16 KiB) need far less.
const TIMEOUT_MILLIS: u32 = 1000;

/// The most custom detectors, and their names' and patterns' longest, as in the CRD.
const MAX_CUSTOM: usize = 64;
const MAX_NAME_LEN: usize = 64;
const MAX_PATTERN_LEN: usize = 1024;

/// The size cap the filter compiles each custom pattern with (a pattern over it is
/// refused by its `init`).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// The built-in detectors: the CRD's name, the filter's.
const DETECTORS: [(&str, &str); 7] = [
    ("email", "email"),
    ("phone", "phone"),
    ("creditCard", "credit_card"),
    ("ssn", "ssn"),
    ("ipv4", "ipv4"),
    ("ipv6", "ipv6"),
    ("iban", "iban"),
];

/// The pii-mask component's configuration (shared contract with `filters/pii-mask`,
/// `src/config.rs`). Actions and directions are the CRD's names in lower case.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct PiiMaskConfig {
    /// Absent: every built-in detector.
    #[serde(skip_serializing_if = "Option::is_none")]
    detectors: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    custom: Vec<CustomDetector>,
    action: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    actions: BTreeMap<String, String>,
    direction: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct CustomDetector {
    name: String,
    pattern: String,
}

/// `spec.piiMask` checked → the filter's configuration (`None` without one), or every
/// problem it has.
pub(super) fn resolve(spec: &AIServiceSpec) -> Result<Option<PiiMaskConfig>, Vec<String>> {
    let Some(pii) = &spec.pii_mask else {
        return Ok(None);
    };
    let mut problems = Vec::new();

    let detectors = pii.detectors.as_ref().map(|listed| {
        let mut names: Vec<&'static str> = Vec::new();
        for detector in listed {
            let Some(name) = filter_detector(detector.as_str()) else {
                problems.push(format!(
                    "piiMask.detectors: the pii-mask filter has no detector {}",
                    detector.as_str()
                ));
                continue;
            };
            if names.contains(&name) {
                problems.push(format!(
                    "piiMask.detectors lists {} twice",
                    detector.as_str()
                ));
            } else {
                names.push(name);
            }
        }
        names
    });
    if detectors.as_ref().is_some_and(Vec::is_empty) && pii.custom.is_empty() {
        problems.push(
            "piiMask detects nothing: detectors is empty and there are no custom detectors"
                .to_string(),
        );
    }

    if pii.custom.len() > MAX_CUSTOM {
        problems.push(format!(
            "piiMask.custom has {} detectors, at most {MAX_CUSTOM} are allowed",
            pii.custom.len()
        ));
    }
    let mut custom: Vec<CustomDetector> = Vec::new();
    for c in &pii.custom {
        let what = format!("piiMask.custom {:?}", c.name);
        if let Err(message) = custom_name(&c.name) {
            problems.push(format!("{what}: {message}"));
        }
        if custom.iter().any(|earlier| earlier.name == c.name) {
            problems.push(format!("{what}: the name is used twice"));
        }
        if let Err(message) = custom_pattern(&c.pattern) {
            problems.push(format!("{what}: {message}"));
        }
        custom.push(CustomDetector {
            name: c.name.clone(),
            pattern: c.pattern.clone(),
        });
    }

    let mut actions = BTreeMap::new();
    for (key, action) in &pii.actions {
        let name = match filter_detector(key) {
            Some(name) if detectors.as_ref().is_none_or(|d| d.contains(&name)) => name,
            Some(_) => {
                problems.push(format!(
                    "piiMask.actions names {key}, which piiMask.detectors does not enable"
                ));
                continue;
            }
            None if custom.iter().any(|c| c.name == *key) => key.as_str(),
            None => {
                problems.push(format!(
                    "piiMask.actions names {key:?}, which is neither a built-in detector ({}) \
                     nor a custom one",
                    DETECTORS.map(|(crd, _)| crd).join(", ")
                ));
                continue;
            }
        };
        actions.insert(name.to_string(), action.as_str().to_ascii_lowercase());
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Some(PiiMaskConfig {
        detectors,
        custom,
        action: pii.action.as_str().to_ascii_lowercase(),
        actions,
        direction: pii.direction.as_str().to_ascii_lowercase(),
    }))
}

/// The rule filter running the mask of AIService `ns/name` with `config`, its module added
/// to `modules`.
pub(super) fn rule_filter(
    opts: &TranslateOptions,
    ns: &str,
    name: &str,
    config: &PiiMaskConfig,
    modules: &mut BTreeMap<String, config::FilterModule>,
) -> Result<config::RouteFilter, String> {
    let display_name = format!("PII mask {ns}/{name}");
    let mut kind = filter::builtin_wasm(opts, PII_MASK, &display_name, config, modules)?;
    if let config::route_filter::Kind::Wasm(wasm) = &mut kind {
        wasm.max_memory_bytes = MAX_MEMORY;
        wasm.timeout_millis = TIMEOUT_MILLIS;
    }
    Ok(config::RouteFilter { kind: Some(kind) })
}

/// A built-in detector's name in the filter, from its name in the CRD.
fn filter_detector(crd_name: &str) -> Option<&'static str> {
    DETECTORS
        .iter()
        .find(|(crd, _)| *crd == crd_name)
        .map(|(_, filter)| *filter)
}

/// The CRD's rules for a custom detector's name: a DNS label of at most 64 characters
/// (the filter's own rule is looser), not a built-in detector's name in any case.
fn custom_name(name: &str) -> Result<(), String> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    let label = !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes.iter().all(|&b| alnum(b) || b == b'-')
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1]);
    if !label {
        return Err(format!(
            "a name has 1 to {MAX_NAME_LEN} lower-case letters, digits and '-', starting and \
             ending with a letter or digit"
        ));
    }
    let taken = DETECTORS
        .iter()
        .any(|(crd, filter)| crd.eq_ignore_ascii_case(name) || filter.eq_ignore_ascii_case(name));
    if taken {
        return Err("the name is taken by a built-in detector".to_string());
    }
    Ok(())
}

/// A custom pattern as the filter's `init` takes it: a regular expression of the `regex`
/// crate within the filter's size cap that does not match the empty string.
fn custom_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("the pattern is empty".to_string());
    }
    if pattern.chars().count() > MAX_PATTERN_LEN {
        return Err(format!(
            "the pattern is longer than {MAX_PATTERN_LEN} characters"
        ));
    }
    let regex = RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            // The parser's message draws a caret under the pattern over several lines;
            // a condition message keeps only its last line, the actual complaint.
            let message = e.to_string();
            let complaint = message.lines().last().unwrap_or_default().trim();
            let complaint = complaint.strip_prefix("error: ").unwrap_or(complaint);
            format!("invalid regular expression {pattern:?}: {complaint}")
        })?;
    if regex.is_match("") {
        return Err(format!(
            "the pattern {pattern:?} matches the empty string, so it would match everywhere"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pii_mask: serde_json::Value) -> AIServiceSpec {
        serde_json::from_value(serde_json::json!({
            "backends": [{"name": "a", "provider": "openai", "endpoint": "http://a/v1"}],
            "piiMask": pii_mask,
        }))
        .unwrap()
    }

    fn config_json(pii_mask: serde_json::Value) -> serde_json::Value {
        let config = resolve(&spec(pii_mask)).unwrap().unwrap();
        serde_json::to_value(config).unwrap()
    }

    fn problems(pii_mask: serde_json::Value) -> String {
        resolve(&spec(pii_mask)).unwrap_err().join("; ")
    }

    #[test]
    fn crd_names_become_the_filters() {
        assert_eq!(
            config_json(serde_json::json!({})),
            serde_json::json!({"action": "mask", "direction": "both"})
        );
        let every = DETECTORS.map(|(crd, _)| crd);
        assert_eq!(
            config_json(serde_json::json!({
                "detectors": every,
                "custom": [{"name": "employee-id", "pattern": "EMP-[0-9]{6}"}],
                "action": "Redact",
                "actions": {"creditCard": "Reject", "employee-id": "Mask"},
                "direction": "Response",
            })),
            serde_json::json!({
                "detectors": ["email", "phone", "credit_card", "ssn", "ipv4", "ipv6", "iban"],
                "custom": [{"name": "employee-id", "pattern": "EMP-[0-9]{6}"}],
                "action": "redact",
                "actions": {"credit_card": "reject", "employee-id": "mask"},
                "direction": "response",
            })
        );
        assert_eq!(
            config_json(serde_json::json!({"direction": "Request", "action": "Reject"})),
            serde_json::json!({"action": "reject", "direction": "request"})
        );
        // Only custom detectors.
        assert_eq!(
            config_json(serde_json::json!({
                "detectors": [], "custom": [{"name": "t", "pattern": "T-[0-9]+"}]
            }))["detectors"],
            serde_json::json!([])
        );
    }

    #[test]
    fn what_the_api_server_or_the_filter_would_refuse_is_named() {
        for (pii_mask, expected) in [
            (
                serde_json::json!({"detectors": ["email", "email"]}),
                "piiMask.detectors lists email twice",
            ),
            (
                serde_json::json!({"detectors": []}),
                "piiMask detects nothing",
            ),
            (
                serde_json::json!({"actions": {"passport": "Mask"}}),
                "piiMask.actions names \"passport\", which is neither a built-in detector",
            ),
            (
                serde_json::json!({"actions": {"credit_card": "Mask"}}),
                "piiMask.actions names \"credit_card\"",
            ),
            (
                serde_json::json!({"detectors": ["phone"], "actions": {"email": "Reject"}}),
                "piiMask.actions names email, which piiMask.detectors does not enable",
            ),
            (
                serde_json::json!({"custom": [
                    {"name": "badge", "pattern": "B-[0-9]+"},
                    {"name": "badge", "pattern": "X-[0-9]+"},
                ]}),
                "piiMask.custom \"badge\": the name is used twice",
            ),
            (
                serde_json::json!({"custom": [{"name": "Email", "pattern": "x"}]}),
                "piiMask.custom \"Email\": a name has 1 to 64 lower-case letters",
            ),
            (
                serde_json::json!({"custom": [{"name": "iban", "pattern": "x"}]}),
                "piiMask.custom \"iban\": the name is taken by a built-in detector",
            ),
            (
                serde_json::json!({"custom": [{"name": "creditcard", "pattern": "x"}]}),
                "the name is taken by a built-in detector",
            ),
            (
                serde_json::json!({"custom": [{"name": "x", "pattern": ""}]}),
                "piiMask.custom \"x\": the pattern is empty",
            ),
            (
                serde_json::json!({"custom": [{"name": "x", "pattern": "a(b"}]}),
                "piiMask.custom \"x\": invalid regular expression \"a(b\": unclosed group",
            ),
            (
                serde_json::json!({"custom": [{"name": "x", "pattern": "(?<=a)b"}]}),
                "invalid regular expression",
            ),
            (
                serde_json::json!({"custom": [{"name": "x", "pattern": "[0-9]*"}]}),
                "matches the empty string",
            ),
            (
                serde_json::json!({"custom": [{"name": "x", "pattern": "a".repeat(1025)}]}),
                "longer than 1024 characters",
            ),
            (
                serde_json::json!({"custom": [{"name": "x", "pattern": "\\w{1000}"}]}),
                "invalid regular expression",
            ),
        ] {
            let message = problems(pii_mask.clone());
            assert!(message.contains(expected), "{pii_mask}: {message}");
        }
        let many: Vec<_> = (0..=MAX_CUSTOM)
            .map(|i| serde_json::json!({"name": format!("c{i}"), "pattern": format!("x{i}")}))
            .collect();
        assert!(problems(serde_json::json!({"custom": many})).contains("at most 64"));
    }
}
