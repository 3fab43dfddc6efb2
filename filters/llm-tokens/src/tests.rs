//! Counts checked against published ones: OpenAI's cookbook ("How to count tokens with
//! tiktoken") prints the o200k_base tokens of sample strings and the prompt tokens the
//! API reported for sample conversations; the rest were checked with OpenAI's own
//! `tiktoken` (Python) loading the same vocabulary.

use serde_json::{Value, json};

use super::*;

#[test]
fn texts_count_as_openai_counts_them() {
    for (text, tokens) in [
        ("", 0),
        ("hello world", 2),
        // The cookbook: [83, 8251, 2488, 382, 2212, 0] ("t", "ikt", "oken", " is", " great", "!").
        ("tiktoken is great!", 6),
        // The cookbook: 8 tokens in o200k_base (9 in cl100k_base).
        ("お誕生日おめでとう", 8),
        // Special tokens are plain text here.
        ("<|endoftext|>", 7),
        ("The quick brown fox jumps over the lazy dog.", 10),
        ("    indented\n\n", 4),
        ("1234567", 3),
    ] {
        assert_eq!(count_text(text), tokens, "{text:?}");
    }
}

/// The cookbook's conversation of section 6, for which the API reported 124 prompt
/// tokens on gpt-4o and gpt-4o-mini.
fn cookbook_messages() -> Value {
    json!([
        {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
        {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
        {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
        {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
        {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
        {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
    ])
}

#[test]
fn openai_prompts_match_the_prompt_tokens_the_api_reported() {
    let request = json!({"model": "gpt-4o", "messages": cookbook_messages()});
    assert_eq!(estimate_request_json(Api::OpenAi, &request), 124);

    // Section 7: a weather tool and two messages, 101 prompt tokens on gpt-4o.
    let request = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
            {"role": "user", "content": "What's the weather like in San Francisco?"},
        ],
        "tools": [{
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "description": "Get the current weather in a given location",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                        "unit": {"type": "string", "description": "The unit of temperature to return", "enum": ["celsius", "fahrenheit"]},
                    },
                    "required": ["location"],
                },
            },
        }],
    });
    assert_eq!(estimate_request_json(Api::OpenAi, &request), 101);
}

#[test]
fn plain_parts_estimate_as_the_request_does() {
    let messages = cookbook_messages();
    let without_names: Vec<(&str, &str)> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    // The four names cost 1 + their own tokens each: "example_user" is 2 tokens and
    // "example_assistant" 3.
    assert_eq!(
        estimate_prompt(without_names, []),
        124 - 2 * (1 + 2) - 2 * (1 + 3)
    );

    let tool = json!({"name": "f", "description": "Does f.", "parameters": {"type": "object", "properties": {}}});
    let with_tool = estimate_prompt([("user", "hello world")], [&tool]);
    // 3 + "user" + "hello world" + 3; the tool: 7 + "f:Does f" (4) and 12 to end the tools.
    assert_eq!(with_tool, 9 + 7 + 4 + 12);
}

