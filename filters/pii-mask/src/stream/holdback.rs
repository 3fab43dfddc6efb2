//! The holdback: masking a text that arrives in pieces (the deltas of a stream), so that
//! a finding split across deltas is caught and the emitted text is what masking the
//! whole text at once gives.
//!
//! **The rule.** After each delta the held text is scanned. What is emitted is the
//! longest prefix that no detector could still claim: the text before the earliest
//! position from which some detector's prefix pattern is still alive at the end (more
//! text could make, extend or decide a finding there — see [`crate::prefix`]), and
//! never cutting through a finding. So a trailing word is held (it could be the start of
//! an e-mail address), `call +44 20` is held from the `+`, and `Paris. ` is emitted
//! whole. At most [`MAX_HOLD_CHARS`] characters are held: beyond that the oldest are
//! emitted anyway (and masked on what is known), which bounds memory and latency. A
//! finding longer than that may then be missed or cut; shorter ones never are.
//!
//! The last emitted character is kept as context, so boundary checks at the start of the
//! held text see what was before it.

use crate::scanner::{Findings, Region, Scanner, Side};

/// The most characters held back from the client at any time.
pub const MAX_HOLD_CHARS: usize = 64;

/// One text being streamed (an OpenAI choice, an Anthropic content block, an Ollama
/// message).
#[derive(Debug, Default)]
pub struct Holdback {
    /// The context (the last emitted character) followed by the held text.
    buffer: String,
    /// Where the held text starts in `buffer`.
    held_from: usize,
}

impl Holdback {
    /// Adds a delta; returns the text that can be emitted now, masked.
    pub fn push(&mut self, scanner: &mut Scanner, delta: &str, findings: &mut Findings) -> String {
        self.buffer.push_str(delta);
        let from = self.held_from;
        let len = self.buffer.len();
        if from == len {
            return String::new();
        }
        let floor = hold_floor(&self.buffer, from);
        let mut cut = (floor..len)
            .filter(|&at| self.buffer.is_char_boundary(at))
            .find(|&at| scanner.could_match_from(&self.buffer, at))
            .unwrap_or(len);
        if cut == from {
            // Everything held could still be (part of) a finding.
            return String::new();
        }
        let regions = scanner.regions(&self.buffer, from);
        if let Some(region) = straddling(&regions, cut) {
            // Hold the whole finding, unless that would hold more than the cap.
            cut = if region.span.start >= floor {
                region.span.start
            } else {
                region.span.end
            };
        }
        let mut out = String::new();
        if cut > from {
            scanner.render(
                &self.buffer,
                from..cut,
                &regions,
                Side::Response,
                &mut out,
                findings,
            );
            let context = self.buffer[..cut]
                .char_indices()
                .next_back()
                .map_or(cut, |(at, _)| at);
            self.buffer.drain(..context);
            self.held_from = cut - context;
        }
        out
    }

    /// The text ended: everything held, masked.
    pub fn finish(&mut self, scanner: &Scanner, findings: &mut Findings) -> String {
        let from = self.held_from;
        let regions = scanner.regions(&self.buffer, from);
        let mut out = String::new();
        scanner.render(
            &self.buffer,
            from..self.buffer.len(),
            &regions,
            Side::Response,
            &mut out,
            findings,
        );
        self.buffer.clear();
        self.held_from = 0;
        out
    }

    /// Whether text is being held.
    pub fn is_holding(&self) -> bool {
        self.buffer.len() > self.held_from
    }
}

/// The first byte that may be held: [`MAX_HOLD_CHARS`] characters before the end, but
/// not before `from`.
fn hold_floor(buffer: &str, from: usize) -> usize {
    buffer[from..]
        .char_indices()
        .rev()
        .nth(MAX_HOLD_CHARS - 1)
        .map_or(from, |(at, _)| from + at)
}

