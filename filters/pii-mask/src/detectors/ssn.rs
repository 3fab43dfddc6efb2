//! US Social Security numbers written `AAA-GG-SSSS`, with the numbers the SSA never
//! issues left out: area 000, 666 or 900–999, group 00, serial 0000.
//!
//! Numbers glued to words or to more digit groups (`1-123-45-6789`, `123-45-6789-0`)
//! are not matched; neither are nine digits in a row (too many other things look so).

use std::ops::Range;

use regex::Regex;

use super::{char_at, char_before, compile, find_validated, is_word};

const PATTERN: &str = r"[0-9]{3}-[0-9]{2}-[0-9]{4}";

/// The validator reads a dash and a digit past the number.
pub const PREFIX_PATTERNS: &[&str] = &[r"[0-9]{3}-[0-9]{2}-[0-9]{4}(?:-[0-9]?)?"];

#[derive(Debug, Clone)]
pub struct Ssn {
    regex: Regex,
}

impl Ssn {
    pub fn new() -> Result<Self, String> {
        Ok(Ssn {
            regex: compile(PATTERN)?,
        })
    }

    pub fn find(&self, hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        find_validated(&self.regex, hay, from, out, |hay, span| {
            let before = char_before(hay, span.start);
            let after = char_at(hay, span.end);
            let glued_before = is_word(before) || before == Some('-');
            let glued_after = is_word(after)
                || (after == Some('-')
                    && char_at(hay, span.end + 1).is_some_and(|c| c.is_ascii_digit()));
            (!glued_before && !glued_after && issuable(&hay[span.clone()])).then_some(span)
        });
    }
}

/// Whether `AAA-GG-SSSS` is a number the SSA could have issued.
pub fn issuable(ssn: &str) -> bool {
    let number = |range: Range<usize>| ssn.get(range).and_then(|s| s.parse::<u16>().ok());
    let (Some(area), Some(group), Some(serial)) = (number(0..3), number(4..6), number(7..11))
    else {
        return false;
    };
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_found, assert_not_found, found};
    use super::*;

    fn find(hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        Ssn::new().unwrap().find(hay, from, out);
    }

    #[test]
    fn finds_issuable_numbers() {
        for ssn in ["123-45-6789", "001-01-0001", "899-99-9999", "665-12-3456"] {
            assert_found(find, ssn);
        }
        assert_eq!(
            found(find, "SSN: 123-45-6789; spouse 234-56-7890."),
            ["123-45-6789", "234-56-7890"]
        );
    }

    #[test]
    fn ignores_numbers_never_issued() {
        for text in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert_not_found(find, text);
        }
    }

    #[test]
    fn ignores_other_shapes() {
        for text in [
            "123456789",
            "123 45 6789",
            "1234-56-7890",
            "1-123-45-6789",
            "123-45-6789-0",
            "123-45-67890",
            "a123-45-6789",
            "123-45-6789b",
            "2024-08-06",
            "415-555-2671",
        ] {
            assert_not_found(find, text);
        }
    }
}
