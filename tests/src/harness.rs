//! End-to-end harness: real `nantian-controller` (standalone), the `nantian-host` processes it
//! starts, and `nantian-echo` backends, all on loopback.
//!
//! Each [`Env`] owns a /24 of its own (127.0.N.0/24): Gateways at .1–.99, backends at
//! .100–.199, the controller's address pool (Gateways it allocates addresses to) at
//! .225–.238, the controller at .250. Tests in one binary therefore run in parallel without
//! sharing a port. Everything an Env started is in one process group, killed on drop.

mod echo_log;
pub mod tls;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

pub use echo_log::LogMark;

/// Subnets 127.0.100.0/24 upwards belong to e2e envs.
static NEXT_SUBNET: AtomicU8 = AtomicU8::new(100);

/// The second octet of every test address: 0 unless `NANTIAN_TEST_NET` says otherwise, so
/// two checkouts can run their end-to-end tests side by side on one machine (127.K.N.0/24).
fn test_net() -> u8 {
    static NET: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *NET.get_or_init(|| match std::env::var("NANTIAN_TEST_NET") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("NANTIAN_TEST_NET={v:?} is not an octet")),
        Err(_) => 0,
    })
}

/// The release target dir holding the binaries (tests run from `<target>/release/deps`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask test` (it builds every binary first)",
        p.display()
    );
    p
}

/// The echo backends' request logs, under the Env's directory. A subdirectory, because the
/// controller watches the directory itself (not recursively) and re-translates on any
/// change there: a log written beside the config would mean a translation per request.
const ECHO_LOG_DIR: &str = "echo-logs";
/// The certificate files of HTTPS echo pods, beside the logs for the same reason.
const ECHO_FILES_DIR: &str = "echo-files";
/// The port an echo pod with [`PodTls`] serves HTTPS on: echo-basic's `HTTPS_PORT`.
pub const ECHO_HTTPS_PORT: u16 = 8443;

/// What an echo pod serves HTTPS with, as PEM: the files echo-basic reads from
/// `TLS_SERVER_CERT`, `TLS_SERVER_PRIVKEY` and (to check client certificates)
/// `TLS_CLIENT_CACERTS`.
#[derive(Debug, Clone, PartialEq)]
pub struct PodTls {
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: Option<String>,
}

/// An echo process an [`Env`] started, for [`Env::stop_echo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoId(u32);

pub struct Env {
    pub subnet: u8,
    /// The controller's config directory; the echo logs are in its `echo-logs/`.
    pub dir: tempfile::TempDir,
    controller: Option<Child>,
    echoes: Vec<Child>,
    /// Process groups whose leader is gone but whose members (hosts) may still run.
    orphans: Vec<u32>,
}

/// What an echo backend saw.
#[derive(Debug, Deserialize)]
pub struct Echo {
    pub path: String,
    pub host: String,
    pub method: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub namespace: String,
    pub pod: String,
}

