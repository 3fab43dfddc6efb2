//! The third-party programs of the benchmark: nginx, HAProxy and wrk, installed from the
//! distribution when missing (without starting the distribution's services).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Paths of the load generator and the reference proxies.
#[derive(Debug, Clone)]
pub struct Tools {
    pub nginx: PathBuf,
    pub haproxy: PathBuf,
    pub wrk: PathBuf,
    pub taskset: Option<PathBuf>,
}

/// Finds the tools, installing missing ones with apt-get.
pub fn ensure() -> Result<Tools> {
    let wanted = [
        ("nginx", "nginx-light"),
        ("haproxy", "haproxy"),
        ("wrk", "wrk"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(binary, _)| find(binary).is_none())
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        install(&missing)?;
    }
    let require = |name: &str| {
        find(name).with_context(|| format!("{name} is still missing after installing"))
    };
    Ok(Tools {
        nginx: require("nginx")?,
        haproxy: require("haproxy")?,
        wrk: require("wrk")?,
        taskset: find("taskset"),
    })
}

/// A program on `$PATH` or in the sbin directories (where Debian puts nginx and haproxy).
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn install(packages: &[&str]) -> Result<()> {
    if find("apt-get").is_none() {
        bail!("missing {packages:?} and no apt-get here; install them and run again");
    }
    eprintln!("bench: installing {}", packages.join(" "));
    // A policy-rc.d answering 101 stops the packages from starting their system services
    // (nginx on :80 for everyone): the benchmark runs its own copies on loopback only.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let own_policy = !policy.exists();
    if own_policy {
        std::fs::write(policy, "#!/bin/sh\nexit 101\n")
            .context("writing policy-rc.d (run as root)")?;
        set_executable(policy)?;
    }
    let result = apt_get(&["update", "-qq"]).and_then(|()| {
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend_from_slice(packages);
        match apt_get(&args) {
            // Older and newer Debian releases lack nginx-light; full nginx does as well.
            Err(_) if packages.contains(&"nginx-light") => {
                let args: Vec<&str> = args
                    .iter()
                    .map(|p| if *p == "nginx-light" { "nginx" } else { p })
                    .collect();
                apt_get(&args)
            }
            other => other,
        }
    });
    if own_policy {
        let _ = std::fs::remove_file(policy);
    }
    result
}

fn apt_get(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed: {status}", args.join(" "));
    }
    Ok(())
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The first line a program prints for its version flag (on stdout or stderr).
pub fn version(program: &Path, flag: &str) -> String {
    Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .map(|out| {
            let text = [out.stdout, out.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("unknown")
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
