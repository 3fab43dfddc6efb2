//! A real Kubernetes control plane for tests: etcd and kube-apiserver on loopback, no
//! Docker, no kubelet.
//!
//! One [`KubeControlPlane`] per test process, started on first use and shared by every test
//! of the binary; tests isolate themselves by namespace ([`KubeControlPlane::create_namespace`]).
//! It comes up with the Gateway API v1.5.1 experimental-channel CRDs installed.
//!
//! What it is not: there is no kube-controller-manager (no garbage collection, namespaces
//! stay Terminating, no Deployment → Pod, no Service → EndpointSlice), no scheduler and no
//! kubelet. Test API behaviour (status, created objects, RBAC, validation), and traffic
//! with hand-made EndpointSlices pointing at loopback backends.
//!
//! The binaries come from `cargo xtask kube-assets` (built from the Go module proxy into a
//! per-machine cache), named by `NANTIAN_KUBE_ASSETS` (which `cargo xtask test` sets) or
//! `KUBEBUILDER_ASSETS`. Start every test with [`shared_or_skip`]: without binaries it skips
//! the test loudly, except under `CI`, where it fails it.
//!
//! The child processes die with the test process, even on SIGKILL (`PR_SET_PDEATHSIG`); on
//! a normal exit they are killed and their temp dir (certificates, etcd data, logs) removed.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ::kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::core::{ApiResource, GroupVersionKind};
use ::kube::discovery::Scope;
use ::kube::{Client, Config};
use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;

/// The field manager of every server-side apply the harness does.
pub const FIELD_MANAGER: &str = "nantian-tests";

/// How long etcd + kube-apiserver may take to become ready (a loaded 2-core machine).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// The kube-apiserver version `cargo xtask kube-assets` builds (its cache directory name).
const KUBE_ASSETS_VERSION: &str = "v1.34.4";

/// The directory holding `kube-apiserver` and `etcd`: `NANTIAN_KUBE_ASSETS` (set by
/// `cargo xtask test`), else `KUBEBUILDER_ASSETS`, else the cache `cargo xtask kube-assets`
/// fills (`~/.cache/nantian/kube-assets/<version>`, so a plain `cargo test` finds it too);
/// `None` when none has both.
pub fn kube_assets() -> Option<PathBuf> {
    kube_assets_or_reason().ok()
}

/// [`kube_assets`], or why there are none (for the skip message).
fn kube_assets_or_reason() -> Result<PathBuf, String> {
    let mut why = Vec::new();
    let cache = std::env::var_os("HOME").map(|home| {
        PathBuf::from(home)
            .join(".cache/nantian/kube-assets")
            .join(KUBE_ASSETS_VERSION)
    });
    let places = [
        (
            "NANTIAN_KUBE_ASSETS",
            std::env::var_os("NANTIAN_KUBE_ASSETS"),
        ),
        ("KUBEBUILDER_ASSETS", std::env::var_os("KUBEBUILDER_ASSETS")),
        (
            "the cache of `cargo xtask kube-assets`",
            cache.map(Into::into),
        ),
    ];
    for (var, dir) in places {
        match dir {
            None => why.push(format!("{var} is not set")),
            Some(dir) => {
                let dir = PathBuf::from(dir);
                let missing: Vec<_> = ["kube-apiserver", "etcd"]
                    .into_iter()
                    .filter(|b| !dir.join(b).is_file())
                    .collect();
                if missing.is_empty() {
                    return Ok(dir);
                }
                let sep = if var.ends_with('`') { " " } else { "=" };
                why.push(format!(
                    "{var}{sep}{} has no {}",
                    dir.display(),
                    missing.join(" or ")
                ));
            }
        }
    }
    Err(why.join("; "))
}

