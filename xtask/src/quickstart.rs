//! `cargo xtask quickstart`: the standalone gateway on `examples/quickstart/`, with demo
//! backends, until Ctrl-C.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::workspace::Workspace;

const CONTROLLER_ADMIN: &str = "127.0.0.1:19000";
const GATEWAY: &str = "127.0.10.1:8080";

/// Kills the child when dropped, so a failed start leaves nothing behind.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

pub fn run(ws: &Workspace) -> Result<()> {
    let config_dir = ws.root.join("examples/quickstart");
    let _v1 = Guard(
        Command::new(ws.bin("nantian-echo"))
            .args([
                "--listen",
                "127.0.20.1:3000",
                "--pod",
                "demo-v1",
                "--namespace",
                "default",
            ])
            .stdout(Stdio::null())
            .spawn()?,
    );
    let _v2 = Guard(
        Command::new(ws.bin("nantian-echo"))
            .args([
                "--listen",
                "127.0.20.2:3000",
                "--pod",
                "demo-v2",
                "--namespace",
                "default",
            ])
            .stdout(Stdio::null())
            .spawn()?,
    );
    let controller = Guard(
        Command::new(ws.bin("nantian-controller"))
            .arg("standalone")
            .arg("--config-dir")
            .arg(&config_dir)
            .args(["--admin-addr", CONTROLLER_ADMIN])
            .spawn()?,
    );
    wait_ready(CONTROLLER_ADMIN, Duration::from_secs(30))?;
    println!(
        "\nNantian Gateway is running (standalone, config: {dir}).\n\
         Try:\n\
         \n  curl -s -H 'Host: demo.example.com' http://{GATEWAY}/           # 90% demo-v1, 10% demo-v2; header added by Wasm\
         \n  curl -s -H 'Host: demo.example.com' http://{GATEWAY}/v2/hello   # always demo-v2\
         \n  curl -s -o /dev/null -w '%{{http_code}}\\n' http://{GATEWAY}/    # 404: no route for this host\
         \n  curl -s http://{CONTROLLER_ADMIN}/api/v1/status                  # Gateway API status\
         \n  curl -s http://127.0.10.1:15000/metrics                          # the host's metrics\
         \n\nEdit files in {dir} and the change is live at once. Ctrl-C stops everything.",
        dir = config_dir.display()
    );
    let mut controller = controller;
    let status = controller.0.wait()?;
    if !status.success() {
        bail!("controller exited: {status}");
    }
    Ok(())
}

/// Waits until the controller's admin API at `admin` says every host has its config.
pub fn wait_ready(admin: &str, limit: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if http_status(admin, "/readyz") == Some(200) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("the gateway did not become ready within {limit:?}; see the log above")
}

/// A one-shot HTTP/1.1 GET with std only: the status code, if any answer came.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}
