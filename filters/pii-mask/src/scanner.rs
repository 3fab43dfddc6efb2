//! Runs the enabled detectors over a text, resolves overlapping findings and writes the
//! text with each finding replaced according to its detector's action.
//!
//! **Overlaps.** Findings that overlap (of one detector or several) become one region
//! covering all of them, so no detected character is left showing. The region takes the
//! detector of its longest finding; among equally long ones the earliest, then the first
//! detector (custom detectors before built-in ones, built-ins in their canonical order).

use std::ops::Range;

use crate::config::{Action, Config, DetectorKind};
use crate::detectors::{Custom, Matcher};
use crate::prefix::Prefixes;

/// What `redact` writes in place of any finding.
pub const REDACTED: &str = "[REDACTED]";

/// Which message a text belongs to: responses cannot be rejected once they flow, so
/// there `reject` masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// One enabled detector.
#[derive(Debug)]
pub struct Detector {
    /// Its name in the configuration.
    pub name: String,
    /// What `mask` writes: `[EMAIL]`, or the custom name upper-cased in brackets.
    pub placeholder: String,
    pub action: Action,
    matcher: Matcher,
}

impl Detector {
    /// What replaces a finding of this detector on `side`.
    fn replacement(&self, side: Side) -> &str {
        match (self.action, side) {
            (Action::Redact, _) => REDACTED,
            // A rejected request is never forwarded, so its text does not matter.
            (Action::Mask | Action::Reject, _) => &self.placeholder,
        }
    }

    /// Whether a finding of this detector stops the message on `side`.
    fn rejects(&self, side: Side) -> bool {
        self.action == Action::Reject && side == Side::Request
    }
}

/// A stretch of text to replace: one finding, or overlapping findings merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub span: Range<usize>,
    /// Index into [`Scanner::detectors`].
    pub detector: usize,
    /// The length of the finding that gave the region its detector.
    longest: usize,
}

/// What was found in the texts of one message, per detector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    counts: Vec<u32>,
    reject: bool,
}

