//! The API-neutral model every codec translates to and from: a chat request, a whole
//! response, and the events of a streamed response.
//!
//! Each API has one decoder into this model and one encoder out of it, so any client API
//! can talk to any provider API through two codecs instead of one per pair. The model is
//! the union of what the three APIs can express *and translate*: a field only one API
//! knows has no place here (it passes through only when client and provider agree).

use std::borrow::Cow;

use serde_json::Value;

use crate::error::ApiError;

/// A chat request, as the client asked it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    /// The conversation in order. System prompts are `Role::System` messages wherever the
    /// client put them; APIs that want them elsewhere (Anthropic's top-level `system`)
    /// move them when encoding.
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)`: at most one tool call per turn.
    pub parallel_tool_calls: Option<bool>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u64>,
    pub seed: Option<i64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// Whether the client wants token usage at the end of a stream. Only OpenAI clients
    /// can decline (`stream_options.include_usage`); the others always get it.
    pub stream_usage: bool,
    /// An end-user id for the provider's abuse tracking.
    pub user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One turn. Tool results are `Part::ToolResult`s of a user message (Anthropic's model):
/// OpenAI's and Ollama's `role: tool` messages become user messages and back.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
}

impl Message {
    pub fn new(role: Role, content: Vec<Part>) -> Self {
        Message { role, content }
    }

    /// The text parts, joined with `separator`.
    pub fn text(&self, separator: &str) -> String {
        join_text(&self.content, separator)
    }
}

/// The text parts of `parts`, joined with `separator`.
pub fn join_text(parts: &[Part], separator: &str) -> String {
    let mut text = String::new();
    for part in parts {
        if let Part::Text(t) = part {
            if !text.is_empty() {
                text.push_str(separator);
            }
            text.push_str(t);
        }
    }
    text
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image(Image),
    /// A tool call the assistant made.
    ToolCall(ToolCall),
    /// The result of a tool call, sent back by the user.
    ToolResult(ToolResult),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Image {
    /// Inline image data; `data` is base64 (without a `data:` prefix).
    Base64 { media_type: String, data: String },
    /// An image the provider fetches itself.
    Url(String),
}

impl Image {
    /// Parses an OpenAI-style `image_url`: a `data:<media type>;base64,<data>` URL becomes
    /// inline data, anything else a URL to fetch.
    pub fn from_url(url: String) -> Image {
        if let Some(rest) = url.strip_prefix("data:")
            && let Some((media_type, data)) = rest.split_once(";base64,")
        {
            return Image::Base64 {
                media_type: media_type.to_string(),
                data: data.to_string(),
            };
        }
        Image::Url(url)
    }

    /// Inline base64 data whose media type is unknown (Ollama sends bare base64): guessed
    /// from the first bytes, which base64 encodes to fixed prefixes for each format.
    pub fn from_base64(data: String) -> Image {
        let media_type = if data.starts_with("iVBORw0KGgo") {
            "image/png"
        } else if data.starts_with("R0lGOD") {
            "image/gif"
        } else if data.starts_with("UklGR") {
            "image/webp"
        } else {
            // `/9j/` is JPEG, and JPEG is also the likeliest format of anything else.
            "image/jpeg"
        };
        Image::Base64 {
            media_type: media_type.to_string(),
            data,
        }
    }

    /// The image as an OpenAI `image_url` URL.
    pub fn to_url(&self) -> Cow<'_, str> {
        match self {
            Image::Base64 { media_type, data } => {
                Cow::Owned(format!("data:{media_type};base64,{data}"))
            }
            Image::Url(url) => Cow::Borrowed(url),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as a JSON value (an object for every API here).
    pub arguments: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    /// The id of the `ToolCall` this answers.
    pub call_id: String,
    /// Text and image parts.
    pub content: Vec<Part>,
    pub is_error: bool,
}

/// A tool (function) the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// Some tool must be called (OpenAI `required`, Anthropic `any`).
    Required,
    /// This tool must be called.
    Tool(String),
}

/// A whole (non-streamed) response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatResponse {
    /// The provider's id, if it gave one.
    pub id: Option<String>,
    /// The model as the provider named it.
    pub model: String,
    /// Text and tool-call parts, in order.
    pub content: Vec<Part>,
    pub finish: Option<FinishReason>,
    pub usage: Usage,
}

impl ChatResponse {
    /// The response as the events of a stream that would have produced it, for a client
    /// that asked to stream from a provider that answered all at once.
    pub fn events(&self) -> Vec<StreamEvent<'_>> {
        let mut events = vec![StreamEvent::Start(StreamStart {
            id: self.id.as_deref().map(Cow::Borrowed),
            model: Some(Cow::Borrowed(&self.model)),
            usage: Usage::default(),
        })];
        for part in &self.content {
            match part {
                Part::Text(text) => events.push(StreamEvent::Text(Cow::Borrowed(text))),
                Part::ToolCall(call) => {
                    events.push(StreamEvent::ToolCallStart {
                        id: Cow::Borrowed(&call.id),
                        name: Cow::Borrowed(&call.name),
                    });
                    events.push(StreamEvent::ToolCallArguments(Cow::Owned(
                        call.arguments.to_string(),
                    )));
                }
                Part::Image(_) | Part::ToolResult(_) => {}
            }
        }
        if let Some(finish) = self.finish {
            events.push(StreamEvent::Finish(finish));
        }
        events.push(StreamEvent::Usage(self.usage));
        events.push(StreamEvent::End);
        events
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It was done (OpenAI `stop`, Anthropic `end_turn`).
    EndTurn,
    /// It produced one of the stop sequences.
    StopSequence,
    /// It hit the token limit (`length`, `max_tokens`).
    MaxTokens,
    /// It called tools and waits for their results.
    ToolUse,
    /// The provider withheld or cut the output (`content_filter`, `refusal`).
    ContentFilter,
}

/// Token counts as the provider reported them; `None` when it has not (yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every prompt token, cached ones included (OpenAI's `prompt_tokens`; Anthropic's
    /// `input_tokens` plus its cache reads and writes).
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// The part of `input_tokens` served from the provider's prompt cache.
    pub cached_input_tokens: Option<u64>,
}

impl Usage {
    /// Takes every count `newer` has, keeping the others (streams report input and output
    /// tokens in different events).
    pub fn merge(&mut self, newer: Usage) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cached_input_tokens = newer.cached_input_tokens.or(self.cached_input_tokens);
    }

    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }

    pub fn input(&self) -> u64 {
        self.input_tokens.unwrap_or(0)
    }

    pub fn output(&self) -> u64 {
        self.output_tokens.unwrap_or(0)
    }
}

/// The beginning of a streamed message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStart<'a> {
    pub id: Option<Cow<'a, str>>,
    pub model: Option<Cow<'a, str>>,
    /// What the provider knows at the start (Anthropic: the input tokens).
    pub usage: Usage,
}

/// One step of a streamed response. Strings borrow from the provider's event where they
/// can, so text passes from the provider's bytes to the client's without an extra copy.
///
/// A well-formed stream is `Start`, then content (`Text`, and `ToolCallStart` each
/// followed by its `ToolCallArguments` fragments), then `Finish` and `Usage` in either
/// order, then `End`; or an `Error` anywhere, which ends it.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent<'a> {
    Start(StreamStart<'a>),
    Text(Cow<'a, str>),
    /// A new tool call; it ends the previous content part.
    ToolCallStart {
        id: Cow<'a, str>,
        name: Cow<'a, str>,
    },
    /// A fragment of the JSON arguments of the latest tool call.
    ToolCallArguments(Cow<'a, str>),
    Finish(FinishReason),
    Usage(Usage),
    /// The provider reported an error mid-stream (or sent something unreadable).
    Error(ApiError),
    /// The provider finished the stream.
    End,
}

#[cfg(test)]
impl StreamEvent<'_> {
    /// The event with its strings copied out of the provider's bytes, to keep.
    pub fn into_owned(self) -> StreamEvent<'static> {
        let own = |text: Cow<'_, str>| Cow::Owned(text.into_owned());
        match self {
            StreamEvent::Start(start) => StreamEvent::Start(StreamStart {
                id: start.id.map(own),
                model: start.model.map(own),
                usage: start.usage,
            }),
            StreamEvent::Text(text) => StreamEvent::Text(own(text)),
            StreamEvent::ToolCallStart { id, name } => StreamEvent::ToolCallStart {
                id: own(id),
                name: own(name),
            },
            StreamEvent::ToolCallArguments(json) => StreamEvent::ToolCallArguments(own(json)),
            StreamEvent::Finish(reason) => StreamEvent::Finish(reason),
            StreamEvent::Usage(usage) => StreamEvent::Usage(usage),
            StreamEvent::Error(error) => StreamEvent::Error(error),
            StreamEvent::End => StreamEvent::End,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_become_inline_images_and_back() {
        let image = Image::from_url("data:image/png;base64,iVBORw0KGgo=".into());
        assert_eq!(
            image,
            Image::Base64 {
                media_type: "image/png".into(),
                data: "iVBORw0KGgo=".into()
            }
        );
        assert_eq!(image.to_url(), "data:image/png;base64,iVBORw0KGgo=");
        let remote = Image::from_url("https://example.com/cat.jpg".into());
        assert_eq!(remote, Image::Url("https://example.com/cat.jpg".into()));
        assert_eq!(remote.to_url(), "https://example.com/cat.jpg");
    }

    #[test]
    fn bare_base64_media_types_are_sniffed() {
        let media = |data: &str| match Image::from_base64(data.into()) {
            Image::Base64 { media_type, .. } => media_type,
            Image::Url(_) => unreachable!(),
        };
        assert_eq!(media("iVBORw0KGgoAAAANSUhEUg"), "image/png");
        assert_eq!(media("/9j/4AAQSkZJRg"), "image/jpeg");
        assert_eq!(media("R0lGODlhAQABAA"), "image/gif");
        assert_eq!(media("UklGRiQAAABXRUJQ"), "image/webp");
    }

    #[test]
    fn usage_merges_what_each_event_knows() {
        let mut usage = Usage {
            input_tokens: Some(10),
            ..Usage::default()
        };
        usage.merge(Usage {
            output_tokens: Some(5),
            ..Usage::default()
        });
        assert_eq!(usage.input(), 10);
        assert_eq!(usage.output(), 5);
        assert!(!usage.is_empty());
    }

    #[test]
    fn a_response_replays_as_a_well_formed_stream() {
        let response = ChatResponse {
            id: Some("r1".into()),
            model: "m".into(),
            content: vec![
                Part::Text("hi".into()),
                Part::ToolCall(ToolCall {
                    id: "c1".into(),
                    name: "f".into(),
                    arguments: serde_json::json!({"a": 1}),
                }),
            ],
            finish: Some(FinishReason::ToolUse),
            usage: Usage {
                input_tokens: Some(3),
                output_tokens: Some(4),
                cached_input_tokens: None,
            },
        };
        let events = response.events();
        assert!(matches!(&events[0], StreamEvent::Start(s) if s.id.as_deref() == Some("r1")));
        assert_eq!(events[1], StreamEvent::Text("hi".into()));
        assert_eq!(
            events[3],
            StreamEvent::ToolCallArguments(r#"{"a":1}"#.into())
        );
        assert_eq!(events[4], StreamEvent::Finish(FinishReason::ToolUse));
        assert_eq!(events.last(), Some(&StreamEvent::End));
    }
}
