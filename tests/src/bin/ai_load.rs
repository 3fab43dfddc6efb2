//! `nantian-ai-load`: streaming chat requests at a fixed rate (open loop), for the AI path
//! of `cargo xtask bench` (`bench/README.md`).
//!
//! A pacing thread releases request `i` at `start + i / rate`, whether or not earlier ones
//! have finished, so a slow answer cannot delay the requests after it (no coordinated
//! omission), and every latency is counted from the request's scheduled start. Each
//! request reads its whole SSE stream and records the time to the first event carrying
//! text (an OpenAI `choices[0].delta.content` chunk, an Anthropic `content_block_delta`)
//! and to the end of the stream; it is good only if it answered 200 with a well-formed
//! stream of its API whose text is `--expect`, and any other counts as infinitely slow.
//! Connections are kept alive in a pool.
//! Prints one JSON object: the percentiles, the errors, and how late the requests started.

#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{Value, json};
use tokio::task::JoinSet;

/// Sends streaming chat requests at a fixed rate and prints latency percentiles as JSON.
#[derive(Debug, Parser)]
#[command(name = "nantian-ai-load", version)]
struct Args {
    /// The API to speak: OpenAI Chat Completions or Anthropic Messages.
    #[arg(long, value_enum)]
    api: Api,
    /// Origin of the server (`http://127.0.0.1:8080`); the API's path is appended.
    #[arg(long)]
    origin: String,
    /// Requests per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load at the same rate before, on the same connections, not recorded.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, default_value = "claude-bench")]
    model: String,
    #[arg(long)]
    prompt: String,
    /// The text every answer must stream, concatenated.
    #[arg(long)]
    expect: String,
    /// Sent as `x-api-key` (Anthropic) or `Authorization: Bearer` (OpenAI).
    #[arg(long, default_value = "sk-bench-client")]
    api_key: String,
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    /// Idle connections kept (default: a tenth of the rate, at least 16).
    #[arg(long)]
    connections: Option<usize>,
    /// Seconds before a request counts as failed.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Api {
    Openai,
    Anthropic,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(args.rate > 0.0 && args.duration > 0.0 && args.warmup >= 0.0) {
        bail!("--rate and --duration must be positive, --warmup not negative");
    }
    // One thread: the client's own work is small at these rates, and a second thread
    // would compete with the mock for the load generator's CPU.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(args))?;
    println!("{report}");
    Ok(())
}

/// What every request sends and expects.
struct Spec {
    api: Api,
    uri: Uri,
    body: Bytes,
    api_key: HeaderValue,
    expect: String,
    timeout: Duration,
}

type HttpClient = Client<CountingConnector, Full<Bytes>>;

/// How long before each scheduled start the pacing thread stops sleeping and spins.
const SPIN: Duration = Duration::from_micros(200);

async fn run(args: Args) -> anyhow::Result<Value> {
    let path = match args.api {
        Api::Openai => "/v1/chat/completions",
        Api::Anthropic => "/v1/messages",
    };
    let uri: Uri = format!("{}{path}", args.origin.trim_end_matches('/'))
        .parse()
        .context("--origin")?;
    let api_key = match args.api {
        Api::Openai => format!("Bearer {}", args.api_key),
        Api::Anthropic => args.api_key.clone(),
    };
    let spec = Arc::new(Spec {
        api: args.api,
        uri,
        body: request_body(&args).to_string().into(),
        api_key: HeaderValue::from_str(&api_key).context("--api-key")?,
        expect: args.expect.clone(),
        timeout: Duration::from_secs_f64(args.timeout),
    });
    let opened = Arc::new(AtomicU64::new(0));
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(
            args.connections
                .unwrap_or_else(|| ((args.rate / 10.0).ceil() as usize).max(16)),
        )
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(TokioTimer::new())
        .build(CountingConnector {
            inner: connector,
            opened: opened.clone(),
        });

    if args.warmup > 0.0 {
        phase(&client, &spec, args.rate, args.warmup).await;
    }
    let opened_before = opened.load(Ordering::Relaxed);
    let measured = phase(&client, &spec, args.rate, args.duration).await;
    let opened_during = opened.load(Ordering::Relaxed) - opened_before;
    Ok(measured.report(&args, opened_before, opened_during))
}

