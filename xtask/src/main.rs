//! `cargo xtask <command>`: the project's build, run, test and bench driver.
//!
//! - `build`: wasm32-wasip2 filter components, then every binary in release mode.
//! - `quickstart`: build, then run the gateway standalone on `examples/quickstart/` with a
//!   demo backend, and print requests to try.
//! - `test`: build, then every test of the workspace (unit, golden, filter, end to end,
//!   the Kubernetes tests against the binaries of `kube-assets`, the chart tests with its
//!   helm, the image tests with its crane).
//! - `image`: build, then the controller's and the host's OCI image archives, without
//!   Docker (`image.rs`).
//! - `kube-assets`: build kube-apiserver, etcd, helm and crane from the Go module proxy into
//!   a per-machine cache, or find the first two in `KUBEBUILDER_ASSETS` (`kube_assets.rs`).
//! - `lint`: `cargo fmt --check` and clippy with warnings denied.
//! - `prune`: keep the (shared) target dir within a disk budget (`prune.rs`).
//! - `gen`: regenerate the chart's CRDs and ClusterRole from the controller's Rust
//!   (`controller/tests/manifests.rs` with `NANTIAN_BLESS=1`).
//! - `bench`: the side-by-side benchmark against nginx and HAProxy (`bench/README.md`).

mod ai_example;
mod bench;
mod image;
mod kube_assets;
mod prune;
mod python;
mod quickstart;
mod workspace;

use std::process::Command;

use anyhow::{Context, Result, bail};

use workspace::Workspace;

/// Built-in filter crates → the file name the controller loads.
const BUILTIN_FILTERS: &[(&str, &str)] = &[
    ("nantian-filter-cors", "cors.wasm"),
    ("nantian-filter-header-modifier", "header-modifier.wasm"),
    ("nantian-filter-ai-adapter", "ai-adapter.wasm"),
    ("nantian-filter-pii-mask", "pii-mask.wasm"),
    ("nantian-filter-token-limit", "token-limit.wasm"),
];
/// Filters built only for tests.
const TEST_FILTERS: &[&str] = &["nantian-filter-fault"];

fn main() -> Result<()> {
    let ws = Workspace::locate();
    let cmd = std::env::args().nth(1).unwrap_or_default();
    match cmd.as_str() {
        "build" => build(&ws),
        "build-filters" => build_filters(&ws),
        "quickstart" => {
            build(&ws)?;
            quickstart::run(&ws)
        }
        "example" => match std::env::args().nth(2).as_deref() {
            Some("ai-gateway") => {
                build(&ws)?;
                ai_example::run(&ws)
            }
            other => bail!("unknown example {other:?}; there is: ai-gateway"),
        },
        "test" => test(&ws),
        "image" => image::run(&ws),
        "kube-assets" => {
            let Some(dir) = kube_assets::ensure()? else {
                bail!("no kube-apiserver and etcd for the Kubernetes tests (see above)");
            };
            println!("{}", dir.display());
            let Some(helm) = kube_assets::ensure_helm()? else {
                bail!("no helm for the chart tests (see above)");
            };
            println!("{}", helm.display());
            let Some(crane) = kube_assets::ensure_crane()? else {
                bail!("no crane for the image tests (see above)");
            };
            println!("{}", crane.display());
            Ok(())
        }
        "lint" => lint(&ws),
        "prune" => prune::run(&ws),
        "gen" => generate(&ws),
        "bench" => {
            build(&ws)?;
            // The proxies are measured as they ship: whole-program optimised (unless
            // NANTIAN_BENCH_BUILD=release asks for the build just made).
            if !bench::measures_release_build()? {
                run(cargo(&ws).args([
                    "build",
                    "--profile",
                    "dist",
                    "-p",
                    "nantian-host",
                    "-p",
                    "nantian-controller",
                ]))?;
            }
            bench::run(&ws)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <build|build-filters|quickstart|example|test|image|kube-assets|lint|prune|gen|bench>\n\n\
                 build        filter components (wasm32-wasip2) and release binaries\n\
                 quickstart   build, then run the standalone gateway on examples/quickstart\n\
                 example NAME build, then run examples/NAME (ai-gateway: with mock LLM providers)\n\
                 test         build, then run every test\n\
                 image        build, then OCI image archives [--out DIR]\n\
                 kube-assets  build kube-apiserver and etcd for the Kubernetes tests\n\
                 lint         rustfmt check and clippy -D warnings\n\
                 prune        keep the target dir within a disk budget\n\
                 gen          regenerate charts/nantian's CRDs and ClusterRole\n\
                 bench        benchmark against nginx and HAProxy"
            );
            if cmd.is_empty() {
                Ok(())
            } else {
                bail!("unknown command {cmd:?}")
            }
        }
    }
}

