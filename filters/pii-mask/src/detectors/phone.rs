//! Phone numbers in international and North American formats.
//!
//! - **International**: `+` and 8 to 15 digits (E.164), separated or not by single spaces,
//!   dots or dashes, with parenthesised groups: `+4915112345678`, `+1 (415) 555-2671`,
//!   `+44 20 7946 0958`, `+44 (0)20 7946 0958` (a `(0)` trunk prefix is not counted).
//!   Digits after the 15th are cut off at a separator: `+44 20 7946 0958 2024` reports
//!   the number without the year.
//! - **North American** (NANP) without `+`: `(415) 555-2671`, `415-555-2671`,
//!   `415.555.2671`, `415 555 2671`, `1-800-555-0199`: area code and exchange start with
//!   2–9, and the groups are separated (ten digits in a row are not phone-like).
//!
//! Not matched: digits glued to letters or other numbers (`v415-555-2671`,
//! `415-555-2671-9`), plain long numbers, dates (`2024-08-06`), version strings
//! (`1.2.3.4`), national formats of other countries without `+` (`030 1234567`).

use std::ops::Range;

use regex::Regex;

use super::{char_at, char_before, compile, find_validated, is_word};

const INTERNATIONAL: &str = r"\+[0-9](?:[ .\-]?(?:\([0-9]{1,4}\)|[0-9])){6,18}";
const NANP: &str =
    r"(?:1[ .\-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-][0-9]{4}";

/// The NANP validator reads a separator and a digit past the number (`415-555-2671-9`).
pub const PREFIX_PATTERNS: &[&str] = &[
    INTERNATIONAL,
    r"(?:1[ .\-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-][0-9]{4}(?:[.\-/][0-9]?)?",
];

/// E.164: at most 15 digits; fewer than 8 is rarely a full international number.
const DIGITS: std::ops::RangeInclusive<usize> = 8..=15;

#[derive(Debug, Clone)]
pub struct Phone {
    international: Regex,
    nanp: Regex,
}

impl Phone {
    pub fn new() -> Result<Self, String> {
        Ok(Phone {
            international: compile(INTERNATIONAL)?,
            nanp: compile(NANP)?,
        })
    }

    pub fn find(&self, hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        let first = out.len();
        find_validated(&self.international, hay, from, out, international);
        let international_end = out.len();
        let mut north_american = Vec::new();
        find_validated(&self.nanp, hay, from, &mut north_american, nanp);
        // `+1 (415) 555-2671` is one number, not also `(415) 555-2671`.
        for span in north_american {
            let overlaps = out[first..international_end]
                .iter()
                .any(|other| other.start < span.end && span.start < other.end);
            if !overlaps {
                out.push(span);
            }
        }
        out[first..].sort_by_key(|span| span.start);
    }
}

/// The longest prefix of the candidate, ending at a group boundary, that is a valid
/// international number.
fn international(hay: &str, span: Range<usize>) -> Option<Range<usize>> {
    let before = char_before(hay, span.start);
    if is_word(before) || before == Some('+') {
        return None;
    }
    let text = hay[span.clone()].as_bytes();
    // Group ends: after a digit or `)` followed by a separator, or at the end.
    let ends = (1..=text.len()).rev().filter(|&end| {
        matches!(text[end - 1], b'0'..=b'9' | b')')
            && text
                .get(end)
                .is_none_or(|next| matches!(next, b' ' | b'.' | b'-' | b'('))
    });
    for end in ends {
        let end = span.start + end;
        if DIGITS.contains(&counted_digits(&hay[span.start..end])) && !is_word(char_at(hay, end)) {
            return Some(span.start..end);
        }
    }
    None
}

/// The digits of an international number, without a `(0)` trunk prefix.
fn counted_digits(number: &str) -> usize {
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    if number.contains("(0)") {
        digits - 1
    } else {
        digits
    }
}

fn nanp(hay: &str, span: Range<usize>) -> Option<Range<usize>> {
    let before = char_before(hay, span.start);
    if is_word(before) || matches!(before, Some('.' | '-' | '+' | '/')) {
        return None;
    }
    let after = char_at(hay, span.end);
    if is_word(after) {
        return None;
    }
    if matches!(after, Some('.' | '-' | '/'))
        && char_at(hay, span.end + 1).is_some_and(|c| c.is_ascii_digit())
    {
        return None;
    }
    Some(span)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_found, assert_not_found, found};
    use super::*;

    fn find(hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        Phone::new().unwrap().find(hay, from, out);
    }

    #[test]
    fn finds_international_numbers() {
        for number in [
            "+4915112345678",
            "+1 (415) 555-2671",
            "+44 20 7946 0958",
            "+44 (0)20 7946 0958",
            "+33 1 23 45 67 89",
            "+49-151-1234-5678",
            "+81.3.1234.5678",
            "+861012345678",
            "+1(415)5552671",
        ] {
            assert_found(find, number);
        }
    }

    #[test]
    fn finds_north_american_numbers() {
        for number in [
            "(415) 555-2671",
            "(415)555-2671",
            "415-555-2671",
            "415.555.2671",
            "415 555 2671",
            "1-800-555-0199",
        ] {
            assert_found(find, number);
        }
        assert_eq!(found(find, "call 415-555-2671."), ["415-555-2671"]);
        assert_eq!(found(find, "tel:+14155552671"), ["+14155552671"]);
    }

    #[test]
    fn trailing_numbers_past_fifteen_digits_are_cut_off() {
        assert_eq!(found(find, "+44 20 7946 0958 2024"), ["+44 20 7946 0958"]);
        assert_eq!(
            found(find, "+1 415 555 2671 2024"),
            ["+1 415 555 2671 2024"]
        );
        assert_eq!(
            found(find, "+44 20 7946 0958 12345678"),
            ["+44 20 7946 0958"]
        );
    }

    #[test]
    fn ignores_what_is_not_phone_like() {
        for text in [
            // Plain long numbers, too short or too long international numbers.
            "4155552671",
            "order 123456789012",
            "+1234567",
            "+1234567890123456",
            // Dates, times, versions, IPs, decimals.
            "2024-08-06",
            "06/08/2024",
            "12:30:45",
            "1.2.3.4",
            "version 10.15.7",
            "192.168.100.200",
            "3.14159265",
            // NANP rules: area code and exchange start with 2–9.
            "123-456-7890",
            "415-155-2671",
            // Glued to other words or numbers.
            "v415-555-2671",
            "415-555-2671-9",
            "2415-555-2671",
            "415-555-26712",
            "415-555-2671x",
            "a+4915112345678",
            "5+4915112345678",
            "+4915112345678abc",
            // Other national formats are left alone.
            "030 1234567",
        ] {
            assert_not_found(find, text);
        }
    }
}
