//! The text fields of the APIs' JSON bodies, and rewriting them in place.
//!
//! [`rewrite_strings`] walks a JSON document and offers every string value, with its
//! path, to a visitor that may replace it. Only replaced strings change: everything else
//! — key order, whitespace, number formatting, escapes — is copied byte for byte, so a
//! body without findings reaches the upstream exactly as the client sent it (prompt
//! caches keep working) and one with findings differs only in them.
//!
//! Which strings are text is per API and direction ([`Fields`]): message contents and
//! text parts, system prompts, tool results; never keys, model names, ids, tool-call
//! arguments or base64 data.

use std::borrow::Cow;

use crate::api::Api;

/// One step of the path to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

/// One step of a path pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Key(&'static str),
    Index(usize),
    /// Any array element.
    Each,
}

/// Whether `path` is exactly `pattern`.
pub fn path_is(path: &[Seg<'_>], pattern: &[Step]) -> bool {
    path.len() == pattern.len()
        && path
            .iter()
            .zip(pattern)
            .all(|(seg, step)| match (seg, step) {
                (Seg::Key(key), Step::Key(expected)) => key == expected,
                (Seg::Index(index), Step::Index(expected)) => index == expected,
                (Seg::Index(_), Step::Each) => true,
                _ => false,
            })
}

/// The document could not be walked (the caller checks validity first, so this is a
/// document nested deeper than serde_json reads, or not JSON at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed;

/// Deeper documents are refused (serde_json refuses them already at 128).
const MAX_DEPTH: usize = 256;

/// Calls `visit` for every string value of `json` (not for object keys) with its path
/// and decoded text; a `Some` return replaces the value. Returns the rewritten
/// document, or `None` when `visit` replaced nothing.
pub fn rewrite_strings(
    json: &str,
    visit: &mut dyn FnMut(&[Seg<'_>], &str) -> Option<String>,
) -> Result<Option<String>, Malformed> {
    let mut walker = Walker {
        json,
        bytes: json.as_bytes(),
        at: 0,
        path: Vec::new(),
        out: None,
        copied: 0,
        visit,
    };
    walker.value(0)?;
    walker.whitespace();
    if walker.at != walker.bytes.len() {
        return Err(Malformed);
    }
    Ok(walker.out.map(|mut out| {
        out.push_str(&json[walker.copied..]);
        out
    }))
}

struct Walker<'j, 'v> {
    json: &'j str,
    bytes: &'j [u8],
    at: usize,
    path: Vec<Seg<'j>>,
    /// The rewritten document up to `copied`, once something was replaced.
    out: Option<String>,
    copied: usize,
    visit: &'v mut dyn FnMut(&[Seg<'_>], &str) -> Option<String>,
}

impl<'j> Walker<'j, '_> {
    fn whitespace(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), Malformed> {
        self.whitespace();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        self.whitespace();
        match self.bytes.get(self.at).ok_or(Malformed)? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => {
                let start = self.at;
                let text = self.string()?;
                if let Some(replacement) = (self.visit)(&self.path, &text) {
                    let out = self.out.get_or_insert_with(String::new);
                    out.push_str(&self.json[self.copied..start]);
                    out.push_str(&serde_json::to_string(&replacement).map_err(|_| Malformed)?);
                    self.copied = self.at;
                }
                Ok(())
            }
            _ => {
                // A number or literal: its characters run to the next delimiter.
                let start = self.at;
                while self.bytes.get(self.at).is_some_and(|b| {
                    !matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                }) {
                    self.at += 1;
                }
                if self.at == start {
                    Err(Malformed)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), Malformed> {
        self.at += 1;
        self.whitespace();
        if self.bytes.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.whitespace();
            if self.bytes.get(self.at) != Some(&b'"') {
                return Err(Malformed);
            }
            let key = self.string()?;
            self.expect(b':')?;
            self.path.push(Seg::Key(key));
            self.value(depth + 1)?;
            self.path.pop();
            self.whitespace();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(Malformed),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), Malformed> {
        self.at += 1;
        self.whitespace();
        if self.bytes.get(self.at) == Some(&b']') {
            self.at += 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            self.path.push(Seg::Index(index));
            self.value(depth + 1)?;
            self.path.pop();
            index += 1;
            self.whitespace();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(Malformed),
            }
        }
    }

    /// The string token at `at` (its opening quote), decoded; `at` moves past it.
    fn string(&mut self) -> Result<Cow<'j, str>, Malformed> {
        let start = self.at;
        let mut at = start + 1;
        let mut escaped = false;
        loop {
            let offset = memchr::memchr2(b'"', b'\\', self.bytes.get(at..).ok_or(Malformed)?)
                .ok_or(Malformed)?;
            at += offset;
            if self.bytes[at] == b'"' {
                break;
            }
            escaped = true;
            at += 2;
        }
        self.at = at + 1;
        let token = self.json.get(start..self.at).ok_or(Malformed)?;
        if escaped {
            serde_json::from_str::<String>(token)
                .map(Cow::Owned)
                .map_err(|_| Malformed)
        } else {
            Ok(Cow::Borrowed(&token[1..token.len() - 1]))
        }
    }
}