/// The shared control plane, or `None` after printing a loud SKIP line when there are no
/// binaries. Under `CI` missing binaries fail the test instead: CI machines have Go, so a
/// skip there would hide a broken build. A control plane that fails to start fails the test.
///
/// ```ignore
/// let Some(kube) = shared_or_skip("my_test").await else { return };
/// ```
pub async fn shared_or_skip(test: &str) -> Option<&'static KubeControlPlane> {
    match kube_assets_or_reason() {
        Ok(_) => Some(
            KubeControlPlane::shared()
                .await
                .unwrap_or_else(|e| panic!("{e:#}")),
        ),
        Err(why) => {
            let msg = format!(
                "no kube-apiserver/etcd binaries ({why}); run `cargo xtask kube-assets` (needs Go) \
                 or `cargo xtask test`"
            );
            if std::env::var_os("CI").is_some() {
                panic!("{test}: {msg} (CI is set: Kubernetes tests must not be skipped)");
            }
            // Straight to fd 2, past libtest's capture, so the skip shows in a normal run.
            let _ = writeln!(std::io::stderr().lock(), "\n!!! SKIP {test}: {msg}\n");
            None
        }
    }
}

/// etcd and kube-apiserver on 127.0.0.1, with an admin kubeconfig.
#[derive(Debug)]
pub struct KubeControlPlane {
    dir: PathBuf,
    server: String,
    etcd_url: String,
    kubeconfig: PathBuf,
    ca_cert: PathBuf,
}

/// Children and temp dir to clean up at exit (statics are never dropped).
static CLEANUP: Mutex<Option<(Vec<i32>, PathBuf)>> = Mutex::new(None);
static SHARED: tokio::sync::OnceCell<Result<KubeControlPlane, String>> =
    tokio::sync::OnceCell::const_new();
static NAMESPACES: AtomicU32 = AtomicU32::new(0);