impl Echo {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first().map(String::as_str))
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn echo(&self) -> Echo {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not an echo reply ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Self {
        let subnet = NEXT_SUBNET.fetch_add(1, Ordering::SeqCst);
        assert!(subnet < 250, "too many e2e envs in one binary");
        let dir = tempfile::tempdir().expect("tempdir");
        // Made now, before any controller watches the directory.
        std::fs::create_dir(dir.path().join(ECHO_LOG_DIR)).expect("echo log dir");
        std::fs::create_dir(dir.path().join(ECHO_FILES_DIR)).expect("echo files dir");
        Self {
            subnet,
            dir,
            controller: None,
            echoes: Vec::new(),
            orphans: Vec::new(),
        }
    }

    /// The n-th Gateway address of this env (n in 1..100).
    pub fn gateway_ip(&self, n: u8) -> String {
        format!("127.{}.{}.{}", test_net(), self.subnet, n)
    }

    /// The n-th backend address of this env (n in 0..100).
    pub fn backend_ip(&self, n: u8) -> String {
        format!("127.{}.{}.{}", test_net(), self.subnet, 100 + n)
    }

    /// The block the controller allocates Gateway addresses from (`--address-pool`).
    pub fn address_pool(&self) -> String {
        format!("127.{}.{}.224/28", test_net(), self.subnet)
    }

    /// Whether `ip` is one the controller may have allocated from [`Env::address_pool`].
    pub fn in_address_pool(&self, ip: &str) -> bool {
        let prefix = format!("127.{}.{}.", test_net(), self.subnet);
        ip.strip_prefix(&prefix)
            .and_then(|last| last.parse::<u8>().ok())
            .is_some_and(|last| (225..=238).contains(&last))
    }

    pub fn controller_admin(&self) -> String {
        format!("127.{}.{}.250:19000", test_net(), self.subnet)
    }

    fn xds_addr(&self) -> String {
        format!("127.{}.{}.250:18000", test_net(), self.subnet)
    }

    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes (or replaces) a YAML file in the watched config directory, atomically.
    pub fn write(&self, file: &str, yaml: &str) {
        let tmp = self.dir.path().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(file)).unwrap();
    }

    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.dir.path().join(file)).unwrap();
    }

    /// Starts an echo backend on `listen` (`ip:port`), answering as `pod` in `namespace`.
    pub async fn start_echo_at(&mut self, listen: &str, pod: &str, namespace: &str) {
        self.spawn_echo(&[("--listen", listen.to_string())], pod, namespace)
            .await;
    }

    /// A port of this env's own (n in 0..10), for backends on a shared address such as
    /// [`machine_ip`].
    pub fn own_port(&self, n: u16) -> u16 {
        20000 + u16::from(test_net()) * 2600 + u16::from(self.subnet) * 10 + n
    }

    /// Starts an echo backend on `backend_ip(n):3000`, answering as `pod` in `namespace`.
    pub async fn start_echo(&mut self, n: u8, pod: &str, namespace: &str) {
        let listen = format!("{}:3000", self.backend_ip(n));
        self.spawn_echo(&[("--listen", listen)], pod, namespace)
            .await;
    }

    /// [`Env::start_echo`], also answering UDP datagrams on `backend_ip(n):3000` (see
    /// `echo::udp`).
    pub async fn start_echo_udp(&mut self, n: u8, pod: &str, namespace: &str) {
        let addr = format!("{}:3000", self.backend_ip(n));
        self.spawn_echo(
            &[("--listen", addr.clone()), ("--udp-listen", addr)],
            pod,
            namespace,
        )
        .await;
    }

    /// Starts an echo backend laid out like a pod of upstream's echo-basic: HTTP/1.1 (and
    /// h2c) on `backend_ip(n):3000`, h2c only on `backend_ip(n):3001`.
    pub async fn start_echo_pod(&mut self, n: u8, pod: &str, namespace: &str) {
        self.start_echo_pod_with_tls(n, pod, namespace, None).await;
    }

    /// [`Env::start_echo_pod`], serving HTTPS on `backend_ip(n):8443` too when given `tls`
    /// (written to files under the Env's directory for it), like echo-basic given a
    /// certificate.
    pub async fn start_echo_pod_with_tls(
        &mut self,
        n: u8,
        pod: &str,
        namespace: &str,
        tls: Option<&PodTls>,
    ) -> EchoId {
        let ip = self.backend_ip(n);
        let mut args = vec![
            ("--listen", format!("{ip}:3000")),
            ("--h2c-listen", format!("{ip}:3001")),
        ];
        if let Some(tls) = tls {
            args.push(("--https-listen", format!("{ip}:{ECHO_HTTPS_PORT}")));
            args.extend(self.echo_tls_files(namespace, pod, tls));
        }
        self.spawn_echo(&args, pod, namespace).await
    }

    /// Starts a pod of upstream's echo-basic run as its TCP test server (`TCP_ECHO_SERVER`,
    /// see `echo::tcp`): plain on `backend_ip(n):3000` and, given `tls`, over TLS on
    /// `backend_ip(n):8443`.
    pub async fn start_tcp_echo_pod(
        &mut self,
        n: u8,
        pod: &str,
        namespace: &str,
        tls: Option<&PodTls>,
    ) -> EchoId {
        let ip = self.backend_ip(n);
        let mut args = vec![("--tcp-listen", format!("{ip}:3000"))];
        if let Some(tls) = tls {
            args.push(("--tcp-tls-listen", format!("{ip}:{ECHO_HTTPS_PORT}")));
            args.extend(self.echo_tls_files(namespace, pod, tls));
        }
        self.spawn_echo(&args, pod, namespace).await
    }

    /// Writes `tls` to files of pod `namespace/pod`: the echo flags that name them.
    fn echo_tls_files(
        &self,
        namespace: &str,
        pod: &str,
        tls: &PodTls,
    ) -> Vec<(&'static str, String)> {
        let files = self.echo_files(namespace, pod);
        let file = |name: &str, contents: &str| {
            let path = files.join(name);
            std::fs::write(&path, contents).expect("write an echo TLS file");
            path.to_string_lossy().into_owned()
        };
        let mut args = vec![
            ("--tls-cert", file("crt", &tls.cert_pem)),
            ("--tls-key", file("key", &tls.key_pem)),
        ];
        if let Some(ca) = &tls.client_ca_pem {
            args.push(("--tls-client-ca", file("ca", ca)));
        }
        args
    }

    /// A directory of its own for pod `namespace/pod`'s files.
    fn echo_files(&self, namespace: &str, pod: &str) -> PathBuf {
        let dir = self
            .dir
            .path()
            .join(ECHO_FILES_DIR)
            .join(format!("{namespace}_{pod}"));
        std::fs::create_dir_all(&dir).expect("echo files dir");
        dir
    }

    /// Stops an echo process this Env started (and anything it started), waiting for it.
    pub fn stop_echo(&mut self, id: EchoId) {
        let Some(i) = self.echoes.iter().position(|c| c.id() == id.0) else {
            return;
        };
        let mut child = self.echoes.swap_remove(i);
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", id.0)])
            .status();
        let _ = child.wait();
    }

    /// Runs `nantian-echo` with `args` (flag, value) and waits until each listener accepts.
    /// Its request log goes to [`Env::echo_log_path`] (appended to, if the pod ran before).
    async fn spawn_echo(&mut self, args: &[(&str, String)], pod: &str, namespace: &str) -> EchoId {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.echo_log_path(namespace, pod))
            .expect("open the echo log");
        let mut command = Command::new(bin("nantian-echo"));
        for (flag, value) in args {
            command.args([*flag, value.as_str()]);
        }
        let child = command
            .args(["--pod", pod, "--namespace", namespace, "--log-requests"])
            .stdout(log)
            .process_group(0)
            .spawn()
            .expect("start nantian-echo");
        let id = EchoId(child.id());
        self.echoes.push(child);
        let listeners = args.iter().filter(|(flag, _)| flag.ends_with("listen"));
        for (_, addr) in listeners {
            wait_for(
                || async { tokio::net::TcpStream::connect(addr).await.is_ok() },
                "echo backend",
            )
            .await;
        }
        id
    }

    /// The stdout of echo pod `namespace/pod`: its `listening on` lines, then one
    /// `Echoing back request made to <target> to client (<peer>)` line per request.
    pub fn echo_log_path(&self, namespace: &str, pod: &str) -> PathBuf {
        // Names are DNS labels, which have no `_`: the file name is unambiguous.
        self.dir
            .path()
            .join(ECHO_LOG_DIR)
            .join(format!("{namespace}_{pod}.log"))
    }

    /// The end of pod `namespace/pod`'s log now; see [`Env::echo_log_lines`].
    pub fn echo_log_mark(&self, namespace: &str, pod: &str) -> io::Result<LogMark> {
        echo_log::end_of_log(&self.echo_log_path(namespace, pod))
    }

    /// The complete lines pod `namespace/pod` logged after `since` (all of them after
    /// [`LogMark::START`]).
    pub fn echo_log_lines(
        &self,
        namespace: &str,
        pod: &str,
        since: LogMark,
    ) -> io::Result<Vec<String>> {
        echo_log::lines_after(&self.echo_log_path(namespace, pod), since)
    }

    /// The common shape of a test: an echo backend and Service for each `(namespace, name)`
    /// (its pod is called `<name>-pod`), Gateway `app/gw` on `gateway_ip(1)` with
    /// `listeners`, and `routes` (YAML) in a file of their own; started and ready.
    /// Returns the env and the first listener's address.
    pub async fn serve(
        backends: &[(&str, &str)],
        listeners: &[(&str, u16, Option<&str>)],
        routes: &str,
    ) -> (Env, String) {
        let mut env = Env::new();
        let gw = env.gateway_ip(1);
        let mut base = format!(
            "{}{}",
            yaml::GATEWAY_CLASS,
            yaml::gateway("app", "gw", &gw, listeners)
        );
        for (i, (ns, name)) in backends.iter().enumerate() {
            let n = i as u8 + 1;
            env.start_echo(n, &format!("{name}-pod"), ns).await;
            base.push_str(&yaml::service(ns, name, &[env.backend_ip(n)]));
        }
        env.write("base.yaml", &base);
        env.write("routes.yaml", routes);
        env.start_controller();
        env.wait_ready().await;
        let addr = format!("{gw}:{}", listeners[0].1);
        (env, addr)
    }

    /// Starts the controller on the config dir; its hosts join its process group.
    pub fn start_controller(&mut self) {
        let child = Command::new(bin("nantian-controller"))
            .arg("standalone")
            .arg("--config-dir")
            .arg(self.dir.path())
            .args(["--admin-addr", &self.controller_admin()])
            .args(["--xds-addr", &self.xds_addr()])
            .args(["--address-pool", &self.address_pool()])
            .args(["--host-workers", "1"])
            .env(
                "NANTIAN_LOG",
                std::env::var("NANTIAN_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .process_group(0)
            .spawn()
            .expect("start nantian-controller");
        self.controller = Some(child);
    }

    /// Kills the controller abruptly (SIGKILL), leaving its hosts running.
    pub fn kill_controller(&mut self) {
        if let Some(mut c) = self.controller.take() {
            c.kill().unwrap();
            c.wait().unwrap();
            self.orphans.push(c.id());
        }
    }

    /// Waits until the controller reports every host ACKed the newest config.
    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.controller_admin());
        wait_for(
            || async { get_status(&url).await == Some(200) },
            "controller /readyz",
        )
        .await;
    }

    /// The controller's `/api/v1/status` document.
    pub async fn status(&self) -> serde_json::Value {
        let url = format!("http://{}/api/v1/status", self.controller_admin());
        let r = send(http::Request::get(url).body(Bytes::new()).unwrap())
            .await
            .expect("status");
        serde_json::from_slice(&r.body).expect("status JSON")
    }

    /// The status of one object from `/api/v1/status`.
    pub async fn object_status(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> serde_json::Value {
        let doc = self.status().await;
        doc["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["kind"] == kind && i["namespace"] == namespace && i["name"] == name)
            .map(|i| i["status"].clone())
            .unwrap_or_else(|| panic!("no status for {kind} {namespace}/{name} in {doc}"))
    }

    pub async fn controller_hosts(&self) -> serde_json::Value {
        let url = format!("http://{}/api/v1/hosts", self.controller_admin());
        let r = send(http::Request::get(url).body(Bytes::new()).unwrap())
            .await
            .expect("hosts");
        serde_json::from_slice(&r.body).expect("hosts JSON")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let groups = self
            .controller
            .iter()
            .chain(self.echoes.iter())
            .map(Child::id)
            .chain(self.orphans.iter().copied());
        for pgid in groups.collect::<Vec<_>>() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
        }
        for c in self.controller.iter_mut().chain(self.echoes.iter_mut()) {
            let _ = c.wait();
        }
    }
}

