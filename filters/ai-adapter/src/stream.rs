//! A provider's streamed response on its way to the client, chunk by chunk: framed
//! ([`crate::framing`]), decoded into canonical events, and re-encoded for the client as
//! each provider event completes — nothing waits for the end of the stream.

use crate::accumulate::Accumulator;
use crate::api::Api;
use crate::canonical::{StreamEvent, Usage};
use crate::codec::{StreamDecoder, StreamEncoder};
use crate::error::{ApiError, ErrorKind};
use crate::framing::{Format, Frame, FrameTooLarge, Framer, MAX_FRAME_BYTES};
use crate::ids::ResponseContext;
use crate::tokens::Generated;

/// What becomes of the decoded events.
pub enum Output {
    /// Written out in the client's API.
    Translate(StreamEncoder),
    /// Collected into one response: the client did not ask to stream.
    Collect(Accumulator),
    /// Client and provider speak the same API and the bytes pass untouched; events are
    /// decoded only to read the token usage.
    Observe,
    /// The same, except that usage-only events (OpenAI's final `choices: []` chunk) are
    /// left out: the filter asked for them, the client did not.
    ForwardWithoutUsage,
}

pub struct StreamTranslator {
    framer: Framer,
    decoder: StreamDecoder,
    output: Output,
    state: State,
}

/// What the events so far have said, and what became of the stream.
#[derive(Default)]
struct State {
    usage: Usage,
    /// What the events generated, to count when the provider reports no usage.
    generated: Generated,
    saw_finish: bool,
    /// The provider ended the stream, or it failed: later frames are not decoded.
    ended: bool,
    /// Framing gave up (a frame past the size limit): later bytes are not framed.
    unframed: bool,
}

impl StreamTranslator {
    pub fn new(provider: Api, ctx: ResponseContext, output: Output) -> Self {
        let format = if provider.streams_sse() {
            Format::Sse
        } else {
            Format::Ndjson
        };
        StreamTranslator {
            framer: Framer::new(format),
            decoder: StreamDecoder::new(provider, ctx),
            output,
            state: State::default(),
        }
    }

    /// Takes the next chunk of the provider's stream and writes to `out` what the client
    /// gets for it (nothing for [`Output::Observe`] and [`Output::Collect`]).
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.state.unframed {
            if let Output::ForwardWithoutUsage = self.output {
                out.extend_from_slice(chunk);
            }
            return;
        }
        let StreamTranslator {
            framer,
            decoder,
            output,
            state,
        } = self;
        let result = framer.feed(chunk, &mut |frame| {
            handle_frame(frame, decoder, output, state, out);
        });
        if let Err(FrameTooLarge { pending }) = result {
            self.give_up(pending, out);
        }
    }

    /// The provider's stream ended. A stream that stopped before its end (without the
    /// provider's end event, and without even a finish reason) is an error for the
    /// client; one with a finish reason but no end event is ended properly.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let StreamTranslator {
            framer,
            decoder,
            output,
            state,
        } = self;
        if !state.unframed {
            framer.finish(&mut |frame| handle_frame(frame, decoder, output, state, out));
        }
        if state.ended {
            return;
        }
        let last = if state.saw_finish {
            StreamEvent::End
        } else {
            StreamEvent::Error(ApiError::new(
                ErrorKind::Api,
                "the backend's stream ended before the response was complete",
            ))
        };
        deliver(output, last, out);
        state.ended = true;
    }

    /// The token usage the provider reported so far.
    pub fn usage(&self) -> Usage {
        self.state.usage
    }

    /// The text the stream generated so far (taken: the next call starts empty).
    pub fn take_generated(&mut self) -> Generated {
        std::mem::take(&mut self.state.generated)
    }

    pub fn output(&self) -> &Output {
        &self.output
    }

    pub fn into_output(self) -> Output {
        self.output
    }

    /// A frame grew past the limit: the stream cannot be read any further. Untouched
    /// bytes keep passing; a translated stream ends with an error.
    fn give_up(&mut self, pending: Vec<u8>, out: &mut Vec<u8>) {
        self.state.unframed = true;
        if let Output::ForwardWithoutUsage = self.output {
            out.extend_from_slice(&pending);
        }
        if !self.state.ended {
            let error = ApiError::new(
                ErrorKind::Api,
                format!("the backend sent a stream event larger than {MAX_FRAME_BYTES} bytes"),
            );
            deliver(&mut self.output, StreamEvent::Error(error), out);
            self.state.ended = true;
        }
    }
}

fn handle_frame(
    frame: Frame<'_>,
    decoder: &mut StreamDecoder,
    output: &mut Output,
    state: &mut State,
    out: &mut Vec<u8>,
) {
    let forward = matches!(output, Output::ForwardWithoutUsage);
    // A stream cut off mid-event leaves half an event: it is not read (the early end is
    // reported instead), unless it is whole and only its terminator is missing.
    let readable = |data: &&str| !frame.unterminated || is_whole(data);
    let Some(data) = frame
        .data
        .as_deref()
        .filter(|_| !state.ended)
        .filter(readable)
    else {
        if forward {
            out.extend_from_slice(frame.raw);
        }
        return;
    };
    let mut usage_only = true;
    let mut any = false;
    decoder.decode(data, &mut |event| {
        any = true;
        state.generated.event(&event);
        match &event {
            StreamEvent::Usage(usage) => state.usage.merge(*usage),
            StreamEvent::Start(start) => {
                usage_only = false;
                state.usage.merge(start.usage);
            }
            StreamEvent::Finish(_) => {
                usage_only = false;
                state.saw_finish = true;
            }
            StreamEvent::End | StreamEvent::Error(_) => {
                usage_only = false;
                state.ended = true;
            }
            _ => usage_only = false,
        }
        deliver(output, event, out);
    });
    if forward && !(any && usage_only) {
        out.extend_from_slice(frame.raw);
    }
}

/// Whether a frame's data is complete in itself: `[DONE]` or a whole JSON value.
fn is_whole(data: &str) -> bool {
    data.trim() == "[DONE]" || serde_json::from_str::<serde::de::IgnoredAny>(data).is_ok()
}

fn deliver(output: &mut Output, event: StreamEvent<'_>, out: &mut Vec<u8>) {
    match output {
        Output::Translate(encoder) => {
            if !encoder.is_done() {
                encoder.encode(event, out);
            }
        }
        Output::Collect(accumulator) => accumulator.push(event),
        Output::Observe | Output::ForwardWithoutUsage => {}
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
