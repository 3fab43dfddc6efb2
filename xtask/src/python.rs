//! The Python venv with the official LLM SDKs (`openai`, `anthropic`, `ollama`) that the AI
//! gateway tests drive through `tests/ai/client.py`: `$HOME/.cache/nantian/python/venv`,
//! made with `python3 -m venv` and filled from PyPI with pip, at pinned versions.
//!
//! A stamp file in the venv records what was installed; a venv whose stamp matches
//! [`stamp`] and whose interpreter reports the pinned versions is reused as it is, anything
//! else is made anew. `cargo xtask test` hands the interpreter to the tests as
//! `NANTIAN_PYTHON`. `NANTIAN_PYTHON3` names the interpreter to make the venv with (default:
//! `python3` on PATH). Without `python3` (or its `venv` module: Debian's `python3-venv`) the
//! tests are skipped, loudly; under `CI` that is an error.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The SDKs, pinned.
pub const SDKS: &[(&str, &str)] = &[
    ("openai", "3.51.0"),
    ("anthropic", "2.10.0"),
    ("ollama", "0.6.3"),
];

/// Their dependencies, as resolved when the pins were chosen: a pip constraints file, so a
/// new machine installs the same tree (constraints of packages not needed are ignored).
const CONSTRAINTS: &[(&str, &str)] = &[
    ("annotated-types", "0.8.0"),
    ("anyio", "4.16.0"),
    ("certifi", "2026.10.19.post1"),
    ("docstring_parser", "0.18.0"),
    ("h11", "0.16.0"),
    ("httpcore", "1.0.9"),
    ("httpcore2", "2.16.2"),
    ("httpx", "0.28.1"),
    ("httpx2", "2.16.2"),
    ("idna", "3.20"),
    ("jiter", "0.19.0"),
    ("opentelemetry-api", "1.45.2"),
    ("pydantic", "2.14.4"),
    ("pydantic_core", "2.50.5"),
    ("sniffio", "1.3.1"),
    ("truststore", "0.10.5"),
    ("typing-inspection", "0.4.5"),
    ("typing_extensions", "4.16.0"),
];

const STAMP: &str = "nantian-sdks.txt";

/// The venv's interpreter with the pinned SDKs, making or refreshing the venv if needed.
///
/// `Ok(None)` when it cannot be had on this machine (no `python3`, no `venv` module, pip
/// failed) outside CI, after saying so loudly; under `CI` those are errors.
pub fn ensure() -> Result<Option<PathBuf>> {
    let venv = venv_dir()?;
    let python = venv.join("bin/python");
    if std::fs::read_to_string(venv.join(STAMP)).ok().as_deref() == Some(stamp().as_str())
        && installed_versions_match(&python, false)
    {
        eprintln!("python: SDK venv in {}", venv.display());
        return Ok(Some(python));
    }
    match make(&venv) {
        Ok(()) => Ok(Some(python)),
        Err(e) if std::env::var_os("CI").is_none() => {
            loud(&[
                format!("cannot prepare the Python SDK venv in {}:", venv.display()),
                format!("{e:#}"),
                "The AI SDK tests (tests/tests/ai_mock.rs and the AI gateway tests) will be \
                 SKIPPED."
                    .into(),
                "Install python3 and its venv module (Debian: apt-get install python3-venv)."
                    .into(),
                "(With CI set this is an error.)".into(),
            ]);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// What the stamp file says of a complete venv: the requirements and the constraints.
fn stamp() -> String {
    let mut text = String::from("# requirements\n");
    for (name, version) in SDKS {
        text.push_str(&format!("{name}=={version}\n"));
    }
    text.push_str("# constraints\n");
    text.push_str(&constraints());
    text
}

fn constraints() -> String {
    CONSTRAINTS
        .iter()
        .map(|(name, version)| format!("{name}=={version}\n"))
        .collect()
}

/// `$HOME/.cache/nantian/python/venv`.
fn venv_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set: no place for the venv")?;
    Ok(PathBuf::from(home).join(".cache/nantian/python/venv"))
}

/// (Re)makes the venv and installs the pinned SDKs, then checks them.
fn make(venv: &Path) -> Result<()> {
    if venv.exists() {
        std::fs::remove_dir_all(venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    std::fs::create_dir_all(venv.parent().expect("the venv has a parent"))?;
    let python3 = std::env::var_os("NANTIAN_PYTHON3").unwrap_or_else(|| "python3".into());
    crate::run(Command::new(&python3).arg("-m").arg("venv").arg(venv))
        .context("python3 -m venv (Debian: apt-get install python3-venv)")?;
    let constraints_file = venv.join("constraints.txt");
    std::fs::write(&constraints_file, constraints())?;
    let python = venv.join("bin/python");
    crate::run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
                "-c",
            ])
            .arg(&constraints_file)
            .args(
                SDKS.iter()
                    .map(|(name, version)| format!("{name}=={version}")),
            ),
    )
    .context("pip install of the SDKs")?;
    if !installed_versions_match(&python, true) {
        bail!("the venv's SDK versions differ from the pins {SDKS:?} after pip install");
    }
    std::fs::write(venv.join(STAMP), stamp())?;
    eprintln!("python: SDK venv ready in {}", venv.display());
    Ok(())
}

/// Whether `python` runs and has exactly the pinned SDK versions installed (read from
/// their metadata), and with `import`, whether their modules import (seconds: done once,
/// after installing).
fn installed_versions_match(python: &Path, import: bool) -> bool {
    let names: Vec<String> = SDKS.iter().map(|(name, _)| format!("{name:?}")).collect();
    let mut script = String::from("import importlib.metadata as m\n");
    if import {
        for (name, _) in SDKS {
            script.push_str(&format!("import {name}\n"));
        }
    }
    script.push_str(&format!(
        "print(' '.join(n + '==' + m.version(n) for n in [{}]))",
        names.join(", ")
    ));
    let Ok(out) = Command::new(python).args(["-c", &script]).output() else {
        return false;
    };
    let expected: Vec<String> = SDKS
        .iter()
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == expected.join(" ")
}

fn loud(lines: &[String]) {
    let bar = "!".repeat(78);
    eprintln!("\n{bar}");
    for l in lines {
        eprintln!("!! {l}");
    }
    eprintln!("{bar}\n");
}