impl Findings {
    fn record(&mut self, detector: usize, rejects: bool) {
        if self.counts.len() <= detector {
            self.counts.resize(detector + 1, 0);
        }
        self.counts[detector] = self.counts[detector].saturating_add(1);
        self.reject |= rejects;
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&count| count == 0)
    }

    /// Whether a finding's action rejects the message.
    pub fn reject(&self) -> bool {
        self.reject
    }

    /// How many findings of the detector with this index.
    pub fn count(&self, detector: usize) -> u32 {
        self.counts.get(detector).copied().unwrap_or(0)
    }

    /// The names of the detectors that found something, in detector order; only those
    /// whose action is `reject` with `rejecting`.
    pub fn names<'s>(&self, scanner: &'s Scanner, rejecting: bool) -> Vec<&'s str> {
        scanner
            .detectors
            .iter()
            .enumerate()
            .filter(|(index, detector)| {
                self.count(*index) > 0 && (!rejecting || detector.action == Action::Reject)
            })
            .map(|(_, detector)| detector.name.as_str())
            .collect()
    }

    /// `2 email, 1 phone`, for the log (kinds and counts, never values).
    pub fn summary(&self, scanner: &Scanner) -> String {
        scanner
            .detectors
            .iter()
            .enumerate()
            .filter(|(index, _)| self.count(*index) > 0)
            .map(|(index, detector)| format!("{} {}", self.count(index), detector.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The enabled detectors of one binding, compiled.
#[derive(Debug)]
pub struct Scanner {
    detectors: Vec<Detector>,
    prefixes: Prefixes,
}

impl Scanner {
    pub fn new(config: &Config) -> Result<Scanner, String> {
        let mut detectors = Vec::with_capacity(config.detectors.len());
        let mut builtin_prefixes: Vec<&'static str> = Vec::new();
        let mut custom_prefixes: Vec<String> = Vec::new();
        for spec in &config.detectors {
            let (placeholder, matcher) = match &spec.kind {
                DetectorKind::BuiltIn(builtin) => {
                    builtin_prefixes.extend(builtin.prefix_patterns());
                    (
                        builtin.placeholder().to_string(),
                        Matcher::builtin(*builtin)?,
                    )
                }
                DetectorKind::Custom { name, regex } => {
                    let custom = Custom::new(regex.clone());
                    custom_prefixes.push(custom.pattern().to_string());
                    (
                        format!("[{}]", name.to_ascii_uppercase()),
                        Matcher::Custom(custom),
                    )
                }
            };
            detectors.push(Detector {
                name: spec.name().to_string(),
                placeholder,
                action: spec.action,
                matcher,
            });
        }
        let custom_prefixes: Vec<&str> = custom_prefixes.iter().map(String::as_str).collect();
        Ok(Scanner {
            detectors,
            prefixes: Prefixes::new(&builtin_prefixes, &custom_prefixes),
        })
    }

    /// The regions to replace in `hay[from..]`, in order and disjoint. `hay[..from]` is
    /// context (its last character decides the boundary of a finding at `from`).
    pub fn regions(&self, hay: &str, from: usize) -> Vec<Region> {
        let windows = digit_windows(hay, from);
        let mut found: Vec<(Range<usize>, usize)> = Vec::new();
        let mut spans = Vec::new();
        for (index, detector) in self.detectors.iter().enumerate() {
            spans.clear();
            if detector.matcher.needs_digit() {
                for window in &windows {
                    detector
                        .matcher
                        .find(&hay[..window.end], window.start, &mut spans);
                }
            } else {
                detector.matcher.find(hay, from, &mut spans);
            }
            found.extend(spans.drain(..).map(|span| (span, index)));
        }
        resolve(found)
    }

    /// Appends `hay[range]` to `out` with the regions inside it replaced, and records
    /// them in `findings`. `regions` must be ordered and disjoint; those not inside
    /// `range` are skipped.
    pub fn render(
        &self,
        hay: &str,
        range: Range<usize>,
        regions: &[Region],
        side: Side,
        out: &mut String,
        findings: &mut Findings,
    ) {
        let mut copied = range.start;
        for region in regions {
            if region.span.start < range.start || region.span.end > range.end {
                continue;
            }
            let detector = &self.detectors[region.detector];
            out.push_str(&hay[copied..region.span.start]);
            out.push_str(detector.replacement(side));
            findings.record(region.detector, detector.rejects(side));
            copied = region.span.end;
        }
        out.push_str(&hay[copied..range.end]);
    }

    /// `text` with its findings replaced, or `None` when there are none.
    pub fn scan_text(&self, text: &str, side: Side, findings: &mut Findings) -> Option<String> {
        let regions = self.regions(text, 0);
        if regions.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        self.render(text, 0..text.len(), &regions, side, &mut out, findings);
        Some(out)
    }

    /// Whether some detector could still report a finding starting at byte `start` of
    /// `hay` once more text follows (see [`Prefixes`]).
    pub fn could_match_from(&mut self, hay: &str, start: usize) -> bool {
        self.prefixes.could_match_from(hay, start)
    }
}

/// How far around a digit a finding that contains it may reach, with the characters its
/// validator reads: more than the longest such finding (an IBAN written with spaces).
const DIGIT_REACH: usize = 80;

/// The stretches of `hay[from..]` within [`DIGIT_REACH`] bytes of an ASCII digit, merged:
/// the only places where detectors that need a digit can find anything. Outside them
/// are at least `DIGIT_REACH` bytes without a digit, which no candidate of those
/// detectors spans, so searching the windows finds what searching everything would.
fn digit_windows(hay: &str, from: usize) -> Vec<Range<usize>> {
    let mut windows: Vec<Range<usize>> = Vec::new();
    for (offset, _) in hay.as_bytes()[from..]
        .iter()
        .enumerate()
        .filter(|(_, byte)| byte.is_ascii_digit())
    {
        let digit = from + offset;
        let start = floor_char_boundary(hay, digit.saturating_sub(DIGIT_REACH).max(from));
        let end = ceil_char_boundary(hay, (digit + 1 + DIGIT_REACH).min(hay.len()));
        match windows.last_mut() {
            Some(last) if start <= last.end => last.end = last.end.max(end),
            _ => windows.push(start..end),
        }
    }
    windows
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// Merges overlapping findings into regions (see the module docs).
fn resolve(mut found: Vec<(Range<usize>, usize)>) -> Vec<Region> {
    found.sort_by(|(a, a_detector), (b, b_detector)| {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then(a_detector.cmp(b_detector))
    });
    let mut regions: Vec<Region> = Vec::with_capacity(found.len());
    for (span, detector) in found {
        let length = span.len();
        match regions.last_mut() {
            Some(last) if span.start < last.span.end => {
                if length > last.longest {
                    last.detector = detector;
                    last.longest = length;
                }
                last.span.end = last.span.end.max(span.end);
            }
            _ => regions.push(Region {
                span,
                detector,
                longest: length,
            }),
        }
    }
    regions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner(config: &str) -> Scanner {
        Scanner::new(&Config::parse(config.as_bytes()).unwrap()).unwrap()
    }

    fn masked(scanner: &Scanner, text: &str) -> String {
        let mut findings = Findings::default();
        scanner
            .scan_text(text, Side::Request, &mut findings)
            .unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn masks_each_kind_with_its_placeholder() {
        let all = scanner("{}");
        assert_eq!(
            masked(
                &all,
                "Mail john.doe@example.com or call +1 (415) 555-2671; card 4111 1111 1111 1111, \
                 SSN 123-45-6789, from 192.168.0.1 and 2001:db8::1, IBAN DE89 3704 0044 0532 0130 00."
            ),
            "Mail [EMAIL] or call [PHONE]; card [CREDIT_CARD], SSN [SSN], from [IPV4] and \
             [IPV6], IBAN [IBAN]."
        );
    }

    #[test]
    fn leaves_text_without_findings_alone() {
        let all = scanner("{}");
        let mut findings = Findings::default();
        for text in [
            "",
            "The capital of France is Paris.",
            "Version 1.2.3, released 2024-08-06 at 12:30:45, build 4111111111111112.",
        ] {
            assert_eq!(
                all.scan_text(text, Side::Request, &mut findings),
                None,
                "{text}"
            );
        }
        assert!(findings.is_empty());
    }

    #[test]
    fn actions_decide_the_replacement_and_the_rejection() {
        let scanner = scanner(
            r#"{"detectors": ["email", "phone", "ssn"], "action": "redact",
                "actions": {"ssn": "mask", "phone": "reject"}}"#,
        );
        let text = "a@example.com, 415-555-2671, 123-45-6789";
        let mut findings = Findings::default();
        let out = scanner
            .scan_text(text, Side::Request, &mut findings)
            .unwrap();
        assert_eq!(out, "[REDACTED], [PHONE], [SSN]");
        assert!(findings.reject());
        assert_eq!(findings.names(&scanner, true), ["phone"]);
        assert_eq!(findings.names(&scanner, false), ["email", "phone", "ssn"]);
        assert_eq!(findings.summary(&scanner), "1 email, 1 phone, 1 ssn");

        // In a response, reject masks.
        let mut findings = Findings::default();
        let out = scanner
            .scan_text(text, Side::Response, &mut findings)
            .unwrap();
        assert_eq!(out, "[REDACTED], [PHONE], [SSN]");
        assert!(!findings.reject());
    }

    #[test]
    fn custom_detectors_use_their_upper_cased_name() {
        let scanner = scanner(
            r#"{"detectors": ["email"], "custom": [{"name": "employee_id", "pattern": "EMP-\\d{6}"},
                {"name": "Ticket-No", "pattern": "T#[0-9]+"}]}"#,
        );
        assert_eq!(
            masked(&scanner, "EMP-123456 filed T#42 from emp@example.com"),
            "[EMPLOYEE_ID] filed [TICKET-NO] from [EMAIL]"
        );
    }

    #[test]
    fn overlapping_findings_merge_under_the_longest() {
        let found = vec![
            (0..10, 1),
            (5..30, 0),
            (28..32, 2),
            (40..44, 3),
            (40..44, 1),
        ];
        let regions = resolve(found);
        assert_eq!(
            regions,
            [
                Region {
                    span: 0..32,
                    detector: 0,
                    longest: 25
                },
                Region {
                    span: 40..44,
                    detector: 1,
                    longest: 4
                },
            ]
        );
        // Equal lengths: the earliest wins.
        let regions = resolve(vec![(3..8, 0), (0..5, 1)]);
        assert_eq!(regions[0].span, 0..8);
        assert_eq!(regions[0].detector, 1);
    }

    #[test]
    fn custom_detectors_win_ties_with_builtins() {
        let scanner =
            scanner(r#"{"custom": [{"name": "tax_id", "pattern": "[0-9]{3}-[0-9]{2}-[0-9]{4}"}]}"#);
        assert_eq!(masked(&scanner, "id 123-45-6789"), "id [TAX_ID]");
    }

    #[test]
    fn a_card_number_inside_an_address_is_one_email_finding() {
        let all = scanner("{}");
        let mut findings = Findings::default();
        let out = all.scan_text(
            "to 4111111111111111@example.com",
            Side::Request,
            &mut findings,
        );
        assert_eq!(out.as_deref(), Some("to [EMAIL]"));
        assert_eq!(findings.summary(&all), "1 email");
    }

    #[test]
    fn digit_windows_cover_every_digit_and_its_reach() {
        let prose = "word ".repeat(100);
        let hay = format!("{prose}1{prose}é2 3{prose}");
        let windows = digit_windows(&hay, 0);
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0], 500 - DIGIT_REACH..501 + DIGIT_REACH);
        assert!(windows[1].contains(&hay.find('2').unwrap()));
        assert!(windows[1].end - windows[1].start > 2 * DIGIT_REACH);
        assert!(digit_windows("no digits here", 0).is_empty());
        assert_eq!(digit_windows("12", 1), vec![1..2]);
    }

    #[test]
    fn searching_windows_finds_what_searching_everything_finds() {
        let all = scanner(r#"{"custom": [{"name": "id", "pattern": "ID-[0-9]+"}]}"#);
        let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(4);
        let pieces = [
            "+44 20 7946 0958",
            "4111 1111 1111 1111",
            "123-45-6789",
            "10.0.0.1",
            "2001:db8::1",
            "FR14 2004 1010 0505 0001 3M02 606",
            "GB82 WEST 1234 5698 7654 32",
            "(415) 555-2671",
            "ID-42",
            "1.2.3.4.5",
        ];
        let mut hay = String::new();
        for (index, piece) in pieces.iter().enumerate() {
            hay.push_str(&filler[..index * 61 % filler.len()]);
            hay.push(' ');
            hay.push_str(piece);
            hay.push(' ');
        }
        let mut everywhere: Vec<(Range<usize>, usize)> = Vec::new();
        for (index, detector) in all.detectors.iter().enumerate() {
            let mut spans = Vec::new();
            detector.matcher.find(&hay, 0, &mut spans);
            everywhere.extend(spans.into_iter().map(|span| (span, index)));
        }
        assert!(
            digit_windows(&hay, 0).len() > 2,
            "the test needs gaps between windows"
        );
        let windowed = all.regions(&hay, 0);
        assert_eq!(windowed, resolve(everywhere));
        assert_eq!(windowed.len(), pieces.len() - 1);
    }

    #[test]
    fn scanning_from_an_offset_keeps_the_context() {
        let all = scanner("{}");
        let hay = "x123-45-6789 and 123-45-6789";
        let regions = all.regions(hay, 1);
        assert_eq!(regions.len(), 1);
        assert_eq!(&hay[regions[0].span.clone()], "123-45-6789");
        assert_eq!(regions[0].span.start, 17);
    }
}
