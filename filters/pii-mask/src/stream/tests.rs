//! Streams through the rewriter: fixture streams with findings split across deltas,
//! cut into chunks at every byte; generated streams with the text split at every
//! character; the ends of texts, several texts, streams that stop early.

#[path = "../../tests/common/clients.rs"]
mod clients;

use super::framing::{Format, MAX_FRAME_BYTES};
use super::*;
use crate::config::Config;
use clients::{Streamed, anthropic_stream, ollama_stream, openai_choices, openai_stream};

const OPENAI: &[u8] = include_bytes!("../../tests/fixtures/openai_stream.sse");
const ANTHROPIC: &[u8] = include_bytes!("../../tests/fixtures/anthropic_stream.sse");
const OLLAMA: &[u8] = include_bytes!("../../tests/fixtures/ollama_stream.ndjson");

/// The text of the fixture streams, and what it becomes.
const TEXT: &str = "Sure! Write to john.doe@example.com or call +1 (415) 555-2671. Card: \
    4111 1111 1111 1111, SSN 123-45-6789, IP 192.168.0.1 or 2001:db8::1, IBAN DE89 3704 0044 \
    0532 0130 00. Ticket EMP-123456. Paris — \"la Ville Lumière\".";
const MASKED: &str = "Sure! Write to [EMAIL] or call [PHONE]. Card: [CREDIT_CARD], SSN [SSN], \
    IP [IPV4] or [IPV6], IBAN [IBAN]. Ticket [EMPLOYEE_ID]. Paris — \"la Ville Lumière\".";
/// The fixture's PII, none of which may reach a client whole.
const VALUES: &[&str] = &[
    "john.doe@example.com",
    "555-2671",
    "4111 1111 1111 1111",
    "123-45-6789",
    "192.168.0.1",
    "2001:db8::1",
    "DE89 3704",
    "EMP-123456",
];

const CONFIG: &str = r#"{"custom": [{"name": "employee_id", "pattern": "EMP-\\d{6}"}]}"#;

fn scanner() -> Scanner {
    Scanner::new(&Config::parse(CONFIG.as_bytes()).unwrap()).unwrap()
}

/// The stream rewritten, fed as `chunks`.
fn rewrite(scanner: &mut Scanner, format: Format, chunks: &[&[u8]]) -> Vec<u8> {
    let mut rewriter = StreamRewriter::new(format);
    let mut out = Vec::new();
    for chunk in chunks {
        let output = rewriter.feed(scanner, chunk);
        assert!(!output.gave_up);
        out.extend(output.bytes);
    }
    out.extend(rewriter.finish(scanner));
    out
}

/// Whether an event is one only a text delta is made of (a flush event, or an original
/// whose text may change); everything else must pass untouched.
type IsTextEvent = fn(&str) -> bool;

fn openai_text_event(raw: &str) -> bool {
    let Some(data) = raw.strip_prefix("data: ") else {
        return false;
    };
    let Ok(chunk) = serde_json::from_str::<Value>(data.trim_end()) else {
        return false;
    };
    chunk["choices"].as_array().is_some_and(|choices| {
        !choices.is_empty()
            && choices.iter().all(|choice| {
                choice["finish_reason"].is_null()
                    && choice["delta"].as_object().is_some_and(|delta| {
                        delta.contains_key("content")
                            && delta
                                .keys()
                                .all(|key| matches!(key.as_str(), "content" | "role" | "refusal"))
                    })
            })
    })
}

fn anthropic_text_event(raw: &str) -> bool {
    raw.contains("\"type\":\"text_delta\"")
}

fn ollama_text_event(raw: &str) -> bool {
    let line: Value = serde_json::from_str(raw).unwrap();
    line["done"] == false
}

/// The events that are not text, in order.
fn other_events(streamed: &Streamed, is_text: IsTextEvent) -> Vec<String> {
    streamed
        .events
        .iter()
        .filter(|raw| !is_text(raw))
        .cloned()
        .collect()
}

