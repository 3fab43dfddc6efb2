//! Payment card numbers: 13 to 19 digits, in one block or in groups separated by single
//! spaces or dashes (`4111 1111 1111 1111`, `3782-822463-10005`), that pass the Luhn
//! check and start with 2–6 (the major industry identifiers of the card networks:
//! Mastercard, Amex, Diners, JCB, Visa, Discover, UnionPay, Maestro).
//!
//! A run of digit groups longer than a card (`call 415 555 2671 4111111111111111`) is
//! searched for the longest run of whole groups that is a card. Digits glued to letters
//! or decimals (`4111111111111111abc`, `0.4111111111111111`) are not cards, and neither
//! are numbers of one repeated digit (`22222222222222222` passes Luhn).

use std::ops::Range;

use regex::Regex;

use super::{char_at, char_before, compile, is_word};

/// A maximal run of digit groups (`[0-9]+(?:[ -][0-9]+)*`) with at least 13 digits: a
/// run starts where 13 digits start, and the greedy repetition takes it to its end.
/// Shorter runs, most numbers in a text, never reach the validator.
const RUN: &str = r"[0-9](?:[ \-]?[0-9]){12,}";

/// The validator reads a decimal point and a digit past a run.
pub const PREFIX_PATTERNS: &[&str] = &[r"[0-9]+(?:[ \-][0-9]+)*(?:\.[0-9]?)?"];

const MIN_DIGITS: usize = 13;
const MAX_DIGITS: usize = 19;

#[derive(Debug, Clone)]
pub struct Card {
    run: Regex,
}

impl Card {
    pub fn new() -> Result<Self, String> {
        Ok(Card { run: compile(RUN)? })
    }

    pub fn find(&self, hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        let mut at = from;
        while let Some(run) = self.run.find_at(hay, at) {
            // Runs are maximal: whatever is decided here, the next one starts after it.
            at = run.end();
            let before = char_before(hay, run.start());
            if is_word(before) || matches!(before, Some('.' | '+')) {
                continue;
            }
            let after = char_at(hay, run.end());
            let decimal = after == Some('.')
                && char_at(hay, run.end() + 1).is_some_and(|c| c.is_ascii_digit());
            if is_word(after) || decimal {
                continue;
            }
            cards_in_run(hay, run.range(), out);
        }
    }
}

/// Reports the cards among the digit groups of `run`: from each group on, the longest
/// run of whole groups that is a card.
fn cards_in_run(hay: &str, run: Range<usize>, out: &mut Vec<Range<usize>>) {
    let mut groups: Vec<Range<usize>> = Vec::new();
    let bytes = hay.as_bytes();
    let mut start = run.start;
    for at in run.clone() {
        if !bytes[at].is_ascii_digit() {
            groups.push(start..at);
            start = at + 1;
        }
    }
    groups.push(start..run.end);

    let mut first = 0;
    while first < groups.len() {
        let mut digits = 0;
        let mut longest = None;
        for last in first..groups.len() {
            digits += groups[last].len();
            if digits > MAX_DIGITS {
                break;
            }
            if digits >= MIN_DIGITS && is_card(hay, &groups[first..=last]) {
                longest = Some(last);
            }
        }
        match longest {
            Some(last) => {
                out.push(groups[first].start..groups[last].end);
                first = last + 1;
            }
            None => first += 1,
        }
    }
}

fn is_card(hay: &str, groups: &[Range<usize>]) -> bool {
    let mut digits = [0u8; MAX_DIGITS];
    let mut count = 0;
    for group in groups {
        for &byte in &hay.as_bytes()[group.clone()] {
            digits[count] = byte - b'0';
            count += 1;
        }
    }
    let digits = &digits[..count];
    matches!(digits[0], 2..=6) && digits.iter().any(|&d| d != digits[0]) && luhn(digits)
}

/// The Luhn (mod 10) check of a card number's digits, check digit last.
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, &digit)| {
            let digit = u32::from(digit);
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_found, assert_not_found, found};
    use super::*;

    fn find(hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        Card::new().unwrap().find(hay, from, out);
    }

    fn digits(number: &str) -> Vec<u8> {
        number.bytes().map(|b| b - b'0').collect()
    }

    #[test]
    fn luhn_accepts_valid_numbers_and_rejects_one_changed_digit() {
        for number in ["4111111111111111", "79927398713", "378282246310005", "0"] {
            assert!(luhn(&digits(number)), "{number}");
        }
        for number in ["4111111111111112", "79927398710", "378282246310006", "1"] {
            assert!(!luhn(&digits(number)), "{number}");
        }
    }

    #[test]
    fn finds_card_numbers() {
        for number in [
            // Visa, Mastercard (both ranges), Amex, Discover, JCB, Diners (14), Visa 19.
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555 5555 5555 4444",
            "2223003122003222",
            "3782 822463 10005",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "4111111111111111110",
        ] {
            assert_found(find, number);
        }
    }

    #[test]
    fn finds_the_card_in_a_longer_run_of_numbers() {
        assert_eq!(
            found(find, "call 415 555 2671 4111111111111111 now"),
            ["4111111111111111"]
        );
        assert_eq!(
            found(find, "4111 1111 1111 1111 and 5555-5555-5555-4444"),
            ["4111 1111 1111 1111", "5555-5555-5555-4444"]
        );
    }

    #[test]
    fn ignores_numbers_that_are_not_cards() {
        for text in [
            // 16 digits failing Luhn, spaced or not.
            "4111111111111112",
            "4111 1111 1111 1112",
            // Too short, too long (and no card among the groups).
            "411111111111",
            "41111111111111111111",
            // Luhn-valid but not a card network: starts with 0, 1, 7, 8, 9; one digit.
            "0000000000000000",
            "1234567812345670",
            "7992739871300000",
            "22222222222222222",
            // Glued to letters, decimals, other digits.
            "x4111111111111111",
            "4111111111111111x",
            "0.4111111111111111",
            "4111111111111111.5",
            // Random digit runs, timestamps, a phone number.
            "order 4273645129384756",
            "1741570283000",
            "+1 415 555 2671",
        ] {
            assert_not_found(find, text);
        }
    }

    #[test]
    fn runs_are_found_whole() {
        let card = Card::new().unwrap();
        for (hay, run) in [
            (
                "x 1 2 3 4 5 6 7 8 9 0 1 2 3 4-5 y",
                "1 2 3 4 5 6 7 8 9 0 1 2 3 4-5",
            ),
            ("12 4111111111111111 3", "12 4111111111111111 3"),
            ("1  4111111111111111", "4111111111111111"),
        ] {
            assert_eq!(card.run.find(hay).map(|m| m.as_str()), Some(run), "{hay}");
        }
        assert_eq!(card.run.find("12345678901 1 x"), None);
    }

    #[test]
    fn stays_fast_on_long_digit_runs() {
        let text = "1 ".repeat(50_000) + &"9".repeat(100_000);
        assert!(found(find, &text).is_empty());
    }
}
