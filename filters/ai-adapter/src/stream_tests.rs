//! The stream translator on recorded provider streams (`tests/fixtures`): the same output
//! however the stream is cut into chunks, output as soon as each event is complete, and
//! a stream every client accepts.

use serde_json::Value;

use super::*;
use crate::canonical::FinishReason;
use crate::framing::{Format, Framer};
use crate::test_clients::{self as clients, Message, Streamed};

const TEXT: &str = "The capital of France is Paris — \"la Ville Lumière\".\n";

/// A recorded provider stream and what it says.
struct Fixture {
    name: &'static str,
    provider: Api,
    bytes: &'static [u8],
    expected: Expected,
}

struct Expected {
    text: &'static str,
    /// (name, arguments) of each tool call.
    tools: &'static [(&'static str, &'static str)],
    finish: FinishReason,
    input_tokens: u64,
    output_tokens: u64,
}

const PARIS: &str = r#"{"location":"Paris, France","unit":"celsius"}"#;
const ROME: &str = r#"{"location":"Rome, Italy","unit":"celsius"}"#;

const FIXTURES: [Fixture; 6] = [
    Fixture {
        name: "openai_stream",
        provider: Api::OpenAi,
        bytes: include_bytes!("../tests/fixtures/openai_stream.sse"),
        expected: Expected {
            text: TEXT,
            tools: &[],
            finish: FinishReason::EndTurn,
            input_tokens: 19,
            output_tokens: 14,
        },
    },
    Fixture {
        name: "openai_stream_tools",
        provider: Api::OpenAi,
        bytes: include_bytes!("../tests/fixtures/openai_stream_tools.sse"),
        expected: Expected {
            text: "",
            tools: &[("get_weather", PARIS), ("get_weather", ROME)],
            finish: FinishReason::ToolUse,
            input_tokens: 82,
            output_tokens: 49,
        },
    },
    Fixture {
        name: "anthropic_stream",
        provider: Api::Anthropic,
        bytes: include_bytes!("../tests/fixtures/anthropic_stream.sse"),
        expected: Expected {
            text: TEXT,
            tools: &[],
            finish: FinishReason::EndTurn,
            input_tokens: 19,
            output_tokens: 14,
        },
    },
    Fixture {
        name: "anthropic_stream_tools",
        provider: Api::Anthropic,
        bytes: include_bytes!("../tests/fixtures/anthropic_stream_tools.sse"),
        expected: Expected {
            text: "Okay, let's check the weather for Paris, France:",
            tools: &[("get_weather", PARIS)],
            finish: FinishReason::ToolUse,
            input_tokens: 472,
            output_tokens: 89,
        },
    },
    Fixture {
        name: "ollama_stream",
        provider: Api::Ollama,
        bytes: include_bytes!("../tests/fixtures/ollama_stream.ndjson"),
        expected: Expected {
            text: TEXT,
            tools: &[],
            finish: FinishReason::EndTurn,
            input_tokens: 19,
            output_tokens: 14,
        },
    },
    Fixture {
        name: "ollama_stream_tools",
        provider: Api::Ollama,
        bytes: include_bytes!("../tests/fixtures/ollama_stream_tools.ndjson"),
        expected: Expected {
            text: "",
            tools: &[("get_weather", PARIS), ("get_weather", ROME)],
            finish: FinishReason::ToolUse,
            input_tokens: 82,
            output_tokens: 49,
        },
    },
];

const ANTHROPIC_ERROR: &[u8] = include_bytes!("../tests/fixtures/anthropic_stream_error.sse");

const CLIENTS: [Api; 3] = [Api::OpenAi, Api::Anthropic, Api::Ollama];

fn ctx() -> ResponseContext {
    ResponseContext::new(1_741_570_283_000, 99)
}

fn translator(provider: Api, client: Api) -> StreamTranslator {
    let encoder = StreamEncoder::new(client, ctx(), true);
    StreamTranslator::new(provider, ctx(), Output::Translate(encoder))
}

/// Feeds `chunks` and finishes; the client's bytes.
fn run(mut translator: StreamTranslator, chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks {
        translator.feed(chunk, &mut out);
    }
    translator.finish(&mut out);
    out
}