fn request_body(args: &Args) -> Value {
    let messages = json!([{ "role": "user", "content": args.prompt }]);
    match args.api {
        Api::Openai => json!({
            "model": args.model,
            "max_tokens": args.max_tokens,
            "stream": true,
            "stream_options": { "include_usage": false },
            "messages": messages,
        }),
        Api::Anthropic => json!({
            "model": args.model,
            "max_tokens": args.max_tokens,
            "stream": true,
            "messages": messages,
        }),
    }
}

/// What one phase of load gave. A failed request counts as infinitely slow in the
/// latencies (`null` for a percentile it reaches), so failures cannot flatter them.
#[derive(Default)]
struct Phase {
    scheduled: usize,
    ok: usize,
    /// How late each request started after its scheduled time (µs).
    start_lag_us: Vec<f64>,
    ttft_us: Vec<f64>,
    total_us: Vec<f64>,
    errors: usize,
    error_samples: Vec<String>,
    /// The first good answer.
    sample: Option<Answer>,
    elapsed: Duration,
}

/// Sends `rate × seconds` requests on the schedule, then waits for every answer.
async fn phase(client: &HttpClient, spec: &Arc<Spec>, rate: f64, seconds: f64) -> Phase {
    let total = (rate * seconds).round().max(1.0) as u64;
    // The pacing runs on its own thread: the runtime's timer ticks in milliseconds. A
    // thread sleep overshoots by the kernel's timer slack (50 µs), so the thread sleeps
    // until shortly before each start and spins the rest.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let start = Instant::now() + Duration::from_millis(10);
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let at = start + Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = at.checked_duration_since(Instant::now() + SPIN) {
                std::thread::sleep(wait);
            }
            while Instant::now() < at {
                std::hint::spin_loop();
            }
            if tx.send(at).is_err() {
                return;
            }
        }
    });
    let mut out = Phase::default();
    let mut requests = JoinSet::new();
    while let Some(scheduled) = rx.recv().await {
        out.scheduled += 1;
        out.start_lag_us.push(micros(scheduled.elapsed()));
        let (client, spec) = (client.clone(), spec.clone());
        requests.spawn(async move {
            let result = tokio::time::timeout(spec.timeout, one(&client, &spec, scheduled)).await;
            result.unwrap_or_else(|_| Err(format!("no complete answer within {:?}", spec.timeout)))
        });
        // Collect finished ones as we go, so the set stays small.
        while let Some(done) = requests.try_join_next() {
            out.record(done);
        }
    }
    let _ = pacer.join();
    while let Some(done) = requests.join_next().await {
        out.record(done);
    }
    out.elapsed = start.elapsed();
    out
}

impl Phase {
    fn record(&mut self, done: Result<Result<Answer, String>, tokio::task::JoinError>) {
        match done.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(answer) => {
                self.ok += 1;
                self.ttft_us.push(micros(answer.ttft));
                self.total_us.push(micros(answer.total));
                self.sample.get_or_insert(answer);
            }
            Err(err) => {
                self.ttft_us.push(f64::INFINITY);
                self.total_us.push(f64::INFINITY);
                self.errors += 1;
                if self.error_samples.len() < 5 {
                    self.error_samples.push(err);
                }
            }
        }
    }

    fn report(mut self, args: &Args, opened_in_warmup: u64, opened: u64) -> Value {
        let sample = self.sample.as_ref().map(
            |a| json!({ "text": a.text, "events": a.events, "content_events": a.content_events }),
        );
        json!({
            "api": match args.api { Api::Openai => "openai", Api::Anthropic => "anthropic" },
            "rate": args.rate,
            "duration_s": args.duration,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "scheduled": self.scheduled,
            "ok": self.ok,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "connections_opened_in_warmup": opened_in_warmup,
            "connections_opened": opened,
            "start_lag_us": percentiles(&mut self.start_lag_us),
            "ttft_us": percentiles(&mut self.ttft_us),
            "total_us": percentiles(&mut self.total_us),
            "sample": sample,
        })
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// p50, p90, p99 and max (nearest rank), `null` without values.
fn percentiles(values: &mut [f64]) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let rank = (q * values.len() as f64).ceil() as usize;
        values[rank.clamp(1, values.len()) - 1]
    };
    json!({ "p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": at(1.0) })
}

