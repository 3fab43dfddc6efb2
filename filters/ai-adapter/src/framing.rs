//! Cutting a provider's stream into frames — SSE events or NDJSON lines — whatever byte
//! boundaries its chunks have.
//!
//! Complete frames are handed out as soon as their last byte arrives, borrowed from the
//! chunk itself when no earlier bytes are pending; only an incomplete tail is copied and
//! kept for the next chunk. Scanning resumes where it stopped, so a long frame arriving
//! in many small chunks is scanned once, not once per chunk.

use std::borrow::Cow;

use crate::sse;

/// Frames longer than this are refused: no provider event comes near it, and the cap
/// keeps a stream that never ends a line from growing the instance's memory to its limit.
pub const MAX_FRAME_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Server-sent events: a frame is the lines up to a blank line.
    Sse,
    /// Newline-delimited JSON: a frame is a line.
    Ndjson,
}

/// One complete frame.
#[derive(Debug)]
pub struct Frame<'a> {
    /// The payload: the SSE event's data, or the NDJSON line without its line break.
    /// `None` when there is none (an SSE comment, a blank NDJSON line).
    pub data: Option<Cow<'a, str>>,
    /// The frame's bytes as received, terminator included, for passing it on untouched.
    pub raw: &'a [u8],
    /// The stream ended inside this frame: its terminator never came.
    pub unterminated: bool,
}

/// A frame grew past [`MAX_FRAME_BYTES`]; `pending` holds its bytes so far.
#[derive(Debug)]
pub struct FrameTooLarge {
    pub pending: Vec<u8>,
}

/// Incremental framer of one stream.
#[derive(Debug)]
pub struct Framer {
    format: Format,
    /// Bytes of the incomplete frame at the end of what has been fed.
    pending: Vec<u8>,
    /// How far into `pending` complete lines have already been scanned.
    scanned: usize,
}

impl Framer {
    pub fn new(format: Format) -> Self {
        Framer {
            format,
            pending: Vec::new(),
            scanned: 0,
        }
    }

    /// Feeds the next chunk, calling `on_frame` for every frame it completes.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        on_frame: &mut dyn FnMut(Frame<'_>),
    ) -> Result<(), FrameTooLarge> {
        if self.pending.is_empty() {
            let (consumed, scanned) = split(self.format, chunk, 0, on_frame);
            self.pending.extend_from_slice(&chunk[consumed..]);
            self.scanned = scanned - consumed;
        } else {
            self.pending.extend_from_slice(chunk);
            let (consumed, scanned) = split(self.format, &self.pending, self.scanned, on_frame);
            self.pending.drain(..consumed);
            self.scanned = scanned - consumed;
        }
        if self.pending.len() > MAX_FRAME_BYTES {
            self.scanned = 0;
            return Err(FrameTooLarge {
                pending: std::mem::take(&mut self.pending),
            });
        }
        Ok(())
    }

    /// The stream ended: a last frame without its terminator is handed out too, marked
    /// [`Frame::unterminated`] (servers that end on `data: [DONE]\n` or a final line
    /// without `\n`, or a stream cut off mid-event).
    pub fn finish(&mut self, on_frame: &mut dyn FnMut(Frame<'_>)) {
        let pending = std::mem::take(&mut self.pending);
        self.scanned = 0;
        if !pending.iter().all(u8::is_ascii_whitespace) {
            on_frame(Frame {
                unterminated: true,
                ..frame(self.format, &pending)
            });
        }
    }
}

