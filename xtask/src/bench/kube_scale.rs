//! The Kubernetes scale measurement: `tests/tests/kube_scale.rs` (5,000 HTTPRoutes created
//! through a real API server), run as an ignored test against the harness's kube-apiserver
//! and etcd, its one result line turned into the report's lines.

use std::process::Stdio;

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use crate::workspace::Workspace;

#[derive(Debug)]
pub struct Scale {
    routes: usize,
    created_s: f64,
    all_accepted_s: f64,
    all_served_s: f64,
    controller_rss_mib: f64,
    edit_to_served_median_ms: f64,
    edit_to_served_p99_ms: f64,
    edits: usize,
}

const MARKER: &str = "NANTIAN_SCALE_RESULT ";

pub fn measure(ws: &Workspace) -> Result<Scale> {
    let assets = crate::kube_assets::ensure()?
        .context("no kube-apiserver and etcd (cargo xtask kube-assets needs Go)")?;
    let output = crate::cargo(ws)
        .args([
            "test",
            "--release",
            "-p",
            "nantian-e2e",
            "--test",
            "kube_scale",
            "--",
            "--ignored",
            "--nocapture",
        ])
        .env("NANTIAN_KUBE_ASSETS", assets)
        .stderr(Stdio::inherit())
        .output()
        .context("run tests/tests/kube_scale.rs")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix(MARKER));
    match (output.status.success(), line) {
        (true, Some(fields)) => Scale::parse(fields),
        _ => bail!(
            "the scale test failed ({}): {}",
            output.status,
            stdout
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join(" | ")
        ),
    }
}

impl Scale {
    /// `key=value` pairs separated by spaces.
    fn parse(fields: &str) -> Result<Self> {
        let map: BTreeMap<&str, &str> = fields
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let number = |key: &str| -> Result<f64> {
            map.get(key)
                .with_context(|| format!("{key} missing from the scale result"))?
                .parse::<f64>()
                .with_context(|| format!("{key} in the scale result"))
        };
        Ok(Scale {
            routes: number("routes")? as usize,
            created_s: number("created_s")?,
            all_accepted_s: number("all_accepted_s")?,
            all_served_s: number("all_served_s")?,
            controller_rss_mib: number("controller_rss_mib")?,
            edit_to_served_median_ms: number("edit_to_served_median_ms")?,
            edit_to_served_p99_ms: number("edit_to_served_p99_ms")?,
            edits: number("edits")? as usize,
        })
    }

    pub fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "{} HTTPRoutes created through the API server in {:.1} s; all Accepted (status written) {:.1} s after the first create, the last one served after {:.1} s",
                self.routes, self.created_s, self.all_accepted_s, self.all_served_s
            ),
            format!(
                "controller RSS with {} routes: {:.1} MB",
                self.routes, self.controller_rss_mib
            ),
            format!(
                "one route created → its traffic served, over {} edits: median {:.1} ms, p99 {:.1} ms",
                self.edits, self.edit_to_served_median_ms, self.edit_to_served_p99_ms
            ),
        ]
    }
}