/// The region `cut` would split.
fn straddling(regions: &[Region], cut: usize) -> Option<&Region> {
    regions
        .iter()
        .find(|region| region.span.start < cut && cut < region.span.end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn scanner(config: &str) -> Scanner {
        Scanner::new(&Config::parse(config.as_bytes()).unwrap()).unwrap()
    }

    /// The whole text masked at once.
    fn masked(scanner: &Scanner, text: &str) -> String {
        let mut findings = Findings::default();
        scanner
            .scan_text(text, Side::Response, &mut findings)
            .unwrap_or_else(|| text.to_string())
    }

    /// The text pushed as `deltas`, each emission recorded, then finished.
    fn streamed(scanner: &mut Scanner, deltas: &[&str]) -> (String, Vec<String>) {
        let mut holdback = Holdback::default();
        let mut findings = Findings::default();
        let mut emitted = Vec::new();
        for delta in deltas {
            emitted.push(holdback.push(scanner, delta, &mut findings));
        }
        emitted.push(holdback.finish(scanner, &mut findings));
        (emitted.concat(), emitted)
    }

    /// Every way of cutting `text` into two and into three deltas gives the same text
    /// as masking it whole, and so does one character per delta.
    fn assert_split_invariant(scanner: &mut Scanner, text: &str) {
        let whole = masked(scanner, text);
        let boundaries: Vec<usize> = (0..=text.len())
            .filter(|&at| text.is_char_boundary(at))
            .collect();
        for &a in &boundaries {
            let (out, _) = streamed(scanner, &[&text[..a], &text[a..]]);
            assert_eq!(out, whole, "split at {a} of {text:?}");
            for &b in boundaries.iter().filter(|&&b| b >= a) {
                let (out, _) = streamed(scanner, &[&text[..a], &text[a..b], &text[b..]]);
                assert_eq!(out, whole, "split at {a} and {b} of {text:?}");
            }
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(streamed(scanner, &chars).0, whole, "char by char: {text:?}");
    }

    #[test]
    fn findings_split_across_deltas_are_masked_like_the_whole_text() {
        let mut scanner = scanner("{}");
        for text in [
            "Write to john.doe@example.com today.",
            "Call +1 (415) 555-2671 or 415-555-2671!",
            "Card 4111 1111 1111 1111, exp 12/25.",
            "SSN 123-45-6789; not 123-45-67890.",
            "From 10.0.0.1 and 2001:db8::1 at 12:30:45; v1.2.3.4.5",
            "IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX",
            "Just words, nothing to see: Paris — \"la Ville Lumière\".\n",
            "é@é.éé 1.2.3.4",
        ] {
            assert_split_invariant(&mut scanner, text);
        }
    }

    #[test]
    fn custom_detectors_are_held_back_too() {
        let mut scanner = scanner(
            r#"{"detectors": [], "custom": [{"name": "employee_id", "pattern": "EMP-\\d{6}"},
                {"name": "word", "pattern": "\\bsecret\\b"}]}"#,
        );
        assert_split_invariant(
            &mut scanner,
            "ids EMP-123456 and EMP-12345, a secret, secrets",
        );
        assert_split_invariant(&mut scanner, "é secret é");
    }

    #[test]
    fn emits_promptly_what_no_detector_could_claim() {
        let mut scanner = scanner("{}");
        let (_, emitted) = streamed(
            &mut scanner,
            &[
                "The capital",
                " of France is",
                " Paris. My mail is jo",
                "hn@example.com",
                " ok",
            ],
        );
        assert_eq!(
            emitted,
            [
                "The ",
                "capital of France ",
                "is Paris. My mail is ",
                "",
                "[EMAIL] ",
                "ok"
            ]
        );
    }

    #[test]
    fn only_email_detection_holds_words() {
        let mut scanner = scanner(r#"{"detectors": ["ssn"]}"#);
        let (_, emitted) = streamed(&mut scanner, &["The capital", " of 123-45", "-6789 x"]);
        assert_eq!(emitted, ["The capital", " of ", "[SSN] x", ""]);
    }

    #[test]
    fn holds_at_most_the_cap() {
        let mut scanner = scanner("{}");
        let mut holdback = Holdback::default();
        let mut findings = Findings::default();
        let word = "a".repeat(200);
        let emitted = holdback.push(&mut scanner, &word, &mut findings);
        assert_eq!(emitted.len(), 200 - MAX_HOLD_CHARS);
        assert!(holdback.is_holding());
        let emitted = holdback.push(&mut scanner, "ééé", &mut findings);
        assert_eq!(emitted, "aaa");
        assert_eq!(
            holdback.finish(&scanner, &mut findings).chars().count(),
            MAX_HOLD_CHARS
        );
        assert!(!holdback.is_holding());
    }
}
