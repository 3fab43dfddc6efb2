//! `nantian-controller`: the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing::info;

use nantian_controller::address_pool::{self, AddressPool};
use nantian_controller::admin::{self, AdminState};
use nantian_controller::kubernetes::KubernetesProvider;
use nantian_controller::kubernetes::provision::ProvisionConfig;
use nantian_controller::kubernetes::xds_tls::XdsTls;
use nantian_controller::standalone::{self, Standalone};
use nantian_controller::supervisor::{HostLaunch, Supervisor};
use nantian_controller::xds_server::SnapshotCache;

#[derive(Parser)]
#[command(
    name = "nantian-controller",
    version,
    about = "Nantian Gateway control plane"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve Gateways described by Kubernetes YAML files in a directory, without a cluster:
    /// one nantian-host process per Gateway, each on its own loopback address.
    Standalone(StandaloneArgs),
    /// Watch a Kubernetes API server (in-cluster config, or KUBECONFIG / ~/.kube/config),
    /// write status back, and provision one nantian-host Deployment per Gateway.
    Kubernetes(KubernetesArgs),
}

#[derive(clap::Args)]
struct KubernetesArgs {
    /// Admin API: /readyz, /api/v1/status, /api/v1/hosts.
    #[arg(long, default_value = "0.0.0.0:19000")]
    admin_addr: SocketAddr,
    /// Where hosts reach the delta-xDS server.
    #[arg(long, default_value = "0.0.0.0:18000")]
    xds_addr: SocketAddr,
    /// The controller's namespace (the leader-election Lease lives there).
    #[arg(long, env = "POD_NAMESPACE", default_value = "nantian-system")]
    namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "nantian-controller")]
    leader_election_id: String,
    /// Image of the nantian-host Deployments provisioned for Gateways.
    #[arg(long, default_value = "ghcr.io/nantian-gateway/nantian-host:latest")]
    host_image: String,
    /// Service type of provisioned Gateways: LoadBalancer, NodePort or ClusterIP.
    #[arg(long, default_value = "LoadBalancer")]
    gateway_service_type: String,
    /// Replicas of each provisioned nantian-host Deployment.
    #[arg(long, default_value_t = 1)]
    host_replicas: i32,
    /// The xDS URL provisioned hosts connect to (default: this controller's Service,
    /// `http://nantian-controller.<namespace>.svc:<xds port>`).
    #[arg(long)]
    xds_service_url: Option<String>,
    /// Don't provision data planes (they are run some other way, e.g. by hand).
    #[arg(long)]
    no_provision: bool,
    /// The address hosts bind their listeners on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    /// Directory holding the built-in filter components (default: `filters/` beside this binary).
    #[arg(long)]
    filter_dir: Option<PathBuf>,
    /// The `controllerName` of the GatewayClasses this controller serves.
    #[arg(long, default_value = standalone::CONTROLLER_NAME)]
    controller_name: String,
    /// Mutual TLS on the xDS port: the Secret (in --namespace) holding the CA and the
    /// serving certificate (`ca.crt`, `ca.key`, `tls.crt`, `tls.key`); made on first
    /// start when missing. Each Gateway's hosts get a client certificate of their own.
    #[arg(long)]
    xds_tls_secret: Option<String>,
    /// Extra names (DNS or IP) for the xDS serving certificate made with
    /// --xds-tls-secret, besides the controller Service's DNS names.
    #[arg(long)]
    xds_tls_san: Vec<String>,
    /// Seconds between re-checks of every status and provisioned object against the
    /// API server, changes or not (a status someone else overwrote is put back).
    #[arg(long, default_value_t = nantian_controller::kubernetes::DEFAULT_RESYNC.as_secs())]
    resync_seconds: u64,
}

#[derive(clap::Args)]
struct StandaloneArgs {
    /// Directory of *.yaml files (re-read on every change).
    #[arg(long)]
    config_dir: PathBuf,
    /// Admin API: /readyz, /api/v1/status, /api/v1/hosts.
    #[arg(long, default_value = "127.0.0.1:19000")]
    admin_addr: SocketAddr,
    /// Where hosts reach the delta-xDS server.
    #[arg(long, default_value = "127.0.0.1:18000")]
    xds_addr: SocketAddr,
    /// Directory holding the built-in filter components (default: `filters/` beside this binary).
    #[arg(long)]
    filter_dir: Option<PathBuf>,
    /// The nantian-host binary (default: beside this binary).
    #[arg(long)]
    host_bin: Option<PathBuf>,
    /// Worker threads per host (default: one per core).
    #[arg(long)]
    host_workers: Option<usize>,
    /// Where hosts keep precompiled filter components.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// The IPv4 block (CIDR) Gateway addresses are allocated from, for Gateways without
    /// `spec.addresses` and `IPAddress` entries without a value.
    #[arg(long, default_value = address_pool::DEFAULT_POOL)]
    address_pool: AddressPool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NANTIAN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.mode {
        Mode::Standalone(args) => runtime.block_on(run_standalone(args)),
        Mode::Kubernetes(args) => runtime.block_on(run_kubernetes(args)),
    }
}

