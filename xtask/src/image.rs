//! `cargo xtask image [--out DIR]`: OCI images of the controller and the host, built without
//! Docker or a base image.
//!
//! Each image has one layer: a minimal ("distroless") root filesystem assembled from this
//! machine. It holds the release binary (debug info stripped) in /usr/local/bin, every shared library `ldd` says
//! it loads (at the path `ldd` reports, the dynamic loader included), /etc/passwd and
//! /etc/group with the `nonroot` user (65532) the image runs as, /etc/nsswitch.conf, the CA
//! bundle (the host trusts the system store through rustls-native-certs), a world-writable
//! /tmp and nonroot's home. The controller's image also carries the built-in filter
//! components, in /usr/local/bin/filters/ where the controller looks by default.
//!
//! Each image is written as `<out>/<name>-<version>.oci.tar`: an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/`) with a Docker `manifest.json` beside it, so
//! `docker load`, `podman load`, `skopeo` and `crane` all read it. The archives are
//! reproducible (entries sorted, fixed owners, timestamps from `SOURCE_DATE_EPOCH` or 0,
//! gzip without name or time): the same binaries give the same digests.
//! `tests/tests/image.rs` checks them with go-containerregistry's `crane`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::workspace::Workspace;

/// Where the images are named to live: the chart's default `*.image.repository`.
const REGISTRY: &str = "ghcr.io/nantian-gateway";
/// The tag: the workspace version, which is the chart's appVersion.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// distroless' `nonroot`: the user the images run as, and the `runAsUser` the controller
/// gives the hosts it provisions.
const NONROOT: u64 = 65532;
const BIN_DIR: &str = "usr/local/bin";
/// Where rustls-native-certs (through openssl-probe's list) and `SSL_CERT_FILE` find the
/// trusted CAs.
const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

const LAYOUT_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `cargo xtask image [--out DIR]`: build, then write both images and say how to use them.
pub fn run(ws: &Workspace) -> Result<()> {
    let out = out_dir(ws, std::env::args().skip(2))?;
    crate::build(ws)?;
    let written = write_all(ws, &out)?;
    print_summary(&written);
    Ok(())
}

fn out_dir(ws: &Workspace, mut args: impl Iterator<Item = String>) -> Result<PathBuf> {
    let mut out = ws.image_dir();
    while let Some(arg) = args.next() {
        if arg == "--out" {
            out = args.next().context("--out needs a directory")?.into();
        } else if let Some(dir) = arg.strip_prefix("--out=") {
            out = dir.into();
        } else {
            bail!("unexpected argument {arg:?}; usage: cargo xtask image [--out DIR]");
        }
    }
    std::path::absolute(&out).with_context(|| format!("resolve {}", out.display()))
}

/// An image archive on disk.
pub struct Written {
    pub path: PathBuf,
    pub reference: String,
    pub manifest_digest: String,
    pub size: u64,
}

/// The archive path of image `name` (`nantian-host`, ...) in `dir`.
pub fn archive_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}-{VERSION}.oci.tar"))
}

/// Writes the controller's and the host's image archives into `out` from the release
/// binaries and filter components `crate::build` left in the target dir.
pub fn write_all(ws: &Workspace, out: &Path) -> Result<Vec<Written>> {
    let epoch = source_date_epoch()?;
    let arch = oci_arch()?;
    let ca_bundle = std::fs::read(Path::new("/").join(CA_BUNDLE)).with_context(|| {
        format!(
            "read /{CA_BUNDLE}, the CA bundle the images trust: install it \
             (Debian/Ubuntu: apt-get install ca-certificates)"
        )
    })?;
    let filters: Vec<_> = crate::BUILTIN_FILTERS
        .iter()
        .map(|(_, file)| {
            (
                ws.filter_dir().join(file),
                format!("{BIN_DIR}/filters/{file}"),
            )
        })
        .collect();
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;

    let mut written = Vec::new();
    for (name, extra_files) in [("nantian-controller", filters), ("nantian-host", vec![])] {
        let mut rootfs = base_rootfs(ca_bundle.clone())?;
        add_binary(&mut rootfs, &ws.bin(name), &format!("{BIN_DIR}/{name}"))?;
        for (source, dest) in extra_files {
            let data =
                std::fs::read(&source).with_context(|| format!("read {}", source.display()))?;
            rootfs.file(&dest, data, 0o644)?;
        }
        let image = ImageArchive::build(name, arch, epoch, &rootfs)?;
        let path = archive_path(out, name);
        // Renamed into place: a reader never sees half an archive.
        let partial = path.with_extension(format!("tar.partial-{}", std::process::id()));
        std::fs::write(&partial, &image.bytes)
            .with_context(|| format!("write {}", partial.display()))?;
        std::fs::rename(&partial, &path)
            .with_context(|| format!("rename {} to {}", partial.display(), path.display()))?;
        written.push(Written {
            path,
            reference: image.reference,
            manifest_digest: image.manifest_digest,
            size: image.bytes.len() as u64,
        });
    }
    Ok(written)
}

