//! Drives an official Python SDK through `tests/ai/client.py` (see its docstring for the
//! JSON it prints), with the interpreter of the venv `cargo xtask test` prepares
//! (`NANTIAN_PYTHON`). Without it the call is skipped, loudly; under `CI` it fails instead.
//! [`run_sdk_clients`] makes many calls in one Python process.

use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Provider;

/// The field of the value [`run_sdk_client`] returns instead of the script's output when
/// there is no Python to run it with.
pub const SKIP_FIELD: &str = "skip";
/// How long one SDK call may take before it is killed (a broken stream must not hang a
/// test run).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

/// The arguments of `tests/ai/client.py`.
#[derive(Debug, Clone)]
pub struct SdkArgs {
    pub sdk: Provider,
    /// The SDK's base URL (OpenAI: ending in `/v1`; see
    /// [`super::AiMockProcess::base_url`]).
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub prompt: String,
    pub system: Option<String>,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// Offer the `echo` tool.
    pub tools: bool,
    /// Continue after a call of `echo` with the prompt: this is its result.
    pub tool_result: Option<String>,
    /// A base64 PNG sent with the prompt.
    pub image_b64: Option<String>,
    pub max_tokens: Option<u64>,
    pub user: Option<String>,
    pub headers: Vec<(String, String)>,
    /// In a stream, POST here after the first text delta (a mock's
    /// [`super::AiMockProcess::release_url`]).
    pub first_chunk_then_release: Option<String>,
}

impl SdkArgs {
    pub fn new(sdk: Provider, base_url: &str, api_key: &str, model: &str, prompt: &str) -> Self {
        Self {
            sdk,
            base_url: base_url.into(),
            api_key: api_key.into(),
            model: model.into(),
            prompt: prompt.into(),
            system: None,
            stream: false,
            include_usage: false,
            tools: false,
            tool_result: None,
            image_b64: None,
            max_tokens: None,
            user: None,
            headers: Vec::new(),
            first_chunk_then_release: None,
        }
    }

    /// The command-line arguments of the script.
    pub fn to_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--sdk",
            self.sdk.as_str(),
            "--base-url",
            &self.base_url,
            "--api-key",
            &self.api_key,
            "--model",
            &self.model,
            "--prompt",
            &self.prompt,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut option = |flag: &str, value: Option<String>| {
            if let Some(value) = value {
                args.push(flag.into());
                args.push(value);
            }
        };
        option("--system", self.system.clone());
        option("--tool-result", self.tool_result.clone());
        option("--image-b64", self.image_b64.clone());
        option("--max-tokens", self.max_tokens.map(|n| n.to_string()));
        option("--user", self.user.clone());
        option(
            "--first-chunk-then-release",
            self.first_chunk_then_release.clone(),
        );
        for (key, value) in &self.headers {
            option("--header", Some(format!("{key}={value}")));
        }
        for (flag, on) in [
            ("--stream", self.stream),
            ("--include-usage", self.include_usage),
            ("--tools", self.tools),
        ] {
            if on {
                args.push(flag.into());
            }
        }
        args
    }
}

/// The base URL an SDK of `sdk` takes for a gateway listening at `addr`: OpenAI's SDK
/// appends its paths to `/v1`, Anthropic's and Ollama's to the origin.
pub fn gateway_base_url(sdk: Provider, addr: &str) -> String {
    match sdk {
        Provider::Openai => format!("http://{addr}/v1"),
        Provider::Anthropic | Provider::Ollama => format!("http://{addr}"),
    }
}

/// `tests/ai/client.py`.
pub fn client_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ai/client.py")
}

/// The venv's interpreter (`NANTIAN_PYTHON`), when this run has one.
pub fn python() -> Option<PathBuf> {
    std::env::var_os("NANTIAN_PYTHON")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
}

/// Whether [`run_sdk_client`] skipped (no Python).
pub fn is_skip(output: &Value) -> bool {
    output.get(SKIP_FIELD).is_some()
}

