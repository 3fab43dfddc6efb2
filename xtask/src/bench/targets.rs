//! The five things measured, each started on its own loopback address in front of the
//! same echo backend: the backend itself, nginx, HAProxy, and nantian-host (under the real
//! standalone controller, see `nantian.rs`) without and with the header-modifier Wasm
//! filter.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::procfs::{self, Process};
use super::tools::Tools;
use super::{http, nantian};
use crate::workspace::Workspace;

/// Answered with a small fixed body by nantian-echo (its `BENCH_PATH`).
pub const BENCH_PATH: &str = "/bench";
pub const BENCH_BODY: &str = "nantian-echo bench\n";

pub const NGINX_ADDR: &str = "127.0.30.2:8080";
pub const HAPROXY_ADDR: &str = "127.0.30.3:8080";
pub const NGINX_TLS_ADDR: &str = "127.0.30.5:8443";
pub const HAPROXY_TLS_ADDR: &str = "127.0.30.6:8443";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Direct,
    Nginx,
    Haproxy,
    Nantian,
    NantianWasm,
    NginxTls,
    HaproxyTls,
    NantianTls,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Direct,
        Kind::Nginx,
        Kind::Haproxy,
        Kind::Nantian,
        Kind::NantianWasm,
        Kind::NginxTls,
        Kind::HaproxyTls,
        Kind::NantianTls,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Direct => "direct (nantian-echo)",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "HAProxy",
            Kind::Nantian => "nantian-host",
            Kind::NantianWasm => "nantian-host + Wasm header filter",
            Kind::NginxTls => "nginx, TLS 1.3",
            Kind::HaproxyTls => "HAProxy, TLS 1.3",
            Kind::NantianTls => "nantian-host, TLS 1.3",
        }
    }

    /// HTTPS (TLS 1.3) between wrk and the proxy.
    pub fn tls(self) -> bool {
        matches!(self, Kind::NginxTls | Kind::HaproxyTls | Kind::NantianTls)
    }

    /// The short name of `NANTIAN_BENCH_TARGETS`.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
            Kind::Nantian => "nantian",
            Kind::NantianWasm => "nantian-wasm",
            Kind::NginxTls => "nginx-tls",
            Kind::HaproxyTls => "haproxy-tls",
            Kind::NantianTls => "nantian-tls",
        }
    }

    /// Whether the backend must see `x-bench: 1` (and must not, otherwise).
    pub fn adds_header(self) -> bool {
        matches!(
            self,
            Kind::Nginx | Kind::Haproxy | Kind::NantianWasm | Kind::NginxTls | Kind::HaproxyTls
        )
    }
}

/// What every target needs.
pub struct Env<'a> {
    pub ws: &'a Workspace,
    pub tools: &'a Tools,
    pub run_dir: &'a Path,
    pub backend: SocketAddr,
    /// The backend's process (the measured process of the direct row).
    pub backend_pid: u32,
    /// The CPU the proxy is pinned to, if pinning.
    pub proxy_cpu: Option<usize>,
}

/// A started target, ready for traffic. Dropping it stops its processes.
pub struct Running {
    pub addr: SocketAddr,
    /// HTTPS with the run's self-signed certificate.
    pub tls: bool,
    /// The processes whose CPU time and memory are the target's.
    pub measured: Vec<u32>,
    pub(super) processes: Vec<Process>,
}

impl Running {
    /// Fails if one of the target's processes died.
    pub fn check_running(&mut self) -> Result<()> {
        self.processes
            .iter_mut()
            .try_for_each(Process::check_running)
    }
}

pub fn start(kind: Kind, env: &Env<'_>) -> Result<Running> {
    match kind {
        Kind::Direct => Ok(Running {
            addr: env.backend,
            tls: false,
            measured: procfs::tree(env.backend_pid),
            processes: Vec::new(),
        }),
        Kind::Nginx => start_nginx(env, false),
        Kind::Haproxy => start_haproxy(env, false),
        Kind::Nantian => nantian::start(env, false, false),
        Kind::NantianWasm => nantian::start(env, true, false),
        Kind::NginxTls => start_nginx(env, true),
        Kind::HaproxyTls => start_haproxy(env, true),
        Kind::NantianTls => nantian::start(env, false, true),
    }
}

