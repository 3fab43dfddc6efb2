//! What a mock answers, the same for every provider: each provider module reads its request
//! into a [`Conversation`], [`answer`] decides the reply, and the provider writes it in its
//! own format. Deterministic, so tests can assert the text, the usage and the tool calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Provider;

/// A chat request, as far as the reply depends on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    /// Whitespace-separated words of every message text (tool results included) and of the
    /// system prompt: the input tokens the mock reports.
    pub input_words: u64,
    /// The text of the last user message (its text parts joined by a space).
    pub last_user_text: String,
    /// What the last message is.
    pub last: LastTurn,
    /// Images sent, over all messages.
    pub images: usize,
    /// The first tool's name, when the request offers tools and does not forbid calling
    /// them (`tool_choice` none).
    pub first_tool: Option<String>,
    /// The request's cap on output tokens, if any.
    pub max_tokens: Option<u64>,
}

/// The last message of a conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LastTurn {
    /// A user message (text, images).
    User,
    /// A tool result, with its text.
    ToolResult(String),
    /// Anything else (an assistant prefill, no message at all).
    #[default]
    Other,
}

/// The reply the mock gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Assistant text; `truncated` when `max_tokens` cut it (finish reason `length`,
    /// `max_tokens`).
    Text { text: String, truncated: bool },
    /// A call of a tool, with its arguments as compact JSON (`{"text":"..."}`).
    ToolCall { name: String, arguments: String },
}

impl Answer {
    /// Output tokens: words of the text, or of the arguments' JSON for a call.
    pub fn output_tokens(&self) -> u64 {
        match self {
            Answer::Text { text, .. } => words(text),
            Answer::ToolCall { arguments, .. } => words(arguments),
        }
    }

    /// The arguments of a call as a JSON value (`null` for text).
    pub fn arguments_value(&self) -> serde_json::Value {
        match self {
            Answer::ToolCall { arguments, .. } => {
                serde_json::from_str(arguments).unwrap_or(serde_json::Value::Null)
            }
            Answer::Text { .. } => serde_json::Value::Null,
        }
    }
}

/// Decides the reply of mock `name` of `provider` to `conversation`.
pub fn answer(conversation: &Conversation, name: &str, provider: Provider) -> Answer {
    let images = match conversation.images {
        0 => String::new(),
        n => format!(" [{n} image(s)]"),
    };
    let text = match (&conversation.last, &conversation.first_tool) {
        (LastTurn::User, Some(tool)) => {
            let arguments = serde_json::json!({ "text": conversation.last_user_text });
            return Answer::ToolCall {
                name: tool.clone(),
                arguments: arguments.to_string(),
            };
        }
        (LastTurn::ToolResult(result), _) => {
            format!("{name} ({provider}) got tool result: {result}{images}")
        }
        _ => format!(
            "{name} ({provider}) heard: {}{images}",
            conversation.last_user_text
        ),
    };
    match conversation.max_tokens {
        Some(max) if words(&text) > max => {
            let pieces = word_pieces(&text);
            let keep = usize::try_from(max).unwrap_or(usize::MAX).min(pieces.len());
            let text = pieces[..keep].concat().trim_end().to_string();
            Answer::Text {
                text,
                truncated: true,
            }
        }
        _ => Answer::Text {
            text,
            truncated: false,
        },
    }
}

/// Whitespace-separated words of `text`: the mock's token count.
pub fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// `text` cut into one piece per word, each with the whitespace that follows it (leading
/// whitespace stays with the first piece): the stream deltas, which concatenate to `text`.
pub fn word_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut seen_word = false;
    let mut in_space = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_space = true;
        } else {
            if in_space && seen_word {
                pieces.push(&text[start..i]);
                start = i;
            }
            in_space = false;
            seen_word = true;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Characters per fragment of a streamed tool call's arguments.
const FRAGMENT_CHARS: usize = 8;

/// The arguments' JSON of a streamed tool call in fragments of a few characters, as the
/// real APIs stream them: at least two for any JSON object with a key.
pub fn fragments(json: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (count, (i, _)) in json.char_indices().enumerate() {
        if count > 0 && count % FRAGMENT_CHARS == 0 {
            out.push(&json[start..i]);
            start = i;
        }
    }
    if start < json.len() {
        out.push(&json[start..]);
    }
    out
}

/// What the requested model name asks of the mock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Behaviour {
    /// `fail-NNN` anywhere in the name: answer status NNN (400..=599) with the provider's
    /// error body.
    pub fail: Option<u16>,
    /// `hold`: a stream stops after its first delta until `POST /_mock/release`.
    pub hold: bool,
    /// `slow`: 50 ms between stream chunks.
    pub slow: bool,
}