/// The checks every dialect gets: the fixture reads as `TEXT`; rewritten, it reads as
/// `MASKED` (all of it before the text ends), its other events are untouched, and it
/// is the same however it is cut into chunks.
fn check_fixture(
    fixture: &[u8],
    format: Format,
    client: fn(&[u8]) -> Streamed,
    is_text: IsTextEvent,
) {
    let original = client(fixture);
    assert_eq!(original.text, TEXT, "the fixture's text");

    let mut scanner = scanner();
    let whole = rewrite(&mut scanner, format, &[fixture]);
    let masked = client(&whole);
    assert_eq!(masked.text, MASKED);
    assert_eq!(masked.text_at_end.as_deref(), Some(MASKED));
    let out = String::from_utf8(whole.clone()).unwrap();
    for value in VALUES {
        assert!(!out.contains(value), "{value} reached the client: {out}");
    }
    assert_eq!(
        other_events(&masked, is_text),
        other_events(&original, is_text)
    );

    for split in 0..=fixture.len() {
        let (a, b) = fixture.split_at(split);
        assert!(
            rewrite(&mut scanner, format, &[a, b]) == whole,
            "split at byte {split}"
        );
    }
    let bytes: Vec<&[u8]> = fixture.chunks(1).collect();
    assert!(
        rewrite(&mut scanner, format, &bytes) == whole,
        "byte by byte"
    );
    let sevens: Vec<&[u8]> = fixture.chunks(7).collect();
    assert!(
        rewrite(&mut scanner, format, &sevens) == whole,
        "7 bytes at a time"
    );
}

#[test]
fn openai_stream_fixture() {
    check_fixture(OPENAI, Format::Sse, openai_stream, openai_text_event);
}

#[test]
fn anthropic_stream_fixture() {
    check_fixture(
        ANTHROPIC,
        Format::Sse,
        anthropic_stream,
        anthropic_text_event,
    );
}

#[test]
fn ollama_stream_fixture() {
    check_fixture(OLLAMA, Format::Ndjson, ollama_stream, ollama_text_event);
}

#[test]
fn tool_input_is_not_text() {
    let mut scanner = scanner();
    let out = rewrite(&mut scanner, Format::Sse, &[ANTHROPIC]);
    assert_eq!(
        anthropic_stream(&out).tool_json,
        ["", "{\"to\": \"john.doe@example.com\"}"]
    );
}

/// Streams of each dialect carrying `deltas`.
fn openai_of(deltas: &[&str]) -> Vec<u8> {
    let mut out = String::new();
    let chunk = |choice: Value| {
        let chunk = serde_json::json!({"id": "c1", "object": "chat.completion.chunk",
            "created": 1, "model": "m", "choices": [choice]});
        format!("data: {chunk}\n\n")
    };
    for delta in deltas {
        out += &chunk(serde_json::json!({"index": 0, "delta": {"content": delta},
            "finish_reason": null}));
    }
    out += &chunk(serde_json::json!({"index": 0, "delta": {}, "finish_reason": "stop"}));
    out += "data: [DONE]\n\n";
    out.into_bytes()
}

fn anthropic_of(deltas: &[&str]) -> Vec<u8> {
    let mut out = String::new();
    let mut event = |name: &str, data: Value| out += &format!("event: {name}\ndata: {data}\n\n");
    event(
        "message_start",
        serde_json::json!({"type": "message_start", "message": {}}),
    );
    event(
        "content_block_start",
        serde_json::json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
    );
    for delta in deltas {
        event(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": delta}}),
        );
    }
    event(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    );
    event(
        "message_delta",
        serde_json::json!({"type": "message_delta", "delta": {}}),
    );
    event("message_stop", serde_json::json!({"type": "message_stop"}));
    out.into_bytes()
}

fn ollama_of(deltas: &[&str]) -> Vec<u8> {
    let mut out = String::new();
    for delta in deltas {
        out += &format!(
            "{}\n",
            serde_json::json!({"model": "m", "created_at": "t",
                "message": {"role": "assistant", "content": delta}, "done": false})
        );
    }
    out += &format!(
        "{}\n",
        serde_json::json!({"model": "m", "created_at": "t",
            "message": {"role": "assistant", "content": ""}, "done": true})
    );
    out.into_bytes()
}

