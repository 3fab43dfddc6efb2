//! `cargo xtask bench`: nantian-host side by side with nginx and HAProxy, in one run, on
//! loopback, one worker each, keep-alive everywhere, the same route and the same added
//! header, all in front of the same echo backend (`bench/README.md` has the method).
//!
//! All targets run at once and are measured in alternating rounds (each target once per
//! round, every other round in reverse order), so a disturbance on this shared machine
//! hits every row alike instead of one; the table shows each target's median round, and
//! the comparisons with nginx pair the rounds (`report::paired_ratio`).
//!
//! Environment knobs: `NANTIAN_BENCH_SECONDS` (5, per round), `NANTIAN_BENCH_ROUNDS` (5),
//! `NANTIAN_BENCH_WARMUP_SECONDS` (2),
//! `NANTIAN_BENCH_CONNECTIONS` (32), `NANTIAN_BENCH_PIN` (1: proxy on CPU 1, load and
//! backend on CPU 0), `NANTIAN_BENCH_TARGETS` (comma list of direct, nginx, haproxy,
//! nantian, nantian-wasm, the TLS rows and ai; a subset does not touch bench/README.md),
//! `NANTIAN_BENCH_AI_RATE` (200 requests/s on the AI path, `ai.rs`),
//! `NANTIAN_BENCH_BUILD` (`dist`, the shipping build, or `release`: quicker to build, for
//! trying a change; the tables say which) and `NANTIAN_BENCH_KEEP` (keep the run
//! directory with configs and logs).

mod ai;
mod certificate;
mod http;
mod kube_scale;
mod nantian;
mod procfs;
mod report;
mod route_table;
mod targets;
mod tools;
mod wrk;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::workspace::Workspace;
use procfs::Process;
use report::{Measurement, Outcome, Row};
use targets::{BENCH_BODY, BENCH_PATH, Env, Kind};

/// Whether the gateway is measured in its shipping build (`dist`), the default, or the
/// release build (`NANTIAN_BENCH_BUILD=release`).
pub fn measures_release_build() -> Result<bool> {
    match std::env::var("NANTIAN_BENCH_BUILD").as_deref() {
        Ok("release") => Ok(true),
        Ok("dist") | Err(_) => Ok(false),
        Ok(other) => bail!("NANTIAN_BENCH_BUILD={other:?}: dist or release"),
    }
}

/// The build measured (`dist` or `release`), and its controller and host binaries.
fn gateway_binaries(ws: &Workspace) -> Result<(&'static str, PathBuf, PathBuf)> {
    let (build, path): (_, fn(&Workspace, &str) -> PathBuf) = if measures_release_build()? {
        ("release", Workspace::bin)
    } else {
        ("dist", Workspace::dist_bin)
    };
    Ok((
        build,
        path(ws, "nantian-controller"),
        path(ws, "nantian-host"),
    ))
}

/// The shared echo backend (the quickstart's demo address).
const BACKEND_ADDR: &str = "127.0.20.1:3000";
/// Its pod name, checked in the echo JSON so the checks know who answered.
const BACKEND_POD: &str = "bench-echo";

/// Other processes busier than this share of one CPU during a run get a note in the table:
/// that row's numbers are disturbed.
const FOREIGN_LOAD_NOTE: f64 = 0.05;

struct Settings {
    load: wrk::Load,
    rounds: usize,
    warmup: Duration,
    pin: bool,
    kinds: Vec<Kind>,
    /// The AI path (`ai` in `NANTIAN_BENCH_TARGETS`).
    ai: bool,
    ai_rate: u64,
    keep_run_dir: bool,
}

