//! Request attributes (`request.attribute` / `set-attribute`): named values a request
//! carries along its filter chain, kept in the request's `http::Extensions` so they
//! travel with its head wherever the host moves it, and read by the host for well-known
//! names (see `wit/README.md`).

use smallvec::SmallVec;

/// The most attributes one request holds.
pub const MAX_ATTRIBUTES: usize = 64;
/// The longest attribute name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// The longest attribute value, in bytes.
pub const MAX_VALUE_LEN: usize = 4096;

/// One request's attributes, in the order they were first set. A handful per request:
/// a linear scan beats a map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes(SmallVec<[(Box<str>, Box<str>); 4]>);

impl Attributes {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| **n == *name).map(|(_, v)| &**v)
    }

    /// Sets `name` to `value`; `Err` says which limit it would pass.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(format!(
                "attribute name {name:?} must be 1 to {MAX_NAME_LEN} bytes"
            ));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(format!(
                "attribute {name:?}: value of {} bytes, more than {MAX_VALUE_LEN}",
                value.len()
            ));
        }
        if let Some(slot) = self.0.iter_mut().find(|(n, _)| **n == *name) {
            slot.1 = value.into();
            return Ok(());
        }
        if self.0.len() >= MAX_ATTRIBUTES {
            return Err(format!("more than {MAX_ATTRIBUTES} attributes"));
        }
        self.0.push((name.into(), value.into()));
        Ok(())
    }

    /// Reads a number the host expects under `name` (token counts).
    pub fn get_u64(&self, name: &str) -> Option<u64> {
        self.get(name)?.trim().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_and_limits_hold() {
        let mut a = Attributes::default();
        a.set("ai.input_tokens", "12").unwrap();
        a.set("ai.input_tokens", "13").unwrap();
        assert_eq!(a.get_u64("ai.input_tokens"), Some(13));
        assert_eq!(a.get("missing"), None);
        assert!(a.set("", "x").is_err());
        assert!(a.set("big", &"x".repeat(MAX_VALUE_LEN + 1)).is_err());
        for i in 1..MAX_ATTRIBUTES {
            a.set(&format!("k{i}"), "v").unwrap();
        }
        assert!(a.set("one-too-many", "v").is_err());
    }
}