/// A good answer: its timings from the scheduled start and what it streamed.
struct Answer {
    ttft: Duration,
    total: Duration,
    text: String,
    events: u64,
    content_events: u64,
}

async fn one(client: &HttpClient, spec: &Spec, scheduled: Instant) -> Result<Answer, String> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(spec.uri.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(spec.body.clone()))
        .map_err(|e| e.to_string())?;
    let headers = request.headers_mut();
    match spec.api {
        Api::Openai => headers.insert(http::header::AUTHORIZATION, spec.api_key.clone()),
        Api::Anthropic => {
            headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
            headers.insert("x-api-key", spec.api_key.clone())
        }
    };
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("request failed: {e:?}"))?;
    let status = response.status();
    let mut body = response.into_body();
    if status != http::StatusCode::OK {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(format!("HTTP {status}: {}", text.trim()));
    }
    let mut stream = SseStream::new(spec.api);
    let mut first_text = None;
    while let Some(frame) = body.frame().await {
        let arrived = Instant::now();
        let frame = frame.map_err(|e| format!("reading the stream: {e}"))?;
        if let Ok(data) = frame.into_data() {
            stream.push(&data)?;
            if first_text.is_none() && !stream.text.is_empty() {
                first_text = Some(arrived);
            }
        }
    }
    let total = scheduled.elapsed();
    stream.finish(&spec.expect)?;
    let first_text = first_text.ok_or("the stream carried no text")?;
    Ok(Answer {
        ttft: first_text.duration_since(scheduled),
        total,
        text: stream.text,
        events: stream.events,
        content_events: stream.content_events,
    })
}

/// Reads a server-sent event stream of `api` and checks its shape as it goes.
struct SseStream {
    api: Api,
    pending: Vec<u8>,
    text: String,
    events: u64,
    content_events: u64,
    stop_reason: Option<String>,
    ended: bool,
}

impl SseStream {
    fn new(api: Api) -> Self {
        Self {
            api,
            pending: Vec::new(),
            text: String::new(),
            events: 0,
            content_events: 0,
            stop_reason: None,
            ended: false,
        }
    }

    /// Takes more bytes; every event they complete is checked and its text kept.
    fn push(&mut self, data: &[u8]) -> Result<(), String> {
        self.pending.extend(data.iter().filter(|b| **b != b'\r'));
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let raw: Vec<u8> = self.pending.drain(..end + 2).collect();
            let raw = std::str::from_utf8(&raw).map_err(|_| "an event is not UTF-8")?;
            let mut name = None;
            let mut data = Vec::new();
            for line in raw.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim_start());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            if data.is_empty() {
                continue;
            }
            if self.ended {
                return Err(format!("an event after the end of the stream: {raw:?}"));
            }
            self.events += 1;
            match self.api {
                Api::Openai => self.openai(&data.join("\n"))?,
                Api::Anthropic => self.anthropic(name, &data.join("\n"))?,
            }
        }
        Ok(())
    }

    fn openai(&mut self, data: &str) -> Result<(), String> {
        if data == "[DONE]" {
            self.ended = true;
            return Ok(());
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
        if chunk["object"] != "chat.completion.chunk" {
            return Err(format!("not a chat.completion.chunk: {data}"));
        }
        let Some(choice) = chunk["choices"].get(0) else {
            return Ok(()); // A usage chunk.
        };
        if let Some(content) = choice["delta"]["content"].as_str()
            && !content.is_empty()
        {
            self.text.push_str(content);
            self.content_events += 1;
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.stop_reason = Some(reason.to_string());
        }
        Ok(())
    }

    fn anthropic(&mut self, name: Option<&str>, data: &str) -> Result<(), String> {
        let event: Value = serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
        let kind = event["type"].as_str().unwrap_or_default();
        if name != Some(kind) {
            return Err(format!("event {name:?} carries type {kind:?}"));
        }
        if (self.events == 1) != (kind == "message_start") {
            return Err(format!("message_start is not the first event: {data}"));
        }
        match kind {
            "message_start" | "content_block_start" | "content_block_stop" | "ping" => {}
            "content_block_delta" => {
                if let Some(text) = event["delta"]["text"].as_str() {
                    self.text.push_str(text);
                    self.content_events += 1;
                }
            }
            "message_delta" => {
                self.stop_reason = event["delta"]["stop_reason"].as_str().map(str::to_string);
            }
            "message_stop" => self.ended = true,
            _ => return Err(format!("unexpected event: {data}")),
        }
        Ok(())
    }

    /// The stream ended: it must have said so, completely, with the expected text.
    fn finish(&self, expect: &str) -> Result<(), String> {
        if !self.pending.iter().all(u8::is_ascii_whitespace) {
            return Err("the stream ends inside an event".into());
        }
        if !self.ended {
            return Err("the stream ended without its end event".into());
        }
        let want = match self.api {
            Api::Openai => "stop",
            Api::Anthropic => "end_turn",
        };
        if self.stop_reason.as_deref() != Some(want) {
            return Err(format!("stop reason {:?}, not {want}", self.stop_reason));
        }
        if self.text != expect {
            return Err(format!("streamed {:?}, expected {expect:?}", self.text));
        }
        Ok(())
    }
}

