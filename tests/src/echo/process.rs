//! Runs `nantian-echo` as a child process and waits until it listens.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::server::{ListenerMode, ListenerSpec};

/// A running echo backend; killed when dropped.
pub struct EchoProcess {
    child: Child,
    /// The bound listeners, in the order they were given on the command line.
    pub listeners: Vec<ListenerSpec>,
    /// Stdout lines after the `listening on` ones (the request log, with
    /// `--log-requests`), read on a thread so the child never blocks on a full pipe.
    output: mpsc::Receiver<String>,
}

impl EchoProcess {
    /// Starts `binary` with `args` and reads its `listening on <addr>` lines, one for each
    /// `--listen`/`--h2c-listen`/`--https-listen` argument (port 0 is fine: the line has the
    /// real port).
    pub fn spawn<S: AsRef<str>>(binary: &Path, args: &[S]) -> anyhow::Result<Self> {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let expected = args
            .iter()
            .filter(|arg| matches!(**arg, "--listen" | "--h2c-listen" | "--https-listen"))
            .count();
        let mut command = Command::new(binary);
        command.args(&args);
        Self::spawn_command(command, expected)
    }

    /// Starts a prepared command (for extra environment variables, say) and waits for
    /// `expected_listeners` `listening on` lines.
    pub fn spawn_command(mut command: Command, expected_listeners: usize) -> anyhow::Result<Self> {
        let expected = expected_listeners;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {:?}", command.get_program()))?;
        let stdout = child.stdout.take().context("echo stdout")?;
        let (output_tx, output) = mpsc::channel();
        let mut process = Self {
            child,
            listeners: Vec::new(),
            output,
        };
        let mut lines = BufReader::new(stdout);
        while process.listeners.len() < expected {
            let mut line = String::new();
            if lines.read_line(&mut line)? == 0 {
                let status = process.child.wait()?;
                bail!("nantian-echo exited before listening ({status})");
            }
            if let Some(spec) = parse_listening_line(&line) {
                process.listeners.push(spec);
            }
        }
        std::thread::spawn(move || {
            for line in lines.split(b'\n') {
                let Ok(line) = line else { break };
                // Nobody listening is fine: keep draining anyway.
                let _ = output_tx.send(String::from_utf8_lossy(&line).into_owned());
            }
        });
        Ok(process)
    }

    /// The next line the process printed after its `listening on` lines, waiting up to
    /// `timeout`; `None` when none came (or stdout closed). Lines nobody reads are kept.
    pub fn next_output_line(&self, timeout: Duration) -> Option<String> {
        self.output.recv_timeout(timeout).ok()
    }

    /// The first listener that serves HTTP/1.1 and h2c.
    pub fn addr(&self) -> SocketAddr {
        self.listeners
            .iter()
            .find(|spec| spec.mode == ListenerMode::Mixed)
            .or(self.listeners.first())
            .map(|spec| spec.addr)
            .expect("an echo process always has a listener")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (up to 10 s) for the exit status.
    pub fn terminate(mut self) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed: {status}", self.child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("nantian-echo did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `listening on 127.0.0.1:3000`, `listening on 127.0.0.1:3001 (h2c only)` or
/// `listening on 127.0.0.1:8443 (https)`.
pub fn parse_listening_line(line: &str) -> Option<ListenerSpec> {
    let rest = line.trim().strip_prefix("listening on ")?;
    let mut words = rest.split_whitespace();
    let addr = words.next()?.parse().ok()?;
    let mode = match words.next() {
        Some("(h2c") => ListenerMode::H2cOnly,
        Some("(https)") => ListenerMode::Https,
        _ => ListenerMode::Mixed,
    };
    Some(ListenerSpec { addr, mode })
}

/// The line the binary prints for each bound listener.
pub fn listening_line(spec: &ListenerSpec) -> String {
    match spec.mode {
        ListenerMode::Mixed => format!("listening on {}", spec.addr),
        ListenerMode::H2cOnly => format!("listening on {} (h2c only)", spec.addr),
        ListenerMode::Https => format!("listening on {} (https)", spec.addr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_round_trip() {
        for mode in [
            ListenerMode::Mixed,
            ListenerMode::H2cOnly,
            ListenerMode::Https,
        ] {
            let spec = ListenerSpec {
                addr: "127.0.20.1:3000".parse().unwrap(),
                mode,
            };
            let parsed = parse_listening_line(&listening_line(&spec)).unwrap();
            assert_eq!((parsed.addr, parsed.mode), (spec.addr, spec.mode));
        }
        assert!(parse_listening_line("something else").is_none());
    }
}