fn print_summary(written: &[Written]) {
    println!();
    for w in written {
        println!("{}", w.path.display());
        println!("    {}", w.reference);
        println!("    manifest {}", w.manifest_digest);
        println!("    {:.1} MB", w.size as f64 / 1e6);
    }
    let Some(example) = written.last() else {
        return;
    };
    let path = example.path.display();
    let name = example.reference.rsplit('/').next().unwrap_or_default();
    println!(
        "\nEach archive is an OCI image layout with a Docker manifest.json. To use one:\n\
         \n  docker load -i {path}\
         \n  podman load -i {path}\
         \n  skopeo copy oci-archive:{path} docker://<registry>/{name}\
         \n  crane push {path} <registry>/{name}\
         \n\nand point the chart at the registry (the tag defaults to {VERSION}, its appVersion):\
         \n\n  --set controller.image.repository=<registry>/nantian-controller\
         \n  --set host.image.repository=<registry>/nantian-host"
    );
}

/// `SOURCE_DATE_EPOCH` (https://reproducible-builds.org/specs/source-date-epoch/), else 0.
fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.trim().is_empty() => s
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds")),
        _ => Ok(0),
    }
}

/// This machine's architecture as OCI names it: the release binaries are built for it.
fn oci_arch() -> Result<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("amd64"),
        "aarch64" => Ok("arm64"),
        other => bail!("no OCI architecture name known for {other}"),
    }
}

/// The files of the root filesystem every image shares.
fn base_rootfs(ca_bundle: Vec<u8>) -> Result<Tree> {
    let mut fs = Tree::default();
    fs.file(
        "etc/passwd",
        format!(
            "root:x:0:0:root:/root:/sbin/nologin\n\
             nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
        )
        .into_bytes(),
        0o644,
    )?;
    fs.file(
        "etc/group",
        format!("root:x:0:\nnonroot:x:{NONROOT}:\n").into_bytes(),
        0o644,
    )?;
    // glibc reads it for getaddrinfo: without it, it may skip /etc/hosts (which Kubernetes
    // mounts) or DNS.
    fs.file(
        "etc/nsswitch.conf",
        b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec(),
        0o644,
    )?;
    fs.file(CA_BUNDLE, ca_bundle, 0o644)?;
    fs.dir("root", 0o700, 0)?;
    fs.dir("home/nonroot", 0o755, NONROOT)?;
    fs.dir("tmp", 0o1777, 0)?;
    Ok(fs)
}

/// `binary` at `dest` without its debug info, with every shared library it loads at the
/// path `ldd` found it at.
fn add_binary(fs: &mut Tree, binary: &Path, dest: &str) -> Result<()> {
    fs.file(dest, without_debug_info(binary)?, 0o755)?;
    for lib in shared_libraries(binary)? {
        // The real contents: a symlink's target may not be in the image.
        let data = std::fs::read(&lib).with_context(|| format!("read {lib}"))?;
        fs.file(lib.trim_start_matches('/'), data, 0o755)?;
    }
    Ok(())
}

