//! Could the end of a text still grow into a finding? The stream holdback asks this of
//! every tail of the text it holds, so it emits everything that no detector could still
//! claim and keeps back only the rest.
//!
//! The detectors' prefix patterns are compiled into lazy DFAs and run anchored at the
//! tail's start: if the DFA is not dead once the tail is consumed, more text could make
//! (or extend, or decide about) a match there. Built-in patterns share one DFA. A custom
//! pattern the lazy DFA cannot run (a Unicode word boundary on non-ASCII text, say) is
//! taken to match anywhere, which only means holding back more, never leaking.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::{Anchored, Input, MatchKind};

/// The memory one DFA may use for its states; it is cleared and refilled when full.
const CACHE_CAPACITY: usize = 512 * 1024;

struct Automaton {
    dfa: DFA,
    cache: Cache,
}

impl Automaton {
    fn build(patterns: &[&str]) -> Option<Automaton> {
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    // Every pattern and alternative stays alive after another one
                    // matched: any of them may still grow.
                    .match_kind(MatchKind::All)
                    .cache_capacity(CACHE_CAPACITY)
                    .skip_cache_capacity_check(true)
                    // Unicode `\b` in custom patterns: quit on non-ASCII, seen as "may match".
                    .unicode_word_boundary(true),
            )
            .build_many(patterns)
            .ok()?;
        let cache = dfa.create_cache();
        Some(Automaton { dfa, cache })
    }

    /// Whether a match could start at `start` given `hay[start..]` and more text after it.
    /// `None` when the DFA gave up.
    fn alive_from(&mut self, hay: &str, start: usize) -> Option<bool> {
        let input = Input::new(hay).range(start..).anchored(Anchored::Yes);
        let mut state = self.dfa.start_state_forward(&mut self.cache, &input).ok()?;
        for &byte in &hay.as_bytes()[start..] {
            state = self.dfa.next_state(&mut self.cache, state, byte).ok()?;
            if state.is_dead() {
                return Some(false);
            }
            if state.is_quit() {
                return None;
            }
        }
        if !state.is_match() {
            return Some(true);
        }
        // Matches are reported one byte late: a match state says a match ended before the
        // last byte. Whether anything is still alive shows in the states it can go to.
        for unit in self.dfa.byte_classes().representatives(..) {
            let Some(byte) = unit.as_u8() else {
                continue;
            };
            let next = self.dfa.next_state(&mut self.cache, state, byte).ok()?;
            if next.is_quit() {
                return None;
            }
            if !next.is_dead() {
                return Some(true);
            }
        }
        Some(false)
    }
}

/// The prefix automata of one scanner's detectors, built when first needed: only
/// streamed responses need them, and building them is a good part of what `init` would
/// otherwise cost.
pub struct Prefixes {
    builtin_patterns: Vec<&'static str>,
    custom_patterns: Vec<String>,
    automata: Option<Automata>,
}

struct Automata {
    /// `None` (not expected: tests build them) holds back as if anything could match.
    builtin: Option<Automaton>,
    /// `None`: the pattern cannot run as a lazy DFA, so it may match anywhere.
    custom: Vec<Option<Automaton>>,
}

impl std::fmt::Debug for Prefixes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefixes")
            .field("builtin", &self.builtin_patterns.len())
            .field("custom", &self.custom_patterns.len())
            .field("built", &self.automata.is_some())
            .finish()
    }
}

impl Prefixes {
    /// `builtin`: the enabled built-in detectors' prefix patterns; `custom`: the custom
    /// patterns.
    pub fn new(builtin: &[&'static str], custom: &[&str]) -> Prefixes {
        Prefixes {
            builtin_patterns: builtin.to_vec(),
            custom_patterns: custom.iter().map(|pattern| pattern.to_string()).collect(),
            automata: None,
        }
    }

    fn automata(&mut self) -> &mut Automata {
        let (builtin, custom) = (&self.builtin_patterns, &self.custom_patterns);
        self.automata.get_or_insert_with(|| Automata {
            builtin: (!builtin.is_empty())
                .then(|| Automaton::build(builtin))
                .flatten(),
            custom: custom
                .iter()
                .map(|pattern| Automaton::build(&[pattern.as_str()]))
                .collect(),
        })
    }

    /// Whether some detector could still report (or decide about) a finding starting at
    /// byte `start` of `hay`, once text is appended to `hay`. `hay[..start]` is context.
    pub fn could_match_from(&mut self, hay: &str, start: usize) -> bool {
        let has_builtin = !self.builtin_patterns.is_empty();
        let automata = self.automata();
        let builtin = match &mut automata.builtin {
            Some(automaton) => automaton.alive_from(hay, start) != Some(false),
            None => has_builtin,
        };
        builtin
            || automata.custom.iter_mut().any(|automaton| match automaton {
                Some(automaton) => automaton.alive_from(hay, start) != Some(false),
                None => true,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_is_alive_while_it_could_still_match() {
        let mut prefixes = Prefixes::new(&[r"[0-9]{3}-[0-9]{2}-[0-9]{4}"], &[]);
        let hay = "ssn 123-45-67";
        assert!(prefixes.could_match_from(hay, 4));
        assert!(prefixes.could_match_from(hay, 12));
        assert!(!prefixes.could_match_from(hay, 0));
        assert!(!prefixes.could_match_from(hay, 3));
        assert!(prefixes.could_match_from(hay, hay.len()));
        // A complete match is alive until the next character shows it cannot grow.
        assert!(prefixes.could_match_from("123-45-6789", 0));
        assert!(!prefixes.could_match_from("123-45-6789 ", 0));
    }

    #[test]
    fn every_pattern_stays_alive_after_another_matched() {
        let mut prefixes = Prefixes::new(&["[0-9]+", "[0-9]+:[a-z]+", "ab|abc"], &[]);
        assert!(prefixes.could_match_from("2001:d", 0));
        assert!(prefixes.could_match_from("ab", 0));
        assert!(!prefixes.could_match_from("abx", 0));
    }

    #[test]
    fn look_behind_comes_from_the_context() {
        let mut prefixes = Prefixes::new(&[], &[r"(?-u:\b)ID"]);
        assert!(prefixes.could_match_from(" I", 1));
        assert!(!prefixes.could_match_from("xI", 1));
    }

    #[test]
    fn unicode_word_boundaries_hold_back_on_non_ascii_text() {
        let mut prefixes = Prefixes::new(&[], &[r"\bID\b"]);
        assert!(!prefixes.could_match_from("xyz", 0));
        assert!(prefixes.could_match_from("é ID", 3));
        assert!(prefixes.could_match_from("ééé", 0));
    }

    #[test]
    fn the_builtin_prefix_patterns_build() {
        let patterns: Vec<&str> = crate::detectors::BuiltIn::ALL
            .iter()
            .flat_map(|builtin| builtin.prefix_patterns())
            .copied()
            .collect();
        assert!(Automaton::build(&patterns).is_some());
    }

    #[test]
    fn without_patterns_nothing_is_alive() {
        let mut prefixes = Prefixes::new(&[], &[]);
        assert!(!prefixes.could_match_from("anything", 0));
    }
}