impl Settings {
    fn from_env() -> Result<Self> {
        let number = |name: &str, default: u64| -> Result<u64> {
            match std::env::var(name) {
                Ok(value) => value.parse().with_context(|| format!("{name}={value:?}")),
                Err(_) => Ok(default),
            }
        };
        let (kinds, ai) = match std::env::var("NANTIAN_BENCH_TARGETS") {
            Ok(list) => {
                let keys: Vec<&str> = list.split(',').map(str::trim).collect();
                let kinds = keys
                    .iter()
                    .filter(|key| **key != "ai")
                    .map(|key| {
                        Kind::ALL
                            .into_iter()
                            .find(|kind| kind.key() == *key)
                            .with_context(|| format!("unknown bench target {key:?}"))
                    })
                    .collect::<Result<_>>()?;
                (kinds, keys.contains(&"ai"))
            }
            Err(_) => (Kind::ALL.to_vec(), true),
        };
        Ok(Self {
            load: wrk::Load {
                threads: 1,
                connections: u32::try_from(number("NANTIAN_BENCH_CONNECTIONS", 32)?)?,
                duration: Duration::from_secs(number("NANTIAN_BENCH_SECONDS", 5)?.clamp(1, 120)),
            },
            rounds: usize::try_from(number("NANTIAN_BENCH_ROUNDS", 5)?.clamp(1, 20))?,
            warmup: Duration::from_secs(number("NANTIAN_BENCH_WARMUP_SECONDS", 2)?.clamp(1, 60)),
            pin: number("NANTIAN_BENCH_PIN", 1)? != 0,
            kinds,
            ai,
            ai_rate: number("NANTIAN_BENCH_AI_RATE", 200)?.clamp(1, 100_000),
            keep_run_dir: number("NANTIAN_BENCH_KEEP", 0)? != 0,
        })
    }
}

