//! Collecting a stream's events into one response, for a client that did not ask to
//! stream from a provider that streamed anyway.

use serde_json::Value;

use crate::canonical::{ChatResponse, Part, StreamEvent};
use crate::error::ApiError;

#[derive(Debug, Default)]
pub struct Accumulator {
    response: ChatResponse,
    /// The JSON arguments of the last tool call, while they are still arriving.
    arguments: Option<String>,
    error: Option<ApiError>,
}

impl Accumulator {
    pub fn push(&mut self, event: StreamEvent<'_>) {
        match event {
            StreamEvent::Start(start) => {
                if let Some(id) = start.id {
                    self.response.id.get_or_insert_with(|| id.into_owned());
                }
                if let Some(model) = start.model
                    && self.response.model.is_empty()
                {
                    self.response.model = model.into_owned();
                }
                self.response.usage.merge(start.usage);
            }
            StreamEvent::Text(text) => {
                self.close_arguments();
                match self.response.content.last_mut() {
                    Some(Part::Text(last)) => last.push_str(&text),
                    _ => self.response.content.push(Part::Text(text.into_owned())),
                }
            }
            StreamEvent::ToolCallStart { id, name } => {
                self.close_arguments();
                self.response
                    .content
                    .push(Part::ToolCall(crate::canonical::ToolCall {
                        id: id.into_owned(),
                        name: name.into_owned(),
                        arguments: Value::Object(Default::default()),
                    }));
                self.arguments = Some(String::new());
            }
            StreamEvent::ToolCallArguments(json) => {
                if let Some(arguments) = &mut self.arguments {
                    arguments.push_str(&json);
                }
            }
            StreamEvent::Finish(reason) => {
                self.response.finish.get_or_insert(reason);
            }
            StreamEvent::Usage(usage) => self.response.usage.merge(usage),
            StreamEvent::Error(error) => {
                self.error.get_or_insert(error);
            }
            StreamEvent::End => self.close_arguments(),
        }
    }

    /// The whole response, or the error the stream ended with.
    pub fn finish(mut self) -> Result<ChatResponse, ApiError> {
        self.close_arguments();
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.response),
        }
    }

    /// Parses the finished tool call's arguments; `{}` if they are not a JSON object.
    fn close_arguments(&mut self) {
        let Some(arguments) = self.arguments.take() else {
            return;
        };
        if let Some(Part::ToolCall(call)) = self.response.content.last_mut()
            && let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(&arguments)
        {
            call.arguments = parsed;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::canonical::{FinishReason, StreamStart, ToolCall, Usage};
    use crate::error::ErrorKind;

    #[test]
    fn collects_text_tool_calls_finish_and_usage() {
        let mut acc = Accumulator::default();
        for event in [
            StreamEvent::Start(StreamStart {
                id: Some("msg_1".into()),
                model: Some("claude".into()),
                usage: Usage {
                    input_tokens: Some(5),
                    ..Usage::default()
                },
            }),
            StreamEvent::Text("Hel".into()),
            StreamEvent::Text("lo".into()),
            StreamEvent::ToolCallStart {
                id: "t1".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallArguments("{\"a\":".into()),
            StreamEvent::ToolCallArguments("1}".into()),
            StreamEvent::ToolCallStart {
                id: "t2".into(),
                name: "g".into(),
            },
            StreamEvent::ToolCallArguments("not json".into()),
            StreamEvent::Finish(FinishReason::ToolUse),
            StreamEvent::Usage(Usage {
                output_tokens: Some(8),
                ..Usage::default()
            }),
            StreamEvent::End,
        ] {
            acc.push(event);
        }
        let response = acc.finish().unwrap();
        assert_eq!(response.id.as_deref(), Some("msg_1"));
        assert_eq!(response.model, "claude");
        assert_eq!(
            response.content,
            vec![
                Part::Text("Hello".into()),
                Part::ToolCall(ToolCall {
                    id: "t1".into(),
                    name: "f".into(),
                    arguments: json!({"a": 1})
                }),
                Part::ToolCall(ToolCall {
                    id: "t2".into(),
                    name: "g".into(),
                    arguments: json!({})
                }),
            ]
        );
        assert_eq!(response.finish, Some(FinishReason::ToolUse));
        assert_eq!((response.usage.input(), response.usage.output()), (5, 8));
    }

    #[test]
    fn an_error_wins() {
        let mut acc = Accumulator::default();
        acc.push(StreamEvent::Text("partial".into()));
        acc.push(StreamEvent::Error(ApiError::new(ErrorKind::Api, "boom")));
        assert_eq!(acc.finish().unwrap_err().message, "boom");
    }
}