/// What `client` makes of `out`.
fn read(client: Api, out: &[u8]) -> Streamed {
    match client {
        Api::OpenAi => clients::openai_stream(out),
        Api::Anthropic => clients::anthropic_stream(out),
        Api::Ollama => clients::ollama_stream(out),
    }
}

fn finish_name(client: Api, finish: FinishReason) -> &'static str {
    match (client, finish) {
        (Api::OpenAi, FinishReason::ToolUse) => "tool_calls",
        (Api::OpenAi, _) => "stop",
        (Api::Anthropic, FinishReason::ToolUse) => "tool_use",
        (Api::Anthropic, _) => "end_turn",
        (Api::Ollama, _) => "stop",
    }
}

fn assert_message(client: Api, fixture: &Fixture, message: &Message) {
    let expected = &fixture.expected;
    let what = format!("{} → {client:?}", fixture.name);
    assert_eq!(message.text, expected.text, "{what}");
    let tools: Vec<(String, Value)> = message
        .tool_calls
        .iter()
        .map(|call| (call.name.clone(), call.arguments.clone()))
        .collect();
    let expected_tools: Vec<(String, Value)> = expected
        .tools
        .iter()
        .map(|(name, arguments)| (name.to_string(), serde_json::from_str(arguments).unwrap()))
        .collect();
    assert_eq!(tools, expected_tools, "{what}");
    if client != Api::Ollama {
        for call in &message.tool_calls {
            assert!(!call.id.is_empty(), "{what}: tool calls have ids");
        }
    }
    assert_eq!(
        message.finish,
        finish_name(client, expected.finish),
        "{what}"
    );
    assert_eq!(message.input_tokens, Some(expected.input_tokens), "{what}");
    assert_eq!(
        message.output_tokens,
        Some(expected.output_tokens),
        "{what}"
    );
    assert!(!message.model.is_empty(), "{what}: model");
}

#[test]
fn every_client_reads_every_provider_stream() {
    for fixture in &FIXTURES {
        for client in CLIENTS {
            let out = run(translator(fixture.provider, client), &[fixture.bytes]);
            let streamed = read(client, &out);
            assert!(
                streamed.error.is_none(),
                "{}: {:?}",
                fixture.name,
                streamed.error
            );
            assert_message(client, fixture, &streamed.message);
        }
    }
}

#[test]
fn the_output_is_the_same_wherever_the_stream_is_split() {
    let streams = FIXTURES
        .iter()
        .map(|f| (f.name, f.provider, f.bytes))
        .chain([("anthropic_stream_error", Api::Anthropic, ANTHROPIC_ERROR)]);
    for (name, provider, bytes) in streams {
        for client in CLIENTS {
            let whole = run(translator(provider, client), &[bytes]);
            for split in 0..=bytes.len() {
                let (a, b) = bytes.split_at(split);
                let out = run(translator(provider, client), &[a, b]);
                assert!(out == whole, "{name} → {client:?} split at {split}");
            }
            let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
            assert!(
                run(translator(provider, client), &bytewise) == whole,
                "{name} bytewise"
            );
        }
    }
}

/// Each provider frame as it is framed, with the text it carries.
fn frames_with_text(provider: Api, bytes: &[u8]) -> Vec<(Vec<u8>, String)> {
    let format = if provider.streams_sse() {
        Format::Sse
    } else {
        Format::Ndjson
    };
    let mut framer = Framer::new(format);
    let mut decoder = StreamDecoder::new(provider, ctx());
    let mut frames = Vec::new();
    framer
        .feed(bytes, &mut |frame| {
            let mut text = String::new();
            if let Some(data) = frame.data.as_deref() {
                decoder.decode(data, &mut |event| {
                    if let StreamEvent::Text(t) = event {
                        text.push_str(&t);
                    }
                });
            }
            frames.push((frame.raw.to_vec(), text));
        })
        .unwrap();
    frames
}