pub fn run(ws: &Workspace) -> Result<()> {
    let settings = Settings::from_env()?;
    if settings.kinds.is_empty() {
        return run_ai_only(ws, &settings);
    }
    let tools = tools::ensure()?;
    let echo = ws.bin("nantian-echo");
    if !echo.is_file() {
        bail!("{} is not built (cargo xtask build)", echo.display());
    }
    let run_dir = std::env::temp_dir().join(format!("nantian-bench-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (load_cpu, proxy_cpu) = if settings.pin && cpus >= 2 && tools.taskset.is_some() {
        (Some(0), Some(1))
    } else {
        (None, None)
    };

    let backend: SocketAddr = BACKEND_ADDR.parse()?;
    targets::ensure_free(backend)?;
    let mut echo_command = Command::new(&echo);
    echo_command.args([
        "--listen",
        BACKEND_ADDR,
        "--workers",
        "1",
        "--pod",
        BACKEND_POD,
        "--namespace",
        "bench",
    ]);
    let mut backend_process = Process::spawn("echo", &mut echo_command, load_cpu, &run_dir)?;
    http::wait_for(
        backend,
        BENCH_PATH,
        Duration::from_secs(10),
        |answer| answer.status == 200 && answer.body == BENCH_BODY,
        || backend_process.check_running(),
    )
    .context("starting the echo backend")?;

    let env = Env {
        ws,
        tools: &tools,
        run_dir: &run_dir,
        backend,
        backend_pid: backend_process.pid(),
        proxy_cpu,
    };
    let mut started = Vec::new();
    let mut rows = Vec::new();
    for &kind in &settings.kinds {
        eprintln!("bench: starting {} …", kind.label());
        match start_checked(kind, &env, &settings, load_cpu) {
            Ok(target) => started.push(target),
            Err(err) => {
                let reason = format!("{err:#}");
                eprintln!("bench: SKIPPED {}: {reason}", kind.label());
                rows.push(Row {
                    kind,
                    outcome: Outcome::Skipped(reason),
                });
            }
        }
    }
    for round in 1..=settings.rounds {
        // Every other round runs the targets in reverse, so a steady drift of the
        // machine's speed weighs on every target alike.
        let order: Vec<usize> = if round % 2 == 1 {
            (0..started.len()).collect()
        } else {
            (0..started.len()).rev().collect()
        };
        for i in order {
            let target = &mut started[i];
            if target.failed.is_some() {
                continue;
            }
            eprintln!(
                "bench: round {round}/{}: {} …",
                settings.rounds,
                target.kind.label()
            );
            match measure_round(target, &env, &settings, load_cpu) {
                Ok(result) => target.rounds.push(result),
                Err(err) => target.failed = Some(format!("{err:#}")),
            }
        }
    }
    for target in started {
        let kind = target.kind;
        let outcome = match target.finish() {
            Ok(measurement) => Outcome::Measured(measurement),
            Err(reason) => {
                eprintln!("bench: SKIPPED {}: {reason}", kind.label());
                Outcome::Skipped(reason)
            }
        };
        rows.push(Row { kind, outcome });
    }
    rows.sort_by_key(|row| settings.kinds.iter().position(|k| *k == row.kind));
    // The route-table measurement runs with the full set only (it takes a while).
    let route_table = if settings.kinds == Kind::ALL
        || std::env::var("NANTIAN_BENCH_ROUTE_TABLE").is_ok_and(|v| v == "1")
    {
        eprintln!("bench: route table of {} HTTPRoutes …", route_table::ROUTES);
        Some(route_table::measure(&env).map_err(|e| format!("{e:#}")))
    } else {
        None
    };
    drop(backend_process);
    // The Kubernetes scale measurement, with the full set only (it takes minutes).
    let scale = if settings.kinds == Kind::ALL
        || std::env::var("NANTIAN_BENCH_KUBE_SCALE").is_ok_and(|v| v == "1")
    {
        eprintln!("bench: {} HTTPRoutes through a kube-apiserver …", 5000);
        Some(kube_scale::measure(ws).map_err(|e| format!("{e:#}")))
    } else {
        None
    };

    let ai = settings.ai.then(|| {
        eprintln!("bench: the AI path …");
        measure_ai(ws, &settings, &run_dir, (load_cpu, proxy_cpu), &tools.nginx)
    });

    let preamble = preamble(&settings, &tools, load_cpu.is_some());
    let mut section = report::render(&rows, &preamble);
    append_measured(
        &mut section,
        route_table.as_ref().map(|r| r.as_ref().map(|t| t.lines())),
        "Route table (one host, plain HTTP)",
        "Route table",
    );
    append_measured(
        &mut section,
        scale.as_ref().map(|r| r.as_ref().map(|s| s.lines())),
        "Kubernetes mode (real kube-apiserver + etcd, the controller and one host of the release build)",
        "Kubernetes scale",
    );
    append_ai(&mut section, ai.as_ref());
    println!("\n{section}");
    if measures_release_build()? {
        eprintln!("bench: the release build was measured; bench/README.md left as it was");
    } else if settings.kinds == Kind::ALL && settings.ai {
        let readme = ws.root.join("bench").join("README.md");
        report::update_readme(&readme, &section)?;
        eprintln!("bench: results written to {}", readme.display());
    } else {
        eprintln!("bench: a subset of targets ran; bench/README.md left as it was");
    }
    finish(run_dir, settings.keep_run_dir, &rows);
    Ok(())
}

/// `NANTIAN_BENCH_TARGETS=ai`: the AI path alone, without the HTTP targets and the echo
/// backend; nginx (installed if missing) is the reference path.
fn run_ai_only(ws: &Workspace, settings: &Settings) -> Result<()> {
    let run_dir = std::env::temp_dir().join(format!("nantian-bench-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (load_cpu, proxy_cpu) = if settings.pin && cpus >= 2 && tools::find("taskset").is_some() {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    eprintln!("bench: the AI path …");
    // nginx is the AI path's reference: install it like a full run does.
    let tools = tools::ensure()?;
    let result = measure_ai(ws, settings, &run_dir, (load_cpu, proxy_cpu), &tools.nginx);
    let mut section = String::new();
    append_ai(&mut section, Some(&result));
    println!("{section}");
    eprintln!("bench: a subset of targets ran; bench/README.md left as it was");
    finish(run_dir, settings.keep_run_dir || result.is_err(), &[]);
    result.map(drop)
}

fn measure_ai(
    ws: &Workspace,
    settings: &Settings,
    run_dir: &std::path::Path,
    (load_cpu, proxy_cpu): (Option<usize>, Option<usize>),
    nginx: &std::path::Path,
) -> Result<ai::AiPath> {
    ai::measure(&ai::AiSettings {
        ws,
        run_dir,
        rate: settings.ai_rate,
        duration: settings.load.duration,
        rounds: settings.rounds,
        warmup: settings.warmup,
        proxy_cpu,
        load_cpu,
        nginx,
    })
}

fn append_ai(section: &mut String, result: Option<&Result<ai::AiPath>>) {
    match result {
        Some(Ok(path)) => section.push_str(&format!(
            "\nAI path (streamed chat completions, OpenAI client → Anthropic mock):\n\n{}",
            path.markdown()
        )),
        Some(Err(err)) => section.push_str(&format!("\nAI path: not measured ({err:#})\n")),
        None => {}
    }
}

/// A target that is up, checked and warm, with its rounds so far.
struct Started {
    kind: Kind,
    target: targets::Running,
    idle_rss_kib: u64,
    rounds: Vec<RoundResult>,
    /// Why it stopped being measured (a process died, wrk failed).
    failed: Option<String>,
}

/// One measured round of one target.
struct RoundResult {
    requests_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_req: f64,
    notes: Vec<String>,
}

/// Starts `kind`, checks it answers and adds (or not) the header, and warms it up.
fn start_checked(
    kind: Kind,
    env: &Env<'_>,
    settings: &Settings,
    load_cpu: Option<usize>,
) -> Result<Started> {
    let target = targets::start(kind, env)?;
    verify(kind, target.addr)?;
    let idle_rss_kib = procfs::rss_kib(&target.measured);
    let warmup = wrk::Load {
        duration: settings.warmup,
        ..settings.load
    };
    wrk::run(&env.tools.wrk, &url(&target), warmup, load_cpu).context("warm-up")?;
    Ok(Started {
        kind,
        target,
        idle_rss_kib,
        rounds: Vec::new(),
        failed: None,
    })
}

fn url(target: &targets::Running) -> String {
    let scheme = if target.tls { "https" } else { "http" };
    format!("{scheme}://{}{BENCH_PATH}", target.addr)
}

fn measure_round(
    started: &mut Started,
    env: &Env<'_>,
    settings: &Settings,
    load_cpu: Option<usize>,
) -> Result<RoundResult> {
    let target = &mut started.target;
    // Everything of ours that runs during the load: the target, the backend and wrk
    // (reaped when it exits). The rest of the machine's busy time is someone else's.
    let mut ours = target.measured.clone();
    ours.extend(procfs::tree(env.backend_pid));
    ours.sort_unstable();
    ours.dedup();
    let busy_before = procfs::system_busy_ticks();
    let ours_before = procfs::cpu_ticks(&ours) + procfs::reaped_children_ticks();
    let ticks_before = procfs::cpu_ticks(&target.measured);
    let started_at = Instant::now();
    let summary = wrk::run(&env.tools.wrk, &url(target), settings.load, load_cpu)?;
    let elapsed = started_at.elapsed();
    let ticks = procfs::cpu_ticks(&target.measured).saturating_sub(ticks_before);
    let ours_ticks =
        (procfs::cpu_ticks(&ours) + procfs::reaped_children_ticks()).saturating_sub(ours_before);
    let foreign_ticks = procfs::system_busy_ticks()
        .saturating_sub(busy_before)
        .saturating_sub(ours_ticks);
    target.check_running()?;
    if summary.requests == 0 {
        bail!("wrk completed no request");
    }

    let mut notes = Vec::new();
    if summary.non_2xx > 0 {
        notes.push(format!("{} non-2xx", summary.non_2xx));
    }
    if summary.socket_errors > 0 {
        notes.push(format!("{} socket errors", summary.socket_errors));
    }
    let hz = procfs::clock_ticks_per_second() as f64;
    let foreign_share = foreign_ticks as f64 / hz / elapsed.as_secs_f64().max(1e-3);
    if foreign_share >= FOREIGN_LOAD_NOTE {
        notes.push(format!(
            "other processes used {:.0}% of a CPU meanwhile",
            foreign_share * 100.0
        ));
    }
    let cpu_seconds = ticks as f64 / hz;
    Ok(RoundResult {
        requests_per_sec: summary.requests_per_sec,
        p50_us: summary.p50_us,
        p99_us: summary.p99_us,
        cpu_us_per_req: cpu_seconds * 1e6 / summary.requests as f64,
        notes,
    })
}

impl Started {
    /// The median of each figure over the rounds; every round's CPU figure in the notes.
    fn finish(self) -> Result<Measurement, String> {
        if let Some(reason) = self.failed {
            return Err(reason);
        }
        let load_rss_kib = procfs::rss_kib(&self.target.measured);
        let median = |figure: fn(&RoundResult) -> f64| {
            let mut values: Vec<f64> = self.rounds.iter().map(figure).collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or(0.0)
        };
        let mut notes: Vec<String> = Vec::new();
        for note in self.rounds.iter().flat_map(|r| r.notes.iter()) {
            if !notes.contains(note) {
                notes.push(note.clone());
            }
        }
        if self.rounds.len() > 1 {
            let per_round: Vec<String> = self
                .rounds
                .iter()
                .map(|r| format!("{:.1}", r.cpu_us_per_req))
                .collect();
            notes.insert(0, format!("rounds: {} µs", per_round.join(" / ")));
        }
        Ok(Measurement {
            requests_per_sec: median(|r| r.requests_per_sec),
            p50_us: median(|r| r.p50_us),
            p99_us: median(|r| r.p99_us),
            cpu_us_per_req: median(|r| r.cpu_us_per_req),
            cpu_rounds: self.rounds.iter().map(|r| r.cpu_us_per_req).collect(),
            p99_rounds: self.rounds.iter().map(|r| r.p99_us).collect(),
            idle_rss_mib: self.idle_rss_kib as f64 / 1024.0,
            load_rss_mib: load_rss_kib as f64 / 1024.0,
            notes,
        })
    }
}

/// Keeps the comparison honest: the request must reach our backend through the target, and
/// the backend must see `x-bench: 1` exactly when the target is configured to add it.
fn verify(kind: Kind, addr: SocketAddr) -> Result<()> {
    let answer = if kind.tls() {
        http::get_tls(addr, "/bench-verify")
    } else {
        http::get(addr, "/bench-verify")
    }
    .context("verification request")?;
    if answer.status != 200 {
        bail!(
            "verification request got HTTP {}: {}",
            answer.status,
            answer.body.trim()
        );
    }
    if !answer.body.contains(&format!("\"pod\":\"{BACKEND_POD}\"")) {
        bail!(
            "verification answer is not from the bench echo backend: {}",
            answer.body
        );
    }
    let has_header = answer.body.contains("\"X-Bench\":[\"1\"]");
    match (kind.adds_header(), has_header) {
        (true, false) => bail!("the backend did not see x-bench: 1: {}", answer.body),
        (false, true) => bail!(
            "the backend saw an x-bench header nobody should add: {}",
            answer.body
        ),
        _ => Ok(()),
    }
}

fn preamble(settings: &Settings, tools: &tools::Tools, pinned: bool) -> Vec<String> {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = settings.load;
    vec![
        format!(
            "Last run: {date} on {cpu_model} ({cpus} CPUs), Linux {}.",
            kernel.trim()
        ),
        String::new(),
        format!(
            "Load: `wrk -t{} -c{} -d{}s --latency` per target per round, {} rounds alternating between the targets (the table shows each one's median round), after a {}s warm-up each; `GET /bench` (19-byte body); {}.",
            load.threads,
            load.connections,
            load.duration.as_secs(),
            settings.rounds,
            settings.warmup.as_secs(),
            if pinned {
                "the proxy pinned to CPU 1, wrk and the echo backend to CPU 0"
            } else {
                "no CPU pinning"
            }
        ),
        String::new(),
        format!(
            "Versions: {}; {}; {}.",
            tools::version(&tools.nginx, "-v"),
            tools::version(&tools.haproxy, "-v"),
            tools::version(&tools.wrk, "-v")
        ),
        String::new(),
        "Build: nantian-host and nantian-controller as shipped, `cargo build --profile dist` (fat LTO, one codegen unit); nginx and HAProxy as Debian ships them.".to_string(),
    ]
}

/// Removes the run directory unless asked to keep it or something was skipped (its logs
/// say why).
fn finish(run_dir: PathBuf, keep: bool, rows: &[Row]) {
    let skipped = rows
        .iter()
        .any(|row| matches!(row.outcome, Outcome::Skipped(_)));
    if keep || skipped {
        eprintln!("bench: configs and logs kept in {}", run_dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
}

/// Appends an optional measurement's lines as a bulleted block, or why it was not measured.
fn append_measured(
    section: &mut String,
    result: Option<std::result::Result<Vec<String>, &String>>,
    title: &str,
    short: &str,
) {
    match result {
        Some(Ok(lines)) => {
            section.push_str(&format!("\n{title}:\n\n"));
            for line in lines {
                section.push_str(&format!("- {line}\n"));
            }
        }
        Some(Err(reason)) => section.push_str(&format!("\n{short}: not measured ({reason})\n")),
        None => {}
    }
}
