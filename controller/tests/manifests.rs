//! The chart's generated manifests match the Rust they come from.
//!
//! The CRDs (`controller/src/crd/`) are rendered to `charts/nantian/crds/<plural>.<group>.yaml`
//! and the controller's ClusterRole and Role (`controller/src/rbac.rs`) to
//! `charts/nantian/templates/clusterrole.yaml` and `role.yaml`. This test fails when a committed file differs
//! from what the code renders; `cargo xtask gen` (this test with `NANTIAN_BLESS=1`) rewrites
//! them.

use std::path::{Path, PathBuf};

use nantian_controller::{crd, rbac};
use serde::Serialize;

const BLESS: &str = "cargo xtask gen";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/nantian")
}

fn render(source: &str, object: &impl Serialize) -> String {
    format!(
        "# Generated from {source} by `{BLESS}` (controller/tests/manifests.rs). Do not edit:\n\
         # change the Rust and run `{BLESS}`.\n{}",
        serde_yaml::to_string(object).expect("serialises")
    )
}

/// Every generated file: path relative to the chart, and its content.
fn expected() -> Vec<(String, String)> {
    let mut files: Vec<_> = crd::crds()
        .iter()
        .map(|c| {
            let name = c.metadata.name.as_deref().expect("CRDs are named");
            (
                format!("crds/{name}.yaml"),
                render("controller/src/crd/", c),
            )
        })
        .collect();
    files.push((
        "templates/clusterrole.yaml".to_owned(),
        render("controller/src/rbac.rs", &rbac::cluster_role()),
    ));
    files.push((
        "templates/role.yaml".to_owned(),
        render("controller/src/rbac.rs", &rbac::role()),
    ));
    files
}

/// The first line where `a` and `b` differ, for the failure message.
fn first_difference(want: &str, got: &str) -> String {
    let (mut w, mut g) = (want.lines(), got.lines());
    for n in 1.. {
        match (w.next(), g.next()) {
            (None, None) => break,
            (want, got) if want != got => {
                return format!(
                    "line {n}:\n  generated: {}\n  committed: {}",
                    want.unwrap_or("<end of file>"),
                    got.unwrap_or("<end of file>")
                );
            }
            _ => {}
        }
    }
    "identical lines, different bytes".to_owned()
}

#[test]
fn generated_manifests_are_up_to_date() {
    let chart = chart_dir();
    let bless = std::env::var_os("NANTIAN_BLESS").is_some_and(|v| v != "0" && !v.is_empty());
    let files = expected();
    let mut stale = Vec::new();

    for (relative, content) in &files {
        let path = chart.join(relative);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed == *content {
            continue;
        }
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            eprintln!("wrote {}", path.display());
        } else if committed.is_empty() {
            stale.push(format!("{relative}: missing"));
        } else {
            stale.push(format!(
                "{relative}: {}",
                first_difference(content, &committed)
            ));
        }
    }

    // A CRD file whose kind is gone (renamed or removed) is stale too.
    let crds_dir = chart.join("crds");
    for entry in std::fs::read_dir(&crds_dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        let relative = format!("crds/{}", path.file_name().unwrap().to_string_lossy());
        if files.iter().any(|(r, _)| *r == relative) {
            continue;
        }
        if bless {
            std::fs::remove_file(&path).unwrap();
            eprintln!("removed {}", path.display());
        } else {
            stale.push(format!("{relative}: no longer generated"));
        }
    }

    assert!(
        stale.is_empty(),
        "the chart's generated manifests differ from the Rust; run `{BLESS}` \
         (or NANTIAN_BLESS=1 cargo test -p nantian-controller --test manifests) and commit:\n{}",
        stale.join("\n")
    );
}

/// The generated files parse back into what they came from.
#[test]
fn generated_manifests_parse() {
    for (relative, content) in expected() {
        let value: serde_yaml::Value = serde_yaml::from_str(&content).expect("valid YAML");
        assert!(value.get("kind").is_some(), "{relative} has no kind");
    }
}

/// The chart's hand-written bindings name the generated roles.
#[test]
fn chart_binds_the_generated_roles() {
    for (binding, kind) in [
        ("templates/clusterrolebinding.yaml", "ClusterRole"),
        ("templates/rolebinding.yaml", "Role"),
    ] {
        let text = std::fs::read_to_string(chart_dir().join(binding)).unwrap();
        let role_ref = text
            .split("roleRef:")
            .nth(1)
            .unwrap_or_else(|| panic!("{binding} has no roleRef"));
        assert!(role_ref.contains(&format!("kind: {kind}\n")), "{binding}");
        assert!(
            role_ref.contains(&format!("name: {}\n", rbac::CLUSTER_ROLE_NAME)),
            "{binding} must bind {}",
            rbac::CLUSTER_ROLE_NAME
        );
    }
}