#[test]
fn each_event_is_sent_on_as_soon_as_it_is_complete() {
    for fixture in FIXTURES.iter().filter(|f| !f.expected.text.is_empty()) {
        for client in CLIENTS {
            let mut translator = translator(fixture.provider, client);
            for (raw, text) in frames_with_text(fixture.provider, fixture.bytes) {
                // The event arrives in two pieces: nothing can be sent before the second.
                let (head, tail) = raw.split_at(raw.len() / 2);
                let mut out = Vec::new();
                translator.feed(head, &mut out);
                assert!(
                    out.is_empty(),
                    "{}: output from half an event",
                    fixture.name
                );
                translator.feed(tail, &mut out);
                if !text.is_empty() {
                    let escaped = serde_json::to_string(&text).unwrap();
                    let escaped = &escaped[1..escaped.len() - 1];
                    let sent = String::from_utf8(out).unwrap();
                    assert!(
                        sent.contains(escaped),
                        "{} → {client:?}: {text:?} not sent at once: {sent}",
                        fixture.name
                    );
                }
            }
        }
    }
}

#[test]
fn same_api_streams_pass_untouched_and_usage_is_read() {
    for fixture in &FIXTURES {
        let mut observer = StreamTranslator::new(fixture.provider, ctx(), Output::Observe);
        let mut out = Vec::new();
        for chunk in fixture.bytes.chunks(7) {
            observer.feed(chunk, &mut out);
        }
        observer.finish(&mut out);
        assert!(out.is_empty(), "observing writes nothing");
        let usage = observer.usage();
        assert_eq!(
            usage.input(),
            fixture.expected.input_tokens,
            "{}",
            fixture.name
        );
        assert_eq!(
            usage.output(),
            fixture.expected.output_tokens,
            "{}",
            fixture.name
        );
    }
}

