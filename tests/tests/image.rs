//! The OCI images `cargo xtask image` writes (into `NANTIAN_IMAGE_DIR`), checked with an
//! independent implementation: go-containerregistry's `crane` (`NANTIAN_CRANE`, built by
//! `cargo xtask test`).
//!
//! Each archive is unpacked as the OCI image layout it is and pushed to an in-memory
//! `crane registry serve` on loopback; crane validates it there (every blob against its
//! digest, the layer against the config's diff_id), and reads the archive's Docker
//! `manifest.json` too. Then the image's filesystem is exported and its binary run in it
//! with chroot, as the image's user: it starts with only the libraries the image carries.
//!
//! Skipped (loudly) without crane or the images; failed instead under `CI`.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The user the images run as (`User` in their config).
const NONROOT: u32 = 65532;

struct Tools {
    crane: PathBuf,
    images: PathBuf,
}

/// crane and the image directory, or `None` (after saying so) when this run has neither.
fn tools_or_skip(test: &str) -> Option<Tools> {
    let crane = std::env::var_os("NANTIAN_CRANE")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let images = std::env::var_os("NANTIAN_IMAGE_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir());
    match (crane, images) {
        (Some(crane), Some(images)) => Some(Tools { crane, images }),
        (crane, _) => {
            let missing = if crane.is_none() {
                "no crane binary (NANTIAN_CRANE)"
            } else {
                "no image directory (NANTIAN_IMAGE_DIR)"
            };
            let msg = format!(
                "{missing}; run the tests with `cargo xtask test`, which builds crane and the images"
            );
            if std::env::var_os("CI").is_some() {
                panic!("{test}: {msg} (CI is set: the image tests must not be skipped)");
            }
            let _ = writeln!(std::io::stderr().lock(), "\n!!! SKIP {test}: {msg}\n");
            None
        }
    }
}

/// Runs `command`, panicking with its stderr unless it succeeds; returns stdout.
fn output(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn crane(tools: &Tools, args: &[&str]) -> String {
    output(Command::new(&tools.crane).args(args))
}

fn untar(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    output(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(into),
    );
}

/// `crane registry serve` on a free loopback port: an in-memory registry, gone with the test.
struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    addr: String,
}

impl Registry {
    fn start(tools: &Tools) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(&tools.crane)
            .args(["registry", "serve", "--address", &addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start crane registry serve");
        let mut registry = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&registry.addr).is_err() {
            if let Some(status) = registry.child.try_wait().unwrap() {
                panic!("crane registry serve on {} exited: {status}", registry.addr);
            }
            assert!(
                Instant::now() < deadline,
                "crane registry serve does not listen on {}",
                registry.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `program` found on PATH or in the sbin directories (chroot lives in /usr/sbin).
fn find_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no {name} on this machine"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `program args` inside `rootfs` with the image's environment and user: chroot as root;
/// otherwise in a user namespace where this user is root (its user only).
fn run_in(rootfs: &Path, program: &str, args: &[&str]) -> Output {
    let mut command = if is_root() {
        let mut c = Command::new(find_program("chroot"));
        c.arg(format!("--userspec={NONROOT}:{NONROOT}"));
        c
    } else {
        let mut c = Command::new(find_program("unshare"));
        c.args(["--user", "--map-root-user"])
            .arg(find_program("chroot"));
        c
    };
    command
        .arg(rootfs)
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt");
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// Everything checked of image `name`; `extra_files` are paths the image must hold.
fn check_image(test: &str, name: &str, extra_files: &[&str]) {
    let Some(tools) = tools_or_skip(test) else {
        return;
    };
    let archive = tools.images.join(format!("{name}-{VERSION}.oci.tar"));
    assert!(
        archive.is_file(),
        "{} is missing: run `cargo xtask image`",
        archive.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    untar(&archive, &layout);

    // The layout names the image as the chart's default values do.
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        format!("ghcr.io/nantian-gateway/{name}:{VERSION}"),
        "{index:#}"
    );

    let registry = Registry::start(&tools);
    let reference = format!("{}/{name}:test", registry.addr);
    crane(&tools, &["push", layout.to_str().unwrap(), &reference]);
    // Downloads every blob and checks it against its digest, and the uncompressed layer
    // against the config's diff_id.
    crane(&tools, &["validate", "--remote", &reference]);
    let manifest: Value = serde_json::from_str(&crane(&tools, &["manifest", &reference])).unwrap();
    assert_eq!(
        manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{manifest:#}"
    );

    // The same archive read as a Docker tarball (its manifest.json), as `docker load` does:
    // same config.
    let archive_path = archive.to_str().unwrap();
    crane(&tools, &["validate", "--tarball", archive_path]);
    let docker_reference = format!("{}/{name}:docker", registry.addr);
    crane(&tools, &["push", archive_path, &docker_reference]);
    crane(&tools, &["validate", "--remote", &docker_reference]);
    let config_text = crane(&tools, &["config", &reference]);
    assert_eq!(config_text, crane(&tools, &["config", &docker_reference]));

    let config: Value = serde_json::from_str(&config_text).unwrap();
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], oci_arch());
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!([format!("/usr/local/bin/{name}")])
    );
    assert_eq!(config["config"]["User"], format!("{NONROOT}:{NONROOT}"));
    let env = config["config"]["Env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e == "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
        "{env:?}"
    );

    // The filesystem as a container runtime would unpack it.
    let rootfs_tar = tmp.path().join("rootfs.tar");
    crane(
        &tools,
        &["export", &reference, rootfs_tar.to_str().unwrap()],
    );
    let rootfs = tmp.path().join("rootfs");
    untar(&rootfs_tar, &rootfs);
    let ca_bundle = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt"))
        .expect("the CA bundle");
    assert!(ca_bundle.contains("BEGIN CERTIFICATE"));
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains(&format!("nonroot:x:{NONROOT}:{NONROOT}:")),
        "{passwd}"
    );
    let tmp_mode = std::fs::metadata(rootfs.join("tmp")).unwrap().permissions();
    assert_eq!(tmp_mode.mode() & 0o7777, 0o1777);
    if is_root() {
        // tar keeps owners only when extracting as root.
        let home = std::fs::metadata(rootfs.join("home/nonroot")).unwrap();
        assert_eq!((home.uid(), home.gid()), (NONROOT, NONROOT));
    }
    for file in extra_files {
        let data = std::fs::read(rootfs.join(file.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        if file.ends_with(".wasm") {
            assert!(data.starts_with(b"\0asm"), "{file} is no Wasm binary");
        }
    }

    // It runs with nothing but the image: the copied libraries and loader are complete.
    let program = format!("/usr/local/bin/{name}");
    let out = run_in(&rootfs, &program, &["--help"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{program} --help in the image failed: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(name), "{stdout}");
}

#[test]
fn the_host_image_is_valid_and_runs() {
    check_image("the_host_image_is_valid_and_runs", "nantian-host", &[]);
}

#[test]
fn the_controller_image_is_valid_runs_and_carries_the_filters() {
    check_image(
        "the_controller_image_is_valid_runs_and_carries_the_filters",
        "nantian-controller",
        &[
            "/usr/local/bin/filters/cors.wasm",
            "/usr/local/bin/filters/header-modifier.wasm",
        ],
    );
}
