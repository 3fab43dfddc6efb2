//! Request mirroring checks, after upstream's `http.ExpectMirroredRequest` and the
//! percentage-mirror test. A mirror backend answers nobody, so the only sign of a mirrored
//! request is the line its echo pod logs for it:
//! `Echoing back request made to <path> to client (<peer>)`. Each check remembers where
//! the pods' logs ended before the requests went out and looks only at lines after that.

use std::time::{Duration, Instant};

use futures::StreamExt;
use nantian_e2e::echo::request_log::parse_request_log_line;
use nantian_e2e::harness::{Env, LogMark};

use crate::compare::compare;
use crate::manifests::Pod;
use crate::model::{Expectation, MirroredBackend};
use crate::roundtrip::{Target, expect_eventually, round_trip};

/// Upstream's `totalRequests`: the batch whose mirrored share is counted.
const SAMPLE_REQUESTS: usize = 500;
/// Upstream's `concurrentRequests`.
const CONCURRENT_REQUESTS: usize = 10;
/// Upstream's `tolerancePercentage`, relative: 20 % of 500 may be 95 to 105.
const TOLERANCE: f64 = 0.05;
/// Upstream's `numDistributionChecks`: a share drawn at random may miss in one batch.
const DISTRIBUTION_ATTEMPTS: usize = 5;
/// Upstream's pause after a batch whose share missed.
const DISTRIBUTION_RETRY_PAUSE: Duration = Duration::from_secs(2);
/// How often the logs are read while waiting for a line.
const LOG_POLL: Duration = Duration::from_millis(100);
/// Reads in a row without a new line after which a count is final. Mirrored copies go out
/// beside the answered requests, not before the answers, so some land after the batch's
/// last reply; counting too early would miss them, and marking too early would count a
/// previous batch's stragglers in the next one.
const QUIET_POLLS: u32 = 5;

/// `MakeRequestAndExpectEventuallyConsistentResponse`, then the mirror checks of `exp`,
/// in the logs of `pods` (the replay's echo pods, started by `env`): each backend without a
/// `percent` must log the request after the expectation started (`ExpectMirroredRequest`);
/// those with one must get their share of a batch.
pub async fn expect_response_and_mirrors(
    env: &Env,
    pods: &[Pod],
    max_time: Duration,
    target: &Target,
    exp: &Expectation,
) -> Result<(), String> {
    let mirrors = exp
        .mirrored_to
        .iter()
        .map(|backend| MirrorLog::mark(env, pods, backend))
        .collect::<Result<Vec<_>, _>>()?;
    expect_eventually(target, exp, max_time).await?;

    let path = exp.request.path.as_str();
    let (sampled, single): (Vec<_>, Vec<_>) =
        mirrors.iter().partition(|m| m.backend.percent.is_some());
    let found = single
        .iter()
        .map(|mirror| mirror.expect_logged(path, max_time));
    let missing: Vec<String> = futures::future::join_all(found)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if !missing.is_empty() {
        return Err(missing.join("; "));
    }
    if sampled.is_empty() {
        return Ok(());
    }
    expect_mirrored_share(target, exp, &sampled, max_time).await
}

/// The percentage-mirror test: batches of [`SAMPLE_REQUESTS`] until one has every
/// backend's share within tolerance, or [`DISTRIBUTION_ATTEMPTS`] have missed.
async fn expect_mirrored_share(
    target: &Target,
    exp: &Expectation,
    mirrors: &[&MirrorLog<'_>],
    max_time: Duration,
) -> Result<(), String> {
    let path = exp.request.path.as_str();
    // Until a batch starts, the newest traffic is the expectation's own.
    let mut previous: Vec<MirrorLog<'_>> = mirrors.iter().map(|m| (*m).clone()).collect();
    let mut last = String::new();
    for attempt in 1..=DISTRIBUTION_ATTEMPTS {
        for mirror in &previous {
            mirror.settled_count(path, max_time).await?;
        }
        let batch = previous
            .iter()
            .map(MirrorLog::remark)
            .collect::<Result<Vec<_>, _>>()?;
        let mut misses = Vec::new();
        // A request answered wrongly spoils the batch, not the test: upstream retries
        // each request until it gets the expected response.
        if let Err(wrong) = send_batch(target, exp).await {
            misses.push(wrong);
        }
        for mirror in &batch {
            let count = mirror.settled_count(path, max_time).await?;
            let percent = mirror.backend.percent.unwrap_or_default();
            if let Err(miss) = check_share(count, percent) {
                misses.push(format!("{}: {miss}", mirror.backend.deployment()));
            }
        }
        if misses.is_empty() {
            return Ok(());
        }
        last = format!("attempt {attempt}: {}", misses.join("; "));
        previous = batch;
        if attempt < DISTRIBUTION_ATTEMPTS {
            tokio::time::sleep(DISTRIBUTION_RETRY_PAUSE).await;
        }
    }
    Err(format!(
        "mirrored share missed in {DISTRIBUTION_ATTEMPTS} batches of {SAMPLE_REQUESTS}, \
         last {last}"
    ))
}

/// Sends [`SAMPLE_REQUESTS`] requests, [`CONCURRENT_REQUESTS`] at a time, each of which
/// must get the expected response.
async fn send_batch(target: &Target, exp: &Expectation) -> Result<(), String> {
    let failures: Vec<String> = futures::stream::iter(0..SAMPLE_REQUESTS)
        .map(|_| async move {
            let captured = round_trip(target, exp, &[]).await?;
            compare(exp, &captured)
        })
        .buffer_unordered(CONCURRENT_REQUESTS)
        .filter_map(|outcome| async move { outcome.err() })
        .collect()
        .await;
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "{} of {SAMPLE_REQUESTS} requests did not get the expected response, first: {first}",
            failures.len()
        )),
    }
}

