//! The Nantian rows: the real standalone controller on a generated Gateway API config
//! (`bench/nantian.yaml.template`), which starts one `nantian-host` with one worker; the
//! host's processes are what is measured.

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::http;
use super::procfs::{self, Process};
use super::targets::{Env, Running, ensure_free, fill, read_template, target_dir, wait_ready};

/// The Gateway's `spec.addresses` value (without and with the filter: both rows run at
/// once, so their rounds can alternate) and listener port.
pub const GATEWAY_ADDRESS: &str = "127.0.30.1";
pub const GATEWAY_ADDRESS_WITH_FILTER: &str = "127.0.30.4";
pub const GATEWAY_PORT: u16 = 8080;

const HEADER_FILTER: &str = "      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set:
              - name: x-bench
                value: \"1\"";

/// The HTTPS row's Gateway address and port.
pub const GATEWAY_ADDRESS_TLS: &str = "127.0.30.7";
const GATEWAY_PORT_TLS: u16 = 8443;

/// The route-table measurement's Gateway address.
pub const GATEWAY_ADDRESS_ROUTES: &str = "127.0.30.8";

pub fn start(env: &Env<'_>, with_filter: bool, tls: bool) -> Result<Running> {
    let (gateway_address, port, name) = match (with_filter, tls) {
        (true, _) => (GATEWAY_ADDRESS_WITH_FILTER, GATEWAY_PORT, "nantian-wasm"),
        (false, true) => (GATEWAY_ADDRESS_TLS, GATEWAY_PORT_TLS, "nantian-tls"),
        (false, false) => (GATEWAY_ADDRESS, GATEWAY_PORT, "nantian"),
    };
    start_with(
        env,
        name,
        gateway_address,
        port,
        with_filter,
        tls,
        String::new(),
    )
    .map(|(r, _)| r)
}

/// The plain row's setup plus `routes` more HTTPRoutes (`/r0` … on the same backend);
/// also returns the config directory, for edits.
pub fn start_route_table(env: &Env<'_>, routes: usize) -> Result<(Running, std::path::PathBuf)> {
    let mut extra = String::new();
    for i in 0..routes {
        extra.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r{i}, namespace: bench}}\nspec:\n  parentRefs: [{{name: bench}}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /r{i}}}}}]\n    backendRefs: [{{name: echo, port: 80}}]\n"
        ));
    }
    start_with(
        env,
        "nantian-routes",
        GATEWAY_ADDRESS_ROUTES,
        GATEWAY_PORT,
        false,
        false,
        extra,
    )
}

fn start_with(
    env: &Env<'_>,
    name: &str,
    gateway_address: &str,
    port: u16,
    with_filter: bool,
    tls: bool,
    extra_routes: String,
) -> Result<(Running, std::path::PathBuf)> {
    let (build, controller, host) = super::gateway_binaries(env.ws)?;
    for binary in [&controller, &host] {
        if !binary.is_file() {
            bail!("{} is not built (the {build} profile)", binary.display());
        }
    }
    let addr = SocketAddr::new(gateway_address.parse()?, port);
    ensure_free(addr)?;
    let filter_dir = target_dir(env, &format!("{name}/filters"))?;
    // The controller loads every built-in filter when it starts, used or not.
    for (krate, file) in crate::BUILTIN_FILTERS {
        let built = env
            .ws
            .wasm_out_dir()
            .join(format!("{}.wasm", krate.replace('-', "_")));
        if !built.is_file() {
            bail!(
                "{} is not built (cargo xtask build-filters)",
                built.display()
            );
        }
        std::fs::copy(&built, filter_dir.join(file))?;
    }

    let config_dir = target_dir(env, &format!("{name}/config"))?;
    // The HTTPS row's certificate, as the Secret its listener refers to.
    let extra_objects = if tls {
        let cert = super::certificate::ensure(env.run_dir)?;
        let indent = |path: &std::path::Path| -> Result<String> {
            Ok(std::fs::read_to_string(path)?
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect())
        };
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: bench-cert\n  namespace: bench\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&cert.cert)?,
            indent(&cert.key)?
        )
    } else {
        String::new()
    } + &extra_routes;
    let config = fill(
        &read_template(env, "nantian.yaml.template")?,
        &[
            ("GATEWAY_ADDRESS", gateway_address),
            ("GATEWAY_PORT", &port.to_string()),
            ("GATEWAY_PROTOCOL", if tls { "HTTPS" } else { "HTTP" }),
            (
                "LISTENER_TLS",
                if tls {
                    "      tls: {certificateRefs: [{name: bench-cert}]}"
                } else {
                    ""
                },
            ),
            ("EXTRA_OBJECTS", &extra_objects),
            ("BACKEND_ADDRESS", &env.backend.ip().to_string()),
            ("BACKEND_PORT", &env.backend.port().to_string()),
            (
                "ROUTE_FILTERS",
                if with_filter { HEADER_FILTER } else { "" },
            ),
        ],
    );
    std::fs::write(config_dir.join("bench.yaml"), config)?;

    let admin = free_loopback_addr()?;
    let mut command = Command::new(&controller);
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
        .arg(&host)
        .arg("--host-workers")
        .arg("1")
        .arg("--cache-dir")
        .arg(env.run_dir.join("nantian-cache"));
    // The controller is pinned with the proxy so the host it starts inherits the CPU.
    let mut processes = vec![Process::spawn(
        name,
        &mut command,
        env.proxy_cpu,
        env.run_dir,
    )?];
    http::wait_for(
        admin,
        "/readyz",
        Duration::from_secs(60),
        |answer| answer.status == 200,
        || processes[0].check_running(),
    )
    .context("waiting for the controller's /readyz")?;
    wait_ready(addr, tls, Duration::from_secs(30), &mut processes)?;

    let hosts: Vec<u32> = procfs::descendants(processes[0].pid())
        .into_iter()
        .filter(|pid| procfs::comm(*pid).as_deref() == Some("nantian-host"))
        .collect();
    if hosts.is_empty() {
        bail!("the controller is ready but no nantian-host process runs under it");
    }
    let measured = hosts.iter().flat_map(|pid| procfs::tree(*pid)).collect();
    Ok((
        Running {
            addr,
            tls,
            measured,
            processes,
        },
        config_dir,
    ))
}

/// A port nothing listens on right now (the OS picks it; the socket is closed again).
fn free_loopback_addr() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
