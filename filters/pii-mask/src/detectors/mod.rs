//! The detectors: each finds the spans of one kind of personal data in a text.
//!
//! A detector is a candidate regex plus a validator (checksums, number ranges, what the
//! characters around a candidate may be). Validators look at most one character before
//! a candidate and, past its end, only at what the detector's [prefix pattern]
//! (`BuiltIn::prefix_patterns`) also covers: so the stream holdback, which keeps back
//! every tail that could still be the start of a prefix-pattern match, never lets a
//! decision be taken on a text that is still growing.
//!
//! Regexes are written with ASCII classes (`[0-9]`, not `\d`) and without look-around,
//! so the lazy DFA runs them on any text, and compiled once per instance.

mod card;
mod custom;
mod email;
mod iban;
mod ip;
mod phone;
mod ssn;

use std::ops::Range;

use regex::Regex;

pub use custom::Custom;

/// The built-in detectors, in their canonical order (which breaks ties between
/// overlapping findings of equal length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltIn {
    Email,
    Phone,
    CreditCard,
    Ssn,
    Ipv4,
    Ipv6,
    Iban,
}

impl BuiltIn {
    pub const ALL: [BuiltIn; 7] = [
        BuiltIn::Email,
        BuiltIn::Phone,
        BuiltIn::CreditCard,
        BuiltIn::Ssn,
        BuiltIn::Ipv4,
        BuiltIn::Ipv6,
        BuiltIn::Iban,
    ];

    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            BuiltIn::Email => "email",
            BuiltIn::Phone => "phone",
            BuiltIn::CreditCard => "credit_card",
            BuiltIn::Ssn => "ssn",
            BuiltIn::Ipv4 => "ipv4",
            BuiltIn::Ipv6 => "ipv6",
            BuiltIn::Iban => "iban",
        }
    }

    pub fn from_name(name: &str) -> Option<BuiltIn> {
        BuiltIn::ALL
            .into_iter()
            .find(|builtin| builtin.name() == name)
    }

    /// What `mask` puts in place of a finding.
    pub fn placeholder(self) -> &'static str {
        match self {
            BuiltIn::Email => "[EMAIL]",
            BuiltIn::Phone => "[PHONE]",
            BuiltIn::CreditCard => "[CREDIT_CARD]",
            BuiltIn::Ssn => "[SSN]",
            BuiltIn::Ipv4 => "[IPV4]",
            BuiltIn::Ipv6 => "[IPV6]",
            BuiltIn::Iban => "[IBAN]",
        }
    }

    /// Patterns that match every prefix of a text this detector could still report
    /// (or decide against) once more text arrives: its candidate regexes, extended by
    /// the context its validator reads past a candidate's end.
    pub fn prefix_patterns(self) -> &'static [&'static str] {
        match self {
            BuiltIn::Email => email::PREFIX_PATTERNS,
            BuiltIn::Phone => phone::PREFIX_PATTERNS,
            BuiltIn::CreditCard => card::PREFIX_PATTERNS,
            BuiltIn::Ssn => ssn::PREFIX_PATTERNS,
            BuiltIn::Ipv4 => ip::IPV4_PREFIX_PATTERNS,
            BuiltIn::Ipv6 => ip::IPV6_PREFIX_PATTERNS,
            BuiltIn::Iban => iban::PREFIX_PATTERNS,
        }
    }
}

/// A compiled detector.
#[derive(Debug, Clone)]
pub enum Matcher {
    Email(email::Email),
    Phone(phone::Phone),
    CreditCard(card::Card),
    Ssn(ssn::Ssn),
    Ipv4(ip::Ipv4),
    Ipv6(ip::Ipv6),
    Iban(iban::Iban),
    Custom(Custom),
}

impl Matcher {
    pub fn builtin(builtin: BuiltIn) -> Result<Matcher, String> {
        Ok(match builtin {
            BuiltIn::Email => Matcher::Email(email::Email::new()?),
            BuiltIn::Phone => Matcher::Phone(phone::Phone::new()?),
            BuiltIn::CreditCard => Matcher::CreditCard(card::Card::new()?),
            BuiltIn::Ssn => Matcher::Ssn(ssn::Ssn::new()?),
            BuiltIn::Ipv4 => Matcher::Ipv4(ip::Ipv4::new()?),
            BuiltIn::Ipv6 => Matcher::Ipv6(ip::Ipv6::new()?),
            BuiltIn::Iban => Matcher::Iban(iban::Iban::new()?),
        })
    }

    /// Whether every finding of this detector contains an ASCII digit, so a text
    /// without digits need not be searched (IPv6 full forms may be all letters).
    pub fn needs_digit(&self) -> bool {
        matches!(
            self,
            Matcher::Phone(_)
                | Matcher::CreditCard(_)
                | Matcher::Ssn(_)
                | Matcher::Ipv4(_)
                | Matcher::Iban(_)
        )
    }