#[test]
fn a_text_split_at_every_character_is_masked_in_every_dialect() {
    let mut scanner = scanner();
    let boundaries: Vec<usize> = (0..=TEXT.len())
        .filter(|&at| TEXT.is_char_boundary(at))
        .collect();
    for &at in &boundaries {
        let deltas = [&TEXT[..at], &TEXT[at..]];
        for (stream, format, client) in [
            (
                openai_of(&deltas),
                Format::Sse,
                openai_stream as fn(&[u8]) -> Streamed,
            ),
            (anthropic_of(&deltas), Format::Sse, anthropic_stream),
            (ollama_of(&deltas), Format::Ndjson, ollama_stream),
        ] {
            let out = rewrite(&mut scanner, format, &[&stream]);
            let streamed = client(&out);
            assert_eq!(streamed.text, MASKED, "split at {at}");
            assert_eq!(
                streamed.text_at_end.as_deref(),
                Some(MASKED),
                "split at {at}"
            );
        }
    }
    // One character per delta.
    let chars: Vec<String> = TEXT.chars().map(String::from).collect();
    let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
    let out = rewrite(&mut scanner, Format::Sse, &[&openai_of(&chars)]);
    assert_eq!(openai_stream(&out).text, MASKED);
}

#[test]
fn text_on_the_ending_event_joins_the_flush() {
    let mut scanner = scanner();
    // OpenAI: the last content comes with the finish reason.
    let stream = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\
        \"choices\":[{\"index\":0,\"delta\":{\"content\":\"mail jo@exam\"},\"finish_reason\":null}]}\n\n\
        data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\
        \"choices\":[{\"index\":0,\"delta\":{\"content\":\"ple.com\"},\"finish_reason\":\"stop\"}]}\n\n\
        data: [DONE]\n\n";
    let out = rewrite(&mut scanner, Format::Sse, &[stream.as_bytes()]);
    let streamed = openai_stream(&out);
    assert_eq!(streamed.text, "mail [EMAIL]");
    assert_eq!(streamed.text_at_end.as_deref(), Some("mail [EMAIL]"));
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains(r#""delta":{"content":""},"finish_reason":"stop""#),
        "{out}"
    );

    // Ollama: the done line carries text.
    let stream = "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"call 415-555\"},\"done\":false}\n\
        {\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"-2671\"},\"done\":true}\n";
    let out = rewrite(&mut scanner, Format::Ndjson, &[stream.as_bytes()]);
    let streamed = ollama_stream(&out);
    assert_eq!(streamed.text_at_end.as_deref(), Some("call [PHONE]"));
}

#[test]
fn several_choices_are_held_apart() {
    let mut scanner = scanner();
    let chunk = |index: u64, content: &str| {
        format!(
            "data: {}\n\n",
            serde_json::json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
                "choices": [{"index": index, "delta": {"content": content}, "finish_reason": null}]})
        )
    };
    let stop = |index: u64| {
        format!(
            "data: {}\n\n",
            serde_json::json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
                "choices": [{"index": index, "delta": {}, "finish_reason": "stop"}]})
        )
    };
    let stream = [
        chunk(0, "a: jo"),
        chunk(1, "b: 123-45"),
        chunk(0, "@example.com"),
        chunk(1, "-6789"),
        stop(1),
        chunk(0, " ok"),
        stop(0),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let out = rewrite(&mut scanner, Format::Sse, &[stream.as_bytes()]);
    openai_stream(&out);
    let texts = openai_choices(&out);
    assert_eq!(texts[&0], "a: [EMAIL] ok");
    assert_eq!(texts[&1], "b: [SSN]");
}

