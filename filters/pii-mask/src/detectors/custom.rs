//! Named patterns from the configuration: every non-empty match is a finding.

use std::ops::Range;

use regex::Regex;

use super::find_validated;

#[derive(Debug, Clone)]
pub struct Custom {
    regex: Regex,
}

impl Custom {
    pub fn new(regex: Regex) -> Self {
        Custom { regex }
    }

    /// The pattern as configured (the holdback's prefix pattern too).
    pub fn pattern(&self) -> &str {
        self.regex.as_str()
    }

    pub fn find(&self, hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        // Empty matches are skipped by `find_validated` (configuration refuses patterns
        // that match the empty string, but one may still match it somewhere, as `\b`).
        find_validated(&self.regex, hay, from, out, |_, span| Some(span));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_non_empty_match() {
        let custom = Custom::new(Regex::new(r"EMP-[0-9]{6}|\b").unwrap());
        let hay = "EMP-123456 and EMP-654321, not EMP-12345";
        let mut out = Vec::new();
        custom.find(hay, 0, &mut out);
        let found: Vec<&str> = out.into_iter().map(|span| &hay[span]).collect();
        assert_eq!(found, ["EMP-123456", "EMP-654321"]);
        assert_eq!(custom.pattern(), r"EMP-[0-9]{6}|\b");
    }

    #[test]
    fn starts_at_from_and_sees_the_context_before_it() {
        let custom = Custom::new(Regex::new(r"\bID-[0-9]+").unwrap());
        let mut out = Vec::new();
        custom.find("xID-1 ID-2", 1, &mut out);
        assert_eq!(out, vec![6..10]);
    }
}
