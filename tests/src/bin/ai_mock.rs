//! `nantian-ai-mock`: a mock LLM provider (OpenAI, Anthropic or Ollama) for the AI gateway
//! tests. See `nantian_e2e::ai_mock` for what it answers.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use nantian_e2e::ai_mock::process::DEFAULT_NAME;
use nantian_e2e::ai_mock::{AiMockServer, MockConfig, Provider};
use tokio::signal::unix::{SignalKind, signal};

/// Mock LLM provider: the real API's paths and wire format, deterministic replies.
#[derive(Debug, Parser)]
#[command(name = "nantian-ai-mock", version)]
struct Args {
    /// Address to serve HTTP/1.1 and h2c on (port 0 picks one: see the `listening on`
    /// line).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The API to speak.
    #[arg(long, value_enum)]
    provider: Provider,
    /// Require this key (`Authorization: Bearer`; Anthropic: that or `x-api-key`).
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// Names the mock in its replies: `"<name> (<provider>) heard: …"`.
    #[arg(long, default_value = DEFAULT_NAME)]
    name: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = MockConfig {
        provider: args.provider,
        api_key: args.api_key,
        name: args.name,
    };
    let server = AiMockServer::bind(args.listen, config)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;

    // Tests wait for this line (the echo backend's), so it goes out once the socket is bound.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", server.local_addr()?)?;
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
