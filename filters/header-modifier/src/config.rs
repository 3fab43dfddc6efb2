//! The filter's JSON configuration, validated up front so that a bad header name is a
//! rejected configuration rather than a failing request.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    #[serde(default)]
    pub request: Option<HeaderModifier>,
    #[serde(default)]
    pub response: Option<HeaderModifier>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderModifier {
    #[serde(default)]
    pub set: Vec<Header>,
    #[serde(default)]
    pub add: Vec<Header>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl FilterConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let config: FilterConfig = serde_json::from_slice(bytes)
            .map_err(|e| format!("header modifier config is not valid: {e}"))?;
        for (direction, modifier) in [("request", &config.request), ("response", &config.response)]
        {
            if let Some(modifier) = modifier {
                modifier
                    .validate()
                    .map_err(|e| format!("{direction}: {e}"))?;
            }
        }
        Ok(config)
    }
}

impl HeaderModifier {
    fn validate(&self) -> Result<(), String> {
        for (op, header) in self
            .set
            .iter()
            .map(|h| ("set", h))
            .chain(self.add.iter().map(|h| ("add", h)))
        {
            check_name(&header.name).map_err(|e| format!("{op}: {e}"))?;
            check_value(&header.name, &header.value).map_err(|e| format!("{op}: {e}"))?;
        }
        for name in &self.remove {
            check_name(name).map_err(|e| format!("remove: {e}"))?;
        }
        Ok(())
    }
}

/// RFC 9110 `token`, which is also what the Gateway API CRD allows for header names.
fn check_name(name: &str) -> Result<(), String> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!("invalid header name {name:?}"));
    }
    Ok(())
}

/// Field values may hold visible characters, spaces and tabs, but no control characters
/// (a CR or LF would split the header).
fn check_value(name: &str, value: &str) -> Result<(), String> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "invalid value for header {name:?}: control characters are not allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_directions() {
        let config = FilterConfig::parse(
            br#"{"request":{"set":[{"name":"X-A","value":"1"}],"remove":["x-b"]},
                 "response":{"add":[{"name":"X-C","value":"v w"}]}}"#,
        )
        .unwrap();
        assert_eq!(config.request.unwrap().set[0].name, "X-A");
        assert_eq!(config.response.unwrap().add[0].value, "v w");
    }

    #[test]
    fn rejects_unknown_keys_bad_names_and_values() {
        for (bad, expected) in [
            (r#"{"requests":{}}"#, "unknown field"),
            (r#"{"request":{"replace":[]}}"#, "unknown field"),
            (
                r#"{"request":{"set":[{"name":"bad name","value":"v"}]}}"#,
                "invalid header name",
            ),
            (r#"{"response":{"remove":[""]}}"#, "invalid header name"),
            (
                r#"{"request":{"add":[{"name":"x","value":"a\nb"}]}}"#,
                "control characters",
            ),
            ("not json", "not valid"),
        ] {
            let err = FilterConfig::parse(bad.as_bytes()).unwrap_err();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }
}
