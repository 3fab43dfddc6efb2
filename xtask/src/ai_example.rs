//! `cargo xtask example ai-gateway`: the standalone gateway on `examples/ai-gateway/`, in
//! front of two mock LLM providers (OpenAI and Anthropic wire formats), until Ctrl-C.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::quickstart::{Guard, wait_ready};
use crate::workspace::Workspace;

const CONTROLLER_ADMIN: &str = "127.0.0.1:19000";
const GATEWAY: &str = "127.0.10.2:8080";

/// (provider, listen address, the key it expects): what `examples/ai-gateway/` names.
const MOCKS: [(&str, &str, &str); 2] = [
    ("openai", "127.0.20.11:8000", "sk-openai-demo"),
    ("anthropic", "127.0.20.12:8000", "sk-ant-demo"),
];

pub fn run(ws: &Workspace) -> Result<()> {
    let config_dir = ws.root.join("examples/ai-gateway");
    let mut mocks = Vec::new();
    for (provider, listen, key) in MOCKS {
        let mock = Command::new(ws.bin("nantian-ai-mock"))
            .args(["--listen", listen, "--provider", provider, "--api-key", key])
            .args(["--name", &format!("mock-{provider}")])
            .stdout(Stdio::null())
            .spawn()?;
        mocks.push(Guard(mock));
    }
    let mut controller = Guard(
        Command::new(ws.bin("nantian-controller"))
            .arg("standalone")
            .arg("--config-dir")
            .arg(&config_dir)
            .args(["--admin-addr", CONTROLLER_ADMIN])
            .spawn()?,
    );
    wait_ready(CONTROLLER_ADMIN, Duration::from_secs(30))?;
    let chat = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}]}"#;
    let claude = r#"{"model":"claude-sonnet-4","stream":true,"messages":[{"role":"user","content":"hello there"}]}"#;
    let messages = r#"{"model":"gpt-4o","max_tokens":100,"messages":[{"role":"user","content":"hello there"}]}"#;
    println!(
        "\nNantian AI gateway is running (standalone, config: {dir}).\n\
         Mock providers: OpenAI on {openai}, Anthropic on {anthropic}. Try:\n\
         \n  # OpenAI API in, OpenAI backend (the gateway puts in the backend's key)\
         \n  curl -s http://{GATEWAY}/v1/chat/completions -d '{chat}'\
         \n  # OpenAI API in, Anthropic backend, streamed: translated event by event\
         \n  curl -sN http://{GATEWAY}/v1/chat/completions -d '{claude}'\
         \n  # Anthropic API in, OpenAI backend\
         \n  curl -s http://{GATEWAY}/v1/messages -H 'anthropic-version: 2023-06-01' -d '{messages}'\
         \n  curl -s http://{GATEWAY}/v1/models\
         \n  curl -s http://127.0.10.2:15000/metrics | grep nantian_ai\
         \n\nOr any official SDK with base_url http://{GATEWAY}/v1 (OpenAI) or http://{GATEWAY} \
         (Anthropic, Ollama). Edit files in {dir} and the change is live at once. Ctrl-C stops everything.",
        dir = config_dir.display(),
        openai = MOCKS[0].1,
        anthropic = MOCKS[1].1,
    );
    let status = controller.0.wait()?;
    if !status.success() {
        bail!("controller exited: {status}");
    }
    Ok(())
}
