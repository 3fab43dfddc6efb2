//! The `x-ratelimit-*` response headers, with OpenAI's names and formats.

use crate::budget::{Quota, Quotas};

/// The headers for the configured limits: the requests limit, and the token limit with
/// the least left. Remaining counts are never negative; resets read like OpenAI's
/// (`1s`, `6m0s`, `20ms`).
pub fn ratelimit(quotas: &Quotas) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(6);
    let mut push = |names: [&'static str; 3], quota: &Quota| {
        headers.push((names[0], quota.limit.to_string()));
        headers.push((names[1], quota.remaining.max(0).to_string()));
        headers.push((names[2], duration(quota.reset_millis)));
    };
    if let Some(quota) = &quotas.requests {
        push(
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            quota,
        );
    }
    if let Some(quota) = &quotas.tokens {
        push(
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
            quota,
        );
    }
    headers
}

/// A duration as OpenAI writes it (Go's `time.Duration` format, to the millisecond):
/// `20ms` below a second, else hours and minutes when there are any, then seconds with
/// their fraction (`8.64s`, `6m0s`, `1h0m0s`).
pub fn duration(millis: u64) -> String {
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let (hours, minutes) = (millis / 3_600_000, millis / 60_000 % 60);
    let (seconds, fraction) = (millis / 1000 % 60, millis % 1000);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    text.push_str(&seconds.to_string());
    if fraction > 0 {
        let digits = format!(".{fraction:03}");
        text.push_str(digits.trim_end_matches('0'));
    }
    text.push('s');
    text
}

/// `Retry-After`: whole seconds, rounded up, at least 1.
pub fn retry_after_seconds(millis: u64) -> u64 {
    millis.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_openais() {
        for (millis, text) in [
            (0, "0ms"),
            (20, "20ms"),
            (999, "999ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (8640, "8.64s"),
            (17_281, "17.281s"),
            (60_000, "1m0s"),
            (360_000, "6m0s"),
            (90_500, "1m30.5s"),
            (3_600_000, "1h0m0s"),
            (3_601_000, "1h0m1s"),
            (86_400_000, "24h0m0s"),
        ] {
            assert_eq!(duration(millis), text, "{millis}");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(0), 1);
        assert_eq!(retry_after_seconds(1), 1);
        assert_eq!(retry_after_seconds(1000), 1);
        assert_eq!(retry_after_seconds(1001), 2);
        assert_eq!(retry_after_seconds(3_599_001), 3600);
    }

    #[test]
    fn headers_only_for_what_is_configured() {
        let requests = Quota {
            limit: 60,
            remaining: 59,
            reset_millis: 1000,
        };
        let tokens = Quota {
            limit: 20000,
            remaining: -300,
            reset_millis: 360_000,
        };
        assert_eq!(
            ratelimit(&Quotas {
                requests: Some(requests),
                tokens: Some(tokens)
            }),
            [
                ("x-ratelimit-limit-requests", "60".to_owned()),
                ("x-ratelimit-remaining-requests", "59".to_owned()),
                ("x-ratelimit-reset-requests", "1s".to_owned()),
                ("x-ratelimit-limit-tokens", "20000".to_owned()),
                ("x-ratelimit-remaining-tokens", "0".to_owned()),
                ("x-ratelimit-reset-tokens", "6m0s".to_owned()),
            ]
        );
        let only_tokens = ratelimit(&Quotas {
            requests: None,
            tokens: Some(tokens),
        });
        assert_eq!(only_tokens.len(), 3);
        assert!(
            only_tokens
                .iter()
                .all(|(name, _)| name.ends_with("-tokens"))
        );
        assert!(ratelimit(&Quotas::default()).is_empty());
    }
}