impl KubeControlPlane {
    /// The process-wide control plane, started on first call (Gateway API CRDs installed).
    /// A failed start is remembered: every later call gets the same error at once.
    pub async fn shared() -> Result<&'static KubeControlPlane> {
        let started = SHARED
            .get_or_init(|| async {
                let assets = kube_assets_or_reason()
                    .map_err(|why| format!("no kube-apiserver/etcd binaries: {why}"))?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                // PR_SET_PDEATHSIG fires when the *thread* that spawned a child exits, and
                // libtest ends a test's thread with the test: spawn from a thread that lives
                // as long as the process.
                std::thread::Builder::new()
                    .name("kube-control-plane".into())
                    .spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("tokio runtime");
                        let result = rt.block_on(Self::start(&assets));
                        drop(rt);
                        let _ = tx.send(result.map_err(|e| format!("{e:#}")));
                        loop {
                            std::thread::park();
                        }
                    })
                    .map_err(|e| format!("cannot spawn the control plane thread: {e}"))?;
                rx.await
                    .map_err(|_| "the control plane thread died".to_string())?
            })
            .await;
        started
            .as_ref()
            .map_err(|e| anyhow!("Kubernetes control plane did not start: {e}"))
    }

    async fn start(assets: &Path) -> Result<KubeControlPlane> {
        remove_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("nantian-kube-{}-", std::process::id()))
            .tempdir()
            .context("temp dir")?
            .keep();
        register_cleanup(None, &dir);
        Pki::write(&dir)?;

        let [etcd_port, peer_port, api_port] = free_ports()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_log = dir.join("etcd.log");
        let mut etcd = spawn(
            Command::new(assets.join("etcd")).args([
                "--name=default".to_string(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                // Test data: durability is not wanted, speed is.
                "--unsafe-no-fsync=true".to_string(),
            ]),
            &etcd_log,
        )?;
        register_cleanup(Some(etcd.id() as i32), &dir);
        wait_etcd(etcd_port, &mut etcd, &etcd_log).await?;

        let server = format!("https://127.0.0.1:{api_port}");
        let api_log = dir.join("kube-apiserver.log");
        let p = |f: &str| dir.join(f).display().to_string();
        let mut apiserver = spawn(
            Command::new(assets.join("kube-apiserver")).args([
                format!("--etcd-servers={etcd_url}"),
                format!("--cert-dir={}", p("apiserver-certs")),
                format!("--tls-cert-file={}", p(Pki::SERVING_CERT)),
                format!("--tls-private-key-file={}", p(Pki::SERVING_KEY)),
                format!("--client-ca-file={}", p(Pki::CA_CERT)),
                format!("--secure-port={api_port}"),
                "--bind-address=127.0.0.1".to_string(),
                "--advertise-address=127.0.0.1".to_string(),
                "--service-cluster-ip-range=10.0.0.0/24".to_string(),
                "--allow-privileged=true".to_string(),
                // No controller-manager mints token Secrets; Pods need not reference one.
                "--disable-admission-plugins=ServiceAccount".to_string(),
                "--authorization-mode=RBAC".to_string(),
                format!("--service-account-issuer={server}/"),
                format!("--service-account-key-file={}", p(Pki::SA_PUBLIC)),
                format!("--service-account-signing-key-file={}", p(Pki::SA_PRIVATE)),
                // The `kubernetes` Service's Endpoints would be 127.0.0.1, which validation
                // refuses (loopback); nothing here needs them.
                "--endpoint-reconciler-type=none".to_string(),
                "--enable-priority-and-fairness=false".to_string(),
                "--profiling=false".to_string(),
            ]),
            &api_log,
        )?;
        register_cleanup(Some(apiserver.id() as i32), &dir);

        let kubeconfig = dir.join("admin.kubeconfig");
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml(
                &server,
                &dir.join(Pki::CA_CERT),
                "nantian-admin",
                &format!(
                    "client-certificate: {}\n    client-key: {}",
                    p(Pki::ADMIN_CERT),
                    p(Pki::ADMIN_KEY)
                ),
            ),
        )?;
        let plane = KubeControlPlane {
            ca_cert: dir.join(Pki::CA_CERT),
            dir,
            server,
            etcd_url,
            kubeconfig,
        };
        let client = plane.client().await?;
        wait_ready(&client, &mut apiserver, &api_log).await?;
        install_gateway_api_crds(&client)
            .await
            .with_context(|| format!("installing Gateway API CRDs; {}", tail(&api_log)))?;
        install_nantian_crds(&client)
            .await
            .with_context(|| format!("installing Nantian's CRDs; {}", tail(&api_log)))?;
        // Owned by the process from now on: reaped in the exit handler.
        std::mem::forget((etcd, apiserver));
        Ok(plane)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// The admin kubeconfig (a client certificate in group `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA of the serving certificate (and of the client certificates).
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// etcd's client URL (plain HTTP on loopback).
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// The temp dir: certificates, kubeconfigs, etcd data, `etcd.log`, `kube-apiserver.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kube-apiserver log file.
    pub fn apiserver_log(&self) -> PathBuf {
        self.dir.join("kube-apiserver.log")
    }

    /// A new admin client. Make one per test: a `kube::Client` belongs to the tokio runtime
    /// it was made in, and every `#[tokio::test]` has its own.
    pub async fn client(&self) -> Result<Client> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// A fresh namespace `<prefix>-<n>` (n unique in this process) for one test.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String> {
        let prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let name = format!("{prefix}-{}", NAMESPACES.fetch_add(1, Ordering::Relaxed));
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name }
        }))?;
        Api::<Namespace>::all(self.client().await?)
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("create namespace {name}"))?;
        Ok(name)
    }

    /// A kubeconfig authenticating as ServiceAccount `namespace/name`, i.e. user
    /// `system:serviceaccount:<namespace>:<name>` in groups `system:serviceaccounts` and
    /// `system:serviceaccounts:<namespace>`, with no permissions beyond what RBAC bindings in
    /// the cluster grant it (the built-in discovery roles only). The namespace and the
    /// ServiceAccount are created if missing; the bearer token is a real one from the
    /// TokenRequest API, as a Pod's projected token would be (valid 24 h).
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let admin = self.client().await?;
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({ "metadata": { "name": namespace } }))?;
        create_if_missing(&Api::<Namespace>::all(admin.clone()), &ns).await?;
        let accounts = Api::<ServiceAccount>::namespaced(admin, namespace);
        let sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({ "metadata": { "name": name } }))?;
        create_if_missing(&accounts, &sa).await?;
        let request = TokenRequest {
            // No audiences: the apiserver's own (its issuer).
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(24 * 3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let token = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("token for serviceaccount {namespace}/{name}"))?
            .status
            .context("TokenRequest without status")?
            .token
            .context("TokenRequest without a token")?;
        let path = self.dir.join(format!("sa-{namespace}-{name}.kubeconfig"));
        std::fs::write(
            &path,
            kubeconfig_yaml(
                &self.server,
                &self.ca_cert,
                &format!("system:serviceaccount:{namespace}:{name}"),
                &format!("token: {token}"),
            ),
        )?;
        Ok(path)
    }

    /// A client for [`Self::service_account_kubeconfig`].
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Result<Client> {
        client_from_kubeconfig(&self.service_account_kubeconfig(namespace, name).await?).await
    }
}

