//! The binding's configuration, written by the controller from a TokenPolicy:
//!
//! ```json
//! {
//!   "policy": "team-a/per-tenant",
//!   "limits": {"tokensPerMinute": 20000, "tokensPerHour": 100000,
//!              "tokensPerDay": 2000000, "requestsPerMinute": 60},
//!   "burst": 5000,
//!   "key": {"type": "header", "header": "x-tenant"},
//!   "onLimit": {"statusCode": 429, "message": "token budget spent", "retryAfter": true}
//! }
//! ```
//!
//! - `policy` (required): the policy's name, reported with each refusal.
//! - `limits` (required, at least one): each a whole number from 1 to 2^62.
//! - `burst`: extra depth of the `tokensPerMinute` bucket (which it needs).
//! - `key` (required): whose budget a request spends, see [`KeySource`].
//! - `onLimit`: the refusal's `statusCode` (400–599, default 429), `message` (default: one
//!   naming the limit; also when empty) and whether it carries `Retry-After`
//!   (`retryAfter`, default true).
//!
//! Unknown fields are refused, and every error names the field it is about. The fields
//! are read by hand rather than with serde's derive, whose type errors say where in the
//! text a value is wrong but not which field it is.

use serde_json::{Map, Value};

use crate::budget::{Kind, Limit};
use crate::key::KeySource;

/// The largest limit or burst: far beyond any real budget, and small enough that a limit
/// plus a burst never overflows the counters' `i64`.
pub const MAX_AMOUNT: u64 = 1 << 62;
/// The longest `policy` and `onLimit.message` (they travel in attributes and responses).
const MAX_TEXT: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub policy: String,
    /// The configured limits, in the order they are checked: [`Kind::ALL`].
    pub limits: Vec<Limit>,
    /// Extra depth of the tokens-per-minute bucket.
    pub burst: u64,
    pub key: KeySource,
    pub on_limit: OnLimit,
}

/// What a refused request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnLimit {
    pub status: u16,
    /// `None`: a message naming the limit.
    pub message: Option<String>,
    pub retry_after: bool,
}

impl Default for OnLimit {
    fn default() -> Self {
        OnLimit {
            status: 429,
            message: None,
            retry_after: true,
        }
    }
}

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("token-limit configuration is not JSON: {e}"))?;
        let top = Fields::of(&value, "", &["policy", "limits", "burst", "key", "onLimit"])?;
        let policy = top.text("policy")?.ok_or("policy: required")?;
        if policy.trim().is_empty() {
            return Err("policy: must not be empty".into());
        }
        let limits = top.object("limits", &Kind::ALL.map(Kind::field))?;
        let limits = limits.ok_or("limits: required")?;
        let mut parsed = Vec::new();
        for kind in Kind::ALL {
            if let Some(max) = limits.amount(kind.field())? {
                if max == 0 {
                    return Err(format!("limits.{}: must be at least 1", kind.field()));
                }
                parsed.push(Limit { kind, max });
            }
        }
        if parsed.is_empty() {
            return Err(format!(
                "limits: name at least one of {}",
                Kind::ALL.map(Kind::field).join(", ")
            ));
        }
        let burst = top.amount("burst")?.unwrap_or(0);
        if burst > 0 && !parsed.iter().any(|l| l.kind == Kind::TokensPerMinute) {
            return Err("burst: applies to limits.tokensPerMinute, which is not set".into());
        }
        let key = top.object("key", &["type", "header"])?;
        let key = key_source(&key.ok_or("key: required")?)?;
        let on_limit = match top.object("onLimit", &["statusCode", "message", "retryAfter"])? {
            Some(fields) => on_limit(&fields)?,
            None => OnLimit::default(),
        };
        Ok(Config {
            policy: policy.to_owned(),
            limits: parsed,
            burst,
            key,
            on_limit,
        })
    }
}

fn key_source(key: &Fields<'_>) -> Result<KeySource, String> {
    let header = key.text("header")?;
    let source = match key.text("type")?.ok_or("key.type: required")? {
        "header" => {
            let name = header.ok_or("key.header: required when key.type is \"header\"")?;
            if !name.bytes().all(is_token_byte) {
                return Err(format!("key.header: {name:?} is not a header name"));
            }
            return Ok(KeySource::Header(name.to_ascii_lowercase()));
        }
        "apiKey" => KeySource::ApiKey,
        "user" => KeySource::User,
        "model" => KeySource::Model,
        other => {
            return Err(format!(
                "key.type: unknown type {other:?} (expected \"header\", \"apiKey\", \"user\" \
                 or \"model\")"
            ));
        }
    };
    match header {
        Some(_) => Err("key.header: only for key.type \"header\"".into()),
        None => Ok(source),
    }
}