#[test]
fn the_three_apis_estimate_the_same_conversation_alike() {
    let system = "You are a terse assistant.";
    let question = "What is the capital of France?";
    let answer = "Paris.";
    let openai = json!({"model": "m", "messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": [{"type": "text", "text": question}]},
        {"role": "assistant", "content": answer},
    ]});
    let anthropic = json!({"model": "m", "system": [{"type": "text", "text": system}], "messages": [
        {"role": "user", "content": question},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]});
    let ollama = json!({"model": "m", "messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]});
    let expected = 3 * TOKENS_PER_MESSAGE
        + count_text("system")
        + count_text("user")
        + count_text("assistant")
        + count_text(system)
        + count_text(question)
        + count_text(answer)
        + REPLY_PRIMING;
    assert_eq!(estimate_request_json(Api::OpenAi, &openai), expected);
    assert_eq!(estimate_request_json(Api::Anthropic, &anthropic), expected);
    assert_eq!(estimate_request_json(Api::Ollama, &ollama), expected);
    let body = serde_json::to_vec(&ollama).unwrap();
    assert_eq!(estimate_request_body(Api::Ollama, &body), Some(expected));
    assert_eq!(estimate_request_body(Api::Ollama, b"{\"model\""), None);
}

#[test]
fn tool_calls_results_and_images_count_in_every_api() {
    let arguments = r#"{"location":"Paris"}"#;
    let call = TOKENS_PER_TOOL_CALL + count_text("get_weather") + count_text(arguments);
    let result = count_text("18°C, sunny");
    let base = |messages: u64, roles: u64| messages * TOKENS_PER_MESSAGE + roles + REPLY_PRIMING;

    let openai = json!({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18°C, sunny"},
    ]});
    let roles = count_text("user") + count_text("assistant") + count_text("tool");
    assert_eq!(
        estimate_request_json(Api::OpenAi, &openai),
        base(3, roles) + LOW_DETAIL_IMAGE_TOKENS + call + result
    );

    let anthropic = json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "get_weather", "input": {"location": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": [{"type": "text", "text": "18°C, sunny"}]}]},
    ]});
    let roles = 2 * count_text("user") + count_text("assistant");
    assert_eq!(
        estimate_request_json(Api::Anthropic, &anthropic),
        base(3, roles) + IMAGE_TOKENS + call + result
    );

    let ollama = json!({"model": "m", "messages": [
        {"role": "user", "content": "", "images": ["AAAA", "BBBB"]},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}]},
        {"role": "tool", "tool_name": "get_weather", "content": "18°C, sunny"},
    ]});
    let roles = count_text("user") + count_text("assistant") + count_text("tool");
    assert_eq!(
        estimate_request_json(Api::Ollama, &ollama),
        base(3, roles) + 2 * IMAGE_TOKENS + call + result
    );
}

#[test]
fn tool_definitions_count_alike_in_every_api() {
    let schema = json!({"type": "object", "properties": {
        "location": {"type": "string", "description": "The city."},
        "days": {"type": "integer"},
    }, "required": ["location"]});
    let function =
        json!({"name": "forecast", "description": "The forecast.", "parameters": schema});
    let openai = json!({"model": "m", "messages": [], "tools": [{"type": "function", "function": function}]});
    let anthropic = json!({"model": "m", "messages": [], "tools": [
        {"name": "forecast", "description": "The forecast.", "input_schema": schema},
    ]});
    let ollama = openai.clone();
    let expected = REPLY_PRIMING
        + 7
        + count_text("forecast:The forecast")
        + 3
        + 3
        + count_text("location:string:The city")
        + 3
        + count_text("days:integer:")
        + 12;
    assert_eq!(estimate_request_json(Api::OpenAi, &openai), expected);
    assert_eq!(estimate_request_json(Api::Anthropic, &anthropic), expected);
    assert_eq!(estimate_request_json(Api::Ollama, &ollama), expected);

    // Nested schemas are not free: their JSON counts.
    let nested = json!({"model": "m", "messages": [], "tools": [{"type": "function", "function": {
        "name": "forecast", "description": "The forecast.", "parameters": {"type": "object", "properties": {
            "location": {"type": "string", "description": "The city."},
            "days": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        }},
    }}]});
    assert!(estimate_request_json(Api::OpenAi, &nested) > expected + 5);
}

#[test]
fn unknown_shapes_count_what_they_can() {
    assert_eq!(
        estimate_request_json(Api::OpenAi, &json!("text")),
        REPLY_PRIMING
    );
    assert_eq!(
        estimate_request_json(Api::Anthropic, &json!({})),
        REPLY_PRIMING
    );
    let odd = json!({"messages": [{"role": 3, "content": {"x": 1}}, "hello"]});
    assert_eq!(
        estimate_request_json(Api::Ollama, &odd),
        2 * TOKENS_PER_MESSAGE + REPLY_PRIMING
    );
    assert_eq!(Api::from_name("anthropic"), Some(Api::Anthropic));
    assert_eq!(Api::from_name("gemini"), None);
}