#[test]
fn an_openai_client_that_did_not_ask_gets_no_usage_chunk() {
    for fixture in FIXTURES.iter().filter(|f| f.provider == Api::OpenAi) {
        let source = std::str::from_utf8(fixture.bytes).unwrap();
        let expected: String = source
            .split_inclusive("\n\n")
            .filter(|event| !event.contains(r#""choices":[]"#))
            .collect();
        assert_eq!(
            source.split_inclusive("\n\n").count(),
            expected.split_inclusive("\n\n").count() + 1,
            "the fixture has one usage chunk"
        );
        let forward = || StreamTranslator::new(Api::OpenAi, ctx(), Output::ForwardWithoutUsage);
        let whole = run(forward(), &[fixture.bytes]);
        assert_eq!(String::from_utf8(whole.clone()).unwrap(), expected);
        for split in 0..=fixture.bytes.len() {
            let (a, b) = fixture.bytes.split_at(split);
            assert!(run(forward(), &[a, b]) == whole, "split at {split}");
        }
        let streamed = clients::openai_stream(&whole);
        assert!(!streamed.usage_chunk);
        assert_message_without_usage(fixture, &streamed.message);
    }
}

fn assert_message_without_usage(fixture: &Fixture, message: &Message) {
    assert_eq!(message.text, fixture.expected.text);
    assert_eq!(message.tool_calls.len(), fixture.expected.tools.len());
    assert_eq!(message.input_tokens, None);
}

#[test]
fn the_usage_chunk_is_sent_only_when_asked_for() {
    let fixture = &FIXTURES[2]; // Anthropic → OpenAI
    for include_usage in [false, true] {
        let encoder = StreamEncoder::new(Api::OpenAi, ctx(), include_usage);
        let translator = StreamTranslator::new(fixture.provider, ctx(), Output::Translate(encoder));
        let streamed = clients::openai_stream(&run(translator, &[fixture.bytes]));
        assert_eq!(streamed.usage_chunk, include_usage);
        assert_eq!(streamed.message.text, TEXT);
    }
}

#[test]
fn provider_errors_mid_stream_reach_every_client() {
    for client in CLIENTS {
        let out = run(translator(Api::Anthropic, client), &[ANTHROPIC_ERROR]);
        let streamed = read(client, &out);
        assert_eq!(streamed.message.text, "The capital", "{client:?}");
        let error = streamed
            .error
            .unwrap_or_else(|| panic!("{client:?}: no error"));
        let message = match client {
            Api::Ollama => error.as_str().unwrap().to_string(),
            _ => error["message"].as_str().unwrap().to_string(),
        };
        assert_eq!(message, "Overloaded");
        if client == Api::Anthropic {
            assert_eq!(error["type"], "overloaded_error");
        }
    }
}

#[test]
fn unreadable_events_and_early_ends_become_errors() {
    for fixture in &FIXTURES {
        for client in CLIENTS {
            // Garbage in the middle: what came before is kept, then an error, then nothing.
            let half = fixture.bytes.len() / 2;
            let cut = fixture.bytes[..half]
                .iter()
                .rposition(|&b| b == b'\n')
                .unwrap()
                + 1;
            let garbage: &[u8] = if fixture.provider.streams_sse() {
                b"data: {\"oops\n\n"
            } else {
                b"{\"oops\n"
            };
            let out = run(
                translator(fixture.provider, client),
                &[&fixture.bytes[..cut], garbage, &fixture.bytes[cut..]],
            );
            let error = read(client, &out).error;
            let error = error.unwrap_or_else(|| panic!("{} → {client:?}", fixture.name));
            assert!(error.to_string().contains("unreadable"), "{error}");

            // Cut off in the middle of an event: what came before, then an error.
            let out = run(
                translator(fixture.provider, client),
                &[&fixture.bytes[..half]],
            );
            let streamed = read(client, &out);
            let error = streamed.error.expect("a stream cut short is an error");
            assert!(error.to_string().contains("ended before"), "{error}");
            assert!(fixture.expected.text.starts_with(&streamed.message.text));

            // Cut off before the provider's finish: an error, not a clean end.
            let finish_at = find_finish(fixture);
            let out = run(
                translator(fixture.provider, client),
                &[&fixture.bytes[..finish_at]],
            );
            let error = read(client, &out).error.expect("early end is an error");
            assert!(error.to_string().contains("ended before"), "{error}");
        }
    }
}

/// Where the frame with the provider's finish reason starts.
fn find_finish(fixture: &Fixture) -> usize {
    let needle: &[u8] = match fixture.provider {
        Api::OpenAi => b"\"finish_reason\":\"",
        Api::Anthropic => b"event: message_delta",
        Api::Ollama => b"\"done\":true",
    };
    let at = fixture
        .bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    fixture.bytes[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1
}

#[test]
fn a_stream_with_a_finish_but_no_end_is_ended_cleanly() {
    let fixture = &FIXTURES[0];
    let without_done = &fixture.bytes[..fixture.bytes.len() - b"data: [DONE]\n\n".len()];
    for client in CLIENTS {
        let streamed = read(
            client,
            &run(translator(Api::OpenAi, client), &[without_done]),
        );
        assert!(streamed.error.is_none());
        assert_eq!(streamed.message.text, TEXT);
    }
}

#[test]
fn a_stream_collected_for_a_client_that_did_not_ask_to_stream() {
    for fixture in &FIXTURES {
        let mut translator = StreamTranslator::new(
            fixture.provider,
            ctx(),
            Output::Collect(Accumulator::default()),
        );
        let mut out = Vec::new();
        for chunk in fixture.bytes.chunks(11) {
            translator.feed(chunk, &mut out);
        }
        translator.finish(&mut out);
        assert!(out.is_empty());
        let Output::Collect(accumulator) = translator.into_output() else {
            unreachable!()
        };
        let response = accumulator.finish().unwrap();
        for client in CLIENTS {
            let body = crate::codec::encode_response(client, &response, &ctx());
            let message = match client {
                Api::OpenAi => clients::openai_response(&body),
                Api::Anthropic => clients::anthropic_response(&body),
                Api::Ollama => clients::ollama_response(&body),
            };
            assert_message(client, fixture, &message);
        }
    }
}

#[test]
fn an_endless_frame_ends_the_stream_with_an_error() {
    let mut translator = translator(Api::Ollama, Api::OpenAi);
    let mut out = Vec::new();
    translator.feed(
        br#"{"model":"m","message":{"role":"assistant","content":"hi"},"done":false}
"#,
        &mut out,
    );
    let endless = vec![b'x'; 1 << 20];
    for _ in 0..5 {
        translator.feed(&endless, &mut out);
    }
    translator.finish(&mut out);
    let streamed = clients::openai_stream(&out);
    assert_eq!(streamed.message.text, "hi");
    assert!(streamed.error.unwrap().to_string().contains("larger than"));
}