/// This machine's first non-loopback IPv4 address (`hostname -I`). Kubernetes refuses
/// loopback addresses in EndpointSlices, so backends named in a real API server listen here.
pub fn machine_ip() -> Option<String> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .map(str::to_string)
}

/// Retries `check` every 50 ms for up to 30 s. Convergence, not a timing assertion: the
/// deadline only bounds how long a broken build takes to fail.
pub async fn wait_for<F, Fut>(mut check: F, what: &str)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not converge within 30s");
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .build_http()
}

/// Sends one request over HTTP/1.1 (a fresh pooled client per call).
pub async fn send(req: http::Request<Bytes>) -> Result<Reply, String> {
    send_with(&client(), req).await
}

/// Sends one request over HTTP/2 with prior knowledge (h2c) to `addr`; the request's URI
/// carries the virtual host as its authority, as HTTP/2 clients send it.
pub async fn send_h2c(addr: &str, req: http::Request<Bytes>) -> Result<Reply, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(req.map(Full::new))
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

pub async fn send_with(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: http::Request<Bytes>,
) -> Result<Reply, String> {
    let req = req.map(Full::new);
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// A GET to `http://{addr}{path}` with the given Host header.
pub fn get(addr: &str, host: &str, path: &str) -> http::Request<Bytes> {
    http::Request::get(format!("http://{addr}{path}"))
        .header(http::header::HOST, host)
        .body(Bytes::new())
        .unwrap()
}

async fn get_status(url: &str) -> Option<u16> {
    let req = http::Request::get(url).body(Bytes::new()).unwrap();
    send(req).await.ok().map(|r| r.status)
}

/// Reusable YAML fixtures.
pub mod yaml {
    /// GatewayClass `nantian` for our controller.
    pub const GATEWAY_CLASS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: nantian
spec:
  controllerName: gateway.nantian.dev/controller
"#;

    /// A Gateway on `address` with one HTTP listener per (name, port, hostname).
    pub fn gateway(
        ns: &str,
        name: &str,
        address: &str,
        listeners: &[(&str, u16, Option<&str>)],
    ) -> String {
        let mut out = format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  gatewayClassName: nantian\n  addresses:\n  - type: IPAddress\n    value: {address}\n  listeners:\n"
        );
        for (lname, port, hostname) in listeners {
            out.push_str(&format!("  - name: {lname}\n    protocol: HTTP\n    port: {port}\n    allowedRoutes:\n      namespaces:\n        from: All\n"));
            if let Some(h) = hostname {
                out.push_str(&format!("    hostname: \"{h}\"\n"));
            }
        }
        out
    }

    /// A Service on port 80 → targetPort 3000, with an EndpointSlice of `addresses`.
    pub fn service(ns: &str, name: &str, addresses: &[String]) -> String {
        let addrs = addresses
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            r#"---
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}
spec:
  ports:
  - name: http
    port: 80
    targetPort: 3000
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: {ns}
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
- name: http
  port: 3000
endpoints:
- addresses: [{addrs}]
"#
        )
    }
}
