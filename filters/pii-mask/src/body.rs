//! Whole bodies: a request body, or a response that is not a stream, scanned once it is
//! complete.
//!
//! A JSON body has only its text fields scanned and rewritten (see [`crate::json_text`]);
//! any other UTF-8 body is scanned as plain text. A body that is not UTF-8 is left alone.

use crate::api::Api;
use crate::json_text::{Fields, rewrite_strings};
use crate::scanner::{Findings, Scanner, Side};

/// What becomes of a body.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing found: forward it as it came.
    Unchanged,
    /// Forward this instead.
    Rewritten(Vec<u8>),
    /// A finding's action is `reject` (requests only).
    Reject,
}

/// Scans a complete body of the `side` message of a call to `api`, recording what was
/// found in `findings`.
pub fn scan(
    scanner: &Scanner,
    api: Option<Api>,
    side: Side,
    body: &[u8],
    findings: &mut Findings,
) -> Verdict {
    let Ok(text) = std::str::from_utf8(body) else {
        return Verdict::Unchanged;
    };
    let fields = match side {
        Side::Request => Fields::Request(api),
        Side::Response => Fields::Response(api),
    };
    let rewritten = if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
        rewrite_strings(text, &mut |path, value| {
            if fields.is_text(path, value) {
                scanner.scan_text(value, side, findings)
            } else {
                None
            }
        })
        // serde_json read it, so the walker does too; if not, scan it as text.
        .unwrap_or_else(|_| scanner.scan_text(text, side, findings))
    } else {
        scanner.scan_text(text, side, findings)
    };
    if findings.reject() {
        return Verdict::Reject;
    }
    match rewritten {
        Some(text) => Verdict::Rewritten(text.into_bytes()),
        None => Verdict::Unchanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::{Value, json};

    fn scanner(config: &str) -> Scanner {
        Scanner::new(&Config::parse(config.as_bytes()).unwrap()).unwrap()
    }

    fn rewritten(verdict: Verdict) -> Value {
        match verdict {
            Verdict::Rewritten(body) => serde_json::from_slice(&body).unwrap(),
            other => panic!("expected a rewritten body, got {other:?}"),
        }
    }

    #[test]
    fn masks_only_the_text_fields_of_a_request() {
        let scanner = scanner("{}");
        let body = json!({
            "model": "gpt-4o",
            "user": "john@example.com",
            "messages": [
                {"role": "system", "content": "Support agent. Escalate to ops@example.com."},
                {"role": "user", "content": [
                    {"type": "text", "text": "My card is 4111 1111 1111 1111."},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}}]}
            ]
        });
        let mut findings = Findings::default();
        let out = rewritten(scan(
            &scanner,
            Some(Api::OpenAi),
            Side::Request,
            body.to_string().as_bytes(),
            &mut findings,
        ));
        assert_eq!(out["user"], "john@example.com");
        assert_eq!(
            out["messages"][0]["content"],
            "Support agent. Escalate to [EMAIL]."
        );
        assert_eq!(
            out["messages"][1]["content"][0]["text"],
            "My card is [CREDIT_CARD]."
        );
        assert_eq!(
            out["messages"][1]["content"][1],
            body["messages"][1]["content"][1]
        );
        assert_eq!(findings.summary(&scanner), "1 email, 1 credit_card");
    }

    #[test]
    fn a_body_without_findings_is_unchanged() {
        let scanner = scanner("{}");
        let body = br#"{"model":"m","messages":[{"role":"user","content":"Hello"}]}"#;
        let mut findings = Findings::default();
        assert_eq!(
            scan(
                &scanner,
                Some(Api::OpenAi),
                Side::Request,
                body,
                &mut findings
            ),
            Verdict::Unchanged
        );
        assert!(findings.is_empty());
    }

    #[test]
    fn plain_text_and_binary_bodies() {
        let scanner = scanner("{}");
        let mut findings = Findings::default();
        assert_eq!(
            scan(
                &scanner,
                None,
                Side::Request,
                b"call 415-555-2671 now",
                &mut findings
            ),
            Verdict::Rewritten(b"call [PHONE] now".to_vec())
        );
        assert_eq!(
            scan(
                &scanner,
                None,
                Side::Request,
                b"\xff\xfe 415-555-2671",
                &mut findings
            ),
            Verdict::Unchanged
        );
        // Truncated JSON is plain text.
        assert_eq!(
            scan(
                &scanner,
                Some(Api::OpenAi),
                Side::Request,
                br#"{"messages": "a@example.com"#,
                &mut findings
            ),
            Verdict::Rewritten(br#"{"messages": "[EMAIL]"#.to_vec())
        );
    }

    #[test]
    fn reject_applies_to_requests_and_masks_responses() {
        let scanner = scanner(r#"{"actions": {"ssn": "reject"}}"#);
        let request = json!({"messages": [{"role": "user", "content": "ssn 123-45-6789"}]});
        let mut findings = Findings::default();
        assert_eq!(
            scan(
                &scanner,
                Some(Api::Ollama),
                Side::Request,
                request.to_string().as_bytes(),
                &mut findings
            ),
            Verdict::Reject
        );
        assert_eq!(findings.names(&scanner, true), ["ssn"]);

        let response = json!({"message": {"role": "assistant", "content": "ssn 123-45-6789"}});
        let mut findings = Findings::default();
        let out = rewritten(scan(
            &scanner,
            Some(Api::Ollama),
            Side::Response,
            response.to_string().as_bytes(),
            &mut findings,
        ));
        assert_eq!(out["message"]["content"], "ssn [SSN]");
    }

    #[test]
    fn a_text_field_with_escapes_is_masked_and_reencoded() {
        let scanner = scanner("{}");
        let body = r#"{"messages":[{"role":"user","content":"line1\nmail: \"a\u0040b.io\""}]}"#;
        let mut findings = Findings::default();
        let Verdict::Rewritten(out) = scan(
            &scanner,
            Some(Api::OpenAi),
            Side::Request,
            body.as_bytes(),
            &mut findings,
        ) else {
            panic!("not rewritten");
        };
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"messages":[{"role":"user","content":"line1\nmail: \"[EMAIL]\""}]}"#
        );
    }
}