#[test]
fn long_prompts_are_counted_in_part_and_extrapolated() {
    let sentence = "The quick brown fox jumps over the lazy dog, 42 times; naïve café. ";
    let text = sentence.repeat(16_000);
    let exact = count_text(&text);
    let request = json!({"messages": [{"role": "user", "content": text}]});
    let estimate =
        estimate_request_json(Api::OpenAi, &request) - TOKENS_PER_MESSAGE - 1 - REPLY_PRIMING;
    assert!(text.len() > 16 * EXACT_COUNT_BYTES);
    assert!(
        estimate.abs_diff(exact) * 100 <= exact,
        "{estimate} for {exact} exact tokens"
    );
    // Nothing counted: 4 bytes a token.
    let mut blind = PromptEstimator::with_exact_bytes(0);
    blind.text("12345678");
    assert_eq!(blind.total(), 2 + REPLY_PRIMING);
    // A budget that ends inside a character stops before it.
    let mut split = PromptEstimator::with_exact_bytes(1);
    split.text("é");
    assert_eq!(split.total(), 1 + REPLY_PRIMING);
}

/// Texts of every kind: prose in several scripts, code, JSON, numbers, whitespace runs,
/// emoji, and pseudo-random mixes of all of them.
fn corpus() -> Vec<String> {
    let mut texts: Vec<String> = [
        include_str!("lib.rs"),
        include_str!("json.rs"),
        include_str!("bpe.rs"),
        include_str!("../../ai-adapter/tests/fixtures/anthropic_stream_tools.sse"),
        include_str!("../../ai-adapter/tests/fixtures/openai_request.json"),
        "Ünïcödé façade — naïve coöperation; Straße, ĳssel, ﬁnancial.",
        "人工智能正在改变世界。我们今天讨论大语言模型的分词方法！",
        "الذكاء الاصطناعي يغير العالم بسرعة كبيرة",
        "कृत्रिम बुद्धिमत्ता दुनिया को बदल रही है।",
        "Привет, мир! Как дела? Всё хорошо.",
        "👩‍👩‍👧‍👦 🇫🇷 🤖🤖🤖 ✨ 🧑🏽‍💻",
        "I'LL SAY IT'S FINE, you'd've THOUGHT so. DON'T we'RE",
        "3.14159265358979 1,000,000 0x7fffffff 2024-03-10T12:00:00Z",
        "a\r\n\r\n\tb   \n\n\n   c\u{a0}\u{2003}d      ",
        "================================================================",
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
    ]
    .iter()
    .map(|text| text.to_string())
    .collect();
    let alphabet: Vec<char> =
        "aZ09 _-.,;:'\"!?/\\\n\t\r()[]{}<>|@#$%^&*+=~`éßçñøł中文日本語한국어ّ😀🎉\u{301}\u{200d}"
            .chars()
            .collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for length in [1usize, 2, 3, 5, 8, 13, 40, 100, 300, 1000] {
        for _ in 0..20 {
            let text: String = (0..length)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    alphabet[(seed >> 33) as usize % alphabet.len()]
                })
                .collect();
            texts.push(text);
        }
    }
    texts
}

#[test]
fn counts_match_tiktoken_rs() {
    assert_eq!(O200K_PATTERN, tiktoken_rs::O200K_BASE_PAT_STR);
    let reference = tiktoken_rs::o200k_base_singleton();
    for text in corpus() {
        assert_eq!(
            count_text(&text),
            reference.encode_ordinary(&text).len() as u64,
            "{text:?}"
        );
    }
}

#[test]
fn cached_piece_counts_are_the_computed_ones() {
    let reference = tiktoken_rs::o200k_base_singleton();
    let exact = |text: &str| reference.encode_ordinary(text).len() as u64;
    // A one-token piece, and a piece of several tokens that takes the same cache entry.
    let word = " hello";
    let entry = |piece: &str| crate::vocab_hash::slot_of(piece.as_bytes()) % bpe::CACHED_PIECES;
    let rival = (0u32..)
        .map(|i| {
            let letters: String = (0..4)
                .map(|d| char::from(b'a' + ((i >> (5 * d)) % 26) as u8))
                .collect();
            format!(" zq{letters}qz")
        })
        .find(|piece| entry(piece) == entry(word) && exact(piece) > 1)
        .unwrap();
    for text in [word, &rival, word, &rival, word] {
        assert_eq!(count_text(text), exact(text), "{text:?}");
    }
    // The corpus again, now largely from the cache.
    for _ in 0..2 {
        for text in corpus() {
            assert_eq!(count_text(&text), exact(&text), "{text:?}");
        }
    }
}

