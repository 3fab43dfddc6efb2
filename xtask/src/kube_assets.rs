//! `cargo xtask kube-assets`: the kube-apiserver and etcd binaries the Kubernetes tests
//! (`tests/tests/kubernetes.rs`) start on loopback.
//!
//! Neither is packaged anywhere this project can rely on, so both are built from the Go
//! module proxy, once per machine, into `$HOME/.cache/nantian/kube-assets/<k8s version>/`:
//!
//! - `k8s.io/kubernetes` cannot be built with `go install pkg@version`: its go.mod requires
//!   the staging modules (`k8s.io/api`, `k8s.io/apiserver`, ...) at `v0.0.0` and replaces
//!   them with `./staging/src/...`. A throw-away wrapper module requires `k8s.io/kubernetes`
//!   and replaces every staging module, read from the real go.mod, with its published
//!   `v0.Y.Z` tag; then `go build k8s.io/kubernetes/cmd/kube-apiserver`.
//! - etcd's main package `go.etcd.io/etcd/server/v3` has `replace` lines too: same trick,
//!   without replaces of our own (server/v3 requires its sibling modules at its own tag).
//!
//! `KUBEBUILDER_ASSETS` (the variable controller-runtime's envtest uses) naming a directory
//! with both binaries wins over the cache. Without `go` the tests are skipped, loudly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The kube-apiserver release built (k8s-openapi 0.28's `latest` feature covers it).
pub const K8S_VERSION: &str = "v1.34.4";
/// The etcd release built: the 3.6 line that Kubernetes 1.34 ships with.
pub const ETCD_VERSION: &str = "v3.6.14";
/// Build tags as upstream's `hack/lib/golang.sh` uses for release binaries.
const GO_TAGS: &str = "selinux,notest,grpcnotrace";

/// A directory holding runnable `kube-apiserver` and `etcd`, building them if needed.
///
/// `Ok(None)` when they cannot be had on this machine for a reason the tests turn into a
/// skip (no `go`; a failed build outside CI), after saying so loudly on stderr.
pub fn ensure() -> Result<Option<PathBuf>> {
    if let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from) {
        if runnable(&dir.join("kube-apiserver"), "").is_some()
            && runnable(&dir.join("etcd"), "").is_some()
        {
            eprintln!("kube-assets: using KUBEBUILDER_ASSETS={}", dir.display());
            return Ok(Some(dir));
        }
        eprintln!(
            "kube-assets: KUBEBUILDER_ASSETS={} lacks a runnable kube-apiserver and etcd; \
             using the build cache instead",
            dir.display()
        );
    }

    let dir = cache_root()?.join(K8S_VERSION);
    let need_apiserver = !apiserver_ok(&dir.join("kube-apiserver"));
    let need_etcd = !etcd_ok(&dir.join("etcd"));
    if !need_apiserver && !need_etcd {
        eprintln!(
            "kube-assets: kube-apiserver {K8S_VERSION} and etcd {ETCD_VERSION} in {}",
            dir.display()
        );
        return Ok(Some(dir));
    }

    let built = with_go(
        "kube-apiserver and etcd",
        "Kubernetes tests (tests/tests/kubernetes.rs)",
        &[
            "Install Go (https://go.dev/dl/) and rerun, or point KUBEBUILDER_ASSETS at a",
            "directory holding kube-apiserver and etcd binaries.",
        ],
        |go| build(go, &dir, need_apiserver, need_etcd),
    )?;
    Ok(built.then_some(dir))
}