/// Runs the script with `args` and returns the JSON it printed. Without `NANTIAN_PYTHON`
/// it prints a loud `SKIP` line and returns `{"skip": reason}` (see [`is_skip`]); under
/// `CI` it panics instead. Panics when the script fails or prints no JSON.
pub fn run_sdk_client(args: &SdkArgs) -> Value {
    let Some(python) = python_or_skip() else {
        return skip_marker();
    };
    let mut command = client_command(&python);
    command.args(args.to_args()).stdin(Stdio::null());
    let (status, stdout, stderr) = run_with_timeout(command, None, CLIENT_TIMEOUT);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
    match (status, line.map(serde_json::from_str::<Value>)) {
        (Some(0), Some(Ok(value))) => value,
        (status, _) => panic!(
            "client.py {:?} failed (exit {status:?}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            args.to_args()
        ),
    }
}

/// Runs several calls, in order, in one Python process (`client.py --batch`: the SDKs
/// take seconds to import): one output per call, as [`run_sdk_client`] returns it (all skip
/// markers without Python).
pub fn run_sdk_clients(calls: &[SdkArgs]) -> Vec<Value> {
    let Some(python) = python_or_skip() else {
        return calls.iter().map(|_| skip_marker()).collect();
    };
    let mut input = String::new();
    for call in calls {
        input.push_str(&serde_json::to_string(&call.to_args()).expect("strings serialize"));
        input.push('\n');
    }
    let mut command = client_command(&python);
    command.arg("--batch").stdin(Stdio::piped());
    let timeout = CLIENT_TIMEOUT + Duration::from_secs(30) * calls.len() as u32;
    let (status, stdout, stderr) = run_with_timeout(command, Some(input), timeout);
    let outputs: Result<Vec<Value>, _> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect();
    match (status, outputs) {
        (Some(0), Ok(outputs)) if outputs.len() == calls.len() => outputs,
        (status, _) => panic!(
            "client.py --batch of {} calls failed (exit {status:?}):\n--- stdout\n{stdout}\n\
             --- stderr\n{stderr}",
            calls.len()
        ),
    }
}

/// `NANTIAN_PYTHON`, or `None` after saying the test is skipped (a panic under `CI`).
fn python_or_skip() -> Option<PathBuf> {
    if let Some(python) = python() {
        return Some(python);
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("ai sdk test")
        .to_string();
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {SKIP_REASON} (CI is set: the SDK tests must not be skipped)");
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!! SKIP {test}: {SKIP_REASON}\n"
    );
    None
}

const SKIP_REASON: &str = "no Python venv with the official SDKs (NANTIAN_PYTHON); run the \
                           tests with `cargo xtask test`, which prepares it";

fn skip_marker() -> Value {
    json!({ SKIP_FIELD: SKIP_REASON })
}

/// `python client.py`, in an environment where only the arguments decide what it does.
fn client_command(python: &Path) -> Command {
    let mut command = Command::new(python);
    command
        .arg(client_script())
        // The SDKs read these; the arguments alone decide what the script does.
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_AUTH_TOKEN")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("OLLAMA_HOST")
        .env_remove("OLLAMA_API_KEY")
        // Everything is on loopback; no __pycache__ in the source tree.
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `command` (feeding it `input`), killing it after `timeout`: its exit code (`None`
/// when killed or signalled), stdout and stderr.
fn run_with_timeout(
    mut command: Command,
    input: Option<String>,
    timeout: Duration,
) -> (Option<i32>, String, String) {
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", command.get_program()));
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = reader(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = reader(child.stderr.take().map(|p| Box::new(p) as _));
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        // On a thread: the child may fill its stdout before it has read all of this.
        std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let mut stderr = stderr.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {timeout:?} or by a signal)"));
    }
    (status, stdout, stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let mut args = SdkArgs::new(Provider::Anthropic, "http://h", "k", "m", "hi there");
        args.stream = true;
        args.max_tokens = Some(5);
        args.headers.push(("x-a".into(), "1=2".into()));
        assert_eq!(
            args.to_args(),
            [
                "--sdk",
                "anthropic",
                "--base-url",
                "http://h",
                "--api-key",
                "k",
                "--model",
                "m",
                "--prompt",
                "hi there",
                "--max-tokens",
                "5",
                "--header",
                "x-a=1=2",
                "--stream"
            ]
        );
    }
}