#[test]
fn a_stream_that_stops_early_still_gets_its_text() {
    let mut scanner = scanner();
    let stream = openai_of(&["call +44 20 7946", " 0958"]);
    // Cut before the finish chunk: the held text comes at the end.
    let end = String::from_utf8_lossy(&stream)
        .find("\"finish_reason\":\"stop\"")
        .unwrap();
    let cut = String::from_utf8_lossy(&stream[..end])
        .rfind("data: ")
        .unwrap();
    let out = rewrite(&mut scanner, Format::Sse, &[&stream[..cut]]);
    assert_eq!(openai_choices(&out)[&0], "call [PHONE]");

    // Anthropic without content_block_stop, ended by message_delta.
    let stream = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\
        \"delta\":{\"type\":\"text_delta\",\"text\":\"ip 10.0.0\"}}\n\n\
        event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{}}\n\n";
    let out = String::from_utf8(rewrite(&mut scanner, Format::Sse, &[stream.as_bytes()])).unwrap();
    assert!(out.contains("\"text\":\"ip \""), "{out}");
    let flush = out.find("\"text\":\"10.0.0\"").unwrap();
    assert!(flush < out.find("message_delta\"").unwrap(), "{out}");
}

#[test]
fn an_unterminated_last_event_is_ended_before_the_flush() {
    let mut scanner = scanner();
    let stream = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\
        \"choices\":[{\"index\":0,\"delta\":{\"content\":\"ip 10.0.0.1\"},\"finish_reason\":null}]}";
    let out = rewrite(&mut scanner, Format::Sse, &[stream.as_bytes()]);
    let out = String::from_utf8(out).unwrap();
    let events: Vec<&str> = out.split_terminator("\n\n").collect();
    assert_eq!(events.len(), 2, "{out:?}");
    assert!(out.ends_with("\n\n"));
    assert_eq!(
        openai_choices(format!("{out}data: [DONE]\n\n").as_bytes())[&0],
        "ip [IPV4]"
    );

    let lines = "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"call 415-555-2671\"},\"done\":false}";
    let out = rewrite(&mut scanner, Format::Ndjson, &[lines.as_bytes()]);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.lines().count(), 2, "{out:?}");
    assert!(out.contains("[PHONE]"));
}

#[test]
fn other_events_and_unparsable_ones_pass_untouched() {
    let mut scanner = scanner();
    let stream = b": comment\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\ndata: not json a@b.io\n\n\
        data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"a@example.com\"}}]}}]}\n\n\
        retry: 10\n\n";
    assert_eq!(rewrite(&mut scanner, Format::Sse, &[stream]), stream);
    let lines = b"not json\n\n{\"other\":\"a@example.com\"}\n";
    assert_eq!(rewrite(&mut scanner, Format::Ndjson, &[lines]), lines);
}

#[test]
fn crlf_streams_keep_their_line_endings() {
    let mut scanner = scanner();
    let stream = b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ssn 123-45-6789\"},\"finish_reason\":null}]}\r\n\r\n\
        data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\n\
        data: [DONE]\r\n\r\n";
    let out = String::from_utf8(rewrite(&mut scanner, Format::Sse, &[stream])).unwrap();
    assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
    let lf = out.replace("\r\n", "\n");
    assert_eq!(openai_stream(lf.as_bytes()).text, "ssn [SSN]");
}

#[test]
fn an_oversized_event_ends_the_rewriting_but_loses_nothing() {
    let mut scanner = scanner();
    let mut rewriter = StreamRewriter::new(Format::Ndjson);
    let first = ollama_of(&["mail a@example"]);
    let first = &first[..first.iter().position(|&b| b == b'\n').unwrap() + 1];
    let mut out = rewriter.feed(&mut scanner, first).bytes;
    let huge = vec![b'x'; MAX_FRAME_BYTES + 1];
    let output = rewriter.feed(&mut scanner, &huge);
    assert!(output.gave_up);
    out.extend(output.bytes);
    out.extend(rewriter.feed(&mut scanner, b"tail").bytes);
    out.extend(rewriter.finish(&mut scanner));
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\"content\":\"mail \""), "{}", &text[..200]);
    assert!(
        text.contains("\"content\":\"a@example\""),
        "{}",
        &text[..300]
    );
    assert!(text.ends_with("xtail"));
}
