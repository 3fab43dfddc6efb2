//! E-mail addresses: `local@domain.tld`, the top-level domain at least two letters.
//!
//! The local part is the usual unquoted one (letters, digits, `._%+-`, not starting with
//! a dot); the domain is dot-separated labels of letters, digits and inner hyphens.
//! Letters include those of the common non-Latin scripts, for internationalised
//! addresses (`josé@exemple.fr`, `用户@例子.广告`): Latin with diacritics, Greek,
//! Cyrillic, Armenian, Hebrew, Arabic, the Indic scripts, Thai, Georgian, Hangul, kana
//! and CJK ideographs — listed as ranges rather than `\p{L}`, whose automaton alone
//! would cost an instance most of its `init` budget. Quoted local parts and IP-literal
//! domains (`user@[192.0.2.1]`) are not matched.

use std::ops::Range;

use regex::Regex;

use super::{compile, find_validated};

/// The letters of an address (see the module docs).
macro_rules! letters {
    () => {
        concat!(
            r"A-Za-z\x{00C0}-\x{00D6}\x{00D8}-\x{00F6}\x{00F8}-\x{024F}\x{0370}-\x{03FF}",
            r"\x{0400}-\x{052F}\x{0531}-\x{058F}\x{05D0}-\x{05EA}\x{0620}-\x{064A}",
            r"\x{066E}-\x{06D3}\x{0900}-\x{0DFF}\x{0E00}-\x{0E7F}\x{10A0}-\x{10FF}",
            r"\x{1100}-\x{11FF}\x{1E00}-\x{1FFF}\x{3040}-\x{30FF}\x{3400}-\x{4DBF}",
            r"\x{4E00}-\x{9FFF}\x{AC00}-\x{D7AF}",
        )
    };
}

/// A domain label: letters and digits, hyphens inside.
macro_rules! label {
    () => {
        concat!(
            "[0-9",
            letters!(),
            "](?:[0-9",
            letters!(),
            r"\-]*[0-9",
            letters!(),
            "])?"
        )
    };
}

/// The candidate pattern is the whole detector: there is no validator.
const PATTERN: &str = concat!(
    "[0-9",
    letters!(),
    r"_%+\-][0-9",
    letters!(),
    r"._%+\-]*@",
    label!(),
    r"(?:\.",
    label!(),
    ")*",
    r"\.[",
    letters!(),
    "]{2,}",
);

/// The regex is greedy and has no validator: the lazy DFA sees every character its
/// decision depends on.
pub const PREFIX_PATTERNS: &[&str] = &[PATTERN];

#[derive(Debug, Clone)]
pub struct Email {
    regex: Regex,
}

impl Email {
    pub fn new() -> Result<Self, String> {
        Ok(Email {
            regex: compile(PATTERN)?,
        })
    }

    pub fn find(&self, hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        find_validated(&self.regex, hay, from, out, |_, span| Some(span));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_found, assert_not_found, found};
    use super::*;

    fn find(hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        Email::new().unwrap().find(hay, from, out);
    }

    #[test]
    fn finds_addresses() {
        for address in [
            "john.doe@example.com",
            "j@ex.io",
            "first_last+tag@mail.example.co.uk",
            "a-b%c@sub-domain.example.org",
            "JOHN@EXAMPLE.COM",
            "user123@123mail.net",
            "josé@exemple.fr",
            "用户@例子.广告",
        ] {
            assert_found(find, address);
        }
    }

    #[test]
    fn trims_what_is_not_part_of_the_address() {
        assert_eq!(
            found(find, "mailto:john@example.com."),
            ["john@example.com"]
        );
        assert_eq!(found(find, "<john@example.com>"), ["john@example.com"]);
        assert_eq!(found(find, "...john@example.com"), ["john@example.com"]);
        assert_eq!(found(find, "\"john@example.com\""), ["john@example.com"]);
        assert_eq!(
            found(find, "a@example.com,b@example.org"),
            ["a@example.com", "b@example.org"]
        );
    }

    #[test]
    fn ignores_what_is_not_an_address() {
        for text in [
            "john@localhost",
            "@example.com",
            "john@",
            "john@.com",
            "john@-example.com",
            "john@example.c",
            "john at example dot com",
            "price: 5@3.50",
            "@@",
            "user@[192.0.2.1]",
        ] {
            assert_not_found(find, text);
        }
    }
}
