//! o200k_base's pre-tokenizer ([`O200K_PATTERN`](crate::O200K_PATTERN)) written out as
//! code over static Unicode tables.
//!
//! Why not the pattern itself: compiling it (fancy-regex; it needs a lookahead) took
//! 20–25 ms in every Wasm instance, since each instance has its own memory and nothing
//! compiled in one survives into the next. The host starts instances on demand, so that
//! cost landed on live requests. This needs no setup at all. `tests.rs` checks that it
//! splits text exactly as the pattern does.
//!
//! The pattern, one alternative per line, tried in order at each position (the first
//! that matches wins; within one, quantifiers are greedy and backtrack):
//!
//! 1. `[^\r\n\p{L}\p{N}]?[UPPER]*[LOWER]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?`
//! 2. `[^\r\n\p{L}\p{N}]?[UPPER]+[LOWER]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?`
//! 3. `\p{N}{1,3}`
//! 4. ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
//! 5. `\s*[\r\n]+`
//! 6. `\s+(?!\S)`
//! 7. `\s+`
//!
//! where UPPER is `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]` and LOWER `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`.
//! Every character starts a match of one of them (a space by 7, a letter by 1 or 2, a
//! number by 3, anything else by 4), so the pieces cover the text end to end.

use unicode_general_category::{GeneralCategory as Gc, get_general_category};

/// The character classes the pattern uses, as bits.
const UPPER: u8 = 1;
const LOWER: u8 = 2;
const LETTER: u8 = 4;
const NUMBER: u8 = 8;
const SPACE: u8 = 16;

fn class(c: char) -> u8 {
    if c.is_ascii() {
        return match c {
            'A'..='Z' => UPPER | LETTER,
            'a'..='z' => LOWER | LETTER,
            '0'..='9' => NUMBER,
            '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' => SPACE,
            _ => 0,
        };
    }
    // `char::is_whitespace` is Unicode's White_Space, which is what `\s` means.
    let space = if c.is_whitespace() { SPACE } else { 0 };
    space
        | match get_general_category(c) {
            Gc::UppercaseLetter | Gc::TitlecaseLetter => UPPER | LETTER,
            Gc::LowercaseLetter => LOWER | LETTER,
            Gc::ModifierLetter | Gc::OtherLetter => UPPER | LOWER | LETTER,
            Gc::NonspacingMark | Gc::SpacingMark | Gc::EnclosingMark => UPPER | LOWER,
            Gc::DecimalNumber | Gc::LetterNumber | Gc::OtherNumber => NUMBER,
            _ => 0,
        }
}

/// `[^\r\n\p{L}\p{N}]`: the one character alternatives 1 and 2 may start with.
fn is_lead(c: char) -> bool {
    c != '\r' && c != '\n' && class(c) & (LETTER | NUMBER) == 0
}

/// The pieces of `text`, in order and covering all of it.
pub(crate) fn pieces(text: &str) -> Pieces<'_> {
    Pieces { text, at: 0 }
}

pub(crate) struct Pieces<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = self.at;
        if start >= self.text.len() {
            return None;
        }
        let end = Matcher { text: self.text }.piece_end(start);
        self.at = end;
        Some(&self.text[start..end])
    }
}

struct Matcher<'a> {
    text: &'a str,
}

