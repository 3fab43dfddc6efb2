//! Runs `wrk` and reads its summary.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::procfs::pinned;

/// One load run.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
}

/// What `wrk --latency` reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrkSummary {
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Responses outside 2xx/3xx.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors added up.
    pub socket_errors: u64,
}

/// `wrk -t<threads> -c<connections> -d<secs>s --latency <url>`, pinned to `cpu` if given.
pub fn run(wrk: &Path, url: &str, load: Load, cpu: Option<usize>) -> Result<WrkSummary> {
    let mut command = Command::new(wrk);
    command
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.duration.as_secs().max(1)))
        .arg("--latency")
        .arg(url);
    let output = pinned(&command, cpu)
        .output()
        .with_context(|| format!("running {}", wrk.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&stdout).with_context(|| format!("reading wrk output:\n{stdout}"))
}

/// Reads the request count, the rate, p50/p99 and the error lines.
pub fn parse(output: &str) -> Result<WrkSummary> {
    let mut summary = WrkSummary::default();
    let mut seen = (false, false, false, false);
    for line in output.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => {
                summary.p50_us = latency_us(value)?;
                seen.0 = true;
            }
            ["99%", value] => {
                summary.p99_us = latency_us(value)?;
                seen.1 = true;
            }
            [count, "requests", "in", ..] => {
                summary.requests = count.parse().context("request count")?;
                seen.2 = true;
            }
            ["Requests/sec:", rate] => {
                summary.requests_per_sec = rate.parse().context("requests/sec")?;
                seen.3 = true;
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                summary.non_2xx = count.parse().context("non-2xx count")?;
            }
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                summary.socket_errors = rest
                    .iter()
                    .filter_map(|word| word.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    if seen != (true, true, true, true) {
        bail!("missing p50, p99, request count or requests/sec");
    }
    Ok(summary)
}

/// wrk prints latencies as `412.00us`, `1.23ms`, `2.00s` or `1.00m`.
fn latency_us(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("latency without unit: {text}"))?;
    let value: f64 = text[..split]
        .parse()
        .with_context(|| format!("latency {text}"))?;
    let scale = match &text[split..] {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        unit => bail!("unknown latency unit {unit:?} in {text}"),
    };
    Ok(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 10s test @ http://127.0.30.2:8080/bench
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.34us  100.00us   5.00ms   90.00%
    Req/Sec    60.12k     1.20k   62.00k    70.00%
  Latency Distribution
     50%  498.00us
     75%  550.00us
     90%  620.00us
     99%    1.12ms
  601234 requests in 10.00s, 95.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  60123.40
Transfer/sec:      9.51MB
";

    #[test]
    fn parses_a_wrk_summary() {
        let summary = parse(SAMPLE).unwrap();
        assert_eq!(
            summary,
            WrkSummary {
                requests: 601_234,
                requests_per_sec: 60_123.4,
                p50_us: 498.0,
                p99_us: 1120.0,
                non_2xx: 7,
                socket_errors: 3,
            }
        );
    }

    #[test]
    fn rejects_output_without_latency_distribution() {
        let without = SAMPLE.replace("     99%    1.12ms\n", "");
        assert!(parse(&without).is_err());
        assert_eq!(latency_us("2.00s").unwrap(), 2e6);
        assert!(latency_us("12").is_err());
    }
}