    /// Appends the spans found in `hay[from..]` to `out`, in order. `hay[..from]` is
    /// context only: its last character decides boundaries, nothing starts in it.
    pub fn find(&self, hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        match self {
            Matcher::Email(detector) => detector.find(hay, from, out),
            Matcher::Phone(detector) => detector.find(hay, from, out),
            Matcher::CreditCard(detector) => detector.find(hay, from, out),
            Matcher::Ssn(detector) => detector.find(hay, from, out),
            Matcher::Ipv4(detector) => detector.find(hay, from, out),
            Matcher::Ipv6(detector) => detector.find(hay, from, out),
            Matcher::Iban(detector) => detector.find(hay, from, out),
            Matcher::Custom(detector) => detector.find(hay, from, out),
        }
    }
}

/// Compiles one of the detectors' own patterns.
fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("built-in pattern {pattern:?}: {e}"))
}

/// The character ending just before byte `at`.
fn char_before(hay: &str, at: usize) -> Option<char> {
    hay.get(..at)?.chars().next_back()
}

/// The character starting at byte `at`.
fn char_at(hay: &str, at: usize) -> Option<char> {
    hay.get(at..)?.chars().next()
}

/// The byte offset of the character after the one starting at `at`.
fn next_char(hay: &str, at: usize) -> usize {
    at + char_at(hay, at).map_or(1, char::len_utf8)
}

/// Whether `c` continues a word (or number) that a finding must not be cut out of.
fn is_word(c: Option<char>) -> bool {
    c.is_some_and(char::is_alphanumeric)
}

/// Runs `regex` over `hay[from..]`; every candidate goes through `validate`, which
/// returns the span to report (possibly narrowed) or `None`. After a rejected candidate
/// the search resumes one character after its start, so a valid finding that starts
/// inside a rejected candidate is still found; candidates are bounded in length, so this
/// stays linear in the text.
fn find_validated(
    regex: &Regex,
    hay: &str,
    from: usize,
    out: &mut Vec<Range<usize>>,
    mut validate: impl FnMut(&str, Range<usize>) -> Option<Range<usize>>,
) {
    let mut at = from;
    while at <= hay.len() {
        let Some(candidate) = regex.find_at(hay, at) else {
            break;
        };
        match validate(hay, candidate.range()) {
            Some(span) if !span.is_empty() => {
                at = span.end.max(next_char(hay, candidate.start()));
                out.push(span);
            }
            _ => at = next_char(hay, candidate.start()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for builtin in BuiltIn::ALL {
            assert_eq!(BuiltIn::from_name(builtin.name()), Some(builtin));
            assert!(builtin.placeholder().starts_with('['));
            assert!(!builtin.prefix_patterns().is_empty());
        }
        assert_eq!(BuiltIn::from_name("Email"), None);
    }

    #[test]
    fn every_builtin_compiles() {
        for builtin in BuiltIn::ALL {
            Matcher::builtin(builtin).unwrap();
            for pattern in builtin.prefix_patterns() {
                compile(pattern).unwrap();
            }
        }
    }

    #[test]
    fn character_helpers_respect_utf8() {
        let hay = "aé€b";
        assert_eq!(char_before(hay, 3), Some('é'));
        assert_eq!(char_before(hay, 0), None);
        assert_eq!(char_at(hay, 3), Some('€'));
        assert_eq!(next_char(hay, 3), 6);
        assert_eq!(char_at(hay, 2), None);
        assert!(is_word(Some('é')) && !is_word(Some('-')) && !is_word(None));
    }
}

/// Test helpers shared by the detector modules.
#[cfg(test)]
pub(crate) mod testing {
    use std::ops::Range;

    /// The texts `find` reports in `hay`.
    pub fn found(find: impl Fn(&str, usize, &mut Vec<Range<usize>>), hay: &str) -> Vec<String> {
        let mut out = Vec::new();
        find(hay, 0, &mut out);
        out.into_iter().map(|span| hay[span].to_string()).collect()
    }

    /// Asserts that `text`, alone and embedded in a sentence, is found whole.
    pub fn assert_found(find: impl Fn(&str, usize, &mut Vec<Range<usize>>) + Copy, text: &str) {
        assert_eq!(found(find, text), [text], "alone: {text:?}");
        let sentence = format!("Reach me at {text}, thanks.");
        assert_eq!(found(find, &sentence), [text], "in {sentence:?}");
        let wrapped = format!("({text})");
        assert_eq!(found(find, &wrapped), [text], "in {wrapped:?}");
    }

    /// Asserts that nothing is found in `text`.
    pub fn assert_not_found(find: impl Fn(&str, usize, &mut Vec<Range<usize>>), text: &str) {
        let found = found(find, text);
        assert!(found.is_empty(), "found {found:?} in {text:?}");
    }
}