/// A `kube::Client` from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(path).with_context(|| format!("read {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("kubeconfig {}", path.display()))?;
    Client::try_from(config).context("kube client")
}

async fn create_if_missing<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: ::kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(::kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn kubeconfig_yaml(server: &str, ca: &Path, user: &str, credentials: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: nantian-test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: \"{user}\"
  user:
    {credentials}
contexts:
- name: nantian-test
  context:
    cluster: nantian-test
    user: \"{user}\"
    namespace: default
current-context: nantian-test
",
        ca = ca.display()
    )
}

/// The certificates and keys, all made here with rcgen (ECDSA P-256).
struct Pki;

impl Pki {
    const CA_CERT: &'static str = "ca.crt";
    const SERVING_CERT: &'static str = "apiserver.crt";
    const SERVING_KEY: &'static str = "apiserver.key";
    const ADMIN_CERT: &'static str = "admin.crt";
    const ADMIN_KEY: &'static str = "admin.key";
    const SA_PUBLIC: &'static str = "sa.pub";
    const SA_PRIVATE: &'static str = "sa.key";

    fn write(dir: &Path) -> Result<()> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let write = |name: &str, pem: &str| {
            std::fs::write(dir.join(name), pem).with_context(|| format!("write {name}"))
        };

        // One CA signs the serving certificate and verifies client certificates.
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "nantian-test-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca.self_signed(&ca_key)?;
        write(Self::CA_CERT, &ca.pem())?;

        // rustls wants the IP SAN and the serverAuth EKU.
        let key = KeyPair::generate()?;
        let mut serving =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        write(
            Self::SERVING_CERT,
            &serving.signed_by(&key, &ca, &ca_key)?.pem(),
        )?;
        write(Self::SERVING_KEY, &key.serialize_pem())?;

        // The admin: organisation (group) system:masters passes every authorization check.
        let key = KeyPair::generate()?;
        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin
            .distinguished_name
            .push(DnType::CommonName, "nantian-admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        write(
            Self::ADMIN_CERT,
            &admin.signed_by(&key, &ca, &ca_key)?.pem(),
        )?;
        write(Self::ADMIN_KEY, &key.serialize_pem())?;

        // ServiceAccount tokens: signed with the private key, verified with the public one.
        let sa = KeyPair::generate()?;
        write(Self::SA_PRIVATE, &sa.serialize_pem())?;
        write(Self::SA_PUBLIC, &sa.public_key_pem())?;
        Ok(())
    }
}

/// Spawn with output to `log`, dying with this process (SIGKILL when the spawning thread,
/// which lives as long as the process, goes).
fn spawn(cmd: &mut Command, log: &Path) -> Result<Child> {
    let out = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let err = out.try_clone()?;
    let parent = std::process::id() as libc::pid_t;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))
}

