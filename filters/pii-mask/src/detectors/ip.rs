//! IP addresses.
//!
//! - **IPv4**: four decimal octets 0–255 without leading zeros (`192.168.0.1`). Not
//!   matched when glued to more dotted numbers or words (`1.2.3.4.5`, `v1.2.3.4`).
//! - **IPv6**: every form `std::net::Ipv6Addr` reads — full, compressed (`2001:db8::1`,
//!   `fe80::1`), with an embedded IPv4 address (`::ffff:192.0.2.1`) — in brackets or
//!   not. Times (`12:30`, `12:30:45`) and MAC addresses do not parse. So that `a::b` in
//!   source code is not an address, a compressed address needs a group of three or more
//!   hex digits and a decimal digit somewhere (which leaves out `::1` and `::`).

use std::net::Ipv6Addr;
use std::ops::Range;

use regex::Regex;

use super::{char_at, char_before, compile, find_validated, is_word};

const IPV4: &str = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}";
/// The validator reads a dot and a digit past the address (`1.2.3.4.5`).
pub const IPV4_PREFIX_PATTERNS: &[&str] = &[r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?:\.[0-9]?)?"];

const IPV6: &str = r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,8}(?:(?:\.[0-9]{1,3}){3})?";
/// The validator reads a dot and a digit past the address.
pub const IPV6_PREFIX_PATTERNS: &[&str] =
    &[r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,8}(?:(?:\.[0-9]{1,3}){3})?(?:\.[0-9]?)?"];

#[derive(Debug, Clone)]
pub struct Ipv4 {
    regex: Regex,
}

impl Ipv4 {
    pub fn new() -> Result<Self, String> {
        Ok(Ipv4 {
            regex: compile(IPV4)?,
        })
    }

    pub fn find(&self, hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        find_validated(&self.regex, hay, from, out, |hay, span| {
            let before = char_before(hay, span.start);
            if is_word(before) || before == Some('.') || glued_after(hay, span.end) {
                return None;
            }
            hay[span.clone()].split('.').all(is_octet).then_some(span)
        });
    }
}

/// A decimal octet, without the leading zeros that some parsers read as octal.
fn is_octet(octet: &str) -> bool {
    !(octet.len() > 1 && octet.starts_with('0')) && octet.parse::<u8>().is_ok()
}

/// Whether the text goes on after `end` as a word or a further `.digit`.
fn glued_after(hay: &str, end: usize) -> bool {
    let after = char_at(hay, end);
    is_word(after)
        || (after == Some('.') && char_at(hay, end + 1).is_some_and(|c| c.is_ascii_digit()))
}

#[derive(Debug, Clone)]
pub struct Ipv6 {
    regex: Regex,
}

impl Ipv6 {
    pub fn new() -> Result<Self, String> {
        Ok(Ipv6 {
            regex: compile(IPV6)?,
        })
    }

    pub fn find(&self, hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        find_validated(&self.regex, hay, from, out, ipv6);
    }
}

fn ipv6(hay: &str, span: Range<usize>) -> Option<Range<usize>> {
    let mut span = span;
    // A single colon at either end is punctuation (`addr:2001:db8::1`, `…::1: up`) unless
    // the text goes on with more of the address on its other side (`1:2:…:9`).
    let text = &hay[span.clone()];
    let leading = text.starts_with(':') && !text.starts_with("::");
    if leading {
        if continues_address(char_before(hay, span.start)) {
            return None;
        }
        span.start += 1;
    }
    let text = &hay[span.clone()];
    let trailing = text.ends_with(':') && !text.ends_with("::");
    if trailing {
        if continues_address(char_at(hay, span.end)) {
            return None;
        }
        span.end -= 1;
    }

    let before = char_before(hay, span.start);
    if is_word(before) || before == Some('.') || (before == Some(':') && !leading) {
        return None;
    }
    if glued_after(hay, span.end) || (char_at(hay, span.end) == Some(':') && !trailing) {
        return None;
    }
    let text = &hay[span.clone()];
    if text.parse::<Ipv6Addr>().is_err() {
        return None;
    }
    if text.contains("::") {
        let long_group = text
            .split(':')
            .any(|group| group.len() >= 3 && group.bytes().all(|b| b.is_ascii_hexdigit()));
        let decimal = text.bytes().any(|b| b.is_ascii_digit());
        if !long_group || !decimal {
            return None;
        }
    }
    Some(span)
}

/// Whether `c`, next to a colon, makes it part of a longer colon-separated sequence.
fn continues_address(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_found, assert_not_found, found};
    use super::*;

    fn find_v4(hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        Ipv4::new().unwrap().find(hay, from, out);
    }

    fn find_v6(hay: &str, from: usize, out: &mut Vec<Range<usize>>) {
        Ipv6::new().unwrap().find(hay, from, out);
    }

    #[test]
    fn finds_ipv4_addresses() {
        for address in [
            "192.168.0.1",
            "10.0.0.255",
            "0.0.0.0",
            "255.255.255.255",
            "8.8.8.8",
        ] {
            assert_found(find_v4, address);
        }
        assert_eq!(found(find_v4, "from 10.1.2.3/8."), ["10.1.2.3"]);
        assert_eq!(found(find_v4, "10.1.2.3:8080"), ["10.1.2.3"]);
    }

    #[test]
    fn ignores_what_is_not_an_ipv4_address() {
        for text in [
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.256",
            "192.168.01.1",
            "1.2.3",
            "v1.2.3.4",
            "1.2.3.4a",
            "a1.2.3.4",
            "1234.1.1.1",
            "3.14159",
            "2024.08.06",
            "12:30:45",
        ] {
            assert_not_found(find_v4, text);
        }
    }

    #[test]
    fn finds_ipv6_addresses() {
        for address in [
            "2001:db8::1",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "2001:db8:85a3::8a2e:370:7334",
            "fe80::1",
            "FE80::0202:B3FF:FE1E:8329",
            "::ffff:192.0.2.1",
            "2001:db8::",
            "1:2:3:4:5:6:7:8",
        ] {
            assert_found(find_v6, address);
        }
        assert_eq!(found(find_v6, "[2001:db8::1]:443"), ["2001:db8::1"]);
        assert_eq!(found(find_v6, "addr:2001:db8::1"), ["2001:db8::1"]);
        assert_eq!(found(find_v6, "at 2001:db8::1: down"), ["2001:db8::1"]);
    }

    #[test]
    fn ignores_what_is_not_an_ipv6_address() {
        for text in [
            "12:30",
            "12:30:45",
            "12:30:45.123",
            "00:1A:2B:3C:4D:5E",
            "::",
            "::1",
            "a::b",
            "std::net::Ipv6Addr",
            "abc::def",
            "Foo::Bar::baz",
            "2001:db8:::1",
            "1:2:3:4:5:6:7:8:9",
            "2001:db8::g",
            "2001:db8::1.2",
            "x2001:db8::1",
            "dead::beef",
        ] {
            assert_not_found(find_v6, text);
        }
    }
}
