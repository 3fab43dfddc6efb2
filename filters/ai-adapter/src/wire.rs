//! Serde helpers shared by the API codecs.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::error::ApiError;

/// Parses a client's request body into its API's request type. Anything but a JSON
/// object is refused with a message saying so, and serde's messages name the field
/// that is missing or wrong.
pub fn parse_request<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ApiError::invalid_request("the request body is empty")),
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::invalid_request(
                "the request body must be a JSON object",
            ));
        }
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("invalid request body: {e}")))
}

/// Parses a provider's whole response body. serde would also read a struct from a JSON
/// array; a provider's answer is always an object, so anything else is refused.
pub fn parse_response<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("the body is not a JSON object".into());
    }
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// A field that is either a string or a list: message content (text or parts), Anthropic's
/// `system` (text or blocks), OpenAI's `stop` (one sequence or several).
///
/// Written by hand rather than as an untagged enum so that an error inside the list keeps
/// its own message ("missing field `url`") instead of "did not match any variant".
#[derive(Debug, Clone, PartialEq)]
pub enum TextOr<T> {
    Text(String),
    List(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TextOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextOrVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for TextOrVisitor<T> {
            type Value = TextOr<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array")
            }

            fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(TextOr::Text(text.to_owned()))
            }

            fn visit_string<E: Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(TextOr::Text(text))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(TextOr::List(items))
            }
        }

        deserializer.deserialize_any(TextOrVisitor(PhantomData))
    }
}

impl TextOr<String> {
    /// Stop sequences: one string is a list of one.
    pub fn into_strings(self) -> Vec<String> {
        match self {
            TextOr::Text(text) => vec![text],
            TextOr::List(list) => list,
        }
    }
}

/// An empty JSON object, for fields that must be present but have nothing to say
/// (`"input": {}` of a streamed tool_use block, `"delta": {}` of a finishing chunk).
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}

/// A JSON Schema that accepts an object with any properties: what a tool without a
/// declared schema takes.
pub fn any_object_schema() -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": {}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Part {
        text: String,
    }

    #[test]
    fn reads_text_or_a_list_and_keeps_inner_errors() {
        let text: TextOr<Part> = serde_json::from_str(r#""hi""#).unwrap();
        assert_eq!(text, TextOr::Text("hi".into()));
        let list: TextOr<Part> = serde_json::from_str(r#"[{"text":"a"},{"text":"b"}]"#).unwrap();
        assert_eq!(
            list,
            TextOr::List(vec![Part { text: "a".into() }, Part { text: "b".into() }])
        );
        let err = serde_json::from_str::<TextOr<Part>>(r#"[{"txt":"a"}]"#).unwrap_err();
        assert!(err.to_string().contains("missing field `text`"), "{err}");
        let err = serde_json::from_str::<TextOr<Part>>("3").unwrap_err();
        assert!(err.to_string().contains("a string or an array"), "{err}");
        let stop: TextOr<String> = serde_json::from_str(r#""END""#).unwrap();
        assert_eq!(stop.into_strings(), ["END"]);
    }

    #[test]
    fn empty_object_serializes_as_braces() {
        assert_eq!(serde_json::to_string(&EmptyObject).unwrap(), "{}");
    }
}
