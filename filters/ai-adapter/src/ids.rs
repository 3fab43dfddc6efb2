//! What a translated response needs besides the provider's answer: the time it was made
//! and ids where the provider gave none (Ollama has no message or tool call ids).
//!
//! Codecs take it as a value so they stay pure functions of their input, testable
//! natively; the filter fills it from the host's clocks once per request.

/// Per-request facts for building responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseContext {
    /// When the request arrived, in milliseconds since the Unix epoch.
    pub now_millis: u64,
    /// Distinguishes this request's generated ids from other requests'.
    seed: u64,
}

impl ResponseContext {
    /// `entropy` is anything that differs between requests made in the same
    /// millisecond (the monotonic clock's nanoseconds).
    pub fn new(now_millis: u64, entropy: u64) -> Self {
        ResponseContext {
            now_millis,
            seed: splitmix64(now_millis ^ entropy.rotate_left(32)),
        }
    }

    /// Seconds since the epoch (OpenAI's `created`).
    pub fn created_secs(&self) -> u64 {
        self.now_millis / 1000
    }

    /// An OpenAI completion id: the provider's own id with the prefix OpenAI uses, or a
    /// generated one.
    pub fn openai_id(&self, provider_id: Option<&str>) -> String {
        match provider_id {
            Some(id) if id.starts_with("chatcmpl-") => id.to_string(),
            Some(id) if !id.is_empty() => format!("chatcmpl-{}", id.trim_start_matches("msg_")),
            _ => format!("chatcmpl-{}", self.suffix()),
        }
    }

    /// An Anthropic message id, likewise.
    pub fn anthropic_id(&self, provider_id: Option<&str>) -> String {
        match provider_id {
            Some(id) if id.starts_with("msg_") => id.to_string(),
            Some(id) if !id.is_empty() => format!("msg_{}", id.trim_start_matches("chatcmpl-")),
            _ => format!("msg_{}", self.suffix()),
        }
    }

    /// The id of the `n`th tool call of this response, for providers that give none. Both
    /// OpenAI and Anthropic accept `[A-Za-z0-9_-]+` ids when they come back in the
    /// conversation.
    pub fn tool_call_id(&self, n: usize) -> String {
        format!("call_{}_{n}", self.suffix())
    }

    fn suffix(&self) -> String {
        format!("{:016x}", self.seed)
    }
}

/// Spreads the bits of `x` (the SplitMix64 finaliser), so close inputs give unrelated ids.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `millis` since the epoch as an RFC 3339 UTC timestamp (Ollama's `created_at`).
pub fn rfc3339(millis: u64) -> String {
    let secs = millis / 1000;
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        millis % 1000
    )
}

/// The Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_the_providers_and_fill_in_missing_ones() {
        let ctx = ResponseContext::new(1_700_000_000_123, 42);
        assert_eq!(ctx.openai_id(Some("chatcmpl-abc")), "chatcmpl-abc");
        assert_eq!(ctx.openai_id(Some("msg_01XYZ")), "chatcmpl-01XYZ");
        assert_eq!(ctx.anthropic_id(Some("msg_01XYZ")), "msg_01XYZ");
        assert_eq!(ctx.anthropic_id(Some("chatcmpl-abc")), "msg_abc");
        let generated = ctx.openai_id(None);
        assert!(generated.starts_with("chatcmpl-") && generated.len() == 25);
        assert_eq!(generated, ctx.openai_id(Some("")));
        assert_ne!(
            ctx.tool_call_id(0),
            ResponseContext::new(1_700_000_000_123, 43).tool_call_id(0)
        );
        assert_ne!(ctx.tool_call_id(0), ctx.tool_call_id(1));
        assert_eq!(ctx.created_secs(), 1_700_000_000);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_721_679_091_123), "2024-07-22T20:11:31.123Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