/// Builds something with the `go` on PATH. `Ok(false)` when it cannot be had here for a
/// reason the `tests` turn into a skip (no `go`; a failed build outside CI), after
/// saying so loudly; with `CI` set a failed build is an error.
fn with_go(
    what: &str,
    tests: &str,
    hint: &[&str],
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<bool> {
    let skipped = format!("The {tests} will be SKIPPED.");
    let Some(go) = find_on_path("go") else {
        let mut lines = vec![
            format!("`go` is not on PATH: cannot build {what}."),
            skipped,
        ];
        lines.extend(hint.iter().map(|l| l.to_string()));
        loud(&lines);
        return Ok(false);
    };
    match build(&go) {
        Ok(()) => Ok(true),
        Err(e) if std::env::var_os("CI").is_none() => {
            loud(&[
                format!("building {what} with {} failed:", go.display()),
                format!("{e:#}"),
                skipped,
                "(With CI set this is an error.)".to_string(),
            ]);
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// `$HOME/.cache/nantian/kube-assets`.
fn cache_root() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set: no place for the build cache")?;
    Ok(PathBuf::from(home).join(".cache/nantian/kube-assets"))
}

fn loud(lines: &[String]) {
    let bar = "!".repeat(78);
    eprintln!("\n{bar}");
    for l in lines {
        eprintln!("!! {l}");
    }
    eprintln!("{bar}\n");
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// `binary --version` output when it runs and the output contains `expect`.
fn runnable(binary: &Path, expect: &str) -> Option<String> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success() && text.contains(expect)).then_some(text)
}

fn apiserver_ok(p: &Path) -> bool {
    // `kube-apiserver --version` prints `Kubernetes v1.34.4`.
    runnable(p, &format!("Kubernetes {K8S_VERSION}")).is_some()
}

fn etcd_ok(p: &Path) -> bool {
    // `etcd --version` prints `etcd Version: 3.6.14` first.
    runnable(p, &format!("etcd Version: {}", &ETCD_VERSION[1..])).is_some()
}

/// A `go` command with the environment every step here uses.
fn go_cmd(go: &Path, cwd: &Path) -> Command {
    let mut c = Command::new(go);
    c.current_dir(cwd)
        // Static binaries, no C compiler needed (as upstream releases them).
        .env("CGO_ENABLED", "0")
        // Never pick up a go.work from a parent directory.
        .env("GOWORK", "off")
        // Fail plainly instead of fetching another toolchain behind the user's back.
        .env("GOTOOLCHAIN", "local")
        // Let `go build` add go.sum lines `go get` did not.
        .env("GOFLAGS", "-mod=mod");
    c
}

fn go_run(c: &mut Command) -> Result<()> {
    crate::run(c)
}

fn go_output(c: &mut Command) -> Result<String> {
    eprintln!("+ {c:?}");
    let out = c
        .output()
        .with_context(|| format!("cannot run {:?}", c.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}\n{}",
            c.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn build(go: &Path, dest: &Path, need_apiserver: bool, need_etcd: bool) -> Result<()> {
    let root = dest.parent().expect("cache dir has a parent");
    std::fs::create_dir_all(dest).with_context(|| format!("create {}", dest.display()))?;
    remove_stale_work_dirs(root);
    // Everything is built under a work dir next to the cache, then renamed into place: an
    // interrupted build never leaves a half-written binary where the tests look.
    let work = root.join(format!(".work-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let version = Command::new(go).arg("version").output();
    let version = version
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    eprintln!(
        "kube-assets: building into {} with {version} (first time: ~750 MB of modules, \
         ~2.3 GB of Go build cache, 12-20 minutes on 2 cores; cached afterwards)",
        dest.display()
    );
    let started = Instant::now();
    let result = (|| -> Result<()> {
        if need_etcd {
            let t = Instant::now();
            let bin = build_etcd(go, &work)?;
            install(&bin, &dest.join("etcd"))?;
            eprintln!(
                "kube-assets: etcd {ETCD_VERSION} built in {:.0?}",
                t.elapsed()
            );
        }
        if need_apiserver {
            let t = Instant::now();
            let bin = build_apiserver(go, &work)?;
            install(&bin, &dest.join("kube-apiserver"))?;
            eprintln!(
                "kube-assets: kube-apiserver {K8S_VERSION} built in {:.0?}",
                t.elapsed()
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result?;
    eprintln!(
        "kube-assets: done in {:.0?}: {}",
        started.elapsed(),
        dest.display()
    );
    Ok(())
}

/// Work dirs of builds whose process is gone (interrupted runs).
fn remove_stale_work_dirs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(".work-")) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Check the fresh binary runs, then move it into place atomically.
fn install(built: &Path, dest: &Path) -> Result<()> {
    if runnable(built, "").is_none() {
        bail!("{} was built but does not run `--version`", built.display());
    }
    // Same filesystem (the work dir sits next to the cache): rename is atomic.
    std::fs::rename(built, dest)
        .with_context(|| format!("rename {} to {}", built.display(), dest.display()))
}

fn wrapper_module(dir: &Path, name: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("go.mod"),
        format!("module local/{name}\n\ngo 1.24.0\n"),
    )?;
    Ok(())
}

fn build_etcd(go: &Path, work: &Path) -> Result<PathBuf> {
    let dir = work.join("etcd");
    wrapper_module(&dir, "nantian-etcd-build")?;
    go_run(go_cmd(go, &dir).args(["get", &format!("go.etcd.io/etcd/server/v3@{ETCD_VERSION}")]))?;
    let out = work.join("out-etcd");
    go_run(go_cmd(go, &dir).args([
        "build",
        "-trimpath",
        "-ldflags=-s -w",
        "-o",
        path_str(&out)?,
        "go.etcd.io/etcd/server/v3",
    ]))?;
    Ok(out)
}

fn build_apiserver(go: &Path, work: &Path) -> Result<PathBuf> {
    let dir = work.join("kubernetes");
    wrapper_module(&dir, "nantian-kube-apiserver-build")?;
    let module = format!("k8s.io/kubernetes@{K8S_VERSION}");
    let info = go_output(go_cmd(go, &dir).args(["mod", "download", "-json", &module]))?;
    let go_mod_path = json_string(&info, "GoMod")
        .with_context(|| format!("`go mod download -json {module}` names no GoMod:\n{info}"))?;
    let go_mod =
        std::fs::read_to_string(&go_mod_path).with_context(|| format!("read {go_mod_path}"))?;
    let upstream = UpstreamGoMod::parse(&go_mod);
    if upstream.staging.is_empty() {
        bail!("no `=> ./staging/...` replace lines in {go_mod_path}: cannot build {module}");
    }
    // v1.34.4 → the staging modules are published as v0.34.4.
    let staging_version = format!("v0.{}", &K8S_VERSION[3..]);
    eprintln!(
        "kube-assets: {} staging modules → {staging_version}; go {}; godebug {:?}",
        upstream.staging.len(),
        upstream.go.as_deref().unwrap_or("?"),
        upstream.godebug
    );
    let mut edit = go_cmd(go, &dir);
    edit.args(["mod", "edit"]);
    if let Some(v) = &upstream.go {
        edit.arg(format!("-go={v}"));
    }
    for g in &upstream.godebug {
        edit.arg(format!("-godebug={g}"));
    }
    for m in &upstream.staging {
        edit.arg(format!("-replace={m}={m}@{staging_version}"));
    }
    go_run(&mut edit)?;
    go_run(go_cmd(go, &dir).args([
        "get",
        &format!("k8s.io/kubernetes/cmd/kube-apiserver@{K8S_VERSION}"),
    ]))?;

    // What upstream's release build stamps in, so `--version` and the discovery `/version`
    // say v1.34.4 rather than v0.0.0-master.
    let minor = K8S_VERSION.split('.').nth(1).unwrap_or("0");
    let mut ldflags = String::from("-s -w");
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        ldflags += &format!(
            " -X {pkg}.gitVersion={K8S_VERSION} -X {pkg}.gitMajor=1 -X {pkg}.gitMinor={minor} \
             -X {pkg}.gitTreeState=clean"
        );
        if let Some(commit) = json_string(&info, "Hash") {
            ldflags += &format!(" -X {pkg}.gitCommit={commit}");
        }
    }
    let out = work.join("out-kube-apiserver");
    go_run(go_cmd(go, &dir).args([
        "build",
        "-trimpath",
        &format!("-tags={GO_TAGS}"),
        &format!("-ldflags={ldflags}"),
        "-o",
        path_str(&out)?,
        "k8s.io/kubernetes/cmd/kube-apiserver",
    ]))?;
    Ok(out)
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("non-UTF-8 path {}", p.display()))
}

/// The first `"key": "value"` string in `go mod download -json` output (flat enough for
/// this; xtask has no JSON parser).
fn json_string(json: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\":");
    let rest = json[json.find(&needle)? + needle.len()..].trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].replace("\\\\", "\\"))
}

/// What the wrapper module copies from `k8s.io/kubernetes`' own go.mod.
#[derive(Debug, Default, PartialEq)]
struct UpstreamGoMod {
    /// The `go` directive.
    go: Option<String>,
    /// `godebug` settings (`default=go1.NN`, ...): the binary behaves like the release.
    godebug: Vec<String>,
    /// Every module replaced by `./staging/src/...`.
    staging: Vec<String>,
}

impl UpstreamGoMod {
    fn parse(text: &str) -> Self {
        let mut m = Self::default();
        let mut block: Option<&str> = None;
        for raw in text.lines() {
            let line = raw.split("//").next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if line == ")" {
                block = None;
                continue;
            }
            if let Some(b) = line.strip_suffix('(').map(str::trim) {
                block = Some(if b == "replace" || b == "godebug" {
                    b
                } else {
                    ""
                });
                continue;
            }
            let (kind, body) = match block {
                Some(kind) => (kind, line),
                None => match line.split_once(char::is_whitespace) {
                    Some((k, rest)) => (k, rest.trim()),
                    None => continue,
                },
            };
            match kind {
                "go" => m.go = Some(body.to_string()),
                "godebug" => m.godebug.push(body.replace(' ', "")),
                "replace" => {
                    if let Some((from, to)) = body.split_once("=>")
                        && to.trim().starts_with("./staging/")
                        && let Some(module) = from.split_whitespace().next()
                    {
                        m.staging.push(module.to_string());
                    }
                }
                _ => {}
            }
        }
        m.staging.sort();
        m.staging.dedup();
        m
    }
}

/// The helm release the chart tests (`tests/tests/helm_chart.rs`) run.
pub const HELM_VERSION: &str = "v3.22.0";

/// A runnable `helm`, built once per machine into
/// `$HOME/.cache/nantian/kube-assets/helm-<version>/` with `go install` (helm's module has
/// no replace directives, so no wrapper module is needed). `Ok(None)` when it cannot be
/// had here for a reason the tests turn into a skip (no `go`; a failed build outside CI).
pub fn ensure_helm() -> Result<Option<PathBuf>> {
    let dir = cache_root()?.join(format!("helm-{HELM_VERSION}"));
    let bin = dir.join("helm");
    if helm_ok(&bin) {
        eprintln!("kube-assets: helm {HELM_VERSION} in {}", dir.display());
        return Ok(Some(bin));
    }
    let built = with_go(
        &format!("helm {HELM_VERSION}"),
        "chart tests (tests/tests/helm_chart.rs)",
        &[],
        |go| build_helm(go, &dir),
    )?;
    Ok(built.then_some(bin))
}

fn helm_ok(p: &Path) -> bool {
    // `helm version --short` prints `v3.22.0` (`+g<commit>` when a commit is stamped).
    Command::new(p)
        .args(["version", "--short"])
        .output()
        .is_ok_and(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with(HELM_VERSION)
        })
}

fn build_helm(go: &Path, dest: &Path) -> Result<()> {
    // The version stamp upstream's Makefile sets (else `helm version` says only v3.22).
    let stamp = "helm.sh/helm/v3/internal/version";
    go_install(
        go,
        dest,
        &format!("helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"),
        &format!("-s -w -X {stamp}.version={HELM_VERSION} -X {stamp}.gitTreeState=clean"),
        helm_ok,
    )
}

/// The go-containerregistry release whose `crane` the image tests (`tests/tests/image.rs`)
/// push, validate and export the images of `cargo xtask image` with.
pub const CRANE_VERSION: &str = "v0.22.1";

/// A runnable `crane`, built once per machine into
/// `$HOME/.cache/nantian/kube-assets/crane-<version>/` with `go install`, as helm is.
/// `Ok(None)` when it cannot be had here for a reason the tests turn into a skip.
pub fn ensure_crane() -> Result<Option<PathBuf>> {
    let dir = cache_root()?.join(format!("crane-{CRANE_VERSION}"));
    let bin = dir.join("crane");
    if crane_ok(&bin) {
        eprintln!("kube-assets: crane {CRANE_VERSION} in {}", dir.display());
        return Ok(Some(bin));
    }
    let built = with_go(
        &format!("crane {CRANE_VERSION}"),
        "image tests (tests/tests/image.rs)",
        &[],
        |go| {
            go_install(
                go,
                &dir,
                &format!("github.com/google/go-containerregistry/cmd/crane@{CRANE_VERSION}"),
                "-s -w",
                crane_ok,
            )
        },
    )?;
    Ok(built.then_some(bin))
}

fn crane_ok(p: &Path) -> bool {
    // `crane version` prints the module version `go install` records: `v0.22.1`.
    Command::new(p).arg("version").output().is_ok_and(|out| {
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == CRANE_VERSION
    })
}

/// `go install <package>@<version>` into `dest`, for modules without replace directives
/// (no wrapper module needed). The binary is checked with `ok`, then renamed into place.
fn go_install(
    go: &Path,
    dest: &Path,
    package_at_version: &str,
    ldflags: &str,
    ok: fn(&Path) -> bool,
) -> Result<()> {
    let package = package_at_version
        .split_once('@')
        .map_or(package_at_version, |(p, _)| p);
    let name = package.rsplit('/').next().unwrap_or(package);
    let root = dest.parent().expect("cache dir has a parent");
    std::fs::create_dir_all(dest).with_context(|| format!("create {}", dest.display()))?;
    remove_stale_work_dirs(root);
    let work = root.join(format!(".work-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    eprintln!("kube-assets: building {package_at_version} (first time: a few minutes)");
    let started = Instant::now();
    let mut install = go_cmd(go, &work);
    // `-mod=mod` is refused by `go install pkg@version`; the version pins everything.
    install.env_remove("GOFLAGS").env("GOBIN", &work).args([
        "install",
        "-trimpath",
        &format!("-ldflags={ldflags}"),
        package_at_version,
    ]);
    let result = go_run(&mut install).and_then(|()| {
        let built = work.join(name);
        if !ok(&built) {
            bail!(
                "{} was built but does not say it is {package_at_version}",
                built.display()
            );
        }
        // Same filesystem: the rename is atomic, a half-written binary is never seen.
        std::fs::rename(&built, dest.join(name))
            .with_context(|| format!("rename {} into {}", built.display(), dest.display()))
    });
    let _ = std::fs::remove_dir_all(&work);
    result?;
    eprintln!("kube-assets: {name} built in {:.0?}", started.elapsed());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_go_mod() {
        let text = "module k8s.io/kubernetes\n\ngo 1.24.0\n\ngodebug default=go1.24\n\n\
                    require (\n\tk8s.io/api v0.0.0\n)\n\n\
                    replace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\
                    \tk8s.io/kms v0.0.0 => ./staging/src/k8s.io/kms // comment\n\
                    \tgithub.com/x/y => github.com/x/z v1.0.0\n)\n\
                    replace k8s.io/streaming => ./staging/src/k8s.io/streaming\n";
        assert_eq!(
            UpstreamGoMod::parse(text),
            UpstreamGoMod {
                go: Some("1.24.0".into()),
                godebug: vec!["default=go1.24".into()],
                staging: vec![
                    "k8s.io/api".into(),
                    "k8s.io/kms".into(),
                    "k8s.io/streaming".into()
                ],
            }
        );
    }

    #[test]
    fn reads_json_strings() {
        let json = "{\n\t\"Path\": \"k8s.io/kubernetes\",\n\t\"GoMod\": \"/m/k8s.io/kubernetes@v1.34.4.mod\",\n\t\"Origin\": {\n\t\t\"Hash\": \"abc\"\n\t}\n}";
        assert_eq!(
            json_string(json, "GoMod").as_deref(),
            Some("/m/k8s.io/kubernetes@v1.34.4.mod")
        );
        assert_eq!(json_string(json, "Hash").as_deref(), Some("abc"));
        assert_eq!(json_string(json, "Nope"), None);
    }
}
