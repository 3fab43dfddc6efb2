//! The AI path: the latency nantian-host adds to a streamed chat completion. An OpenAI
//! client talks to the gateway, whose AIService translates the request (the ai-adapter Wasm
//! filter) for an Anthropic mock (`nantian-ai-mock`) and its event stream back into OpenAI
//! chunks; the baseline is the same mock called directly in its own API. Both run at the
//! same fixed rate with the same prompt, driven by `nantian-ai-load` (open loop), in
//! alternating rounds; what the gateway adds is the median over rounds of the per-round
//! differences, per percentile, for the whole stream and for the first token.
//!
//! A third path puts nginx (installed if missing) in front of the mock as a plain
//! streaming reverse proxy (no translation, no filters): what any proxy hop costs on this
//! machine, measured the same way, so the gateway's figures can be read against it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::http;
use super::procfs::{self, Process, pinned};
use super::report::median;
use super::targets::{NginxSite, ensure_free, fill, nginx_command};
use crate::workspace::Workspace;

const MOCK_ADDR: &str = "127.0.20.21:3100";
const MOCK_NAME: &str = "bench-mock";
const MOCK_KEY: &str = "sk-ant-bench";
const CLIENT_KEY: &str = "sk-bench-client";
const GATEWAY_ADDRESS: &str = "127.0.30.9";
const GATEWAY_PORT: u16 = 8080;
/// nginx, the reference proxy, in front of the same mock.
const NGINX_ADDR: &str = "127.0.30.10:8081";
const MODEL: &str = "claude-bench";
/// 28 words: the mock streams its answer, `"bench-mock (anthropic) heard: <prompt>"`, as
/// one text delta per word (31).
const PROMPT: &str = "Summarise in one short paragraph why a gateway in front of language \
                      model providers should add as little latency as it can to every \
                      streamed answer it relays";

/// The issue's targets: added p99 latency and added time to first token.
const P99_TARGET_US: f64 = 1000.0;
const TTFT_TARGET_US: f64 = 300.0;
/// Seconds of unrecorded load before each measured round, on the round's connections.
const ROUND_WARMUP_S: f64 = 1.0;
/// A load generator starting its requests later than this (p99) gets a note.
const START_LAG_NOTE_US: f64 = 200.0;
/// Other processes' share of one CPU above which a round gets a note.
const FOREIGN_LOAD_NOTE: f64 = 0.05;

pub struct AiSettings<'a> {
    pub ws: &'a Workspace,
    pub run_dir: &'a Path,
    /// Requests per second, both paths.
    pub rate: u64,
    pub duration: Duration,
    pub rounds: usize,
    pub warmup: Duration,
    /// The host and controller run here, the mock and the load generator on `load_cpu`.
    pub proxy_cpu: Option<usize>,
    pub load_cpu: Option<usize>,
    /// nginx, for the reference path.
    pub nginx: &'a Path,
}

/// The paths a request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Direct,
    Nginx,
    Gateway,
}

/// One `nantian-ai-load` run, as it reported it.
#[derive(Debug, Clone, Default, PartialEq)]
struct LoadRun {
    scheduled: u64,
    ok: u64,
    errors: u64,
    error_samples: Vec<String>,
    connections_opened: u64,
    start_lag: Quantiles,
    ttft: Quantiles,
    total: Quantiles,
    text: String,
}

/// Microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Quantiles {
    p50: f64,
    p99: f64,
}

/// One measured round of one path.
#[derive(Debug, Clone, Default, PartialEq)]
struct Round {
    load: LoadRun,
    /// The proxy's CPU time per request and its share of a CPU (nginx and gateway rounds).
    proxy_cpu_us: Option<f64>,
    proxy_busy: f64,
    /// Other processes' CPU time meanwhile, as a share of one CPU.
    foreign: f64,
}

/// Every round of both paths, in round order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AiPath {
    rate: u64,
    duration: Duration,
    direct: Vec<Round>,
    /// The reference path: nginx in front of the mock.
    nginx: Vec<Round>,
    gateway: Vec<Round>,
    build: &'static str,
}