/// Which string values of a body are text to scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    Request(Option<Api>),
    Response(Option<Api>),
}

const OPENAI_REQUEST: &[&[Step]] = &[
    &[Step::Key("messages"), Step::Each, Step::Key("content")],
    &[
        Step::Key("messages"),
        Step::Each,
        Step::Key("content"),
        Step::Each,
        Step::Key("text"),
    ],
];

const ANTHROPIC_REQUEST: &[&[Step]] = &[
    &[Step::Key("system")],
    &[Step::Key("system"), Step::Each, Step::Key("text")],
    &[Step::Key("messages"), Step::Each, Step::Key("content")],
    &[
        Step::Key("messages"),
        Step::Each,
        Step::Key("content"),
        Step::Each,
        Step::Key("text"),
    ],
    // Tool results (and search results): a string, or text blocks.
    &[
        Step::Key("messages"),
        Step::Each,
        Step::Key("content"),
        Step::Each,
        Step::Key("content"),
    ],
    &[
        Step::Key("messages"),
        Step::Each,
        Step::Key("content"),
        Step::Each,
        Step::Key("content"),
        Step::Each,
        Step::Key("text"),
    ],
];

const OLLAMA_REQUEST: &[&[Step]] = &[&[Step::Key("messages"), Step::Each, Step::Key("content")]];

const OPENAI_RESPONSE: &[&[Step]] = &[&[
    Step::Key("choices"),
    Step::Each,
    Step::Key("message"),
    Step::Key("content"),
]];

const ANTHROPIC_RESPONSE: &[&[Step]] = &[&[Step::Key("content"), Step::Each, Step::Key("text")]];

const OLLAMA_RESPONSE: &[&[Step]] = &[&[Step::Key("message"), Step::Key("content")]];

/// Error messages may quote the request back: OpenAI's and Anthropic's `error.message`,
/// Ollama's `error`.
const ERRORS: &[&[Step]] = &[
    &[Step::Key("error"), Step::Key("message")],
    &[Step::Key("error")],
];

/// Keys whose values are identifiers, not text, for bodies of unknown APIs.
const NOT_TEXT_KEYS: &[&str] = &["model", "id", "object", "role", "type"];

