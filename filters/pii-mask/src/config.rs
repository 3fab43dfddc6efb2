//! The filter's configuration: which detectors run, what happens to what they find, and
//! on which side of the exchange.
//!
//! ```json
//! {
//!   "detectors": ["email", "phone", "credit_card", "ssn", "ipv4", "ipv6", "iban"],
//!   "custom": [{"name": "employee_id", "pattern": "EMP-\\d{6}"}],
//!   "action": "mask",
//!   "actions": {"email": "reject"},
//!   "direction": "both"
//! }
//! ```
//!
//! Every field is optional; an empty configuration (no bytes, or `{}`) runs every
//! built-in detector, masks, in both directions. Unknown fields, unknown detector names,
//! unknown actions and directions, invalid or empty-matching custom patterns are errors
//! that name the problem.

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::detectors::BuiltIn;

/// Custom detectors allowed in one binding: each is a compiled regex in every instance.
pub const MAX_CUSTOM: usize = 64;
/// The longest custom detector name (it becomes the placeholder).
const MAX_NAME_LEN: usize = 64;
/// Compiled size cap of one custom pattern, so a configuration cannot exhaust an
/// instance's memory.
const MAX_PATTERN_BYTES: usize = 1 << 20;

/// What happens to a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replaced by a typed placeholder such as `[EMAIL]`.
    Mask,
    /// Replaced by `[REDACTED]`.
    Redact,
    /// The request is answered 400 instead (in a response: masked, see the crate docs).
    Reject,
}

impl Action {
    fn parse(name: &str, field: &str) -> Result<Action, String> {
        match name {
            "mask" => Ok(Action::Mask),
            "redact" => Ok(Action::Redact),
            "reject" => Ok(Action::Reject),
            other => Err(format!(
                "{field}: unknown action \"{other}\" (expected \"mask\", \"redact\" or \"reject\")"
            )),
        }
    }
}

/// Which messages are scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
    Both,
}

impl Direction {
    pub fn request(self) -> bool {
        matches!(self, Direction::Request | Direction::Both)
    }

    pub fn response(self) -> bool {
        matches!(self, Direction::Response | Direction::Both)
    }
}

/// What one detector looks for.
#[derive(Debug, Clone)]
pub enum DetectorKind {
    BuiltIn(BuiltIn),
    /// A named pattern from the configuration, compiled.
    Custom {
        name: String,
        regex: Regex,
    },
}

/// One enabled detector.
#[derive(Debug, Clone)]
pub struct DetectorSpec {
    pub kind: DetectorKind,
    pub action: Action,
}

