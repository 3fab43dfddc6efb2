//! Traffic-split checks, after upstream's `conformance/utils/weight`: 500 requests, ten at
//! a time, each backend's share within ±5 % of its weight, up to ten tries (the check is
//! statistical, so one unlucky sample must not fail it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;

use crate::compare::compare;
use crate::model::Expectation;
use crate::roundtrip::{Target, round_trip};

pub const MAX_TEST_RETRIES: usize = 10;
const CONCURRENT_REQUESTS: usize = 10;
const TOLERANCE: f64 = 0.05;
const TOTAL_REQUESTS: usize = 500;

/// Upstream's `extractBackendName`: a pod `<deployment>-<hash>-<hash>` minus the last two
/// dash-separated parts.
pub fn backend_name(pod: &str) -> &str {
    let parts: Vec<&str> = pod.split('-').collect();
    if parts.len() < 3 {
        return pod;
    }
    let cut: usize = parts[..parts.len() - 2].iter().map(|p| p.len() + 1).sum();
    &pod[..cut - 1]
}

/// Upstream's `TestWeightedDistribution` over the backends named in the replies.
pub fn check_distribution(pods: &[String], expected: &BTreeMap<String, f64>) -> Result<(), String> {
    let mut seen: BTreeMap<&str, f64> = BTreeMap::new();
    for pod in pods {
        let backend = backend_name(pod);
        if !expected.contains_key(backend) {
            return Err(format!(
                "request was handled by an unexpected pod {pod:?} (extracted backend: {backend:?})"
            ));
        }
        *seen.entry(backend).or_default() += 1.0;
    }
    let mut errors = Vec::new();
    let active = expected.values().filter(|w| **w > 0.0).count();
    if seen.len() != active {
        errors.push(format!(
            "expected {active} backends to receive traffic, but got {}",
            seen.len()
        ));
    }
    for (backend, want) in expected {
        let got = seen.get(backend.as_str()).copied();
        if got.is_none() && *want != 0.0 {
            errors.push(format!(
                "expect traffic to hit backend {backend:?} - but none was received"
            ));
            continue;
        }
        let share = got.unwrap_or(0.0) / pods.len() as f64;
        if (share - want).abs() > TOLERANCE {
            errors.push(format!(
                "backend {backend:?} weighted traffic of {share} not within tolerance {want} (+/-{TOLERANCE})"
            ));
        }
    }
    errors.sort();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Sends [`TOTAL_REQUESTS`] requests, each matching `exp`, and returns the answering pods.
/// Like upstream's `AddEntropy`, every request gets a random `X-Jitter` header and some a
/// random delay (scaled from upstream's ≤1 s down to ≤100 ms: each request opens its own
/// connection here, so there is no connection reuse to spread out).
pub async fn sample(target: &Target, exp: &Expectation) -> Result<Vec<String>, String> {
    let results: Vec<Result<String, String>> = futures::stream::iter(0..TOTAL_REQUESTS)
        .map(|_| async move {
            let n = random();
            if n % 3 != 1 {
                tokio::time::sleep(Duration::from_millis(random() % 100)).await;
            }
            let jitter = [("X-Jitter".to_string(), (n % 10_000).to_string())];
            let captured = round_trip(target, exp, &jitter).await?;
            compare(exp, &captured)
                .map_err(|e| format!("response expectation failed for request: {e}"))?;
            Ok(captured.echo.pod)
        })
        .buffer_unordered(CONCURRENT_REQUESTS)
        .collect()
        .await;
    results.into_iter().collect()
}

/// A splitmix64 step over a process-wide counter seeded from the clock: enough entropy for
/// jitter, no dependency.
pub fn random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights() -> BTreeMap<String, f64> {
        [
            ("infra-backend-v1", 0.7),
            ("infra-backend-v2", 0.3),
            ("infra-backend-v3", 0.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn pods(v1: usize, v2: usize, v3: usize) -> Vec<String> {
        let mut out = vec!["infra-backend-v1-nantian-0".to_string(); v1];
        out.extend(vec!["infra-backend-v2-nantian-1".to_string(); v2]);
        out.extend(vec!["infra-backend-v3-nantian-0".to_string(); v3]);
        out
    }

    #[test]
    fn backend_name_drops_two_suffixes() {
        assert_eq!(
            backend_name("infra-backend-v1-nantian-0"),
            "infra-backend-v1"
        );
        assert_eq!(
            backend_name("infra-backend-v1-7d9f8c-x2x9z"),
            "infra-backend-v1"
        );
        assert_eq!(backend_name("web-1"), "web-1");
    }

    #[test]
    fn distribution_within_tolerance_passes() {
        check_distribution(&pods(350, 150, 0), &weights()).unwrap();
        check_distribution(&pods(370, 130, 0), &weights()).unwrap();
    }

    #[test]
    fn distribution_outside_tolerance_or_to_zero_weight_fails() {
        let skewed = check_distribution(&pods(250, 250, 0), &weights()).unwrap_err();
        assert!(skewed.contains("not within tolerance"), "{skewed}");
        let zero = check_distribution(&pods(340, 150, 10), &weights()).unwrap_err();
        assert!(zero.contains("expected 2 backends"), "{zero}");
        let stranger = check_distribution(&["other-a-b".to_string()], &weights()).unwrap_err();
        assert!(stranger.contains("unexpected pod"), "{stranger}");
    }

    #[test]
    fn random_values_differ() {
        let values: std::collections::BTreeSet<u64> = (0..100).map(|_| random()).collect();
        assert!(values.len() > 90);
    }
}
