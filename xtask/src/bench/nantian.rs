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

pub fn start(env: &Env<'_>, with_filter: bool) -> Result<Running> {
    let controller = env.ws.bin("nantian-controller");
    let host = env.ws.bin("nantian-host");
    for binary in [&controller, &host] {
        if !binary.is_file() {
            bail!("{} is not built (cargo xtask build)", binary.display());
        }
    }
    let gateway_address = if with_filter {
        GATEWAY_ADDRESS_WITH_FILTER
    } else {
        GATEWAY_ADDRESS
    };
    let addr = SocketAddr::new(gateway_address.parse()?, GATEWAY_PORT);
    ensure_free(addr)?;
    let name = if with_filter {
        "nantian-wasm"
    } else {
        "nantian"
    };
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
    let config = fill(
        &read_template(env, "nantian.yaml.template")?,
        &[
            ("GATEWAY_ADDRESS", gateway_address),
            ("GATEWAY_PORT", &GATEWAY_PORT.to_string()),
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
    wait_ready(addr, Duration::from_secs(30), &mut processes)?;

    let hosts: Vec<u32> = procfs::descendants(processes[0].pid())
        .into_iter()
        .filter(|pid| procfs::comm(*pid).as_deref() == Some("nantian-host"))
        .collect();
    if hosts.is_empty() {
        bail!("the controller is ready but no nantian-host process runs under it");
    }
    let measured = hosts.iter().flat_map(|pid| procfs::tree(*pid)).collect();
    Ok(Running {
        addr,
        measured,
        processes,
    })
}

/// A port nothing listens on right now (the OS picks it; the socket is closed again).
fn free_loopback_addr() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
