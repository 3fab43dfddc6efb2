//! `nantian-host`: the data-plane process. Connects to the controller's delta-xDS server,
//! serves HTTP on the listeners it is given, and exposes an admin server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use nantian_host::session::SessionKey;
use nantian_host::xds_client::{self, XdsClientConfig};
use nantian_host::{Gateway, Metrics, admin};
use nantian_proto::xds::Node;
use nantian_wasm::{EngineConfig, WasmEngine};
use tracing::info;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(version, about = "Nantian gateway data plane")]
struct Args {
    /// The controller's delta-xDS endpoint.
    #[arg(long, default_value = "http://127.0.0.1:18000")]
    xds_address: String,
    /// The Gateway this host serves, as `<namespace>/<name>`.
    #[arg(long)]
    gateway: String,
    /// Unique id of this host; defaults to `<namespace>/<name>/<pid>`.
    #[arg(long)]
    node_id: Option<String>,
    /// Address of the admin server (`/readyz`, `/config_dump`, `/metrics`).
    #[arg(long)]
    admin_addr: SocketAddr,
    /// Where precompiled Wasm modules are cached across restarts.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Tokio worker threads; defaults to the number of cores.
    #[arg(long)]
    workers: Option<usize>,
    /// A secret that seals session-persistence tokens. Hosts of one Gateway that share it
    /// accept each other's tokens, and sessions survive a restart; without it each host
    /// process draws its own, so sessions end with the process.
    #[arg(long, env = "NANTIAN_SESSION_KEY_FILE")]
    session_key_file: Option<PathBuf>,
    /// Mutual TLS to an `https://` xDS address: the CA that signed the controller's
    /// certificate (PEM)...
    #[arg(long, requires_all = ["xds_cert_file", "xds_key_file"])]
    xds_ca_file: Option<PathBuf>,
    /// ...this host's client certificate, naming its Gateway (PEM)...
    #[arg(long, requires = "xds_ca_file")]
    xds_cert_file: Option<PathBuf>,
    /// ...and its key (PEM).
    #[arg(long, requires = "xds_ca_file")]
    xds_key_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_env("NANTIAN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let Some((namespace, name)) = args
        .gateway
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
    else {
        bail!(
            "--gateway must be <namespace>/<name>, got {:?}",
            args.gateway
        );
    };
    let (namespace, name) = (namespace.to_string(), name.to_string());
    let workers = match args.workers {
        Some(0) => bail!("--workers must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // One worker: a current-thread runtime is that worker without the work-stealing
    // scheduler's bookkeeping (its atomics and wake-ups cost ~µs per proxied request).
    let mut runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    runtime
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(args, namespace, name))
}

async fn run(args: Args, namespace: String, name: String) -> anyhow::Result<()> {
    let engine = WasmEngine::new(EngineConfig {
        cache_dir: args.cache_dir.clone(),
        ..EngineConfig::default()
    })
    .context("creating the Wasm engine")?;
    let session_key = match &args.session_key_file {
        Some(path) => {
            let secret = std::fs::read(path)
                .with_context(|| format!("reading the session key {}", path.display()))?;
            if secret.len() < 16 {
                bail!(
                    "the session key {} must hold at least 16 bytes",
                    path.display()
                );
            }
            SessionKey::from_secret(&secret)
        }
        None => SessionKey::random(),
    };
    let gateway = Gateway::with_session_key(engine, Arc::new(Metrics::new()), session_key);

    let admin_listener = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding the admin server to {}", args.admin_addr))?;
    info!(addr = %args.admin_addr, "admin server listening");
    let admin = tokio::spawn(admin::serve(admin_listener, gateway.clone()));

    let node = Node {
        id: args
            .node_id
            .clone()
            .unwrap_or_else(|| format!("{namespace}/{name}/{}", std::process::id())),
        gateway_namespace: namespace,
        gateway_name: name,
        build_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    info!(xds = %args.xds_address, node = %node.id, "starting");
    let tls = match (&args.xds_ca_file, &args.xds_cert_file, &args.xds_key_file) {
        (Some(ca), Some(cert), Some(key)) => {
            let read = |p: &PathBuf| {
                std::fs::read(p).with_context(|| format!("xDS TLS file {}", p.display()))
            };
            Some(xds_client::XdsTlsFiles {
                ca: read(ca)?,
                cert: read(cert)?,
                key: read(key)?,
            })
        }
        _ => None,
    };
    let xds = xds_client::run(
        XdsClientConfig {
            endpoint: args.xds_address,
            tls,
            node,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        },
        gateway,
    );

    tokio::select! {
        () = xds => bail!("the xDS client stopped"),
        result = admin => match result {
            Ok(Ok(())) => bail!("the admin server stopped"),
            Ok(Err(e)) => Err(e).context("admin server"),
            Err(e) => Err(e).context("admin server task"),
        },
        signal = shutdown_signal() => {
            info!(signal, "shutting down");
            Ok(())
        }
    }
}

async fn shutdown_signal() -> &'static str {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}
