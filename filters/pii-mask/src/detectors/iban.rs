//! International bank account numbers: a country code, two check digits and the
//! country's fixed number of further letters and digits, written in one block or with
//! single spaces (usually groups of four: `DE89 3704 0044 0532 0130 00`), upper or lower
//! case. The length must be the country's (SWIFT IBAN registry) and the ISO 13616
//! mod-97 check must hold, so a wrong check digit or a mistyped digit is not reported.

use std::ops::Range;

use regex::Regex;

use super::{char_at, char_before, compile, find_validated, is_word};

/// Longer than any IBAN (34 characters), so the country's length decides the end.
const PATTERN: &str = r"[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30}";

/// The validator reads nothing past the candidate that the pattern does not cover.
pub const PREFIX_PATTERNS: &[&str] = &[PATTERN];

/// IBAN lengths by country code (SWIFT IBAN registry).
#[rustfmt::skip]
const LENGTHS: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16),
    ("BG", 22), ("BH", 22), ("BI", 27), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22),
    ("CY", 28), ("CZ", 24), ("DE", 22), ("DJ", 27), ("DK", 18), ("DO", 28), ("EE", 20),
    ("EG", 29), ("ES", 24), ("FI", 18), ("FK", 18), ("FO", 18), ("FR", 27), ("GB", 22),
    ("GE", 22), ("GI", 23), ("GL", 18), ("GR", 27), ("GT", 28), ("HN", 28), ("HR", 21),
    ("HU", 28), ("IE", 22), ("IL", 23), ("IQ", 23), ("IS", 26), ("IT", 27), ("JO", 30),
    ("KW", 30), ("KZ", 20), ("LB", 28), ("LC", 32), ("LI", 21), ("LT", 20), ("LU", 20),
    ("LV", 21), ("LY", 25), ("MC", 27), ("MD", 24), ("ME", 22), ("MK", 19), ("MN", 20),
    ("MR", 27), ("MT", 31), ("MU", 30), ("NI", 28), ("NL", 18), ("NO", 15), ("OM", 23),
    ("PK", 24), ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22),
    ("RU", 33), ("SA", 24), ("SC", 31), ("SD", 18), ("SE", 24), ("SI", 19), ("SK", 24),
    ("SM", 27), ("SO", 23), ("ST", 25), ("SV", 28), ("TL", 23), ("TN", 24), ("TR", 26),
    ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20), ("YE", 30),
];

#[derive(Debug, Clone)]
pub struct Iban {
    regex: Regex,
}

impl Iban {
    pub fn new() -> Result<Self, String> {
        Ok(Iban {
            regex: compile(PATTERN)?,
        })
    }

    pub fn find(&self, hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        find_validated(&self.regex, hay, from, out, validate);
    }
}

fn validate(hay: &str, span: Range<usize>) -> Option<Range<usize>> {
    if is_word(char_before(hay, span.start)) {
        return None;
    }
    let text = &hay[span.clone()];
    let country = text.get(..2)?.to_ascii_uppercase();
    let length = LENGTHS
        .iter()
        .find(|(code, _)| *code == country)
        .map(|(_, length)| *length)?;
    // The end of the country's number of characters, spaces not counted.
    let mut seen = 0;
    let mut end = None;
    for (offset, byte) in text.bytes().enumerate() {
        if byte != b' ' {
            seen += 1;
            if seen == length {
                end = Some(span.start + offset + 1);
                break;
            }
        }
    }
    let end = end?;
    if is_word(char_at(hay, end)) {
        return None;
    }
    let iban: Vec<u8> = hay[span.start..end]
        .bytes()
        .filter(|&b| b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    mod97(&iban).then_some(span.start..end)
}

/// The ISO 13616 check: the first four characters moved to the end, letters read as
/// 10–35, the number taken mod 97 must be 1.
pub fn mod97(iban: &[u8]) -> bool {
    if iban.len() < 5 {
        return false;
    }
    let (head, tail) = iban.split_at(4);
    let mut remainder: u32 = 0;
    for &byte in tail.iter().chain(head) {
        let value = match byte {
            b'0'..=b'9' => u32::from(byte - b'0'),
            b'A'..=b'Z' => u32::from(byte - b'A') + 10,
            _ => return false,
        };
        remainder = if value < 10 {
            (remainder * 10 + value) % 97
        } else {
            (remainder * 100 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_found, assert_not_found, found};
    use super::*;

    fn find(hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        Iban::new().unwrap().find(hay, from, out);
    }

    #[test]
    fn the_length_table_is_well_formed() {
        for (index, (code, length)) in LENGTHS.iter().enumerate() {
            assert!(code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()));
            assert!((15..=34).contains(length), "{code}");
            assert!(
                LENGTHS[..index].iter().all(|(other, _)| other != code),
                "{code}"
            );
        }
    }

    #[test]
    fn mod97_checks_the_check_digits() {
        assert!(mod97(b"DE89370400440532013000"));
        assert!(mod97(b"GB82WEST12345698765432"));
        assert!(!mod97(b"DE88370400440532013000"));
        assert!(!mod97(b"DE89370400440532013001"));
        assert!(!mod97(b"DE8"));
        assert!(!mod97(b"DE89-3704"));
    }

    #[test]
    fn finds_ibans() {
        for iban in [
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB82 WEST 1234 5698 7654 32",
            "GB82WEST12345698765432",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91ABNA0417164300",
            "NO9386011117947",
            "CH93 0076 2011 6238 5295 7",
            "de89 3704 0044 0532 0130 00",
        ] {
            assert_found(find, iban);
        }
        assert_eq!(
            found(find, "IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX"),
            ["DE89 3704 0044 0532 0130 00"]
        );
    }

    #[test]
    fn ignores_what_is_not_an_iban() {
        for text in [
            // A wrong check digit, a changed digit.
            "DE88 3704 0044 0532 0130 00",
            "DE89 3704 0044 0532 0130 01",
            // Too short or too long for the country.
            "DE89 3704 0044 0532 0130 0",
            "DE89370400440532013000X",
            "DE8937040044053201300012",
            // No such country, glued to a word.
            "XX89 3704 0044 0532 0130 00",
            "ADE89370400440532013000",
            "AB12 words that are not an iban",
        ] {
            assert_not_found(find, text);
        }
    }
}