/// Three distinct free ports on 127.0.0.1 (held together while choosing, so distinct).
fn free_ports() -> Result<[u16; 3]> {
    let listeners = [(); 3].map(|_| std::net::TcpListener::bind("127.0.0.1:0"));
    let mut ports = [0; 3];
    for (port, l) in ports.iter_mut().zip(listeners) {
        *port = l?.local_addr()?.port();
    }
    Ok(ports)
}

/// The last lines of a log, for error messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<_> = text.lines().collect();
    let from = lines.len().saturating_sub(30);
    format!(
        "last lines of {}:\n{}",
        log.display(),
        lines[from..].join("\n")
    )
}

fn exited(child: &mut Child, log: &Path) -> Result<()> {
    if let Some(status) = child.try_wait()? {
        bail!(
            "{:?} exited ({status}); {}",
            log.file_stem().unwrap_or_default(),
            tail(log)
        );
    }
    Ok(())
}

async fn wait_etcd(port: u16, etcd: &mut Child, log: &Path) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        exited(etcd, log)?;
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut body = String::new();
            let ok = s
                .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .await
                .is_ok()
                && s.read_to_string(&mut body).await.is_ok();
            if ok && body.starts_with("HTTP/1.") && body.contains("\"health\":\"true\"") {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("etcd not healthy after {STARTUP_TIMEOUT:?}; {}", tail(log));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_ready(client: &Client, apiserver: &mut Child, log: &Path) -> Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        exited(apiserver, log)?;
        let req = http::Request::get("/readyz").body(Vec::new())?;
        let last = match client.request_text(req).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            bail!(
                "kube-apiserver /readyz not 200 after {STARTUP_TIMEOUT:?} (last: {last}); {}",
                tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kill the children and remove the temp dir when the process exits normally.
fn register_cleanup(pid: Option<i32>, dir: &Path) {
    let mut c = CLEANUP.lock().unwrap();
    let first = c.is_none();
    let entry = c.get_or_insert_with(|| (Vec::new(), dir.to_path_buf()));
    entry.1 = dir.to_path_buf();
    entry.0.extend(pid);
    if first {
        extern "C" fn at_exit() {
            let Some((pids, dir)) = CLEANUP.lock().ok().and_then(|mut c| c.take()) else {
                return;
            };
            for &pid in &pids {
                // SAFETY: plain syscalls on our own children.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
            let _ = std::fs::remove_dir_all(dir);
        }
        // SAFETY: registering a plain extern "C" function.
        unsafe {
            libc::atexit(at_exit);
        }
    }
}

/// Temp dirs of earlier test processes that were killed (no exit handler ran).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("nantian-kube-"))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The Gateway API release whose CRDs the control plane comes up with.
pub const GATEWAY_API_VERSION: &str = "v1.5.1";

/// `<workspace>/../shared/gateway-api/v1.5.1/experimental-install.yaml`.
pub fn gateway_api_crds_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/gateway-api")
        .join(GATEWAY_API_VERSION)
        .join("experimental-install.yaml")
}

/// The project's own CRDs, as `cargo xtask gen` writes them into the Helm chart.
pub fn nantian_crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/nantian/crds")
}

/// Server-side-apply Nantian's CRDs (AIService, TokenPolicy, WasmPlugin) from the chart and
/// wait until they are Established.
pub async fn install_nantian_crds(client: &Client) -> Result<()> {
    let dir = nantian_crds_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut crds = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        for applied in apply_yaml(client, &text).await? {
            crds.push(applied.metadata.name.unwrap_or_default());
        }
    }
    wait_established(client, &crds, Duration::from_secs(60)).await
}