impl Fields {
    /// Whether the string `text` at `path` is text to scan.
    pub fn is_text(self, path: &[Seg<'_>], text: &str) -> bool {
        let patterns: &[&[Step]] = match self {
            Fields::Request(Some(Api::OpenAi)) => OPENAI_REQUEST,
            Fields::Request(Some(Api::Anthropic)) => ANTHROPIC_REQUEST,
            Fields::Request(Some(Api::Ollama)) => OLLAMA_REQUEST,
            Fields::Response(Some(Api::OpenAi)) => OPENAI_RESPONSE,
            Fields::Response(Some(Api::Anthropic)) => ANTHROPIC_RESPONSE,
            Fields::Response(Some(Api::Ollama)) => OLLAMA_RESPONSE,
            Fields::Request(None) | Fields::Response(None) => return generic_text(path, text),
        };
        let errors: &[&[Step]] = match self {
            Fields::Response(_) => ERRORS,
            Fields::Request(_) => &[],
        };
        patterns
            .iter()
            .chain(errors)
            .any(|pattern| path_is(path, pattern))
    }
}

/// A body of an API this filter does not know: every string but identifiers and data
/// URLs is text.
fn generic_text(path: &[Seg<'_>], text: &str) -> bool {
    let identifier =
        matches!(path.last(), Some(Seg::Key(key)) if NOT_TEXT_KEYS.contains(&key.as_ref()));
    !identifier && !text.starts_with("data:")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upper-cases every string the visitor is offered, recording the paths.
    fn upper(json: &str) -> (Option<String>, Vec<String>) {
        let mut seen = Vec::new();
        let out = rewrite_strings(json, &mut |path, text| {
            seen.push(format!("{path:?}={text}"));
            Some(text.to_uppercase())
        })
        .unwrap();
        (out, seen)
    }

    #[test]
    fn rewrites_only_string_values_and_keeps_the_rest_byte_for_byte() {
        let json = "{ \"b\" : [1, 2.50e3, true, null, \"x\\ny\"],\n\t\"a\":{\"k\":\"v\", \"n\": -0}, \"z\": \"\" }";
        let (out, seen) = upper(json);
        assert_eq!(
            out.as_deref(),
            Some(
                "{ \"b\" : [1, 2.50e3, true, null, \"X\\nY\"],\n\t\"a\":{\"k\":\"V\", \"n\": -0}, \"z\": \"\" }"
            )
        );
        assert_eq!(
            seen,
            [
                r#"[Key("b"), Index(4)]=x
y"#,
                r#"[Key("a"), Key("k")]=v"#,
                r#"[Key("z")]="#,
            ]
        );
    }

    #[test]
    fn nothing_replaced_means_no_copy() {
        let json = r#"{"a": ["b", {"c": "d"}]}"#;
        let out = rewrite_strings(json, &mut |_, _| None).unwrap();
        assert_eq!(out, None);
    }

    #[test]
    fn escapes_are_decoded_for_the_visitor_and_replacements_are_escaped() {
        let json = r#"{"t\u0065xt": "mail \"jo\u0040example.com\"\\"}"#;
        let mut offered = Vec::new();
        let out = rewrite_strings(json, &mut |path, text| {
            offered.push((path.len(), text.to_string()));
            assert!(path_is(path, &[Step::Key("text")]));
            Some(format!("{text} \"é\"\n"))
        })
        .unwrap()
        .unwrap();
        assert_eq!(offered, [(1, "mail \"jo@example.com\"\\".to_string())]);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["text"], "mail \"jo@example.com\"\\ \"é\"\n");
    }

    #[test]
    fn scalars_and_empty_containers_are_documents_too() {
        assert_eq!(upper("\"abc\"").0.as_deref(), Some("\"ABC\""));
        assert_eq!(upper(" 12 ").0, None);
        assert_eq!(upper("{}").0, None);
        assert_eq!(upper("[ ]").0, None);
    }

    #[test]
    fn malformed_documents_are_refused() {
        for json in [
            "",
            "{",
            "[1,",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "\"abc",
            "[1] x",
            "{1:2}",
        ] {
            assert_eq!(
                rewrite_strings(json, &mut |_, _| None),
                Err(Malformed),
                "{json}"
            );
        }
        let deep = "[".repeat(300) + &"]".repeat(300);
        assert_eq!(rewrite_strings(&deep, &mut |_, _| None), Err(Malformed));
    }

    fn text_paths(fields: Fields, json: &str) -> Vec<String> {
        let mut texts = Vec::new();
        rewrite_strings(json, &mut |path, text| {
            if fields.is_text(path, text) {
                texts.push(text.to_string());
            }
            None
        })
        .unwrap();
        texts
    }

    #[test]
    fn openai_request_text_fields() {
        let json = r#"{"model": "gpt-4o", "user": "u-1", "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "name": "nm", "content": [
                {"type": "text", "text": "part"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "f", "arguments": "{\"a\": \"b\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "result"}],
            "tools": [{"type": "function", "function": {"name": "f", "description": "d"}}]}"#;
        assert_eq!(
            text_paths(Fields::Request(Some(Api::OpenAi)), json),
            ["sys", "part", "result"]
        );
    }

    #[test]
    fn anthropic_request_text_fields() {
        let json = r#"{"model": "claude", "system": [{"type": "text", "text": "sys"}], "messages": [
            {"role": "user", "content": "plain"},
            {"role": "user", "content": [
                {"type": "text", "text": "block"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "tool_result", "tool_use_id": "t1", "content": "result"},
                {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "nested"}]}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"q": "x"}}]}],
            "metadata": {"user_id": "u"}}"#;
        assert_eq!(
            text_paths(Fields::Request(Some(Api::Anthropic)), json),
            ["sys", "plain", "block", "result", "nested"]
        );
        let json = r#"{"system": "sys string", "messages": []}"#;
        assert_eq!(
            text_paths(Fields::Request(Some(Api::Anthropic)), json),
            ["sys string"]
        );
    }

    #[test]
    fn ollama_request_text_fields() {
        let json = r#"{"model": "llama3.2", "messages": [{"role": "user", "content": "hi",
            "images": ["AAAA"]}], "options": {"stop": ["x"]}, "keep_alive": "5m"}"#;
        assert_eq!(text_paths(Fields::Request(Some(Api::Ollama)), json), ["hi"]);
    }

    #[test]
    fn response_text_fields() {
        let openai = r#"{"id": "c", "model": "m", "choices": [{"index": 0, "message":
            {"role": "assistant", "content": "answer", "refusal": null}, "finish_reason": "stop"}]}"#;
        assert_eq!(
            text_paths(Fields::Response(Some(Api::OpenAi)), openai),
            ["answer"]
        );
        let anthropic = r#"{"id": "m", "type": "message", "content": [{"type": "text", "text": "a"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {"k": "v"}}], "model": "x"}"#;
        assert_eq!(
            text_paths(Fields::Response(Some(Api::Anthropic)), anthropic),
            ["a"]
        );
        let ollama = r#"{"model": "m", "created_at": "t", "message": {"role": "assistant",
            "content": "c"}, "done": true}"#;
        assert_eq!(
            text_paths(Fields::Response(Some(Api::Ollama)), ollama),
            ["c"]
        );
        for (api, error) in [
            (
                Api::OpenAi,
                r#"{"error": {"message": "m1", "type": "t", "code": null}}"#,
            ),
            (
                Api::Anthropic,
                r#"{"type": "error", "error": {"type": "t", "message": "m1"}}"#,
            ),
            (Api::Ollama, r#"{"error": "m1"}"#),
        ] {
            assert_eq!(text_paths(Fields::Response(Some(api)), error), ["m1"]);
        }
    }

    #[test]
    fn unknown_apis_scan_every_string_but_identifiers_and_data() {
        let json = r#"{"model": "text-embedding-3", "input": ["a", "b"], "id": "x",
            "nested": {"prompt": "p", "image": "data:image/png;base64,AAAA"}}"#;
        assert_eq!(text_paths(Fields::Request(None), json), ["a", "b", "p"]);
    }
}