impl Behaviour {
    pub fn of_model(model: &str) -> Self {
        let fail = model.match_indices("fail-").find_map(|(i, _)| {
            let digits = model.get(i + 5..i + 8)?;
            let after = model[i + 8..].chars().next();
            if after.is_some_and(|c| c.is_ascii_digit()) {
                return None;
            }
            digits
                .parse::<u16>()
                .ok()
                .filter(|code| (400..=599).contains(code))
        });
        Self {
            fail,
            hold: model.contains("hold"),
            slow: model.contains("slow"),
        }
    }
}

/// A fresh identifier of `len` base62 characters (unique within the process, varied across
/// runs), for `chatcmpl-…`, `msg_…`, `toolu_…` and `call_…` ids.
pub fn random_id(len: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let mut state = nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9);
    let mut out = String::with_capacity(len);
    while out.len() < len {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        for _ in 0..10 {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[(z % 62) as usize] as char);
            z /= 62;
        }
    }
    out
}

/// Seconds since the epoch (OpenAI's `created`).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The current time as RFC 3339 in UTC with nanoseconds (Ollama's `created_at`, as Go
/// writes it: `2024-07-22T20:24:35.123456789Z`).
pub fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs(), now.subsec_nanos())
}

fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Conversation {
        Conversation {
            input_words: words(text),
            last_user_text: text.into(),
            last: LastTurn::User,
            ..Default::default()
        }
    }

    #[test]
    fn text_replies() {
        let answer = answer(&user("hello there"), "m1", Provider::Openai);
        assert_eq!(
            answer,
            Answer::Text {
                text: "m1 (openai) heard: hello there".into(),
                truncated: false
            }
        );
        assert_eq!(answer.output_tokens(), 5);

        let mut with_images = user("look");
        with_images.images = 2;
        let Answer::Text { text, .. } = super::answer(&with_images, "m", Provider::Ollama) else {
            panic!("text expected");
        };
        assert_eq!(text, "m (ollama) heard: look [2 image(s)]");

        let mut result = user("x");
        result.last = LastTurn::ToolResult("42 degrees".into());
        result.first_tool = Some("weather".into());
        let Answer::Text { text, .. } = super::answer(&result, "m", Provider::Anthropic) else {
            panic!("text expected");
        };
        assert_eq!(text, "m (anthropic) got tool result: 42 degrees");
    }

    #[test]
    fn tool_calls_and_truncation() {
        let mut conversation = user("say \"hi\"");
        conversation.first_tool = Some("echo".into());
        let call = answer(&conversation, "m", Provider::Openai);
        assert_eq!(
            call,
            Answer::ToolCall {
                name: "echo".into(),
                arguments: r#"{"text":"say \"hi\""}"#.into()
            }
        );
        assert_eq!(
            call.arguments_value(),
            serde_json::json!({"text": "say \"hi\""})
        );

        let mut capped = user("one two three");
        capped.max_tokens = Some(3);
        assert_eq!(
            answer(&capped, "m", Provider::Openai),
            Answer::Text {
                text: "m (openai) heard:".into(),
                truncated: true
            }
        );
    }

    #[test]
    fn pieces_concatenate_to_the_text() {
        for text in [
            "a b  c",
            " lead and trail ",
            "one",
            "",
            "tab\tand\nnewline",
            "ünï cödé ✓",
        ] {
            let pieces = word_pieces(text);
            assert_eq!(pieces.concat(), text);
            assert_eq!(
                pieces.len() as u64,
                words(text).max(u64::from(!text.is_empty()))
            );
        }
        assert_eq!(word_pieces("a b  c"), ["a ", "b  ", "c"]);
        let json = r#"{"text":""}"#;
        let parts = fragments(json);
        assert!(parts.len() >= 2);
        assert_eq!(parts.concat(), json);
        assert_eq!(fragments("é".repeat(17).as_str()).len(), 3);
    }

    #[test]
    fn behaviours() {
        assert_eq!(
            Behaviour::of_model("fail-429"),
            Behaviour {
                fail: Some(429),
                ..Default::default()
            }
        );
        assert_eq!(Behaviour::of_model("gpt-fail-529-x").fail, Some(529));
        assert_eq!(Behaviour::of_model("fail-4290").fail, None);
        assert_eq!(Behaviour::of_model("fail-200").fail, None);
        let held = Behaviour::of_model("mock-hold-slow");
        assert!(held.hold && held.slow && held.fail.is_none());
    }

    #[test]
    fn ids_and_times() {
        let (a, b) = (random_id(24), random_id(24));
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(rfc3339(0, 5), "1970-01-01T00:00:00.000000005Z");
        assert_eq!(
            rfc3339(1_709_251_199, 123_456_789),
            "2024-02-29T23:59:59.123456789Z"
        );
    }
}