fn on_limit(fields: &Fields<'_>) -> Result<OnLimit, String> {
    let defaults = OnLimit::default();
    let status = match fields.amount("statusCode")? {
        None => defaults.status,
        Some(status @ 400..=599) => status as u16,
        Some(other) => return Err(format!("onLimit.statusCode: {other} is not 400–599")),
    };
    Ok(OnLimit {
        status,
        message: fields
            .text("message")?
            .filter(|message| !message.trim().is_empty())
            .map(str::to_owned),
        retry_after: fields.flag("retryAfter")?.unwrap_or(defaults.retry_after),
    })
}

/// RFC 9110 `token` characters: what a header name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One JSON object of the configuration, read field by field with errors naming
/// `path.field`.
struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// `value` as an object with no fields but `known`.
    fn of(value: &'a Value, path: &str, known: &[&str]) -> Result<Self, String> {
        let what = if path.is_empty() {
            "the configuration"
        } else {
            path
        };
        let map = value
            .as_object()
            .ok_or_else(|| format!("{what}: must be an object"))?;
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            let prefix = if path.is_empty() { "" } else { "." };
            return Err(format!(
                "{path}{prefix}{unknown}: unknown field (expected one of {})",
                known.join(", ")
            ));
        }
        Ok(Fields {
            path: path.to_owned(),
            map,
        })
    }

    fn name(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    /// A field, `None` when absent or null.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn object(&self, field: &str, known: &[&str]) -> Result<Option<Fields<'a>>, String> {
        self.get(field)
            .map(|v| Fields::of(v, &self.name(field), known))
            .transpose()
    }

    /// A whole number from 0 to [`MAX_AMOUNT`].
    fn amount(&self, field: &str) -> Result<Option<u64>, String> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        match value.as_u64() {
            Some(n) if n <= MAX_AMOUNT => Ok(Some(n)),
            _ => Err(format!(
                "{}: {value} is not a whole number from 0 to {MAX_AMOUNT}",
                self.name(field)
            )),
        }
    }

    /// A string of at most [`MAX_TEXT`] bytes.
    fn text(&self, field: &str) -> Result<Option<&'a str>, String> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        match value.as_str() {
            Some(text) if text.len() <= MAX_TEXT => Ok(Some(text)),
            _ => Err(format!(
                "{}: must be a string of at most {MAX_TEXT} bytes",
                self.name(field)
            )),
        }
    }

    fn flag(&self, field: &str) -> Result<Option<bool>, String> {
        self.get(field)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| format!("{}: must be true or false", self.name(field)))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{
        "policy": "team-a/per-tenant",
        "limits": {"tokensPerMinute": 20000, "tokensPerHour": 100000,
                   "tokensPerDay": 2000000, "requestsPerMinute": 60},
        "burst": 5000,
        "key": {"type": "header", "header": "X-Tenant"},
        "onLimit": {"statusCode": 503, "message": "token budget spent", "retryAfter": false}
    }"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text.as_bytes())
    }

    #[test]
    fn reads_every_field_and_orders_the_limits() {
        let config = parse(FULL).unwrap();
        assert_eq!(
            config,
            Config {
                policy: "team-a/per-tenant".into(),
                limits: vec![
                    Limit {
                        kind: Kind::RequestsPerMinute,
                        max: 60
                    },
                    Limit {
                        kind: Kind::TokensPerMinute,
                        max: 20000
                    },
                    Limit {
                        kind: Kind::TokensPerHour,
                        max: 100000
                    },
                    Limit {
                        kind: Kind::TokensPerDay,
                        max: 2000000
                    },
                ],
                burst: 5000,
                key: KeySource::Header("x-tenant".into()),
                on_limit: OnLimit {
                    status: 503,
                    message: Some("token budget spent".into()),
                    retry_after: false
                },
            }
        );
    }

    #[test]
    fn optional_fields_take_their_defaults() {
        let config = parse(
            r#"{"policy": "p", "limits": {"tokensPerDay": 10, "tokensPerHour": null},
                "key": {"type": "apiKey", "header": null}, "onLimit": {"message": ""}}"#,
        )
        .unwrap();
        let day = Limit {
            kind: Kind::TokensPerDay,
            max: 10,
        };
        assert_eq!(config.limits, [day]);
        assert_eq!(config.key, KeySource::ApiKey);
        assert_eq!(config.burst, 0);
        assert_eq!(config.on_limit, OnLimit::default());
        assert_eq!(config.on_limit.status, 429);
        assert!(config.on_limit.retry_after);
        for (key, source) in [
            ("user", KeySource::User),
            ("model", KeySource::Model),
            ("apiKey", KeySource::ApiKey),
        ] {
            let config = parse(&format!(
                r#"{{"policy": "p", "limits": {{"requestsPerMinute": 1}}, "key": {{"type": "{key}"}}}}"#
            ))
            .unwrap();
            assert_eq!(config.key, source);
        }
    }

    #[test]
    fn errors_name_the_field() {
        let base = |limits: &str, rest: &str| {
            format!(r#"{{"policy": "p", "limits": {limits}, "key": {{"type": "user"}}{rest}}}"#)
        };
        for (config, expected) in [
            ("not json".to_owned(), "not JSON"),
            ("[]".to_owned(), "the configuration: must be an object"),
            (
                r#"{"limits": {"tokensPerDay": 1}, "key": {"type": "user"}}"#.to_owned(),
                "policy: required",
            ),
            (
                r#"{"policy": "", "limits": {"tokensPerDay": 1}, "key": {"type": "user"}}"#
                    .to_owned(),
                "policy: must not be empty",
            ),
            (
                r#"{"policy": "p", "key": {"type": "user"}}"#.to_owned(),
                "limits: required",
            ),
            (
                r#"{"policy": "p", "limits": {"tokensPerDay": 1}}"#.to_owned(),
                "key: required",
            ),
            (base("{}", ""), "limits: name at least one of"),
            (
                base(r#"{"tokensPerMinute": 0}"#, ""),
                "limits.tokensPerMinute: must be at least 1",
            ),
            (
                base(r#"{"tokensPerHour": -5}"#, ""),
                "limits.tokensPerHour: -5 is not a whole number",
            ),
            (
                base(r#"{"tokensPerDay": 1.5}"#, ""),
                "limits.tokensPerDay: 1.5 is not a whole number",
            ),
            (
                base(r#"{"requestsPerMinute": "60"}"#, ""),
                "limits.requestsPerMinute: \"60\" is not a whole number",
            ),
            (
                base(r#"{"tokensPerDay": 4611686018427387905}"#, ""),
                "limits.tokensPerDay: 4611686018427387905 is not a whole number",
            ),
            (
                r#"{"policy": 7, "limits": {"tokensPerDay": 1}, "key": {"type": "user"}}"#
                    .to_owned(),
                "policy: must be a string",
            ),
            (
                base(
                    r#"{"tokensPerDay": 5}"#,
                    &format!(r#", "onLimit": {{"message": "{}"}}"#, "x".repeat(1025)),
                ),
                "onLimit.message: must be a string of at most 1024 bytes",
            ),
            (
                base(r#"{"tokensPerMonth": 5}"#, ""),
                "limits.tokensPerMonth: unknown field",
            ),
            (
                base(r#"{"tokensPerDay": 5}"#, r#", "burst": 10"#),
                "burst: applies to limits.tokensPerMinute",
            ),
            (
                base(r#"{"tokensPerMinute": 5}"#, r#", "burst": -1"#),
                "burst: -1 is not a whole number",
            ),
            (
                base(r#"{"tokensPerDay": 5}"#, r#", "window": 1"#),
                "window: unknown field",
            ),
            (
                base(
                    r#"{"tokensPerDay": 5}"#,
                    r#", "onLimit": {"statusCode": 200}"#,
                ),
                "onLimit.statusCode: 200 is not 400–599",
            ),
            (
                base(
                    r#"{"tokensPerDay": 5}"#,
                    r#", "onLimit": {"retryAfter": "yes"}"#,
                ),
                "onLimit.retryAfter: must be true or false",
            ),
            (
                base(r#"{"tokensPerDay": 5}"#, r#", "onLimit": {"status": 429}"#),
                "onLimit.status: unknown field",
            ),
            (
                base(r#"{"tokensPerDay": 5}"#, r#", "onLimit": []"#),
                "onLimit: must be an object",
            ),
        ] {
            let err = parse(&config).unwrap_err();
            assert!(
                err.contains(expected),
                "{config}:\n  {err}\n  expected {expected}"
            );
        }
    }

    #[test]
    fn key_errors_name_the_field() {
        for (key, expected) in [
            (r#"{}"#, "key.type: required"),
            (r#"{"type": "ip"}"#, "key.type: unknown type \"ip\""),
            (
                r#"{"type": "header"}"#,
                "key.header: required when key.type is \"header\"",
            ),
            (
                r#"{"type": "header", "header": "x tenant"}"#,
                "key.header: \"x tenant\" is not",
            ),
            (
                r#"{"type": "header", "header": "x-t:"}"#,
                "is not a header name",
            ),
            (
                r#"{"type": "user", "header": "x-tenant"}"#,
                "key.header: only for key.type",
            ),
            (
                r#"{"type": "header", "name": "x"}"#,
                "key.name: unknown field",
            ),
        ] {
            let config =
                format!(r#"{{"policy": "p", "limits": {{"tokensPerDay": 1}}, "key": {key}}}"#);
            let err = parse(&config).unwrap_err();
            assert!(err.contains(expected), "{key}: {err}");
        }
    }
}