/// Characters of every class the pattern tells apart, and the edges between them:
/// titlecase (ǅ), modifier (ʰ) and other (中) letters, combining (U+0301), spacing
/// (U+0903) and enclosing (U+20DD) marks, letter (Ⅻ) and other (½) numbers, white space
/// that is not ASCII (U+85, U+A0, U+2028, U+3000), the long s that `(?i)'s` matches, and
/// the contractions' letters in both cases.
const EDGE_ALPHABET: &str = "aAzZ09 \t\n\r\u{b}\u{c}'\"!?/.,-_ǅʰ中\u{301}\u{903}\u{20dd}Ⅻ½\u{85}\u{a0}\u{2028}\u{3000}ſsStTrReEvVmMlLdD😀\u{200d}";

fn edge_corpus() -> Vec<String> {
    let alphabet: Vec<char> = EDGE_ALPHABET.chars().collect();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut texts = Vec::new();
    for length in [1usize, 2, 3, 4, 6, 9, 16, 50] {
        for _ in 0..400 {
            let text: String = (0..length)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed >> 11) as usize % alphabet.len()]
                })
                .collect();
            texts.push(text);
        }
    }
    texts
}

#[test]
fn pieces_are_the_patterns_matches() {
    let pattern = fancy_regex::Regex::new(O200K_PATTERN).unwrap();
    for text in corpus().into_iter().chain(edge_corpus()) {
        let expected: Vec<&str> = pattern
            .find_iter(&text)
            .map(|piece| piece.unwrap().as_str())
            .collect();
        let pieces: Vec<&str> = pretokenize::pieces(&text).collect();
        assert_eq!(pieces, expected, "{text:?}");
    }
}

#[test]
fn pieces_past_the_merge_limit_stay_close() {
    let reference = tiktoken_rs::o200k_base_singleton();
    for text in [
        "=".repeat(5000),
        " ".repeat(3000) + "x",
        "abcdefghijklmnopqrstuvwxyz".repeat(300),
        "\n".repeat(5000),
    ] {
        let exact = reference.encode_ordinary(&text).len() as u64;
        let counted = count_text(&text);
        let slices = text.len().div_ceil(bpe::MAX_PIECE) as u64;
        assert!(
            counted.abs_diff(exact) <= 4 * (slices - 1),
            "{} bytes: {counted}, tiktoken {exact}",
            text.len()
        );
    }
}

/// Timings and sizes for the record: `cargo test --release -p nantian-llm-tokens -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure() {
    let start = std::time::Instant::now();
    let pattern = fancy_regex::Regex::new(O200K_PATTERN).unwrap();
    eprintln!(
        "the pattern (not used: pretokenize.rs) compiles in {:?}",
        start.elapsed()
    );
    drop(pattern);
    let start = std::time::Instant::now();
    let _ = tiktoken_rs::o200k_base().unwrap();
    eprintln!(
        "tiktoken-rs' o200k_base CoreBPE built in {:?}",
        start.elapsed()
    );
    let reference = tiktoken_rs::o200k_base_singleton();
    for kib in [1usize, 16, 256, 1024] {
        let text = "The quick brown fox jumps over the lazy dog, 42 times; naïve café. "
            .repeat(kib * 1024 / 68 + 1);
        let start = std::time::Instant::now();
        let tokens = count_text(&text);
        let elapsed = start.elapsed();
        let start = std::time::Instant::now();
        let reference_tokens = reference.encode_ordinary(&text).len();
        let reference_elapsed = start.elapsed();
        eprintln!(
            "{kib} KiB: {tokens} tokens in {elapsed:?} ({:.1} MB/s); tiktoken-rs {reference_tokens} in {reference_elapsed:?}",
            text.len() as f64 / elapsed.as_secs_f64() / 1e6
        );
    }
}