/// Upstream's `testMirroredRequestsDistribution` for one backend: `count` mirrored of
/// [`SAMPLE_REQUESTS`] must be within [`TOLERANCE`] (relative) of `percent` of them.
pub fn check_share(count: usize, percent: u32) -> Result<(), String> {
    let expected = SAMPLE_REQUESTS as f64 * f64::from(percent) / 100.0;
    let min = expected * (1.0 - TOLERANCE);
    let max = expected * (1.0 + TOLERANCE);
    let actual = count as f64;
    if actual < min || actual > max {
        return Err(format!(
            "{count} of {SAMPLE_REQUESTS} requests mirrored, expected {percent} % \
             ({min}..={max})"
        ));
    }
    Ok(())
}

/// Whether a log line is echo-basic's line for a request to exactly `path` (upstream
/// matches `made to <path> to client`, so `/mirror` is not `/mirror-and-modify-headers`).
pub fn is_request_to(line: &str, path: &str) -> bool {
    parse_request_log_line(line).is_some_and(|logged| logged.target == path)
}

/// The echo pods of a mirror backend's Deployment.
pub fn mirror_pods<'a>(pods: &'a [Pod], backend: &MirroredBackend) -> Result<Vec<&'a Pod>, String> {
    let selected: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.namespace == backend.namespace && p.deployment == backend.name)
        .collect();
    if selected.is_empty() {
        return Err(format!(
            "mirror Deployment {} has no echo pods",
            backend.deployment()
        ));
    }
    Ok(selected)
}

/// One mirror backend's pods and where each pod's log ended at a mark.
#[derive(Clone)]
struct MirrorLog<'a> {
    env: &'a Env,
    backend: &'a MirroredBackend,
    marks: Vec<(&'a Pod, LogMark)>,
}

impl<'a> MirrorLog<'a> {
    /// Remembers where the logs of `backend`'s pods end now.
    fn mark(env: &'a Env, pods: &'a [Pod], backend: &'a MirroredBackend) -> Result<Self, String> {
        if let Some(percent) = backend.percent.filter(|p| *p > 100) {
            return Err(format!(
                "mirror {}: percent {percent} is over 100",
                backend.deployment()
            ));
        }
        let pods = mirror_pods(pods, backend)?;
        let marks = pods
            .into_iter()
            .map(|pod| Ok((pod, log_mark(env, pod)?)))
            .collect::<Result<_, String>>()?;
        Ok(MirrorLog {
            env,
            backend,
            marks,
        })
    }

    /// The same pods, marked again now.
    fn remark(&self) -> Result<Self, String> {
        let marks = self
            .marks
            .iter()
            .map(|(pod, _)| Ok((*pod, log_mark(self.env, pod)?)))
            .collect::<Result<_, String>>()?;
        Ok(MirrorLog {
            marks,
            ..self.clone()
        })
    }

    /// How many requests to `path` the pods logged since the mark, together.
    fn count(&self, path: &str) -> Result<usize, String> {
        let mut count = 0;
        for (pod, mark) in &self.marks {
            let lines = self
                .env
                .echo_log_lines(&pod.namespace, &pod.name, *mark)
                .map_err(|e| format!("reading the log of {}/{}: {e}", pod.namespace, pod.name))?;
            count += lines.iter().filter(|l| is_request_to(l, path)).count();
        }
        Ok(count)
    }

    /// `ExpectMirroredRequest` for this backend: some pod logs a request to `path`.
    async fn expect_logged(&self, path: &str, max_time: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if self.count(path)? > 0 {
                return Ok(());
            }
            if start.elapsed() >= max_time {
                return Err(format!(
                    "no mirrored request to {path} in the logs of {} ({} pods) after {max_time:?}",
                    self.backend.deployment(),
                    self.marks.len()
                ));
            }
            tokio::time::sleep(LOG_POLL).await;
        }
    }

    /// [`MirrorLog::count`] once it has stopped growing for [`QUIET_POLLS`] reads (or
    /// `max_time` has passed: a backend that never stops logging gets its count then).
    async fn settled_count(&self, path: &str, max_time: Duration) -> Result<usize, String> {
        let start = Instant::now();
        let mut settle = Settle::default();
        loop {
            let count = self.count(path)?;
            if settle.observe(count) || start.elapsed() >= max_time {
                return Ok(count);
            }
            tokio::time::sleep(LOG_POLL).await;
        }
    }
}

fn log_mark(env: &Env, pod: &Pod) -> Result<LogMark, String> {
    env.echo_log_mark(&pod.namespace, &pod.name)
        .map_err(|e| format!("no log for {}/{}: {e}", pod.namespace, pod.name))
}

/// Tells when a growing count has stopped: after [`QUIET_POLLS`] observations in a row
/// that repeat the one before.
#[derive(Debug, Default)]
struct Settle {
    last: Option<usize>,
    repeats: u32,
}

impl Settle {
    /// Records one reading; `true` once the count is settled.
    fn observe(&mut self, count: usize) -> bool {
        if self.last == Some(count) {
            self.repeats += 1;
        } else {
            self.last = Some(count);
            self.repeats = 0;
        }
        self.repeats >= QUIET_POLLS
    }
}

#[cfg(test)]
#[path = "mirror_tests.rs"]
mod tests;
