//! The results table, the targets checked against it, and `bench/README.md`.

use std::path::Path;

use anyhow::{Context, Result};

use super::targets::Kind;

pub const START_MARKER: &str = "<!-- bench:results:start -->";
pub const END_MARKER: &str = "<!-- bench:results:end -->";

/// What one target did under load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurement {
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// User + system CPU time of the target's processes per request.
    pub cpu_us_per_req: f64,
    pub idle_rss_mib: f64,
    /// Resident memory right after the load.
    pub load_rss_mib: f64,
    /// Anything that makes the numbers less clean (errors, non-2xx answers).
    pub notes: Vec<String>,
    /// Each round's CPU µs/request and p99, in round order (the rounds of all targets
    /// alternate, so round `i` of two targets ran minutes apart at most).
    pub cpu_rounds: Vec<f64>,
    pub p99_rounds: Vec<f64>,
}

/// `a` against `b` as the median of the per-round ratios `a_i / b_i`: a drift of the
/// machine's speed between rounds (seen here at ±30% within minutes) cancels out of each
/// ratio, where the ratio of the two medians would carry it. Falls back to the medians
/// when the rounds do not pair up.
pub fn paired_ratio(a: &[f64], b: &[f64], a_median: f64, b_median: f64) -> f64 {
    if a.is_empty() || a.len() != b.len() || b.iter().any(|v| *v <= 0.0) {
        return a_median / b_median;
    }
    median(a.iter().zip(b).map(|(a, b)| a / b).collect())
}

/// The median of `values` (the upper middle one of an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

impl Measurement {
    fn cpu_vs(&self, baseline: &Measurement) -> f64 {
        paired_ratio(
            &self.cpu_rounds,
            &baseline.cpu_rounds,
            self.cpu_us_per_req,
            baseline.cpu_us_per_req,
        )
    }

    fn p99_vs(&self, baseline: &Measurement) -> f64 {
        paired_ratio(
            &self.p99_rounds,
            &baseline.p99_rounds,
            self.p99_us,
            baseline.p99_us,
        )
    }