impl Matcher<'_> {
    fn char_at(&self, at: usize) -> Option<char> {
        self.text[at..].chars().next()
    }

    /// Where a run of characters of `bits` starting at `at` ends.
    fn run(&self, at: usize, bits: u8) -> usize {
        let rest = &self.text[at..];
        match rest.char_indices().find(|&(_, c)| class(c) & bits == 0) {
            Some((offset, _)) => at + offset,
            None => self.text.len(),
        }
    }

    fn piece_end(&self, at: usize) -> usize {
        let first = self.char_at(at).expect("at is inside the text");
        let after_lead = is_lead(first).then(|| at + first.len_utf8());
        // Alternatives 1 and 2, each with the leading character first (`?` is greedy).
        for alternative in [Self::lower_word, Self::upper_word] {
            for start in after_lead.into_iter().chain([at]) {
                if let Some(end) = alternative(self, start) {
                    return end;
                }
            }
        }
        if class(first) & NUMBER != 0 {
            // 3: up to three numbers.
            let mut end = at;
            for c in self.text[at..].chars().take(3) {
                if class(c) & NUMBER == 0 {
                    break;
                }
                end += c.len_utf8();
            }
            return end;
        }
        if let Some(end) = self.symbols(at) {
            return end;
        }
        self.spaces(at)
    }

    /// Alternative 1 from `start` (past the optional leading character):
    /// `[UPPER]*[LOWER]+` and a contraction. Backtracking `[UPPER]*` until `[LOWER]+`
    /// can start means: `[LOWER]+` starts at the end of the UPPER run if a LOWER
    /// character is there, else at the run's last character that is also LOWER.
    fn lower_word(&self, start: usize) -> Option<usize> {
        let mut last_lower = None;
        for (offset, c) in self.text[start..].char_indices() {
            let bits = class(c);
            if bits & UPPER == 0 {
                // The end of the UPPER run.
                if bits & LOWER != 0 {
                    last_lower = Some(start + offset);
                }
                break;
            }
            if bits & LOWER != 0 {
                last_lower = Some(start + offset);
            }
        }
        let lower_start = last_lower?;
        Some(self.contraction(self.run(lower_start, LOWER)))
    }

    /// Alternative 2 from `start`: `[UPPER]+[LOWER]*` and a contraction.
    fn upper_word(&self, start: usize) -> Option<usize> {
        let upper_end = self.run(start, UPPER);
        (upper_end > start).then(|| self.contraction(self.run(upper_end, LOWER)))
    }

    /// Past `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at `at` if one is there. Case-insensitive
    /// in Unicode's simple folding, where `s` also matches `ſ` (U+017F).
    fn contraction(&self, at: usize) -> usize {
        let rest = &self.text.as_bytes()[at..];
        if rest.first() != Some(&b'\'') {
            return at;
        }
        let mut letters = self.text[at + 1..].chars();
        let second =
            |c: Option<char>, expected: char| c.is_some_and(|c| c.eq_ignore_ascii_case(&expected));
        match letters.next() {
            Some('s' | 'S' | 't' | 'T' | 'm' | 'M' | 'd' | 'D') => at + 2,
            Some('ſ') => at + 1 + 'ſ'.len_utf8(),
            Some('r' | 'R' | 'v' | 'V') if second(letters.next(), 'e') => at + 3,
            Some('l' | 'L') if second(letters.next(), 'l') => at + 3,
            _ => at,
        }
    }

    /// Alternative 4: an optional space, symbols (neither space, letter nor number), and
    /// any line breaks and slashes after them.
    fn symbols(&self, at: usize) -> Option<usize> {
        let start = if self.text.as_bytes()[at] == b' ' {
            at + 1
        } else {
            at
        };
        let symbols_end = match self.text[start..]
            .char_indices()
            .find(|&(_, c)| class(c) & (SPACE | LETTER | NUMBER) != 0)
        {
            Some((offset, _)) => start + offset,
            None => self.text.len(),
        };
        if symbols_end == start {
            return None;
        }
        let tail = self.text[symbols_end..]
            .bytes()
            .take_while(|b| matches!(b, b'\r' | b'\n' | b'/'))
            .count();
        Some(symbols_end + tail)
    }

    /// Alternatives 5, 6 and 7 over the run of white space at `at`: up to its last line
    /// break if it has one; else all of it at the end of the text; else all but its
    /// last character (which then joins the word after it) if that leaves any; else
    /// all of it.
    fn spaces(&self, at: usize) -> usize {
        let mut last_break_end = None;
        let mut last_start = at;
        let mut end = self.text.len();
        for (offset, c) in self.text[at..].char_indices() {
            if class(c) & SPACE == 0 {
                end = at + offset;
                break;
            }
            last_start = at + offset;
            if c == '\r' || c == '\n' {
                last_break_end = Some(at + offset + 1);
            }
        }
        if let Some(break_end) = last_break_end {
            return break_end;
        }
        if end < self.text.len() && last_start > at {
            return last_start;
        }
        end
    }
}