/// Refuses to start a target on an address something else already serves: the checks
/// would otherwise talk to the wrong server.
pub fn ensure_free(addr: SocketAddr) -> Result<()> {
    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        bail!("{addr} is already in use; stop whatever listens there (an earlier bench?)");
    }
    Ok(())
}

pub(super) fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_owned(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

pub(super) fn read_template(env: &Env<'_>, name: &str) -> Result<String> {
    let path = env.ws.root.join("bench").join(name);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

pub(super) fn target_dir(env: &Env<'_>, name: &str) -> Result<PathBuf> {
    let dir = env.run_dir.join(name);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Waits until `GET /bench` through the target returns the backend's bench body.
pub(super) fn wait_ready(
    addr: SocketAddr,
    tls: bool,
    limit: Duration,
    processes: &mut [Process],
) -> Result<()> {
    let ready = |answer: &http::Answer| answer.status == 200 && answer.body == BENCH_BODY;
    let check = || processes.iter_mut().try_for_each(Process::check_running);
    if tls {
        http::wait_for_tls(addr, BENCH_PATH, limit, ready, check)
    } else {
        http::wait_for(addr, BENCH_PATH, limit, ready, check)
    }
    .map(|_| ())
}

fn start_nginx(env: &Env<'_>, tls: bool) -> Result<Running> {
    let listen = if tls { NGINX_TLS_ADDR } else { NGINX_ADDR };
    let addr: SocketAddr = listen.parse()?;
    ensure_free(addr)?;
    let dir = target_dir(env, if tls { "nginx-tls" } else { "nginx" })?;
    let (listen, tls_lines) = if tls {
        let cert = super::certificate::ensure(env.run_dir)?;
        (
            format!("{listen} ssl"),
            format!(
                "            ssl_certificate {};\n            ssl_certificate_key {};\n            ssl_protocols TLSv1.3;",
                cert.cert.display(),
                cert.key.display()
            ),
        )
    } else {
        (listen.to_owned(), String::new())
    };
    let site = NginxSite {
        listen: &listen,
        tls: &tls_lines,
        backend: env.backend,
        location_extra: "",
    };
    let mut command = nginx_command(&env.ws.root, &env.tools.nginx, &dir, &site)?;
    run_proxy(env, "nginx", &mut command, addr, tls)
}

/// What differs between the bench's nginx sites (`bench/nginx.conf.template`).
pub(super) struct NginxSite<'a> {
    /// The `listen` directive's parameters.
    pub listen: &'a str,
    /// The server's TLS directives, if any.
    pub tls: &'a str,
    pub backend: SocketAddr,
    /// More directives for the proxied location.
    pub location_extra: &'a str,
}

/// Writes `dir/nginx.conf` for `site` and returns the command that runs nginx on it.
pub(super) fn nginx_command(
    root: &Path,
    nginx: &Path,
    dir: &Path,
    site: &NginxSite<'_>,
) -> Result<Command> {
    let template = root.join("bench/nginx.conf.template");
    let template = std::fs::read_to_string(&template)
        .with_context(|| format!("reading {}", template.display()))?;
    let config = fill(
        &template,
        &[
            ("RUN_DIR", &dir.display().to_string()),
            ("LISTEN", site.listen),
            ("TLS", site.tls),
            ("BACKEND", &site.backend.to_string()),
            ("TEMP_PATHS", &nginx_temp_paths(nginx, dir)?),
            ("LOCATION_EXTRA", site.location_extra),
        ],
    );
    let config_path = dir.join("nginx.conf");
    std::fs::write(&config_path, config)?;
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("nginx-startup.log"))
        .arg("-c")
        .arg(&config_path);
    Ok(command)
}

/// `*_temp_path` directives inside the run directory for every module this nginx has,
/// so it never writes to the distribution's `/var/lib/nginx`.
fn nginx_temp_paths(nginx: &Path, dir: &Path) -> Result<String> {
    let output = Command::new(nginx).arg("-V").output().context("nginx -V")?;
    let configure = String::from_utf8_lossy(&[output.stdout, output.stderr].concat()).into_owned();
    let mut lines = Vec::new();
    for (directive, module) in [
        ("client_body_temp_path", None),
        ("proxy_temp_path", Some("http_proxy")),
        ("fastcgi_temp_path", Some("http_fastcgi")),
        ("uwsgi_temp_path", Some("http_uwsgi")),
        ("scgi_temp_path", Some("http_scgi")),
    ] {
        let compiled_out =
            module.is_some_and(|m| configure.contains(&format!("--without-{m}_module")));
        if !compiled_out {
            let path = dir.join(directive.trim_end_matches("_path"));
            lines.push(format!("    {directive} {};", path.display()));
        }
    }
    Ok(lines.join("\n"))
}

fn start_haproxy(env: &Env<'_>, tls: bool) -> Result<Running> {
    let listen = if tls { HAPROXY_TLS_ADDR } else { HAPROXY_ADDR };
    let addr: SocketAddr = listen.parse()?;
    ensure_free(addr)?;
    let dir = target_dir(env, if tls { "haproxy-tls" } else { "haproxy" })?;
    let listen = if tls {
        let cert = super::certificate::ensure(env.run_dir)?;
        format!(
            "{listen} ssl crt {} ssl-min-ver TLSv1.3",
            cert.bundle.display()
        )
    } else {
        listen.to_owned()
    };
    let config = fill(
        &read_template(env, "haproxy.cfg.template")?,
        &[("LISTEN", &listen), ("BACKEND", &env.backend.to_string())],
    );
    let config_path = dir.join("haproxy.cfg");
    std::fs::write(&config_path, config)?;
    let mut command = Command::new(&env.tools.haproxy);
    command.arg("-db").arg("-f").arg(&config_path);
    run_proxy(env, "haproxy", &mut command, addr, tls)
}

/// Starts a third-party proxy pinned to the proxy CPU, waits until it answers, and
/// measures its whole process tree (nginx's master and worker).
fn run_proxy(
    env: &Env<'_>,
    name: &str,
    command: &mut Command,
    addr: SocketAddr,
    tls: bool,
) -> Result<Running> {
    let mut processes = vec![Process::spawn(name, command, env.proxy_cpu, env.run_dir)?];
    wait_ready(addr, tls, Duration::from_secs(10), &mut processes)?;
    Ok(Running {
        addr,
        tls,
        measured: procfs::tree(processes[0].pid()),
        processes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_everywhere() {
        assert_eq!(
            fill("a {{X}} b {{X}} {{Y}}", &[("X", "1"), ("Y", "2")]),
            "a 1 b 1 2"
        );
    }

    #[test]
    fn repository_templates_have_no_unknown_placeholders() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("bench");
        let cases: [(&str, &[&str]); 3] = [
            (
                "nginx.conf.template",
                &[
                    "RUN_DIR",
                    "LISTEN",
                    "TLS",
                    "BACKEND",
                    "TEMP_PATHS",
                    "LOCATION_EXTRA",
                ],
            ),
            ("haproxy.cfg.template", &["LISTEN", "BACKEND"]),
            (
                "nantian.yaml.template",
                &[
                    "GATEWAY_ADDRESS",
                    "GATEWAY_PROTOCOL",
                    "GATEWAY_PORT",
                    "LISTENER_TLS",
                    "EXTRA_OBJECTS",
                    "BACKEND_ADDRESS",
                    "BACKEND_PORT",
                    "ROUTE_FILTERS",
                ],
            ),
        ];
        for (file, keys) in cases {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let values: Vec<(&str, &str)> = keys.iter().map(|k| (*k, "v")).collect();
            let filled = fill(&text, &values);
            assert!(
                !filled.contains("{{"),
                "{file} keeps a placeholder: {filled}"
            );
            for key in keys {
                assert!(
                    text.contains(&format!("{{{{{key}}}}}")),
                    "{file} lacks {key}"
                );
            }
        }
    }
}