/// Server-side-apply the Gateway API experimental-channel install and wait until every CRD
/// is Established.
pub async fn install_gateway_api_crds(client: &Client) -> Result<()> {
    let path = gateway_api_crds_path();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("read the Gateway API CRDs at {}", path.display()))?;
    let mut discovery = Discovery::default();
    let mut crds = Vec::new();
    for obj in parse_yaml(&text)? {
        let kind = obj
            .types
            .as_ref()
            .map(|t| t.kind.clone())
            .unwrap_or_default();
        match discovery.apply(client, obj, "default").await {
            Ok(applied) if kind == "CustomResourceDefinition" => {
                crds.push(applied.metadata.name.unwrap_or_default())
            }
            Ok(_) => {}
            // The install ends with the "safe-upgrades" ValidatingAdmissionPolicy and its
            // binding (admissionregistration.k8s.io/v1, GA in Kubernetes 1.30). They only
            // refuse CRD downgrades; an apiserver without that API still gets the CRDs.
            Err(e) if kind.starts_with("ValidatingAdmissionPolicy") => {
                eprintln!("kube: {kind} of the Gateway API install not applied (skipped): {e:#}")
            }
            Err(e) => return Err(e),
        }
    }
    wait_established(client, &crds, Duration::from_secs(60)).await
}

/// Wait until every named CRD has condition Established=True.
pub async fn wait_established(client: &Client, names: &[String], timeout: Duration) -> Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let deadline = Instant::now() + timeout;
    for name in names {
        loop {
            let crd = api
                .get(name)
                .await
                .with_context(|| format!("get CRD {name}"))?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                bail!("CRD {name} not Established after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Server-side-apply every document of a multi-document YAML (field manager
/// [`FIELD_MANAGER`], conflicts forced), in order. Namespaced objects without a namespace go
/// to `default`. Returns the objects as the server stored them.
pub async fn apply_yaml(client: &Client, text: &str) -> Result<Vec<DynamicObject>> {
    apply_yaml_in(client, "default", text).await
}

/// [`apply_yaml`], with namespaced objects that name no namespace going to `namespace`.
pub async fn apply_yaml_in(
    client: &Client,
    namespace: &str,
    text: &str,
) -> Result<Vec<DynamicObject>> {
    let mut discovery = Discovery::default();
    let mut applied = Vec::new();
    for obj in parse_yaml(text)? {
        applied.push(discovery.apply(client, obj, namespace).await?);
    }
    Ok(applied)
}

/// The documents of a multi-document YAML, empty ones left out.
fn parse_yaml(text: &str) -> Result<Vec<DynamicObject>> {
    let mut objects = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            serde_yaml::Value::deserialize(doc).with_context(|| format!("YAML document {i}"))?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_yaml::from_value(value)
            .with_context(|| format!("YAML document {i} is not a Kubernetes object"))?;
        if obj.types.is_none() {
            bail!("YAML document {i} has no apiVersion/kind");
        }
        objects.push(obj);
    }
    Ok(objects)
}

/// Kinds resolved to resources (plural, scope) through discovery, once per call.
#[derive(Default)]
struct Discovery {
    kinds: HashMap<(String, String), (ApiResource, Scope)>,
}

impl Discovery {
    async fn resolve(
        &mut self,
        client: &Client,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, Scope)> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self.kinds.get(&key) {
            return Ok(found.clone());
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        // A custom resource right after its CRD: discovery catches up within seconds.
        let deadline = Instant::now() + Duration::from_secs(30);
        let (ar, caps) = loop {
            match ::kube::discovery::pinned_kind(client, &gvk).await {
                Ok(found) => break found,
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| format!("no resource for {api_version} {kind}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        let found = (ar, caps.scope);
        self.kinds.insert(key, found.clone());
        Ok(found)
    }

    async fn apply(
        &mut self,
        client: &Client,
        obj: DynamicObject,
        namespace: &str,
    ) -> Result<DynamicObject> {
        let types = obj.types.clone().unwrap_or_default();
        let name = obj
            .metadata
            .name
            .clone()
            .with_context(|| format!("{} without metadata.name", types.kind))?;
        let (ar, scope) = self
            .resolve(client, &types.api_version, &types.kind)
            .await?;
        let api: Api<DynamicObject> = match scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                obj.metadata.namespace.as_deref().unwrap_or(namespace),
                &ar,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await
        .with_context(|| format!("apply {} {name}", types.kind))
    }
}
