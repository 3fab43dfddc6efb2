//! The route-table measurement: a host serving 1,000 HTTPRoutes (its RSS), and how long
//! a change takes from the file being written to traffic being served by it (median and
//! p99 over 20 edits, each adding a route on a new path and waiting for it to answer).
//! The bench's catch-all route answers every path, so an edit's route answers with a
//! redirect (302): only the new route can give that answer.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::procfs;
use super::targets::Env;
use super::{http, nantian};

pub const ROUTES: usize = 1000;
const EDITS: usize = 20;

pub struct RouteTable {
    pub routes: usize,
    pub idle_rss_mib: f64,
    /// Change-to-served times, sorted.
    pub change_to_served: Vec<Duration>,
}

impl RouteTable {
    fn quantile(&self, q: f64) -> Duration {
        let n = self.change_to_served.len();
        let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
        self.change_to_served[i]
    }

    /// The report's lines, with the targets.
    pub fn lines(&self) -> Vec<String> {
        let median = self.quantile(0.5);
        let p99 = self.quantile(0.99);
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        vec![
            format!(
                "{} HTTPRoutes: nantian-host RSS {:.1} MB (target < 40 MB — {})",
                self.routes,
                self.idle_rss_mib,
                verdict(self.idle_rss_mib < 40.0)
            ),
            format!(
                "change to served over {} edits: median {:.1} ms, p99 {:.1} ms (target median < 50 ms — {})",
                self.change_to_served.len(),
                median.as_secs_f64() * 1000.0,
                p99.as_secs_f64() * 1000.0,
                verdict(median < Duration::from_millis(50))
            ),
        ]
    }
}

pub fn measure(env: &Env<'_>) -> Result<RouteTable> {
    let (mut running, config_dir) = nantian::start_route_table(env, ROUTES)?;
    let last = format!("/r{}", ROUTES - 1);
    let answer = http::get(running.addr, &last).context("the last route")?;
    if answer.status != 200 {
        bail!(
            "{last} answered {} through the 1,000-route table",
            answer.status
        );
    }
    let idle_rss_mib = procfs::rss_kib(&running.measured) as f64 / 1024.0;
    let mut change_to_served = Vec::with_capacity(EDITS);
    for edit in 0..EDITS {
        let path = format!("/edit-{edit}");
        let route = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: edit, namespace: bench}}\nspec:\n  parentRefs: [{{name: bench}}]\n  rules:\n  - matches: [{{path: {{type: Exact, value: {path}}}}}]\n    filters: [{{type: RequestRedirect, requestRedirect: {{hostname: edited.example}}}}]\n"
        );
        let started = Instant::now();
        std::fs::write(config_dir.join("edit.yaml"), route)?;
        loop {
            if http::get(running.addr, &path).is_ok_and(|a| a.status == 302) {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("{path} was not served 30 s after the edit");
            }
            running.check_running()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        change_to_served.push(started.elapsed());
    }
    change_to_served.sort();
    Ok(RouteTable {
        routes: ROUTES,
        idle_rss_mib,
        change_to_served,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_from_the_sorted_times() {
        let table = RouteTable {
            routes: 3,
            idle_rss_mib: 20.0,
            change_to_served: (1..=20).map(Duration::from_millis).collect(),
        };
        assert_eq!(table.quantile(0.5), Duration::from_millis(10));
        assert_eq!(table.quantile(0.99), Duration::from_millis(20));
        let lines = table.lines();
        assert!(
            lines[0].contains("20.0 MB") && lines[0].contains("met"),
            "{lines:?}"
        );
        assert!(lines[1].contains("median 10.0 ms"), "{lines:?}");
    }
}