pub fn cargo(ws: &Workspace) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(&ws.root);
    c.env("CARGO_TARGET_DIR", &ws.target_dir);
    // `cargo run` gave this process xtask's package variables (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME, CARGO_PKG_VERSION_*, …). Build scripts that watch them (ring's watches
    // a dozen) would see them change between `cargo xtask …` and a plain `cargo build` or
    // `cargo test`, and rebuild ring and everything above it (rustls, tonic, kube…) each
    // time: minutes per switch on two cores.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(is_package_variable) {
            c.env_remove(key);
        }
    }
    c
}

/// A variable `cargo run` sets for the package it runs, not one that configures cargo.
fn is_package_variable(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || matches!(
            key,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "OUT_DIR"
        )
}

pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed: {status}", cmd.get_program());
    }
    Ok(())
}

fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(o)
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2") =>
        {
            Ok(())
        }
        Ok(_) => run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"])),
        Err(_) => {
            // No rustup: trust the toolchain to have the target, cargo will say if not.
            Ok(())
        }
    }
}

fn build_filters(ws: &Workspace) -> Result<()> {
    ensure_wasm_target()?;
    let mut c = cargo(ws);
    c.args(["build", "--profile", "filter", "--target", "wasm32-wasip2"]);
    for (krate, _) in BUILTIN_FILTERS {
        c.args(["-p", krate]);
    }
    for krate in TEST_FILTERS {
        c.args(["-p", krate]);
    }
    run(&mut c)?;
    let dest = ws.filter_dir();
    std::fs::create_dir_all(&dest)?;
    for (krate, file) in BUILTIN_FILTERS {
        let built = ws
            .wasm_out_dir()
            .join(format!("{}.wasm", krate.replace('-', "_")));
        std::fs::copy(&built, dest.join(file))
            .with_context(|| format!("copy {}", built.display()))?;
    }
    Ok(())
}

fn build(ws: &Workspace) -> Result<()> {
    build_filters(ws)?;
    run(cargo(ws).args(["build", "--release", "--bins"]))
}

fn test(ws: &Workspace) -> Result<()> {
    // First, so a broken Go build fails a CI run early (outside CI it only skips the
    // Kubernetes tests, loudly).
    let kube_assets = kube_assets::ensure()?;
    let helm = kube_assets::ensure_helm()?;
    let crane = kube_assets::ensure_crane()?;
    // The official LLM SDKs the AI tests drive (tests/ai/client.py).
    let python = python::ensure()?;
    build_filters(ws)?;
    // The binaries and the tests in one build, so that they share one feature resolution.
    // A `--bins` build alone leaves out the features the dev-dependencies add (tokio's
    // test-util, regex-automata's nfa), so the test build recompiled tokio, hyper, regex,
    // wasmtime, kube and everything above them: ~20 minutes more on a cold two-core CI
    // machine, and our own crates twice on every run. `cargo test` below builds nothing new.
    run(cargo(ws).args(["build", "--release", "--workspace", "--bins", "--tests"]))?;
    let image_dir = ws.image_dir();
    image::write_all(ws, &image_dir)?;
    // One profile for everything: the release artifacts just built are the ones tested.
    let mut c = cargo(ws);
    c.args(["test", "--release", "--workspace", "--no-fail-fast"])
        .env("NANTIAN_FILTER_DIR", ws.wasm_out_dir());
    if let Some(dir) = kube_assets {
        c.env("NANTIAN_KUBE_ASSETS", dir);
    }
    if let Some(helm) = helm {
        c.env("NANTIAN_HELM", helm);
    }
    c.env("NANTIAN_IMAGE_DIR", image_dir);
    if let Some(crane) = crane {
        c.env("NANTIAN_CRANE", crane);
    }
    if let Some(python) = python {
        c.env("NANTIAN_PYTHON", python);
    }
    run(&mut c)
}

/// Rewrites the generated manifests of `charts/nantian/` (the CRDs and the ClusterRole): the
/// golden test that checks them, told to bless. xtask stays independent of the controller.
fn generate(ws: &Workspace) -> Result<()> {
    run(cargo(ws)
        .args([
            "test",
            "--release",
            "-p",
            "nantian-controller",
            "--test",
            "manifests",
        ])
        .env("NANTIAN_BLESS", "1"))
}

fn lint(ws: &Workspace) -> Result<()> {
    run(cargo(ws).args(["fmt", "--all", "--", "--check"]))?;
    run(cargo(ws).args([
        "clippy",
        "--release",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

#[cfg(test)]
mod tests {
    use super::is_package_variable;

    #[test]
    fn only_the_run_packages_variables_are_dropped() {
        for key in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "OUT_DIR",
        ] {
            assert!(is_package_variable(key), "{key}");
        }
        for key in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_PROFILE_FILTER_STRIP",
        ] {
            assert!(!is_package_variable(key), "{key}");
        }
    }
}
