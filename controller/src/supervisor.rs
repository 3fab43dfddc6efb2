//! Runs one `nantian-host` process per served Gateway in standalone mode.
//!
//! Hosts are ordinary child processes that connect back over xDS. A host that exits is
//! restarted with backoff; a Gateway that disappears has its host stopped. Hosts outlive a
//! controller that dies abruptly (they keep serving their last config), and a restarted
//! controller adopts such a host instead of starting a second one that could not bind.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::snapshot::GatewayKey;

/// The port each host's admin endpoint listens on, on its Gateway's own address.
pub const HOST_ADMIN_PORT: u16 = 15000;

#[derive(Debug, Clone)]
pub struct HostLaunch {
    pub host_bin: PathBuf,
    pub xds_endpoint: String,
    pub workers: Option<usize>,
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostProcess {
    pub gateway: String,
    pub address: IpAddr,
    pub admin: SocketAddr,
    pub pid: Option<u32>,
    pub restarts: u32,
}

/// What the supervisor should run: one host per Gateway, on its address.
pub type Desired = BTreeMap<GatewayKey, IpAddr>;

#[derive(Clone)]
pub struct Supervisor {
    tx: mpsc::UnboundedSender<Command_>,
}

enum Command_ {
    Reconcile(Desired),
    List(tokio::sync::oneshot::Sender<Vec<HostProcess>>),
    Shutdown(tokio::sync::oneshot::Sender<()>),
}

impl Supervisor {
    pub fn start(launch: HostLaunch) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(launch, rx));
        Self { tx }
    }

    pub fn reconcile(&self, desired: Desired) {
        let _ = self.tx.send(Command_::Reconcile(desired));
    }

    pub async fn hosts(&self) -> Vec<HostProcess> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Command_::List(tx));
        rx.await.unwrap_or_default()
    }

    /// Stops every host (graceful controller shutdown).
    pub async fn shutdown(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Command_::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

struct Managed {
    address: IpAddr,
    child: Option<Child>,
    restarts: u32,
    next_start: tokio::time::Instant,
}

async fn run(launch: HostLaunch, mut rx: mpsc::UnboundedReceiver<Command_>) {
    let mut hosts: BTreeMap<GatewayKey, Managed> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Command_::Reconcile(desired)) => {
                    let removed: Vec<_> = hosts.keys().filter(|k| !desired.contains_key(*k)).cloned().collect();
                    for key in removed {
                        if let Some(mut m) = hosts.remove(&key) {
                            info!(gateway = %key, "gateway gone; stopping its host");
                            stop(&mut m).await;
                        }
                    }
                    for (key, address) in desired {
                        match hosts.get_mut(&key) {
                            Some(m) if m.address == address => {}
                            Some(m) => {
                                info!(gateway = %key, %address, "gateway address changed; restarting its host");
                                stop(m).await;
                                m.address = address;
                                m.next_start = tokio::time::Instant::now();
                            }
                            None => {
                                hosts.insert(key, Managed { address, child: None, restarts: 0, next_start: tokio::time::Instant::now() });
                            }
                        }
                    }
                    ensure_running(&launch, &mut hosts).await;
                }
                Some(Command_::List(reply)) => {
                    let list = hosts.iter().map(|(k, m)| HostProcess {
                        gateway: k.to_string(),
                        address: m.address,
                        admin: SocketAddr::new(m.address, HOST_ADMIN_PORT),
                        pid: m.child.as_ref().and_then(|c| c.id()),
                        restarts: m.restarts,
                    }).collect();
                    let _ = reply.send(list);
                }
                Some(Command_::Shutdown(done)) => {
                    for m in hosts.values_mut() { stop(m).await; }
                    let _ = done.send(());
                    return;
                }
                None => return,
            },
            _ = tick.tick() => ensure_running(&launch, &mut hosts).await,
        }
    }
}

async fn ensure_running(launch: &HostLaunch, hosts: &mut BTreeMap<GatewayKey, Managed>) {
    let now = tokio::time::Instant::now();
    for (key, m) in hosts.iter_mut() {
        if let Some(child) = &mut m.child {
            match child.try_wait() {
                Ok(None) => continue,
                Ok(Some(status)) => {
                    warn!(gateway = %key, %status, "host exited; restarting");
                    m.child = None;
                    m.restarts += 1;
                    let backoff = Duration::from_millis(200 * 2u64.pow(m.restarts.min(5)));
                    m.next_start = now + backoff;
                }
                Err(e) => warn!(gateway = %key, error = %e, "cannot poll host"),
            }
        }
        if m.child.is_some() || now < m.next_start {
            continue;
        }
        let admin = SocketAddr::new(m.address, HOST_ADMIN_PORT);
        if tokio::net::TcpStream::connect(admin).await.is_ok() {
            // A host from an earlier controller still serves this Gateway: it reconnects
            // to us by itself. Look again later.
            m.next_start = now + Duration::from_secs(1);
            continue;
        }
        match spawn(launch, key, admin) {
            Ok(child) => {
                info!(gateway = %key, pid = child.id(), %admin, "host started");
                m.child = Some(child);
            }
            Err(e) => {
                warn!(gateway = %key, error = %e, bin = %launch.host_bin.display(), "cannot start host");
                m.next_start = now + Duration::from_secs(2);
            }
        }
    }
}

fn spawn(launch: &HostLaunch, key: &GatewayKey, admin: SocketAddr) -> std::io::Result<Child> {
    let mut cmd = Command::new(&launch.host_bin);
    cmd.arg("--xds-address")
        .arg(&launch.xds_endpoint)
        .arg("--gateway")
        .arg(key.to_string())
        .arg("--node-id")
        .arg(key.to_string())
        .arg("--admin-addr")
        .arg(admin.to_string())
        .stdin(Stdio::null())
        // Hosts must survive the controller; never kill them implicitly.
        .kill_on_drop(false);
    if let Some(w) = launch.workers {
        cmd.arg("--workers").arg(w.to_string());
    }
    if let Some(dir) = &launch.cache_dir {
        cmd.arg("--cache-dir").arg(dir);
    }
    cmd.spawn()
}

async fn stop(m: &mut Managed) {
    let Some(mut child) = m.child.take() else {
        return;
    };
    if let Some(pid) = child.id() {
        // SIGTERM first so the host can drain; then make sure it is gone.
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}