/// `binary`'s bytes after `strip --strip-debug`: the release profile keeps line tables
/// for the tests' backtraces, which would make up most of an image. Symbols stay, so a
/// panic's backtrace still names its functions.
fn without_debug_info(binary: &Path) -> Result<Vec<u8>> {
    if !binary.is_file() {
        bail!("{} is not there (was it built?)", binary.display());
    }
    let stripped = std::env::temp_dir().join(format!(
        "nantian-image-{}-{}",
        std::process::id(),
        binary.file_name().unwrap_or_default().to_string_lossy()
    ));
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&stripped)
        .arg(binary)
        .status()
        .context("run strip (Debian/Ubuntu: apt-get install binutils)")?;
    if !status.success() {
        bail!("strip --strip-debug {} failed: {status}", binary.display());
    }
    let data = std::fs::read(&stripped).with_context(|| format!("read {}", stripped.display()));
    let _ = std::fs::remove_file(&stripped);
    data
}

/// The files `ldd` says `binary` loads; none for a static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<String>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("run ldd (glibc's, Debian package libc-bin)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stdout.contains("not a dynamic executable") || stderr.contains("not a dynamic") {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}\n{stderr}", binary.display(), out.status);
    }
    parse_ldd(&stdout).with_context(|| format!("ldd {}", binary.display()))
}

/// The absolute paths in `ldd` output: `libc.so.6 => /lib/.../libc.so.6 (0x…)` lines and
/// the loader's bare `/lib64/ld-linux-x86-64.so.2 (0x…)`. The vDSO has no file.
fn parse_ldd(text: &str) -> Result<Vec<String>> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim) {
        let target = match line.split_once("=>") {
            Some((name, target)) if target.trim().starts_with("not found") => {
                bail!("{} not found", name.trim())
            }
            Some((_, target)) => target,
            None => line,
        };
        match target.split_whitespace().next() {
            Some(path) if path.starts_with('/') => paths.push(path.to_string()),
            _ => {}
        }
    }
    Ok(paths)
}

/// A file tree kept sorted by path, written as a reproducible tar: the image's layer, and
/// the image layout around it.
#[derive(Debug, Default)]
struct Tree {
    /// Relative paths (`usr/local/bin`), parents before children.
    entries: BTreeMap<String, Node>,
}

#[derive(Debug)]
enum Node {
    /// Owned by `owner` as uid and gid.
    Dir { mode: u32, owner: u64 },
    /// Owned by root.
    File { data: Vec<u8>, mode: u32 },
}

impl Tree {
    fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) -> Result<()> {
        self.parents(path)?;
        match self.entries.get(path) {
            Some(Node::Dir { .. }) => bail!("{path} is a directory already"),
            Some(Node::File { data: old, .. }) if *old != data => {
                bail!("{path} added twice with different contents")
            }
            _ => {}
        }
        self.entries
            .insert(path.to_string(), Node::File { data, mode });
        Ok(())
    }

    fn dir(&mut self, path: &str, mode: u32, owner: u64) -> Result<()> {
        self.parents(path)?;
        if let Some(Node::File { .. }) = self.entries.get(path) {
            bail!("{path} is a file already");
        }
        self.entries
            .insert(path.to_string(), Node::Dir { mode, owner });
        Ok(())
    }

    /// Every ancestor of `path` as a real directory (not the host's symlinks: /lib64 is one
    /// on merged-/usr systems), root-owned 0755 unless added otherwise.
    fn parents(&mut self, path: &str) -> Result<()> {
        if path.is_empty()
            || path.starts_with('/')
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            bail!("{path:?} is not a plain relative path");
        }
        for (at, _) in path.match_indices('/') {
            let parent = &path[..at];
            match self.entries.get(parent) {
                Some(Node::File { .. }) => bail!("{parent} is a file, not {path}'s directory"),
                Some(Node::Dir { .. }) => {}
                None => {
                    let dir = Node::Dir {
                        mode: 0o755,
                        owner: 0,
                    };
                    self.entries.insert(parent.to_string(), dir);
                }
            }
        }
        Ok(())
    }

    /// The tree as a tar: sorted, every timestamp `mtime`, no user or group names.
    fn tar(&self, mtime: u64) -> Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, node) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(mtime);
            match node {
                Node::Dir { mode, owner } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_uid(*owner);
                    header.set_gid(*owner);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                }
                Node::File { data, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_uid(0);
                    header.set_gid(0);
                    header.set_size(data.len() as u64);
                    tar.append_data(&mut header, path, data.as_slice())?;
                }
            }
        }
        Ok(tar.into_inner()?)
    }
}