/// The HTTP connector, counting the connections it opens (the pool should open none
/// once warm).
#[derive(Clone)]
struct CountingConnector {
    inner: HttpConnector,
    opened: Arc<AtomicU64>,
}

type Connecting<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl tower::Service<Uri> for CountingConnector {
    type Response = <HttpConnector as tower::Service<Uri>>::Response;
    type Error = <HttpConnector as tower::Service<Uri>>::Error;
    type Future = Connecting<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let opened = self.opened.clone();
        Box::pin(async move {
            let connection = connecting.await?;
            opened.fetch_add(1, Ordering::Relaxed);
            Ok(connection)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(api: Api, chunks: &[&str]) -> SseStream {
        let mut stream = SseStream::new(api);
        for chunk in chunks {
            stream.push(chunk.as_bytes()).unwrap();
        }
        stream
    }

    #[test]
    fn openai_chunks_split_anywhere() {
        let text = concat!(
            "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"content\":\"hi \"}}]}\r\n\r\n",
            "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"content\":\"there\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n"
        );
        let (a, b) = text.split_at(150);
        let stream = read(Api::Openai, &[a, b]);
        assert_eq!((stream.events, stream.content_events), (4, 2));
        stream.finish("hi there").unwrap();
        assert!(stream.finish("hi").is_err());
        assert!(
            read(Api::Openai, &[&text[..text.len() - 14]])
                .finish("hi there")
                .is_err()
        );
    }

    #[test]
    fn anthropic_events_are_checked() {
        let event = |name: &str, data: &str| format!("event: {name}\ndata: {data}\n\n");
        let events = [
            event("message_start", r#"{"type":"message_start","message":{}}"#),
            event("content_block_start", r#"{"type":"content_block_start"}"#),
            event("ping", r#"{"type": "ping"}"#),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"a b"}}"#,
            ),
            event("content_block_stop", r#"{"type":"content_block_stop"}"#),
            event(
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#,
            ),
            event("message_stop", r#"{"type":"message_stop"}"#),
        ];
        let all: Vec<&str> = events.iter().map(String::as_str).collect();
        read(Api::Anthropic, &all).finish("a b").unwrap();
        let mut stream = SseStream::new(Api::Anthropic);
        assert!(stream.push(events[1].as_bytes()).is_err());
        let mut stream = read(Api::Anthropic, &all);
        assert!(stream.push(events[6].as_bytes()).is_err());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut values: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        let p = percentiles(&mut values);
        assert_eq!(
            (&p["p50"], &p["p90"], &p["p99"], &p["max"]),
            (&json!(100.0), &json!(180.0), &json!(198.0), &json!(200.0))
        );
        assert_eq!(percentiles(&mut []), Value::Null);
        // Failed requests are infinitely slow: a percentile that reaches them is null.
        let mut values = vec![1.0, f64::INFINITY, 2.0];
        let p = percentiles(&mut values);
        assert_eq!((&p["p50"], &p["max"]), (&json!(2.0), &Value::Null));
    }
}