    /// Each round's CPU ratio against `baseline`, for the record.
    fn cpu_ratios(&self, baseline: &Measurement) -> String {
        self.cpu_rounds
            .iter()
            .zip(&baseline.cpu_rounds)
            .map(|(a, b)| format!("{:.2}", a / b))
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Measured(Measurement),
    /// Why the target was not measured.
    Skipped(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub kind: Kind,
    pub outcome: Outcome,
}

fn measured(rows: &[Row], kind: Kind) -> Option<&Measurement> {
    rows.iter().find_map(|row| match &row.outcome {
        Outcome::Measured(m) if row.kind == kind => Some(m),
        _ => None,
    })
}

/// The Markdown section: `preamble` lines, the table, then the targets.
pub fn render(rows: &[Row], preamble: &[String]) -> String {
    let mut out = String::new();
    for line in preamble {
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(
        "| Target | req/s | p50 | p99 | CPU µs/req | CPU vs nginx | RSS MB idle → load | Notes |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---|\n");
    // TLS rows compare with nginx over TLS, the others with plain nginx.
    let nginx = |kind: Kind| {
        let baseline = if kind.tls() {
            Kind::NginxTls
        } else {
            Kind::Nginx
        };
        measured(rows, baseline).filter(|m| m.cpu_us_per_req > 0.0)
    };
    for row in rows {
        let line = match &row.outcome {
            Outcome::Measured(m) => format!(
                "| {} | {} | {} | {} | {:.1} | {} | {:.1} → {:.1} | {} |",
                row.kind.label(),
                thousands(m.requests_per_sec),
                latency(m.p50_us),
                latency(m.p99_us),
                m.cpu_us_per_req,
                nginx(row.kind).map_or("–".to_owned(), |baseline| format!(
                    "{:.2}×",
                    m.cpu_vs(baseline)
                )),
                m.idle_rss_mib,
                m.load_rss_mib,
                cell(&m.notes.join("; ")),
            ),
            Outcome::Skipped(reason) => format!(
                "| {} | – | – | – | – | – | – | skipped: {} |",
                row.kind.label(),
                cell(reason)
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(
        "\nCPU vs nginx is the median of the per-round ratios (each round of a target against \
         the same round of nginx), so the machine's drift between rounds cancels out.\n",
    );
    out.push_str("\nTargets (from the issue):\n\n");
    for line in targets(rows) {
        out.push_str(&format!("- {line}\n"));
    }
    out
}

/// The goals, each with its verdict.
pub fn targets(rows: &[Row]) -> Vec<String> {
    let nginx = measured(rows, Kind::Nginx);
    let host = measured(rows, Kind::Nantian);
    let wasm = measured(rows, Kind::NantianWasm);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let mut out = Vec::new();
    out.push(match (host, nginx) {
        (Some(h), Some(n)) => cpu_target("nantian-host", h, n),
        _ => "nantian-host CPU/request ≤ nginx: not measured".to_owned(),
    });
    out.push(match (host, nginx) {
        (Some(h), Some(n)) => {
            let ratio = h.p99_vs(n);
            format!(
                "nantian-host p99 no worse than nginx: {} vs {} (per-round ratio {ratio:.2}×) — {}",
                latency(h.p99_us),
                latency(n.p99_us),
                verdict(ratio <= 1.0)
            )
        }
        _ => "nantian-host p99 no worse than nginx: not measured".to_owned(),
    });
    out.push(match (wasm, host) {
        (Some(w), Some(h)) => {
            let added = if w.cpu_rounds.len() == h.cpu_rounds.len() && !w.cpu_rounds.is_empty() {
                median(
                    w.cpu_rounds
                        .iter()
                        .zip(&h.cpu_rounds)
                        .map(|(w, h)| w - h)
                        .collect(),
                )
            } else {
                w.cpu_us_per_req - h.cpu_us_per_req
            };
            format!(
                "the Wasm header filter adds ≤ 1.5 µs CPU/request: {added:+.1} µs — {}",
                verdict(added <= 1.5)
            )
        }
        _ => "the Wasm header filter adds ≤ 1.5 µs CPU/request: not measured".to_owned(),
    });
    out.push(match host {
        Some(h) => format!(
            "nantian-host idle RSS < 30 MB: {:.1} MB — {}",
            h.idle_rss_mib,
            verdict(h.idle_rss_mib < 30.0)
        ),
        None => "nantian-host idle RSS < 30 MB: not measured".to_owned(),
    });
    let (tls_host, tls_nginx) = (
        measured(rows, Kind::NantianTls),
        measured(rows, Kind::NginxTls),
    );
    out.push(match (tls_host, tls_nginx) {
        (Some(h), Some(n)) => cpu_target("TLS 1.3: nantian-host", h, n),
        _ => "TLS 1.3: nantian-host CPU/request ≤ nginx: not measured".to_owned(),
    });
    out
}

/// The CPU target of `host` against `nginx`, judged on the paired per-round ratio.
fn cpu_target(what: &str, host: &Measurement, nginx: &Measurement) -> String {
    let ratio = host.cpu_vs(nginx);
    let rounds = host.cpu_ratios(nginx);
    format!(
        "{what} CPU/request ≤ nginx: {:.1} vs {:.1} µs, per-round ratio {ratio:.2}×{} — {}",
        host.cpu_us_per_req,
        nginx.cpu_us_per_req,
        if rounds.is_empty() {
            String::new()
        } else {
            format!(" ({rounds})")
        },
        if ratio <= 1.0 { "met" } else { "MISSED" }
    )
}

/// Replaces what is between the markers of `readme` with `section` (appending the markers
/// if the file has none), keeping the rest of the file.
pub fn update_readme(readme: &Path, section: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(readme).with_context(|| format!("reading {}", readme.display()))?;
    let block = format!("{START_MARKER}\n{section}{END_MARKER}");
    let updated = match (text.find(START_MARKER), text.find(END_MARKER)) {
        (Some(start), Some(end)) if start < end => {
            format!(
                "{}{block}{}",
                &text[..start],
                &text[end + END_MARKER.len()..]
            )
        }
        _ => format!("{}\n\n{block}\n", text.trim_end()),
    };
    std::fs::write(readme, updated).with_context(|| format!("writing {}", readme.display()))
}

fn latency(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Text safe inside a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "/").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: Kind, cpu: f64, p99: f64, idle: f64) -> Row {
        Row {
            kind,
            outcome: Outcome::Measured(Measurement {
                requests_per_sec: 51234.4,
                p50_us: 450.0,
                p99_us: p99,
                cpu_us_per_req: cpu,
                idle_rss_mib: idle,
                load_rss_mib: idle + 1.0,
                notes: Vec::new(),
                cpu_rounds: Vec::new(),
                p99_rounds: Vec::new(),
            }),
        }
    }

    fn with_rounds(mut row: Row, cpu: &[f64], p99: &[f64]) -> Row {
        if let Outcome::Measured(m) = &mut row.outcome {
            m.cpu_rounds = cpu.to_vec();
            m.p99_rounds = p99.to_vec();
        }
        row
    }

    #[test]
    fn table_has_ratios_skips_and_verdicts() {
        let rows = vec![
            row(Kind::Nginx, 17.0, 1500.0, 3.0),
            row(Kind::Nantian, 15.0, 1200.0, 12.0),
            row(Kind::NantianWasm, 17.0, 1300.0, 14.0),
            Row {
                kind: Kind::Haproxy,
                outcome: Outcome::Skipped("no | haproxy\nhere".into()),
            },
        ];
        let text = render(&rows, &["Machine: test".to_owned()]);
        assert!(text.starts_with("Machine: test\n"));
        assert!(
            text.contains("| nginx | 51,234 | 450 µs | 1.50 ms | 17.0 | 1.00× | 3.0 → 4.0 |  |"),
            "{text}"
        );
        assert!(
            text.contains("| nantian-host | 51,234 | 450 µs | 1.20 ms | 15.0 | 0.88× |"),
            "{text}"
        );
        assert!(text.contains("skipped: no / haproxy here |"), "{text}");
        assert!(text.contains("CPU/request ≤ nginx: 15.0 vs 17.0 µs, per-round ratio 0.88× — met"));
        assert!(text.contains("adds ≤ 1.5 µs CPU/request: +2.0 µs — MISSED"));
        assert!(text.contains("idle RSS < 30 MB: 12.0 MB — met"));
    }

    #[test]
    fn ratios_pair_the_rounds() {
        // nginx's first round ran on a slow machine: the ratio of medians (15.4 / 14.1)
        // says 1.09×, round by round nantian-host used less in two of three.
        let rows = vec![
            with_rounds(
                row(Kind::Nginx, 14.1, 2000.0, 3.0),
                &[20.4, 14.1, 13.7],
                &[3000.0, 2000.0, 1000.0],
            ),
            with_rounds(
                row(Kind::Nantian, 15.4, 1900.0, 12.0),
                &[15.4, 13.9, 14.4],
                &[2500.0, 1900.0, 1500.0],
            ),
            with_rounds(
                row(Kind::NantianWasm, 15.0, 1900.0, 12.0),
                &[16.0, 14.9, 14.9],
                &[2500.0, 1900.0, 1500.0],
            ),
        ];
        let text = render(&rows, &[]);
        assert!(
            text.contains("| nantian-host | 51,234 | 450 µs | 1.90 ms | 15.4 | 0.99× |"),
            "{text}"
        );
        assert!(
            text.contains(
                "CPU/request ≤ nginx: 15.4 vs 14.1 µs, per-round ratio 0.99× (0.75 / 0.99 / 1.05) — met"
            ),
            "{text}"
        );
        // p99 per round: 0.83, 0.95, 1.50.
        assert!(text.contains("(per-round ratio 0.95×) — met"), "{text}");
        // Differences 0.6, 1.0, 0.5: the median is 0.6.
        assert!(
            text.contains("adds ≤ 1.5 µs CPU/request: +0.6 µs — met"),
            "{text}"
        );
    }

    #[test]
    fn unpaired_rounds_fall_back_to_the_medians() {
        assert_eq!(paired_ratio(&[1.0, 2.0], &[1.0], 3.0, 4.0), 0.75);
        assert_eq!(paired_ratio(&[], &[], 3.0, 4.0), 0.75);
        assert_eq!(
            paired_ratio(&[2.0, 3.0, 4.0], &[2.0, 2.0, 2.0], 3.0, 2.0),
            1.5
        );
    }

    #[test]
    fn targets_without_rows_are_not_measured() {
        assert!(
            targets(&[])
                .iter()
                .all(|line| line.ends_with("not measured"))
        );
    }

    #[test]
    fn readme_section_is_replaced_between_markers() {
        let dir = std::env::temp_dir().join(format!("nantian-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let readme = dir.join("README.md");
        std::fs::write(
            &readme,
            format!("# Bench\nintro\n{START_MARKER}\nold\n{END_MARKER}\nafter\n"),
        )
        .unwrap();
        update_readme(&readme, "new table\n").unwrap();
        let text = std::fs::read_to_string(&readme).unwrap();
        assert_eq!(
            text,
            format!("# Bench\nintro\n{START_MARKER}\nnew table\n{END_MARKER}\nafter\n")
        );

        std::fs::write(&readme, "# No markers\n").unwrap();
        update_readme(&readme, "t\n").unwrap();
        let text = std::fs::read_to_string(&readme).unwrap();
        assert_eq!(
            text,
            format!("# No markers\n\n{START_MARKER}\nt\n{END_MARKER}\n")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
