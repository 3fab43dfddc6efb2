//! A real `redis-server` for tests: one process per [`RedisServer`], on a free loopback
//! port, without persistence (`--save '' --appendonly no`).
//!
//! Start each test with [`RedisServer::start_or_skip`] (or [`RedisServer::start_tls_or_skip`]
//! for a server that also speaks TLS): without `redis-server` on `PATH` (or at
//! `NANTIAN_REDIS_SERVER`) it skips the test loudly, except under `CI`, where it fails it
//! (`.ci/run` installs Redis). The server is killed when dropped, also when the test
//! panics; a test process killed by a signal leaves it running (loopback only, no data on
//! disk).
//!
//! The Wasm engine's tests (`host/wasm`) include this file by path, since `nantian-wasm`
//! cannot depend on this crate: it uses the standard library only.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting server may take to answer PING (a loaded 2-core machine).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `redis-server`, killed on drop.
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    tls: Option<Tls>,
    child: Option<Child>,
}

/// The TLS side of a server: its port, and the directory of its self-signed certificate
/// (removed on drop).
struct Tls {
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// A fresh server, or `None` after printing a SKIP line when `redis-server` is not
    /// installed. Under `CI` a missing binary fails the test instead; a server that does
    /// not start fails it always.
    pub fn start_or_skip(test: &str) -> Option<RedisServer> {
        let binary = binary_or_skip(test)?;
        Some(Self::start(binary, false).unwrap_or_else(|e| panic!("{test}: redis-server: {e}")))
    }

    /// [`RedisServer::start_or_skip`] serving TLS too, on a second port
    /// ([`RedisServer::tls_url`]), with a certificate for `localhost` that `openssl` signs
    /// itself.
    pub fn start_tls_or_skip(test: &str) -> Option<RedisServer> {
        let binary = binary_or_skip(test)?;
        Some(Self::start(binary, true).unwrap_or_else(|e| panic!("{test}: redis-server: {e}")))
    }

    /// Starts `binary` on a free port (and another for TLS), retrying with other ports if
    /// one picked was taken meanwhile.
    pub fn start(binary: PathBuf, tls: bool) -> io::Result<RedisServer> {
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            let tls = if tls {
                Some(Tls::new(free_port()?)?)
            } else {
                None
            };
            let mut server = RedisServer {
                binary: binary.clone(),
                port,
                tls,
                child: None,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no attempt made")))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://localhost:<TLS port>` of a server started with TLS. A client checking
    /// the certificate against the system's roots refuses it; `#insecure` skips the check.
    pub fn tls_url(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        Some(format!("rediss://localhost:{}", tls.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server; connections to it are refused until [`RedisServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports, empty.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Freezes the server (SIGSTOP): connections open, but nothing is answered until
    /// [`RedisServer::resume`]. This is how a hung or overloaded server looks.
    pub fn pause(&self) -> io::Result<()> {
        self.signal("-STOP")
    }

    pub fn resume(&self) -> io::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> io::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| io::Error::other("the server is stopped"))?;
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()?;
        if !status.success() {
            return Err(io::Error::other(format!("kill {signal} failed: {status}")));
        }
        Ok(())
    }

    fn spawn(&mut self) -> io::Result<()> {
        let port = self.port.to_string();
        let mut command = Command::new(&self.binary);
        command
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--daemonize", "no", "--logfile", ""])
            .arg("--dir")
            .arg(std::env::temp_dir());
        if let Some(tls) = &self.tls {
            let (cert, key) = (tls.dir.join("cert.pem"), tls.dir.join("key.pem"));
            command
                .args([
                    "--tls-port",
                    &tls.port.to_string(),
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(&cert)
                .arg("--tls-key-file")
                .arg(&key)
                .arg("--tls-ca-cert-file")
                .arg(&cert);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if ping(self.port).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!(
                    "exited with {status} before answering on port {port}"
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "no answer on port {port} within {STARTUP_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused server would take SIGKILL anyway; resuming it first is tidier.
        let _ = self.resume();
        self.stop();
    }
}

impl Tls {
    /// A key and a self-signed certificate for `localhost` and 127.0.0.1, valid a day.
    fn new(port: u16) -> io::Result<Tls> {
        let dir =
            std::env::temp_dir().join(format!("nantian-redis-tls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| io::Error::other(format!("openssl: {e}")))?;
        if !status.success() {
            return Err(io::Error::other(format!("openssl req failed: {status}")));
        }
        Ok(Tls { port, dir })
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `NANTIAN_REDIS_SERVER`, else `redis-server` on `PATH`; `None` after printing a SKIP line
/// (or, under `CI`, a panic) when there is none.
fn binary_or_skip(test: &str) -> Option<PathBuf> {
    let found = match std::env::var_os("NANTIAN_REDIS_SERVER") {
        Some(path) => Some(PathBuf::from(path)),
        None => std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("redis-server"))
                .find(|candidate| candidate.is_file())
        }),
    };
    if found.is_none() {
        let message = "redis-server is not installed (apt-get install redis-server, or point \
                       NANTIAN_REDIS_SERVER at one)";
        if std::env::var_os("CI").is_some() {
            panic!("{test}: {message} (CI is set: Redis tests must not be skipped)");
        }
        // Straight to fd 2, past libtest's capture, so the skip shows in a normal run.
        let _ = writeln!(io::stderr().lock(), "\n!!! SKIP {test}: {message}\n");
    }
    found
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// One PING in the inline protocol, answered `+PONG`.
fn ping(port: u16) -> io::Result<()> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply)?;
    if &reply != b"+PONG\r\n" {
        return Err(io::Error::other(format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(&reply)
        )));
    }
    Ok(())
}