async fn run_standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let filter_dir = args.filter_dir.unwrap_or_else(|| exe_dir.join("filters"));
    let host_bin = args
        .host_bin
        .unwrap_or_else(|| exe_dir.join("nantian-host"));
    let config_dir = std::fs::canonicalize(&args.config_dir)
        .with_context(|| format!("config dir {}", args.config_dir.display()))?;
    let modules = standalone::builtin_modules(&filter_dir)?;

    let cache = SnapshotCache::default();
    let xds = tokio::net::TcpListener::bind(args.xds_addr)
        .await
        .with_context(|| format!("xDS address {}", args.xds_addr))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("admin address {}", args.admin_addr))?;
    let supervisor = Supervisor::start(HostLaunch {
        host_bin,
        xds_endpoint: format!("http://{}", args.xds_addr),
        workers: args.host_workers,
        cache_dir: args.cache_dir,
    });
    let status = Arc::default();

    let xds_server = tonic::transport::Server::builder()
        .add_service(cache.server())
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(xds));
    let admin_app = admin::router(AdminState {
        cache: cache.clone(),
        status: Arc::clone(&status),
        supervisor: Some(supervisor.clone()),
    });
    let admin_server = axum::serve(admin_listener, admin_app);
    info!(xds = %args.xds_addr, admin = %args.admin_addr, address_pool = %args.address_pool, config_dir = %config_dir.display(), "controller starting (standalone)");

    let provider = Standalone {
        config_dir,
        address_pool: args.address_pool,
        modules,
        cache,
        supervisor: supervisor.clone(),
        status,
    };
    tokio::select! {
        r = xds_server => r.context("xDS server")?,
        r = admin_server => r.context("admin server")?,
        r = provider.run() => r.context("standalone provider")?,
        _ = shutdown_signal() => {
            info!("shutting down: stopping hosts");
            supervisor.shutdown().await;
        }
    }
    Ok(())
}

async fn run_kubernetes(args: KubernetesArgs) -> anyhow::Result<()> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let filter_dir = args.filter_dir.unwrap_or_else(|| exe_dir.join("filters"));
    let modules = standalone::builtin_modules_inline(&filter_dir)?;
    let client = kube::Client::try_default()
        .await
        .context("Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let identity = match args.identity {
        Some(identity) => identity,
        None => format!(
            "{}-{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim(),
            std::process::id()
        ),
    };
    let xds_tls = match &args.xds_tls_secret {
        None => None,
        Some(secret) => {
            let service = format!("nantian-controller.{}", args.namespace);
            let mut names = vec![
                "nantian-controller".to_string(),
                service.clone(),
                format!("{service}.svc"),
                format!("{service}.svc.cluster.local"),
            ];
            names.extend(args.xds_tls_san.iter().cloned());
            Some(
                XdsTls::load_or_create(&client, &args.namespace, secret, &names)
                    .await
                    .with_context(|| format!("xDS TLS Secret {}/{secret}", args.namespace))?,
            )
        }
    };
    let scheme = if xds_tls.is_some() { "https" } else { "http" };
    let xds_url = args.xds_service_url.unwrap_or_else(|| {
        format!(
            "{scheme}://nantian-controller.{}.svc:{}",
            args.namespace,
            args.xds_addr.port()
        )
    });

    let cache = SnapshotCache::default();
    let xds = tokio::net::TcpListener::bind(args.xds_addr)
        .await
        .with_context(|| format!("xDS address {}", args.xds_addr))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("admin address {}", args.admin_addr))?;
    let status = Arc::default();
    let mut builder = tonic::transport::Server::builder();
    let xds_service = match &xds_tls {
        Some(tls) => {
            use tonic::transport::{Certificate, Identity, ServerTlsConfig};
            builder = builder
                .tls_config(
                    ServerTlsConfig::new()
                        .identity(Identity::from_pem(&tls.server_cert, &tls.server_key))
                        .client_ca_root(Certificate::from_pem(&tls.ca_cert)),
                )
                .context("xDS TLS")?;
            cache.server_requiring_gateway_certificates()
        }
        None => cache.server(),
    };
    let xds_server = builder
        .add_service(xds_service)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(xds));
    let admin_server = axum::serve(
        admin_listener,
        admin::router(AdminState {
            cache: cache.clone(),
            status: Arc::clone(&status),
            supervisor: None,
        }),
    );
    info!(xds = %args.xds_addr, admin = %args.admin_addr, namespace = %args.namespace, identity = %identity, "controller starting (kubernetes)");
    let provider = KubernetesProvider {
        client,
        controller_name: args.controller_name,
        namespace: args.namespace,
        identity,
        lease_name: args.leader_election_id,
        bind_address: args.bind_address,
        provision: (!args.no_provision).then_some(ProvisionConfig {
            host_image: args.host_image,
            xds_address: xds_url,
            service_type: args.gateway_service_type,
            replicas: args.host_replicas,
            xds_tls,
        }),
        modules,
        cache,
        status,
        resync: std::time::Duration::from_secs(args.resync_seconds.max(1)),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut provider = tokio::spawn(provider.run(stop_rx));
    tokio::select! {
        r = xds_server => r.context("xDS server")?,
        r = admin_server => r.context("admin server")?,
        r = &mut provider => return r?.context("kubernetes provider"),
        _ = shutdown_signal() => info!("shutting down: handing leadership over"),
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(std::time::Duration::from_secs(5), provider).await {
        Ok(Ok(r)) => r.context("kubernetes provider")?,
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => tracing::warn!("provider did not stop within 5s"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
