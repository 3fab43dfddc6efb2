//! Runs `nantian-ai-mock` as a child process (through the echo backend's
//! [`EchoProcess`], which reads the same `listening on <addr>` line), and talks to its
//! `/_mock/` control endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::Provider;
use super::request_log::LoggedRequest;
use crate::echo::EchoProcess;

/// The name a mock goes by without `--name`.
pub const DEFAULT_NAME: &str = "mock";

/// A running mock provider; killed when dropped.
pub struct AiMockProcess {
    process: EchoProcess,
    pub provider: Provider,
    /// What it calls itself in replies (`--name`).
    pub name: String,
}

impl AiMockProcess {
    /// Starts the `nantian-ai-mock` beside the test binaries (see [`crate::harness::bin`])
    /// for `provider`, with `extra` arguments (`--api-key`, `--name`, `--listen`; without
    /// `--listen` it takes a free port on 127.0.0.1).
    pub fn start<S: AsRef<str>>(provider: Provider, extra: &[S]) -> anyhow::Result<Self> {
        Self::spawn(&crate::harness::bin("nantian-ai-mock"), provider, extra)
    }

    /// Starts `binary` (in tests of this crate: `env!("CARGO_BIN_EXE_nantian-ai-mock")`).
    pub fn spawn<S: AsRef<str>>(
        binary: &Path,
        provider: Provider,
        extra: &[S],
    ) -> anyhow::Result<Self> {
        let extra: Vec<&str> = extra.iter().map(AsRef::as_ref).collect();
        let mut command = Command::new(binary);
        command.args(["--provider", provider.as_str()]);
        if !extra.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command.args(&extra);
        let name = extra
            .iter()
            .position(|a| *a == "--name")
            .and_then(|i| extra.get(i + 1))
            .map_or(DEFAULT_NAME, |name| name)
            .to_string();
        let process = EchoProcess::spawn_command(command, 1)
            .with_context(|| format!("starting nantian-ai-mock --provider {provider}"))?;
        Ok(Self {
            process,
            provider,
            name,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    /// `http://<addr>`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The base URL the provider's SDK takes: `http://<addr>/v1` for OpenAI (its SDK
    /// appends `/chat/completions`), the origin for Anthropic and Ollama.
    pub fn base_url(&self) -> String {
        match self.provider {
            Provider::Openai => format!("{}/v1", self.origin()),
            Provider::Anthropic | Provider::Ollama => self.origin(),
        }
    }

    /// `POST` here releases held streams (`--first-chunk-then-release`).
    pub fn release_url(&self) -> String {
        format!("{}/_mock/release", self.origin())
    }

    /// What the mock received so far (`GET /_mock/requests`).
    pub fn requests(&self) -> anyhow::Result<Vec<LoggedRequest>> {
        let body = self.control("GET", "requests")?;
        serde_json::from_slice(&body).context("parsing /_mock/requests")
    }

    /// Forgets the requests received so far (`DELETE /_mock/requests`).
    pub fn clear_requests(&self) -> anyhow::Result<()> {
        self.control("DELETE", "requests").map(drop)
    }

    /// Releases every held stream (`POST /_mock/release`): how many were held.
    pub fn release(&self) -> anyhow::Result<u64> {
        self.count("POST", "release", "released")
    }

    /// How many streams are held now (`GET /_mock/held`).
    pub fn held(&self) -> anyhow::Result<u64> {
        self.count("GET", "held", "held")
    }

    fn count(&self, method: &str, endpoint: &str, field: &str) -> anyhow::Result<u64> {
        let body: serde_json::Value = serde_json::from_slice(&self.control(method, endpoint)?)?;
        body[field]
            .as_u64()
            .with_context(|| format!("no {field} in {body}"))
    }

    fn control(&self, method: &str, endpoint: &str) -> anyhow::Result<Vec<u8>> {
        let (status, body) = http_call(self.addr(), method, &format!("/_mock/{endpoint}"))?;
        if status != 200 {
            bail!(
                "{method} /_mock/{endpoint}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// A blocking HTTP/1.1 request without a body (`Connection: close`): the status and body.
/// Enough for the control endpoints, which answer with a `Content-Length`.
pub fn http_call(addr: SocketAddr, method: &str, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the response head")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut body = response[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            let length: usize = value.trim().parse()?;
            body.truncate(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("unexpected chunked response from {method} {path}");
        }
    }
    Ok((status, body))
}