pub fn measure(s: &AiSettings<'_>) -> Result<AiPath> {
    let mut bench = Running::start(s)?;
    // Honest checks: the mock answers its own API with the expected text, and the gateway
    // answers OpenAI chunks with the same text, having sent the mock Anthropic requests
    // with the backend's key.
    let direct = bench
        .load(Via::Direct, 20, 1.0, 0.0)
        .context("direct check")?;
    check_all_good(&direct).context("direct check")?;
    clear_mock_log(bench.mock_addr)?;
    let through = bench
        .load(Via::Gateway, 20, 1.0, 0.0)
        .context("gateway check")?;
    check_all_good(&through).context("gateway check")?;
    check_mock_saw(bench.mock_addr, through.ok)?;
    let nginx = bench
        .load(Via::Nginx, 20, 1.0, 0.0)
        .context("nginx check")?;
    check_all_good(&nginx).context("nginx check")?;
    let paths = [Via::Direct, Via::Nginx, Via::Gateway];

    for &via in &paths {
        bench
            .load(via, s.rate, 1.0, s.warmup.as_secs_f64())
            .context("warm-up")?;
    }
    let mut result = AiPath {
        rate: s.rate,
        duration: s.duration,
        build: bench.build,
        ..AiPath::default()
    };
    for round in 1..=s.rounds {
        let mut order = paths;
        if round % 2 == 0 {
            order.reverse();
        }
        for via in order {
            eprintln!("bench: AI path round {round}/{}: {via:?} …", s.rounds);
            let measured = bench.round(via)?;
            match via {
                Via::Direct => result.direct.push(measured),
                Via::Nginx => result.nginx.push(measured),
                Via::Gateway => result.gateway.push(measured),
            }
        }
        // The mock logs every request; keep its memory flat.
        clear_mock_log(bench.mock_addr)?;
    }
    Ok(result)
}

/// The mock and the gateway in front of it, checked and ready. Dropping it stops them.
struct Running<'a> {
    s: &'a AiSettings<'a>,
    build: &'static str,
    load_bin: PathBuf,
    mock: Process,
    mock_addr: SocketAddr,
    gateway: Process,
    gateway_addr: SocketAddr,
    /// The host processes under the controller: what is measured.
    host_pids: Vec<u32>,
    /// The reference proxy, its address and its processes (master and worker).
    nginx: (Process, SocketAddr, Vec<u32>),
}

impl<'a> Running<'a> {
    fn start(s: &'a AiSettings<'a>) -> Result<Self> {
        let load_bin = s.ws.bin("nantian-ai-load");
        let mock_bin = s.ws.bin("nantian-ai-mock");
        let (build, controller, host) = super::gateway_binaries(s.ws)?;
        for binary in [&load_bin, &mock_bin, &controller, &host] {
            if !binary.is_file() {
                bail!("{} is not built", binary.display());
            }
        }
        let mock_addr: SocketAddr = MOCK_ADDR.parse()?;
        ensure_free(mock_addr)?;
        let mut command = Command::new(&mock_bin);
        command.args(["--listen", MOCK_ADDR, "--provider", "anthropic"]);
        command.args(["--api-key", MOCK_KEY, "--name", MOCK_NAME]);
        let mut mock = Process::spawn("ai-mock", &mut command, s.load_cpu, s.run_dir)?;
        wait_for_mock(mock_addr, &mut mock).context("starting nantian-ai-mock")?;
        let (gateway, gateway_addr) = start_gateway(s, &controller, &host, mock_addr)?;
        let host_pids = host_processes(&gateway)?;
        let nginx = start_nginx(s, s.nginx, mock_addr)?;
        Ok(Self {
            s,
            build,
            load_bin,
            mock,
            mock_addr,
            gateway,
            gateway_addr,
            host_pids,
            nginx,
        })
    }