/// Hands out the complete frames of `buf`, which starts at a frame boundary and has
/// complete lines up to `scan_from`. Returns where the incomplete frame starts and how
/// far lines were scanned.
fn split(
    format: Format,
    buf: &[u8],
    scan_from: usize,
    on_frame: &mut dyn FnMut(Frame<'_>),
) -> (usize, usize) {
    let mut frame_start = 0;
    let mut line_start = scan_from;
    while let Some(offset) = buf[line_start..].iter().position(|&b| b == b'\n') {
        let line_end = line_start + offset;
        let next = line_end + 1;
        match format {
            Format::Ndjson => {
                on_frame(frame(format, &buf[frame_start..next]));
                frame_start = next;
            }
            Format::Sse => {
                let line = &buf[line_start..line_end];
                if line.strip_suffix(b"\r").unwrap_or(line).is_empty() {
                    // A blank line ends the event; blank lines between events are skipped.
                    if frame_start < line_start {
                        on_frame(frame(format, &buf[frame_start..next]));
                    }
                    frame_start = next;
                }
            }
        }
        line_start = next;
    }
    (frame_start, line_start)
}

fn frame(format: Format, raw: &[u8]) -> Frame<'_> {
    let data = match format {
        Format::Sse => sse::event_data(raw),
        Format::Ndjson => {
            let line = raw.trim_ascii();
            (!line.is_empty()).then(|| String::from_utf8_lossy(line))
        }
    };
    Frame {
        data,
        raw,
        unterminated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame's data and raw bytes, feeding `chunks` one by one.
    fn frames(format: Format, chunks: &[&[u8]]) -> Vec<(Option<String>, Vec<u8>)> {
        let mut framer = Framer::new(format);
        let mut frames = Vec::new();
        let mut collect = |f: Frame<'_>| frames.push((f.data.map(Cow::into_owned), f.raw.to_vec()));
        for chunk in chunks {
            framer.feed(chunk, &mut collect).unwrap();
        }
        framer.finish(&mut collect);
        frames
    }

    const SSE: &[u8] = b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n: keep-alive\n\n\n\
        data: {\"b\":\"\xc3\xa9\"}\n\ndata: [DONE]\n\n";

    #[test]
    fn sse_events_are_the_same_however_the_stream_is_split() {
        let whole = frames(Format::Sse, &[SSE]);
        assert_eq!(
            whole.iter().map(|f| f.0.as_deref()).collect::<Vec<_>>(),
            [
                Some("{\"a\":1}"),
                None,
                Some("{\"b\":\"é\"}"),
                Some("[DONE]")
            ]
        );
        let raw: Vec<u8> = whole.iter().flat_map(|f| f.1.clone()).collect();
        // Everything but the blank line between events is handed on.
        assert_eq!(raw.len(), SSE.len() - 1);
        for split in 0..=SSE.len() {
            assert_eq!(
                frames(Format::Sse, &[&SSE[..split], &SSE[split..]]),
                whole,
                "split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = SSE.chunks(1).collect();
        assert_eq!(frames(Format::Sse, &bytes), whole);
    }

    #[test]
    fn ndjson_lines_are_the_same_however_the_stream_is_split() {
        let stream: &[u8] = b"{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}";
        let whole = frames(Format::Ndjson, &[stream]);
        assert_eq!(
            whole.iter().map(|f| f.0.as_deref()).collect::<Vec<_>>(),
            [
                Some("{\"a\":1}"),
                None,
                Some("{\"b\":2}"),
                Some("{\"c\":3}")
            ]
        );
        for split in 0..=stream.len() {
            assert_eq!(
                frames(Format::Ndjson, &[&stream[..split], &stream[split..]]),
                whole
            );
        }
    }

    #[test]
    fn an_unterminated_sse_event_is_handed_out_at_the_end() {
        let frames = frames(Format::Sse, &[b"data: [DONE]"]);
        assert_eq!(frames[0].0.as_deref(), Some("[DONE]"));
        assert!(super::tests::frames(Format::Sse, &[b"\n\n  "]).is_empty());
    }

    #[test]
    fn a_frame_without_end_is_refused_past_the_limit() {
        let mut framer = Framer::new(Format::Ndjson);
        let chunk = vec![b'x'; 1 << 20];
        let mut result = Ok(());
        for _ in 0..5 {
            result = framer.feed(&chunk, &mut |_| unreachable!());
            if result.is_err() {
                break;
            }
        }
        let err = result.unwrap_err();
        assert!(err.pending.len() > MAX_FRAME_BYTES);
        // The framer starts afresh after refusing.
        let mut seen = 0;
        framer.feed(b"{}\n", &mut |_| seen += 1).unwrap();
        assert_eq!(seen, 1);
    }
}
