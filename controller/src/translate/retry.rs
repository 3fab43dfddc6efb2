//! HTTPRoute rule `retry` (experimental channel) → `config::RouteRetry`.

use gateway_api::experimental::httproutes::HttpRouteRulesRetry;
use nantian_proto::config;

use super::rule::parse_duration_millis;

/// Retries when the rule sets `retry` without `attempts`: the spec leaves the number to
/// the implementation; two is what Envoy-based gateways use.
const DEFAULT_ATTEMPTS: u32 = 2;
/// The wait before the first retry when `backoff` is unset (Envoy's base interval).
const DEFAULT_BACKOFF_MILLIS: u64 = 25;
/// More retries than this turn one failing request into a storm; the host refuses them.
pub const MAX_ATTEMPTS: u32 = 10;

/// `None` when the rule has no `retry`; an error names the field that is wrong.
pub(super) fn translate(
    retry: Option<&HttpRouteRulesRetry>,
) -> Result<Option<config::RouteRetry>, String> {
    let Some(retry) = retry else { return Ok(None) };
    let codes = retry
        .codes
        .iter()
        .flatten()
        .map(|&code| match u32::try_from(code) {
            Ok(code @ 400..=599) => Ok(code),
            _ => Err(format!(
                "retry.codes: {code} is not an HTTP error status (400-599)"
            )),
        })
        .collect::<Result<Vec<u32>, String>>()?;
    let attempts = match retry.attempts {
        None => DEFAULT_ATTEMPTS,
        Some(n) => match u32::try_from(n) {
            Ok(n) if n <= MAX_ATTEMPTS => n,
            _ => {
                return Err(format!(
                    "retry.attempts: {n} is outside 0-{MAX_ATTEMPTS}, the range Nantian allows"
                ));
            }
        },
    };
    let backoff_millis = match &retry.backoff {
        None => DEFAULT_BACKOFF_MILLIS,
        Some(text) => parse_duration_millis(text)
            .ok_or_else(|| format!("retry.backoff {text:?} is not a Gateway API duration"))?,
    };
    Ok(Some(config::RouteRetry {
        codes,
        attempts,
        backoff_millis,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(
        codes: Option<Vec<i64>>,
        attempts: Option<i64>,
        backoff: Option<&str>,
    ) -> HttpRouteRulesRetry {
        HttpRouteRulesRetry {
            codes,
            attempts,
            backoff: backoff.map(str::to_string),
        }
    }

    #[test]
    fn an_empty_retry_gets_the_defaults() {
        let got = translate(Some(&retry(None, None, None))).unwrap().unwrap();
        assert_eq!(got.codes, Vec::<u32>::new());
        assert_eq!(got.attempts, DEFAULT_ATTEMPTS);
        assert_eq!(got.backoff_millis, DEFAULT_BACKOFF_MILLIS);
        assert_eq!(translate(None), Ok(None));
    }

    #[test]
    fn fields_are_carried_and_bad_ones_named() {
        let got = translate(Some(&retry(Some(vec![503, 500]), Some(0), Some("1s100ms"))))
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.codes, got.attempts, got.backoff_millis),
            (vec![503, 500], 0, 1100)
        );

        let err = translate(Some(&retry(Some(vec![200]), None, None))).unwrap_err();
        assert!(err.contains("retry.codes: 200"), "{err}");
        let err = translate(Some(&retry(None, Some(11), None))).unwrap_err();
        assert!(err.contains("retry.attempts: 11"), "{err}");
        let err = translate(Some(&retry(None, Some(-1), None))).unwrap_err();
        assert!(err.contains("retry.attempts: -1"), "{err}");
        let err = translate(Some(&retry(None, None, Some("soon")))).unwrap_err();
        assert!(err.contains("retry.backoff \"soon\""), "{err}");
    }
}