    /// `nantian-ai-load` in `via`'s API against its address, pinned with the mock.
    fn load(&self, via: Via, rate: u64, seconds: f64, warmup: f64) -> Result<LoadRun> {
        let (api, addr, key) = match via {
            Via::Direct => ("anthropic", self.mock_addr, MOCK_KEY),
            Via::Nginx => ("anthropic", self.nginx.1, MOCK_KEY),
            Via::Gateway => ("openai", self.gateway_addr, CLIENT_KEY),
        };
        let mut command = Command::new(&self.load_bin);
        command
            .args(["--api", api, "--origin", &format!("http://{addr}")])
            .args(["--model", MODEL, "--prompt", PROMPT])
            .args(["--expect", &expected_text(), "--api-key", key])
            .arg(format!("--rate={rate}"))
            .arg(format!("--duration={seconds}"))
            .arg(format!("--warmup={warmup}"));
        let output = pinned(&command, self.s.load_cpu)
            .output()
            .with_context(|| format!("running {}", self.load_bin.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "nantian-ai-load failed ({}): {stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse_load(&stdout).with_context(|| format!("reading nantian-ai-load's output: {stdout}"))
    }

    /// One measured round of `via`, with the host's CPU time and everyone else's.
    fn round(&mut self, via: Via) -> Result<Round> {
        let s = self.s;
        let hz = procfs::clock_ticks_per_second() as f64;
        // Everything of ours: the mock, the controller and its host, the load generator
        // (reaped when it exits); the rest of the machine's busy time is foreign.
        let mut ours = procfs::tree(self.mock.pid());
        ours.extend(procfs::tree(self.gateway.pid()));
        let proxy_pids = match via {
            Via::Nginx => self.nginx.2.clone(),
            Via::Gateway => self.host_pids.clone(),
            Via::Direct => Vec::new(),
        };
        ours.extend(&self.nginx.2);
        let busy_before = procfs::system_busy_ticks();
        let ours_before = procfs::cpu_ticks(&ours) + procfs::reaped_children_ticks();
        let proxy_before = procfs::cpu_ticks(&proxy_pids);
        let started = std::time::Instant::now();
        let load = self.load(via, s.rate, s.duration.as_secs_f64(), ROUND_WARMUP_S)?;
        let elapsed = started.elapsed().as_secs_f64().max(1e-3);
        let proxy_ticks = procfs::cpu_ticks(&proxy_pids).saturating_sub(proxy_before);
        let ours_ticks = (procfs::cpu_ticks(&ours) + procfs::reaped_children_ticks())
            .saturating_sub(ours_before);
        let foreign_ticks = procfs::system_busy_ticks()
            .saturating_sub(busy_before)
            .saturating_sub(ours_ticks);
        self.mock.check_running()?;
        self.gateway.check_running()?;
        self.nginx.0.check_running()?;
        if load.ok == 0 {
            bail!("{via:?}: no request succeeded: {:?}", load.error_samples);
        }
        // The proxy's CPU over the round's warm-up and measured phase, per request.
        let proxy_cpu_us = (!proxy_pids.is_empty()).then(|| {
            let requests =
                load.scheduled as f64 * (1.0 + ROUND_WARMUP_S / s.duration.as_secs_f64());
            proxy_ticks as f64 / hz * 1e6 / requests
        });
        Ok(Round {
            load,
            proxy_cpu_us,
            proxy_busy: proxy_ticks as f64 / hz / elapsed,
            foreign: foreign_ticks as f64 / hz / elapsed,
        })
    }
}

/// The standalone controller on `bench/ai.yaml.template` with the built-in filters; it
/// starts one host with one worker, pinned with it to the proxy CPU.
fn start_gateway(
    s: &AiSettings<'_>,
    controller: &Path,
    host: &Path,
    mock: SocketAddr,
) -> Result<(Process, SocketAddr)> {
    let addr = SocketAddr::new(GATEWAY_ADDRESS.parse()?, GATEWAY_PORT);
    ensure_free(addr)?;
    let dir = s.run_dir.join("nantian-ai");
    let (filter_dir, config_dir) = (dir.join("filters"), dir.join("config"));
    std::fs::create_dir_all(&filter_dir)?;
    std::fs::create_dir_all(&config_dir)?;
    for (krate, file) in crate::BUILTIN_FILTERS {
        let built =
            s.ws.wasm_out_dir()
                .join(format!("{}.wasm", krate.replace('-', "_")));
        if !built.is_file() {
            bail!(
                "{} is not built (cargo xtask build-filters)",
                built.display()
            );
        }
        std::fs::copy(&built, filter_dir.join(file))?;
    }
    let template = s.ws.root.join("bench/ai.yaml.template");
    let template = std::fs::read_to_string(&template)
        .with_context(|| format!("reading {}", template.display()))?;
    let config = fill(
        &template,
        &[
            ("GATEWAY_ADDRESS", GATEWAY_ADDRESS),
            ("GATEWAY_PORT", &GATEWAY_PORT.to_string()),
            ("MOCK_ENDPOINT", &format!("http://{mock}")),
            ("MODEL", MODEL),
            ("MOCK_KEY", MOCK_KEY),
        ],
    );
    std::fs::write(config_dir.join("ai.yaml"), config)?;
    let admin = free_loopback_addr()?;
    let mut command = Command::new(controller);
    command
        .arg("standalone")
        .arg("--config-dir")
        .arg(&config_dir)
        .arg("--admin-addr")
        .arg(admin.to_string())
        .arg("--xds-addr")
        .arg(free_loopback_addr()?.to_string())
        .arg("--filter-dir")
        .arg(&filter_dir)
        .arg("--host-bin")
        .arg(host)
        .arg("--host-workers")
        .arg("1")
        .arg("--cache-dir")
        .arg(s.run_dir.join("nantian-cache"));
    let mut controller = Process::spawn("nantian-ai", &mut command, s.proxy_cpu, s.run_dir)?;
    http::wait_for(
        admin,
        "/readyz",
        Duration::from_secs(60),
        |answer| answer.status == 200,
        || controller.check_running(),
    )
    .context("waiting for the controller's /readyz")?;
    // Ready once the route answers: an unknown model gets the AIService's own 503 (or the
    // adapter's error), never the listener's 404 for a missing route.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        controller.check_running()?;
        match http::get(addr, "/v1/models") {
            Ok(answer) if answer.status == 200 && answer.body.contains(MODEL) => break,
            Ok(_) | Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(answer) => bail!(
                "GET /v1/models through the gateway: HTTP {} {}",
                answer.status,
                answer.body.trim()
            ),
            Err(err) => return Err(err.context("the gateway does not answer")),
        }
    }
    Ok((controller, addr))
}

/// nginx (one worker, pinned to the proxy CPU) relaying the mock's streams as they come
/// (`proxy_buffering off`), with keep-alive to it as to the gateway.
fn start_nginx(
    s: &AiSettings<'_>,
    nginx: &Path,
    mock: SocketAddr,
) -> Result<(Process, SocketAddr, Vec<u32>)> {
    let addr: SocketAddr = NGINX_ADDR.parse()?;
    ensure_free(addr)?;
    let dir = s.run_dir.join("nginx-ai");
    std::fs::create_dir_all(&dir)?;
    let site = NginxSite {
        listen: NGINX_ADDR,
        tls: "",
        backend: mock,
        location_extra: "            proxy_buffering off;",
    };
    let mut command = nginx_command(&s.ws.root, nginx, &dir, &site)?;
    let mut process = Process::spawn("nginx-ai", &mut command, s.proxy_cpu, s.run_dir)?;
    wait_for_mock(addr, &mut process).context("starting nginx in front of the mock")?;
    let pids = procfs::tree(process.pid());
    Ok((process, addr, pids))
}

/// Waits until the mock answers its `/_mock/held` at `addr` (itself, or through a proxy).
fn wait_for_mock(addr: SocketAddr, process: &mut Process) -> Result<()> {
    http::wait_for(
        addr,
        "/_mock/held",
        Duration::from_secs(10),
        |answer| answer.status == 200,
        || process.check_running(),
    )
    .map(drop)
}

/// The host processes under the controller: what is measured.
fn host_processes(controller: &Process) -> Result<Vec<u32>> {
    let hosts: Vec<u32> = procfs::descendants(controller.pid())
        .into_iter()
        .filter(|pid| procfs::comm(*pid).as_deref() == Some("nantian-host"))
        .collect();
    if hosts.is_empty() {
        bail!("the controller is ready but no nantian-host process runs under it");
    }
    Ok(hosts.iter().flat_map(|pid| procfs::tree(*pid)).collect())
}

/// What the mock streams for the bench's prompt.
fn expected_text() -> String {
    format!("{MOCK_NAME} (anthropic) heard: {PROMPT}")
}

fn parse_load(text: &str) -> Result<LoadRun> {
    let value: Value = serde_json::from_str(text.trim())?;
    let count = |key: &str| value[key].as_u64().with_context(|| format!("no {key}"));
    let quantiles = |key: &str| -> Quantiles {
        let q = &value[key];
        // `null`: failed requests (infinitely slow) reach this percentile.
        let at = |p: &str| q[p].as_f64().unwrap_or(f64::INFINITY);
        Quantiles {
            p50: at("p50"),
            p99: at("p99"),
        }
    };
    Ok(LoadRun {
        scheduled: count("scheduled")?,
        ok: count("ok")?,
        errors: count("errors")?,
        error_samples: value["error_samples"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        connections_opened: count("connections_opened")?,
        start_lag: quantiles("start_lag_us"),
        ttft: quantiles("ttft_us"),
        total: quantiles("total_us"),
        text: value["sample"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

fn check_all_good(run: &LoadRun) -> Result<()> {
    if run.errors > 0 || run.ok != run.scheduled || run.ok == 0 {
        bail!(
            "{} of {} requests answered well: {:?}",
            run.ok,
            run.scheduled,
            run.error_samples
        );
    }
    if run.text != expected_text() {
        bail!("the answer streamed {:?}", run.text);
    }
    Ok(())
}

/// The mock's request log must hold `count` Anthropic streaming requests, each with the
/// backend's key and none with the client's.
fn check_mock_saw(mock: SocketAddr, count: u64) -> Result<()> {
    let answer = http::get(mock, "/_mock/requests")?;
    let log: Vec<Value> = serde_json::from_str(&answer.body).context("/_mock/requests")?;
    if log.len() as u64 != count {
        bail!(
            "{count} requests through the gateway, the mock saw {}",
            log.len()
        );
    }
    for request in &log {
        let headers = &request["headers"];
        let ok = request["method"] == "POST"
            && request["path"] == "/v1/messages"
            && headers["x-api-key"] == MOCK_KEY
            && headers.get("anthropic-version").is_some()
            && request["body"]["stream"] == true
            && request["body"]["model"] == MODEL
            && !headers.to_string().contains(CLIENT_KEY);
        if !ok {
            bail!("the gateway sent the mock an unexpected request: {request}");
        }
    }
    Ok(())
}

fn clear_mock_log(mock: SocketAddr) -> Result<()> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&mock, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "DELETE /_mock/requests HTTP/1.1\r\nHost: mock\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if !response.starts_with("HTTP/1.1 200") {
        bail!("DELETE /_mock/requests: {response}");
    }
    Ok(())
}

/// What makes a path's figures less clean, over all its rounds.
fn notes(rounds: &[Round]) -> Vec<String> {
    let mut notes = Vec::new();
    let cpu: Vec<f64> = rounds.iter().filter_map(|r| r.proxy_cpu_us).collect();
    if !cpu.is_empty() {
        let busy = rounds.iter().map(|r| r.proxy_busy).fold(0.0, f64::max);
        notes.push(format!(
            "proxy CPU {}/request (up to {:.0}% of its CPU)",
            us(median(cpu)),
            busy * 100.0
        ));
    }
    let (failed, scheduled) = rounds.iter().fold((0, 0), |(f, n), r| {
        (f + r.load.errors, n + r.load.scheduled)
    });
    if failed > 0 {
        let first = rounds.iter().find_map(|r| r.load.error_samples.first());
        notes.push(format!(
            "{failed} of {scheduled} requests failed, counted as infinitely slow (first: {})",
            first.map_or("", String::as_str)
        ));
    }
    let opened: u64 = rounds.iter().map(|r| r.load.connections_opened).sum();
    if opened > 0 {
        notes.push(format!("{opened} new client connections while measuring"));
    }
    let lag = rounds
        .iter()
        .map(|r| r.load.start_lag.p99)
        .fold(0.0, f64::max);
    if lag > START_LAG_NOTE_US {
        notes.push(format!("requests started up to {} late (p99)", us(lag)));
    }
    let foreign = rounds.iter().map(|r| r.foreign).fold(0.0, f64::max);
    if foreign >= FOREIGN_LOAD_NOTE {
        notes.push(format!(
            "other processes used up to {:.0}% of a CPU meanwhile",
            foreign * 100.0
        ));
    }
    notes
}

fn free_loopback_addr() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A figure of a load run, in microseconds.
type Figure = fn(&LoadRun) -> f64;

/// The figures of the table, with their labels.
const FIGURES: [(&str, Figure); 4] = [
    ("total p50", |r| r.total.p50),
    ("total p99", |r| r.total.p99),
    ("TTFT p50", |r| r.ttft.p50),
    ("TTFT p99", |r| r.ttft.p99),
];

impl AiPath {
    /// A figure's median over the rounds of one path.
    fn median_of(rounds: &[Round], figure: Figure) -> f64 {
        median(rounds.iter().map(|r| figure(&r.load)).collect())
    }

    /// What the gateway adds to a figure, round by round, and their median.
    fn added(&self, figure: Figure) -> (f64, Vec<f64>) {
        Self::added_by(&self.gateway, &self.direct, figure)
    }

    /// What a proxy's rounds add to the direct ones', round by round, and their median.
    fn added_by(proxy: &[Round], direct: &[Round], figure: Figure) -> (f64, Vec<f64>) {
        let per_round: Vec<f64> = proxy
            .iter()
            .zip(direct)
            .map(|(g, d)| figure(&g.load) - figure(&d.load))
            .collect();
        (median(per_round.clone()), per_round)
    }

    /// The Markdown block: the table, the per-round differences and the verdicts.
    pub fn markdown(&self) -> String {
        let requests = self.direct.first().map_or(0, |r| r.load.scheduled);
        let mut out = format!(
            "{} req/s for {} s per path per round ({requests} requests), {} rounds alternating \
             between the paths (each figure the median round), after warm-up; each answer \
             streams {} text deltas; nantian-host and nantian-controller of the `{}` build.\n\n",
            self.rate,
            self.duration.as_secs(),
            self.direct.len(),
            expected_text().split_whitespace().count(),
            self.build
        );
        out.push_str("| Path | total p50 | total p99 | TTFT p50 | TTFT p99 | Notes |\n");
        out.push_str("|---|---:|---:|---:|---:|---|\n");
        let mut paths = vec![("direct: Anthropic client → mock", &self.direct)];
        if !self.nginx.is_empty() {
            paths.push((
                "reference: Anthropic client → nginx → mock (no translation)",
                &self.nginx,
            ));
        }
        paths.push((
            "gateway: OpenAI client → nantian-host → Anthropic mock",
            &self.gateway,
        ));
        for (label, rounds) in paths {
            let notes = notes(rounds);
            let cells: Vec<String> = FIGURES
                .iter()
                .map(|(_, figure)| us(Self::median_of(rounds, *figure)))
                .collect();
            out.push_str(&format!(
                "| {label} | {} | {} |\n",
                cells.join(" | "),
                notes.join("; ").replace('|', "/")
            ));
        }
        let added: Vec<String> = FIGURES
            .iter()
            .map(|(_, figure)| signed_us(self.added(*figure).0))
            .collect();
        if !self.nginx.is_empty() {
            let by_nginx: Vec<String> = FIGURES
                .iter()
                .map(|(_, figure)| signed_us(Self::added_by(&self.nginx, &self.direct, *figure).0))
                .collect();
            out.push_str(&format!(
                "| added by nginx (median of per-round differences) | {} | |\n",
                by_nginx.join(" | ")
            ));
        }
        out.push_str(&format!(
            "| **added by the gateway** (median of per-round differences) | {} | |\n\n",
            added.join(" | ")
        ));
        for (label, figure) in FIGURES {
            let rounds: Vec<String> = self.added(figure).1.into_iter().map(signed_us).collect();
            out.push_str(&format!(
                "- {label} added, per round: {}\n",
                rounds.join(" / ")
            ));
        }
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let p99 = self.added(FIGURES[1].1).0;
        let ttft50 = self.added(FIGURES[2].1).0;
        let ttft99 = self.added(FIGURES[3].1).0;
        out.push_str(&format!(
            "- target p99 added < 1 ms: {} — {}\n",
            signed_us(p99),
            verdict(p99 < P99_TARGET_US)
        ));
        out.push_str(&format!(
            "- target TTFT added < 0.3 ms: p50 {} — {}; p99 {} — {}\n",
            signed_us(ttft50),
            verdict(ttft50 < TTFT_TARGET_US),
            signed_us(ttft99),
            verdict(ttft99 < TTFT_TARGET_US)
        ));
        out
    }
}

fn us(value: f64) -> String {
    if !value.is_finite() {
        "failed".to_owned()
    } else if value.abs() < 1000.0 {
        format!("{value:.0} µs")
    } else {
        format!("{:.2} ms", value / 1000.0)
    }
}

fn signed_us(value: f64) -> String {
    if !value.is_finite() {
        return us(value);
    }
    let sign = if value < 0.0 { "−" } else { "+" };
    format!("{sign}{}", us(value.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOAD: &str = r#"{"api":"openai","rate":200.0,"duration_s":5.0,"elapsed_s":5.01,
        "scheduled":1000,"ok":999,"errors":1,"error_samples":["HTTP 503: no"],
        "connections_opened_in_warmup":2,"connections_opened":0,
        "start_lag_us":{"p50":60.0,"p90":80.0,"p99":250.0,"max":900.0},
        "ttft_us":{"p50":700.0,"p90":800.0,"p99":1500.0,"max":3000.0},
        "total_us":{"p50":1200.0,"p90":1400.0,"p99":2500.0,"max":5000.0},
        "sample":{"text":"t","events":31,"content_events":28}}"#;

    fn round(total_p99: f64, ttft_p50: f64) -> Round {
        let mut load = parse_load(LOAD).unwrap();
        load.total.p99 = total_p99;
        load.ttft.p50 = ttft_p50;
        Round {
            load,
            ..Round::default()
        }
    }

    #[test]
    fn reads_the_load_report() {
        let run = parse_load(LOAD).unwrap();
        assert_eq!((run.scheduled, run.ok, run.errors), (1000, 999, 1));
        assert_eq!(run.total.p99, 2500.0);
        assert_eq!(run.ttft.p50, 700.0);
        assert_eq!(run.text, "t");
        let rounds = [Round {
            load: run.clone(),
            proxy_cpu_us: Some(2400.0),
            proxy_busy: 0.5,
            foreign: 0.3,
        }];
        let notes = notes(&rounds);
        assert_eq!(notes[0], "proxy CPU 2.40 ms/request (up to 50% of its CPU)");
        assert!(
            notes[1].starts_with("1 of 1000 requests failed"),
            "{notes:?}"
        );
        assert!(notes[2].contains("250 µs late"), "{notes:?}");
        assert!(notes[3].contains("up to 30% of a CPU"), "{notes:?}");
        assert!(check_all_good(&run).is_err());
    }

    #[test]
    fn added_latency_pairs_the_rounds() {
        let path = AiPath {
            rate: 200,
            duration: Duration::from_secs(5),
            direct: vec![
                round(2000.0, 700.0),
                round(1000.0, 650.0),
                round(1500.0, 600.0),
            ],
            nginx: vec![
                round(2100.0, 750.0),
                round(1050.0, 700.0),
                round(1700.0, 620.0),
            ],
            gateway: vec![
                round(2400.0, 800.0),
                round(1300.0, 700.0),
                round(1600.0, 900.0),
            ],
            build: "dist",
        };
        let text = path.markdown();
        // total p99 differences 400, 300, 100: the median is 300.
        assert!(
            text.contains("total p99 added, per round: +400 µs / +300 µs / +100 µs"),
            "{text}"
        );
        assert!(
            text.contains("target p99 added < 1 ms: +300 µs — met"),
            "{text}"
        );
        // TTFT p50 differences 100, 50, 300: the median is 100.
        assert!(
            text.contains("TTFT added < 0.3 ms: p50 +100 µs — met"),
            "{text}"
        );
        assert!(
            text.contains("| direct: Anthropic client → mock | 1.20 ms | 1.50 ms | 650 µs |"),
            "{text}"
        );
        // nginx: total p50 +0 each round; total p99 +100, +50, +200; TTFT p50 +50, +50, +20.
        assert!(
            text.contains(
                "| added by nginx (median of per-round differences) | +0 µs | +100 µs | +50 µs |"
            ),
            "{text}"
        );
        assert_eq!(signed_us(-1234.0), "−1.23 ms");
        assert_eq!(signed_us(f64::INFINITY), "failed");
    }

    #[test]
    fn the_template_has_every_placeholder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let text = std::fs::read_to_string(root.join("bench/ai.yaml.template")).unwrap();
        let keys = [
            "GATEWAY_ADDRESS",
            "GATEWAY_PORT",
            "MOCK_ENDPOINT",
            "MODEL",
            "MOCK_KEY",
        ];
        for key in keys {
            assert!(text.contains(&format!("{{{{{key}}}}}")), "lacks {key}");
        }
        let values: Vec<(&str, &str)> = keys.iter().map(|k| (*k, "v")).collect();
        assert!(!fill(&text, &values).contains("{{"));
    }
}