impl DetectorSpec {
    /// The detector's name in the configuration and in error messages.
    pub fn name(&self) -> &str {
        match &self.kind {
            DetectorKind::BuiltIn(builtin) => builtin.name(),
            DetectorKind::Custom { name, .. } => name,
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Custom detectors first (they win ties, being the more specific), then the
    /// built-in ones in their canonical order.
    pub detectors: Vec<DetectorSpec>,
    pub direction: Direction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    detectors: Option<Vec<String>>,
    #[serde(default)]
    custom: Vec<RawCustom>,
    action: Option<String>,
    #[serde(default)]
    actions: BTreeMap<String, String>,
    direction: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCustom {
    name: String,
    pattern: String,
}

impl Config {
    /// Parses and validates the binding's configuration bytes.
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        Config::parse_inner(bytes).map_err(|problem| format!("pii-mask configuration: {problem}"))
    }

    fn parse_inner(bytes: &[u8]) -> Result<Config, String> {
        let raw: RawConfig = if bytes.trim_ascii().is_empty() {
            serde_json::from_str("{}").map_err(|e| e.to_string())?
        } else {
            serde_json::from_slice(bytes).map_err(|e| e.to_string())?
        };

        let default_action = match &raw.action {
            Some(name) => Action::parse(name, "action")?,
            None => Action::Mask,
        };
        let direction = match raw.direction.as_deref() {
            None | Some("both") => Direction::Both,
            Some("request") => Direction::Request,
            Some("response") => Direction::Response,
            Some(other) => {
                return Err(format!(
                    "direction: unknown direction \"{other}\" (expected \"request\", \"response\" or \"both\")"
                ));
            }
        };

        let builtins = match &raw.detectors {
            None => BuiltIn::ALL.to_vec(),
            Some(names) => {
                let mut enabled = Vec::new();
                for name in names {
                    let builtin = BuiltIn::from_name(name).ok_or_else(|| {
                        format!(
                            "detectors: unknown detector \"{name}\" (known: {})",
                            BuiltIn::ALL.map(BuiltIn::name).join(", ")
                        )
                    })?;
                    if enabled.contains(&builtin) {
                        return Err(format!("detectors: \"{name}\" is listed twice"));
                    }
                    enabled.push(builtin);
                }
                // Canonical order, whatever order they were listed in.
                BuiltIn::ALL
                    .into_iter()
                    .filter(|builtin| enabled.contains(builtin))
                    .collect()
            }
        };

        if raw.custom.len() > MAX_CUSTOM {
            return Err(format!(
                "custom: {} detectors, at most {MAX_CUSTOM} are allowed",
                raw.custom.len()
            ));
        }
        let mut detectors = Vec::with_capacity(raw.custom.len() + builtins.len());
        for (index, custom) in raw.custom.iter().enumerate() {
            let kind = custom_detector(custom, &raw.custom[..index])?;
            detectors.push(DetectorSpec {
                kind,
                action: default_action,
            });
        }
        detectors.extend(builtins.into_iter().map(|builtin| DetectorSpec {
            kind: DetectorKind::BuiltIn(builtin),
            action: default_action,
        }));
        if detectors.is_empty() {
            return Err(
                "nothing to detect: \"detectors\" is empty and there are no \"custom\" detectors"
                    .into(),
            );
        }

        for (name, action) in &raw.actions {
            let field = format!("actions.{name}");
            let action = Action::parse(action, &field)?;
            let detector = detectors
                .iter_mut()
                .find(|detector| detector.name() == name)
                .ok_or_else(|| {
                    let known = BuiltIn::from_name(name).is_some();
                    if known {
                        format!("{field}: detector \"{name}\" is not enabled in \"detectors\"")
                    } else {
                        format!("{field}: no detector is called \"{name}\"")
                    }
                })?;
            detector.action = action;
        }

        Ok(Config {
            detectors,
            direction,
        })
    }
}

/// Validates one custom detector against the built-in names and the ones before it.
fn custom_detector(custom: &RawCustom, earlier: &[RawCustom]) -> Result<DetectorKind, String> {
    let name = custom.name.as_str();
    let field = format!("custom \"{name}\"");
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "custom: a detector name must have 1 to {MAX_NAME_LEN} characters, got \"{name}\""
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "{field}: a name may hold only ASCII letters, digits, '_' and '-' (it becomes the placeholder)"
        ));
    }
    // Placeholders are upper case, so names equal but for case would be indistinguishable.
    if BuiltIn::ALL
        .iter()
        .any(|builtin| builtin.name().eq_ignore_ascii_case(name))
    {
        return Err(format!("{field}: the name is taken by a built-in detector"));
    }
    if earlier
        .iter()
        .any(|other| other.name.eq_ignore_ascii_case(name))
    {
        return Err(format!("{field}: the name is used twice"));
    }
    let regex = RegexBuilder::new(&custom.pattern)
        .size_limit(MAX_PATTERN_BYTES)
        .build()
        .map_err(|e| format!("{field}: invalid pattern: {e}"))?;
    if regex.is_match("") {
        return Err(format!(
            "{field}: the pattern matches the empty string, so it would match everywhere"
        ));
    }
    Ok(DetectorKind::Custom {
        name: name.to_string(),
        regex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        Config::parse(json.as_bytes())
    }

    fn names(config: &Config) -> Vec<&str> {
        config.detectors.iter().map(DetectorSpec::name).collect()
    }

    #[test]
    fn an_empty_configuration_masks_everything_both_ways() {
        for empty in ["", "  \n", "{}"] {
            let config = parse(empty).unwrap();
            assert_eq!(
                names(&config),
                [
                    "email",
                    "phone",
                    "credit_card",
                    "ssn",
                    "ipv4",
                    "ipv6",
                    "iban"
                ]
            );
            assert!(config.detectors.iter().all(|d| d.action == Action::Mask));
            assert_eq!(config.direction, Direction::Both);
        }
    }

    #[test]
    fn the_full_contract_parses() {
        let config = parse(
            r#"{"detectors": ["iban", "email"],
                "custom": [{"name": "employee_id", "pattern": "EMP-\\d{6}"}],
                "action": "redact", "actions": {"email": "reject", "employee_id": "mask"},
                "direction": "request"}"#,
        )
        .unwrap();
        assert_eq!(names(&config), ["employee_id", "email", "iban"]);
        let actions: Vec<Action> = config.detectors.iter().map(|d| d.action).collect();
        assert_eq!(actions, [Action::Mask, Action::Reject, Action::Redact]);
        assert_eq!(config.direction, Direction::Request);
        assert!(config.direction.request() && !config.direction.response());
    }

    #[test]
    fn only_custom_detectors_is_allowed() {
        let config =
            parse(r#"{"detectors": [], "custom": [{"name": "ticket", "pattern": "T-[0-9]+"}]}"#)
                .unwrap();
        assert_eq!(names(&config), ["ticket"]);
    }

    #[test]
    fn problems_are_named() {
        for (json, expected) in [
            (
                r#"{"detectors": ["email", "passport"]}"#,
                "unknown detector \"passport\"",
            ),
            (
                r#"{"detectors": ["email", "email"]}"#,
                "\"email\" is listed twice",
            ),
            (r#"{"action": "hide"}"#, "action: unknown action \"hide\""),
            (
                r#"{"actions": {"email": "drop"}}"#,
                "actions.email: unknown action \"drop\"",
            ),
            (
                r#"{"actions": {"passport": "mask"}}"#,
                "no detector is called \"passport\"",
            ),
            (
                r#"{"detectors": ["phone"], "actions": {"email": "mask"}}"#,
                "detector \"email\" is not enabled",
            ),
            (
                r#"{"direction": "sideways"}"#,
                "unknown direction \"sideways\"",
            ),
            (r#"{"detector": ["email"]}"#, "unknown field `detector`"),
            (
                r#"{"custom": [{"name": "x", "pattern": "a(b"}]}"#,
                "custom \"x\": invalid pattern",
            ),
            (
                r#"{"custom": [{"name": "x", "pattern": "a*"}]}"#,
                "matches the empty string",
            ),
            (
                r#"{"custom": [{"name": "bad name", "pattern": "a"}]}"#,
                "only ASCII letters",
            ),
            (
                r#"{"custom": [{"name": "", "pattern": "a"}]}"#,
                "1 to 64 characters",
            ),
            (
                r#"{"custom": [{"name": "EMAIL", "pattern": "a"}]}"#,
                "taken by a built-in detector",
            ),
            (
                r#"{"custom": [{"name": "a", "pattern": "a"}, {"name": "A", "pattern": "b"}]}"#,
                "used twice",
            ),
            (
                r#"{"custom": [{"name": "a", "pattern": "a", "flags": "i"}]}"#,
                "unknown field `flags`",
            ),
            (r#"{"detectors": []}"#, "nothing to detect"),
            ("[1, 2]", "invalid type"),
            ("{", "EOF"),
        ] {
            let error = parse(json).unwrap_err();
            assert!(error.starts_with("pii-mask configuration: "), "{error}");
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn too_many_custom_detectors_are_refused() {
        let custom: Vec<String> = (0..=MAX_CUSTOM)
            .map(|i| format!(r#"{{"name": "c{i}", "pattern": "x{i}"}}"#))
            .collect();
        let error = parse(&format!(r#"{{"custom": [{}]}}"#, custom.join(","))).unwrap_err();
        assert!(error.contains("at most 64"), "{error}");
    }
}
