//! The `?delay=<duration>` query parameter of the conformance echo server, which the
//! timeout conformance tests use (`/request-timeout?delay=1s`). Durations are written in
//! Go's `time.ParseDuration` syntax.

use std::time::Duration;

/// The raw value of the first `delay` query parameter, if any.
pub fn delay_param(query: &str) -> Option<&str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == "delay")
        .map(|(_, value)| value)
}

/// Parses Go duration syntax: an optional sign, then one or more `<decimal><unit>` parts
/// with units `ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`; a lone `0` is allowed. Negative
/// durations are valid in Go and mean "no wait", so they come back as zero.
pub fn parse_go_duration(input: &str) -> Option<Duration> {
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total_secs = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total_secs += value * scale;
    }
    if negative {
        return Some(Duration::ZERO);
    }
    Duration::try_from_secs_f64(total_secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("1s"), Some(ms(1000)));
        assert_eq!(parse_go_duration("500ms"), Some(ms(500)));
        assert_eq!(parse_go_duration("1.5s"), Some(ms(1500)));
        assert_eq!(parse_go_duration("1m30s"), Some(ms(90_000)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_go_duration("-1s"), Some(Duration::ZERO));
        for bad in ["", "1", "s", "1x", "abc", ".s", "-"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn delay_param_finds_first_value() {
        assert_eq!(delay_param("delay=1s"), Some("1s"));
        assert_eq!(delay_param("a=b&delay=2s&delay=3s"), Some("2s"));
        assert_eq!(delay_param("delay"), Some(""));
        assert_eq!(delay_param("nodelay=1s"), None);
    }
}
