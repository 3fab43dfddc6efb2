//! `nantian-echo`: the echo backend of the e2e tests, the conformance replay and the
//! benchmark. See `nantian_e2e::echo` for what it answers.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Parser;
use nantian_e2e::echo::process::listening_line;
use nantian_e2e::echo::tcp::{self, TcpPorts};
use nantian_e2e::echo::{Context, EchoServer, ListenerMode, ListenerSpec, RequestLog, tls};
use tokio::signal::unix::{SignalKind, signal};

/// Echo backend: answers every request with a JSON description of it, like the Gateway API
/// conformance echo server.
#[derive(Debug, Parser)]
#[command(name = "nantian-echo", version)]
struct Args {
    /// Address serving HTTP/1.1 and h2c (prior knowledge); repeatable.
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// Address serving HTTP/2 only: HTTP/1 requests get 400 (the conformance h2c port).
    #[arg(long = "h2c-listen", value_name = "ADDR")]
    h2c_listen: Vec<SocketAddr>,
    /// Address serving HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with --tls-cert and --tls-key;
    /// repeatable.
    #[arg(long = "https-listen", value_name = "ADDR", requires_all = ["tls_cert", "tls_key"])]
    https_listen: Vec<SocketAddr>,
    /// Address answering UDP datagrams (see `nantian_e2e::echo::udp`); repeatable. Bound
    /// before the `listening on` lines are printed.
    #[arg(long = "udp-listen", value_name = "ADDR")]
    udp_listen: Vec<SocketAddr>,
    /// Address of echo-basic's TCP test server (`nantian_e2e::echo::tcp`, plain);
    /// repeatable.
    #[arg(long = "tcp-listen", value_name = "ADDR")]
    tcp_listen: Vec<SocketAddr>,
    /// Address of echo-basic's TCP test server over TLS, with --tls-cert and --tls-key;
    /// repeatable.
    #[arg(long = "tcp-tls-listen", value_name = "ADDR", requires_all = ["tls_cert", "tls_key"])]
    tcp_tls_listen: Vec<SocketAddr>,
    /// PEM certificate chain of the HTTPS listeners (echo-basic's TLS_SERVER_CERT).
    #[arg(long, env = "TLS_SERVER_CERT", value_name = "PATH")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the HTTPS listeners (echo-basic's TLS_SERVER_PRIVKEY).
    #[arg(long, env = "TLS_SERVER_PRIVKEY", value_name = "PATH")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates: HTTPS clients are asked for a certificate, and one they give
    /// must chain to these (echo-basic's TLS_CLIENT_CACERTS; clients without one are served).
    #[arg(long, env = "TLS_CLIENT_CACERTS", value_name = "PATH")]
    tls_client_ca: Option<PathBuf>,
    /// Reported as "pod".
    #[arg(long, env = "POD_NAME", default_value = "")]
    pod: String,
    /// Reported as "namespace".
    #[arg(long, env = "NAMESPACE", default_value = "")]
    namespace: String,
    /// Reported as "service".
    #[arg(long, env = "SERVICE_NAME", default_value = "")]
    service: String,
    /// Reported as "ingress".
    #[arg(long, env = "INGRESS_NAME", default_value = "")]
    ingress: String,
    /// Tokio worker threads; 1 runs everything on the main thread. Default: one per CPU.
    #[arg(long)]
    workers: Option<NonZeroUsize>,
    /// Print `Echoing back request made to <target> to client (<peer>)` for every request,
    /// like upstream's echo-basic (the conformance mirror tests read these lines).
    #[arg(long)]
    log_requests: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let addresses = [
        &args.listen,
        &args.h2c_listen,
        &args.https_listen,
        &args.tcp_listen,
        &args.tcp_tls_listen,
    ];
    if addresses.iter().all(|a| a.is_empty()) {
        bail!(
            "give at least one --listen, --h2c-listen, --https-listen, --tcp-listen or \
             --tcp-tls-listen address"
        );
    }
    let runtime = match args.workers.map(NonZeroUsize::get) {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Some(workers) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?,
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let specs: Vec<ListenerSpec> = args
        .listen
        .iter()
        .map(|&addr| ListenerSpec {
            addr,
            mode: ListenerMode::Mixed,
        })
        .chain(args.h2c_listen.iter().map(|&addr| ListenerSpec {
            addr,
            mode: ListenerMode::H2cOnly,
        }))
        .chain(args.https_listen.iter().map(|&addr| ListenerSpec {
            addr,
            mode: ListenerMode::Https,
        }))
        .collect();
    let tls = if args.https_listen.is_empty() && args.tcp_tls_listen.is_empty() {
        None
    } else {
        Some(tls_config(&args)?)
    };
    let context = Context {
        namespace: args.namespace,
        ingress: args.ingress,
        service: args.service,
        pod: args.pod,
    };
    let request_log = if args.log_requests {
        RequestLog::Stdout
    } else {
        RequestLog::Off
    };
    for &addr in &args.udp_listen {
        let socket = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("binding UDP {addr}"))?;
        tokio::spawn(nantian_e2e::echo::udp::serve(socket, context.clone()));
    }
    let tcp_servers = bind_tcp_servers(
        &args.tcp_listen,
        &args.tcp_tls_listen,
        &context,
        tls.as_ref(),
    )
    .await?;
    let server = EchoServer::bind(&specs, context, request_log, tls)
        .await
        .context("binding listeners")?;

    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;

    // Tests wait for these lines, so they go out only once every socket is bound.
    let mut stdout = std::io::stdout().lock();
    for spec in server.local_addrs()? {
        writeln!(stdout, "{}", listening_line(&spec))?;
    }
    for addr in tcp_servers {
        writeln!(stdout, "tcp test server listening on {addr}")?;
    }
    stdout.flush()?;
    drop(stdout);

    server
        .serve(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
        .await;
    Ok(())
}

/// Starts echo-basic's TCP test server on each address (`tls`: over TLS, without ALPN as
/// echo-basic offers none): the addresses bound.
async fn bind_tcp_servers(
    plain: &[SocketAddr],
    over_tls: &[SocketAddr],
    context: &Context,
    tls: Option<&Arc<rustls::ServerConfig>>,
) -> anyhow::Result<Vec<SocketAddr>> {
    let port = |addrs: &[SocketAddr]| addrs.first().map(SocketAddr::port).unwrap_or(0);
    let ports = TcpPorts {
        tcp: port(plain),
        tls: port(over_tls),
    };
    let tcp_tls = tls.map(|config| {
        let mut config = (**config).clone();
        config.alpn_protocols.clear();
        Arc::new(config)
    });
    let listeners = plain
        .iter()
        .map(|addr| (addr, None))
        .chain(over_tls.iter().map(|addr| (addr, tcp_tls.clone())));
    let mut bound = Vec::new();
    for (addr, tls) in listeners {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding TCP {addr}"))?;
        bound.push(listener.local_addr()?);
        tokio::spawn(tcp::serve(listener, context.clone(), ports.clone(), tls));
    }
    Ok(bound)
}

/// The HTTPS listeners' TLS, from the files the flags name (read once, at start, like
/// echo-basic).
fn tls_config(args: &Args) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let read =
        |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        bail!("--https-listen needs --tls-cert and --tls-key");
    };
    let client_ca = args.tls_client_ca.as_deref().map(read).transpose()?;
    tls::server_config(&read(cert)?, &read(key)?, client_ca.as_deref())
}