/// Content-addressed bytes: an image config, manifest or layer.
struct Blob {
    media_type: &'static str,
    bytes: Vec<u8>,
    digest: String,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Self {
        let digest = sha256(&bytes);
        Self {
            media_type,
            bytes,
            digest,
        }
    }

    fn json(media_type: &'static str, value: &Value) -> Result<Self> {
        Ok(Self::new(media_type, serde_json::to_vec(value)?))
    }

    fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }

    /// Its path in an image layout (`blobs/sha256/<hex>`).
    fn path(&self) -> String {
        format!("blobs/{}", self.digest.replacen(':', "/", 1))
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// Gzip with no file name and time in the header: the same layer gives the same bytes.
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(data)?;
    Ok(gz.finish()?)
}

/// One image as a tarred OCI image layout (plus Docker's `manifest.json`).
struct ImageArchive {
    bytes: Vec<u8>,
    /// `ghcr.io/nantian-gateway/<name>:<version>`.
    reference: String,
    manifest_digest: String,
}

impl ImageArchive {
    /// Image `name` running `/usr/local/bin/<name>` from the single layer `rootfs`, for
    /// linux/`arch`, created at `epoch`.
    fn build(name: &str, arch: &str, epoch: u64, rootfs: &Tree) -> Result<Self> {
        let layer_tar = rootfs.tar(epoch)?;
        // The config names the layer by the digest of its uncompressed tar.
        let diff_id = sha256(&layer_tar);
        let layer = Blob::new(LAYER_MEDIA_TYPE, gzip(&layer_tar)?);
        drop(layer_tar);
        let created = jiff::Timestamp::from_second(i64::try_from(epoch)?)?.to_string();
        let reference = format!("{REGISTRY}/{name}:{VERSION}");
        let labels = json!({
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.version": VERSION,
            "org.opencontainers.image.source": env!("CARGO_PKG_REPOSITORY"),
            "org.opencontainers.image.licenses": env!("CARGO_PKG_LICENSE"),
            "org.opencontainers.image.created": created,
        });
        let config = Blob::json(
            CONFIG_MEDIA_TYPE,
            &json!({
                "created": created,
                "architecture": arch,
                "os": "linux",
                "config": {
                    "User": format!("{NONROOT}:{NONROOT}"),
                    "Env": [
                        "PATH=/usr/local/bin:/usr/bin:/bin",
                        format!("SSL_CERT_FILE=/{CA_BUNDLE}"),
                    ],
                    "Entrypoint": [format!("/{BIN_DIR}/{name}")],
                    "WorkingDir": "/",
                    "Labels": labels,
                },
                "rootfs": { "type": "layers", "diff_ids": [diff_id] },
                "history": [{
                    "created": created,
                    "created_by": "cargo xtask image",
                    "comment": format!(
                        "{name} with its shared libraries, users, CA bundle (from the build machine)"
                    ),
                }],
            }),
        )?;
        let manifest = Blob::json(
            MANIFEST_MEDIA_TYPE,
            &json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST_MEDIA_TYPE,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
                "annotations": labels,
            }),
        )?;
        let mut manifest_descriptor = manifest.descriptor();
        manifest_descriptor["annotations"] = json!({
            "org.opencontainers.image.ref.name": reference,
            // What containerd (and so `docker load` with the containerd store) names it.
            "io.containerd.image.name": reference,
        });
        manifest_descriptor["platform"] = json!({ "architecture": arch, "os": "linux" });
        let index = json!({
            "schemaVersion": 2,
            "mediaType": LAYOUT_MEDIA_TYPE,
            "manifests": [manifest_descriptor],
        });
        // `docker load` of archives without containerd's image store reads this instead.
        let docker_manifest = json!([{
            "Config": config.path(),
            "RepoTags": [reference],
            "Layers": [layer.path()],
        }]);

        let mut layout = Tree::default();
        layout.file(
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            0o644,
        )?;
        layout.file("index.json", serde_json::to_vec(&index)?, 0o644)?;
        layout.file(
            "manifest.json",
            serde_json::to_vec(&docker_manifest)?,
            0o644,
        )?;
        let manifest_digest = manifest.digest.clone();
        for blob in [config, manifest, layer] {
            layout.file(&blob.path(), blob.bytes, 0o644)?;
        }
        Ok(Self {
            bytes: layout.tar(epoch)?,
            reference,
            manifest_digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    /// Path (directories without their trailing `/`), header and contents of every entry,
    /// in archive order.
    fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::Header, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_str().unwrap().to_string();
                let path = path.trim_end_matches('/').to_string();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, e.header().clone(), data)
            })
            .collect()
    }

    fn files(tar_bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
        entries(tar_bytes)
            .into_iter()
            .map(|(path, _, data)| (path, data))
            .collect()
    }

    fn json_file(files: &BTreeMap<String, Vec<u8>>, path: &str) -> Value {
        serde_json::from_slice(&files[path]).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The blob a descriptor names, checked against its digest and size.
    fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, descriptor: &Value) -> &'a [u8] {
        let digest = descriptor["digest"].as_str().unwrap();
        let path = format!("blobs/sha256/{}", digest.strip_prefix("sha256:").unwrap());
        let data = &files[&path];
        assert_eq!(sha256(data), digest, "{path}");
        assert_eq!(descriptor["size"], data.len(), "{path}");
        data
    }

    fn sample_rootfs() -> Tree {
        let mut fs = base_rootfs(b"-----BEGIN CERTIFICATE-----\n".to_vec()).unwrap();
        fs.file("usr/local/bin/demo", b"\x7fELF demo".to_vec(), 0o755)
            .unwrap();
        fs.file("lib64/ld-linux-x86-64.so.2", b"loader".to_vec(), 0o755)
            .unwrap();
        fs.file("usr/local/bin/filters/cors.wasm", b"\0asm".to_vec(), 0o644)
            .unwrap();
        fs
    }

    #[test]
    fn the_layout_is_consistent() {
        let image = ImageArchive::build("demo", "amd64", 0, &sample_rootfs()).unwrap();
        let files = files(&image.bytes);
        assert_eq!(
            json_file(&files, "oci-layout"),
            json!({"imageLayoutVersion": "1.0.0"})
        );

        let index = json_file(&files, "index.json");
        assert_eq!(index["schemaVersion"], 2);
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 1);
        let descriptor = &manifests[0];
        assert_eq!(
            descriptor["annotations"]["org.opencontainers.image.ref.name"],
            format!("ghcr.io/nantian-gateway/demo:{VERSION}")
        );
        assert_eq!(descriptor["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(descriptor["digest"], image.manifest_digest);
        let manifest: Value = serde_json::from_slice(blob(&files, descriptor)).unwrap();

        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        let config: Value = serde_json::from_slice(blob(&files, &manifest["config"])).unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], LAYER_MEDIA_TYPE);
        let layer = blob(&files, &layers[0]);
        let mut layer_tar = Vec::new();
        flate2::read::GzDecoder::new(layer)
            .read_to_end(&mut layer_tar)
            .unwrap();
        assert_eq!(config["rootfs"]["diff_ids"], json!([sha256(&layer_tar)]));

        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(
            config["config"]["Entrypoint"],
            json!(["/usr/local/bin/demo"])
        );
        assert_eq!(config["history"].as_array().unwrap().len(), 1);

        // Docker's manifest.json names the same blobs.
        let docker = json_file(&files, "manifest.json");
        assert_eq!(
            docker[0]["Config"],
            format!("blobs/{}", config_digest(&manifest).replace(':', "/"))
        );
        for path in docker[0]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .chain([&docker[0]["Config"]])
        {
            assert!(files.contains_key(path.as_str().unwrap()), "{path}");
        }
        assert_eq!(
            docker[0]["RepoTags"],
            json!([format!("ghcr.io/nantian-gateway/demo:{VERSION}")])
        );
    }

    fn config_digest(manifest: &Value) -> String {
        manifest["config"]["digest"].as_str().unwrap().to_string()
    }

    #[test]
    fn the_layer_is_a_sorted_reproducible_root_filesystem() {
        let layer = sample_rootfs().tar(0).unwrap();
        assert_eq!(layer, sample_rootfs().tar(0).unwrap(), "deterministic");
        assert_eq!(gzip(&layer).unwrap(), gzip(&layer).unwrap());

        let entries = entries(&layer);
        let paths: Vec<_> = entries.iter().map(|(p, ..)| p.clone()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        // Parents are real directories, listed before what they hold.
        for dir in [
            "lib64",
            "usr",
            "usr/local",
            "usr/local/bin",
            "etc/ssl/certs",
        ] {
            let (_, header, _) = entries.iter().find(|(p, ..)| p == dir).unwrap();
            assert_eq!(header.entry_type(), tar::EntryType::Directory, "{dir}");
        }
        for (path, header, _) in &entries {
            assert_eq!(header.mtime().unwrap(), 0, "{path}");
            let owner = if path == "home/nonroot" { NONROOT } else { 0 };
            assert_eq!(header.uid().unwrap(), owner, "{path}");
            assert_eq!(header.gid().unwrap(), owner, "{path}");
        }
        let mode = |path: &str| {
            let (_, header, _) = entries.iter().find(|(p, ..)| p == path).unwrap();
            header.mode().unwrap()
        };
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(mode("usr/local/bin/demo"), 0o755);

        let files: BTreeMap<_, _> = entries.into_iter().map(|(p, _, d)| (p, d)).collect();
        let passwd = String::from_utf8(files["etc/passwd"].clone()).unwrap();
        assert!(passwd.contains("nonroot:x:65532:65532:nonroot:/home/nonroot:"));
        assert!(String::from_utf8_lossy(&files["etc/nsswitch.conf"]).contains("hosts: files dns"));
    }

    #[test]
    fn a_later_epoch_changes_every_timestamp() {
        let a = ImageArchive::build("demo", "arm64", 0, &sample_rootfs()).unwrap();
        let b = ImageArchive::build("demo", "arm64", 0, &sample_rootfs()).unwrap();
        assert_eq!(a.bytes, b.bytes);
        let later = ImageArchive::build("demo", "arm64", 1_700_000_000, &sample_rootfs()).unwrap();
        assert_ne!(later.manifest_digest, a.manifest_digest);
        for (path, header, _) in entries(&later.bytes) {
            assert_eq!(header.mtime().unwrap(), 1_700_000_000, "{path}");
        }
    }

    #[test]
    fn conflicting_paths_are_refused() {
        let mut fs = Tree::default();
        fs.file("a/b", b"x".to_vec(), 0o644).unwrap();
        assert!(
            fs.file("a/b", b"x".to_vec(), 0o644).is_ok(),
            "same file twice"
        );
        assert!(fs.file("a/b", b"y".to_vec(), 0o644).is_err());
        assert!(fs.file("a/b/c", b"x".to_vec(), 0o644).is_err());
        assert!(fs.dir("a/b", 0o755, 0).is_err());
        assert!(fs.file("a", b"x".to_vec(), 0o644).is_err());
        for bad in ["", "/etc/passwd", "a//b", "a/../b", "a/./b"] {
            assert!(fs.file(bad, b"x".to_vec(), 0o644).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd1b5f2000)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f3c)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3b)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f3d)\n";
        assert_eq!(
            parse_ldd(out).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2",
            ]
        );
        assert!(parse_ldd("\tlibssl.so.3 => not found\n").is_err());
        assert_eq!(
            parse_ldd("\tstatically linked\n").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn blobs_live_under_their_digest() {
        let blob = Blob::new(LAYER_MEDIA_TYPE, b"abc".to_vec());
        assert_eq!(
            blob.path(),
            "blobs/sha256/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
