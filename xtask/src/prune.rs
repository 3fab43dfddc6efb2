//! `cargo xtask prune`: keeps the shared target dir within a disk budget.
//!
//! Cargo never deletes anything from a target dir. Every change of features, profile or a
//! dependency's version leaves the old artifacts behind, and each profile's `incremental/`
//! keeps old sessions of our own crates. CI shares one target dir across runs (`.ci/run`)
//! so that a warm machine rebuilds only what changed; without pruning, that dir grew until
//! the disk was full (the linker died with SIGBUS, rustc with "No space left on device").
//!
//! Pruning goes from cheap to thorough and stops once the dir fits the budget and the disk
//! has room:
//! 1. every profile's `incremental/` (only speeds up rebuilding our own crates);
//! 2. every artifact of the workspace's own crates (rebuilt in a few minutes; stale
//!    registry crates stay, since cargo names them alike);
//! 3. the whole target dir.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workspace::Workspace;

const GIB: u64 = 1 << 30;

/// The target dir's budget: 16 GiB holds one release build of everything (binaries, test
/// binaries, filters, images) a few times over.
const DEFAULT_BUDGET_GIB: u64 = 16;
/// The free space a `cargo xtask test` needs on top of what it overwrites.
const DEFAULT_MIN_FREE_GIB: u64 = 12;

pub fn run(ws: &Workspace) -> Result<()> {
    let budget = gib_from_env("NANTIAN_TARGET_BUDGET_GIB", DEFAULT_BUDGET_GIB)?;
    let min_free = gib_from_env("NANTIAN_TARGET_MIN_FREE_GIB", DEFAULT_MIN_FREE_GIB)?;
    let target = &ws.target_dir;
    if !target.exists() {
        println!("prune: no target dir at {}", target.display());
        return Ok(());
    }
    let fits = |what: &str| -> Result<bool> {
        let size = dir_size(target);
        let free = free_bytes(target)?;
        println!(
            "prune: {what}: {} holds {}, {} free on its disk (budget {}, need {} free)",
            target.display(),
            show_gib(size),
            show_gib(free),
            show_gib(budget),
            show_gib(min_free),
        );
        Ok(size <= budget && free >= min_free)
    };
    if fits("before")? {
        return Ok(());
    }
    let profiles = profile_dirs(target);
    for profile in &profiles {
        remove(&profile.join("incremental"))?;
    }
    if fits("without incremental/")? {
        return Ok(());
    }
    let own = workspace_names(ws)?;
    for profile in &profiles {
        remove_own_artifacts(profile, &own)?;
    }
    if fits("without the workspace's own artifacts")? {
        return Ok(());
    }
    remove(target)?;
    println!(
        "prune: removed {}; the next build starts cold",
        target.display()
    );
    Ok(())
}

fn gib_from_env(key: &str, default: u64) -> Result<u64> {
    match std::env::var(key) {
        Ok(v) => Ok(v
            .parse::<u64>()
            .with_context(|| format!("{key}={v:?}: expected whole GiB"))?
            * GIB),
        Err(_) => Ok(default * GIB),
    }
}

fn show_gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

/// The profile dirs of a target dir: `release/`, `debug/`, `wasm32-wasip2/filter/`, …
/// (every dir with a `deps/` one or two levels down).
fn profile_dirs(target: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for level1 in subdirs(target) {
        if level1.join("deps").is_dir() {
            found.push(level1);
        } else {
            found.extend(subdirs(&level1).filter(|d| d.join("deps").is_dir()));
        }
    }
    found
}

fn subdirs(dir: &Path) -> impl Iterator<Item = PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
}

/// The names the workspace's own packages and targets leave in a target dir, both as
/// written in Cargo.toml (`.fingerprint/`, `build/`) and as crate names (`deps/`).
fn workspace_names(ws: &Workspace) -> Result<BTreeSet<String>> {
    let out = crate::cargo(ws)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut names = BTreeSet::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        // xtask is running: leave its own build alone.
        if package["name"] == "xtask" {
            continue;
        }
        names.extend(package["name"].as_str().map(str::to_owned));
        for target in package["targets"].as_array().into_iter().flatten() {
            names.extend(target["name"].as_str().map(str::to_owned));
        }
    }
    Ok(names
        .iter()
        .flat_map(|n| [n.clone(), n.replace('-', "_")])
        .collect())
}

/// Removes one profile's artifacts of the crates named in `own`.
fn remove_own_artifacts(profile: &Path, own: &BTreeSet<String>) -> Result<()> {
    for sub in ["deps", ".fingerprint", "build"] {
        let Ok(entries) = fs::read_dir(profile.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if artifact_owner(&name.to_string_lossy()).is_some_and(|n| own.contains(n)) {
                remove(&entry.path())?;
            }
        }
    }
    Ok(())
}

/// The crate or package an artifact belongs to: `libnantian_wasm-0a1b….rlib` →
/// `nantian_wasm`, `nantian-host-0a1b…` (a fingerprint dir) → `nantian-host`.
fn artifact_owner(file_name: &str) -> Option<&str> {
    let stem = file_name.split('.').next()?;
    let (name, hash) = stem.rsplit_once('-')?;
    if hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(
        name.strip_prefix("lib")
            .filter(|_| file_name.contains(".r") || file_name.ends_with(".so"))
            .unwrap_or(name),
    )
}

fn remove(path: &Path) -> Result<()> {
    let result = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Bytes in the files under `dir` (hard links counted once per link: an over-estimate
/// errs towards pruning).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

/// Free bytes on the disk holding `path`, for an unprivileged writer (`df -Pk`).
fn free_bytes(path: &Path) -> Result<u64> {
    let out = Command::new("df")
        .arg("-Pk")
        .arg(path)
        .output()
        .context("running df")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let available_kib = text
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok())
        .with_context(|| format!("unexpected df output: {text:?}"))?;
    Ok(available_kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::artifact_owner;

    #[test]
    fn artifacts_are_attributed_to_their_crate() {
        let cases = [
            (
                "libnantian_wasm-0a1b2c3d4e5f6789.rlib",
                Some("nantian_wasm"),
            ),
            (
                "libnantian_wasm-0a1b2c3d4e5f6789.rmeta",
                Some("nantian_wasm"),
            ),
            (
                "libnantian_filter_pii_mask-0a1b.so",
                Some("nantian_filter_pii_mask"),
            ),
            ("nantian_host-0a1b2c3d4e5f6789", Some("nantian_host")),
            ("nantian_host-0a1b2c3d4e5f6789.d", Some("nantian_host")),
            ("nantian-host-0a1b2c3d4e5f6789", Some("nantian-host")),
            // A binary whose crate name starts with "lib" keeps it.
            ("libtest_helper-0a1b", Some("libtest_helper")),
            ("nantian-host", None),
            ("rustcxczqri", None),
            ("build-script-build", None),
        ];
        for (file, owner) in cases {
            assert_eq!(artifact_owner(file), owner, "{file}");
        }
    }
}
