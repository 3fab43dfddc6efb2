//! Cutting a stream into frames — SSE events or NDJSON lines — whatever byte boundaries
//! its chunks have, and reading and rewriting an SSE event's data.
//!
//! Every byte fed comes out again in exactly one piece, in order: frames, and the blank
//! lines between SSE events as gaps. So a stream that is not rewritten comes out byte
//! for byte as it went in. Lines end with `\n` (a `\r` before it is kept).

/// Frames longer than this are not parsed: no LLM event comes near it, and the cap keeps
/// a stream that never ends a line from growing the instance's memory to its limit.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Server-sent events: a frame is the lines up to and including a blank line.
    Sse,
    /// Newline-delimited JSON: a frame is a line, its `\n` included.
    Ndjson,
}

/// A piece of the stream, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A complete frame (the last one of a stream may lack its terminator).
    Frame(Vec<u8>),
    /// Bytes between frames (blank lines before an SSE event): passed on as they are.
    Gap(Vec<u8>),
}

/// The pending frame grew past [`MAX_FRAME_BYTES`]; here are its bytes.
#[derive(Debug)]
pub struct FrameTooLarge(pub Vec<u8>);

/// Incremental framer of one stream.
#[derive(Debug)]
pub struct Framer {
    format: Format,
    /// Bytes of the incomplete frame at the end of what has been fed.
    pending: Vec<u8>,
    /// How far into `pending` complete lines have been scanned already.
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

    pub fn format(&self) -> Format {
        self.format
    }

    /// Feeds the next chunk and returns the pieces it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Piece>, FrameTooLarge> {
        self.pending.extend_from_slice(chunk);
        let mut pieces = Vec::new();
        let mut frame_start = 0;
        let mut line_start = self.scanned;
        while let Some(offset) = self.pending[line_start..].iter().position(|&b| b == b'\n') {
            let next = line_start + offset + 1;
            match self.format {
                Format::Ndjson => {
                    pieces.push(Piece::Frame(self.pending[frame_start..next].to_vec()));
                    frame_start = next;
                }
                Format::Sse => {
                    let line = &self.pending[line_start..next - 1];
                    if line.strip_suffix(b"\r").unwrap_or(line).is_empty() {
                        let bytes = self.pending[frame_start..next].to_vec();
                        pieces.push(if frame_start < line_start {
                            Piece::Frame(bytes)
                        } else {
                            Piece::Gap(bytes)
                        });
                        frame_start = next;
                    }
                }
            }
            line_start = next;
        }
        self.pending.drain(..frame_start);
        self.scanned = line_start - frame_start;
        if self.pending.len() > MAX_FRAME_BYTES {
            self.scanned = 0;
            return Err(FrameTooLarge(std::mem::take(&mut self.pending)));
        }
        Ok(pieces)
    }

    /// The stream ended: what is left is a last frame without its terminator, or a gap.
    pub fn finish(&mut self) -> Option<Piece> {
        let rest = std::mem::take(&mut self.pending);
        self.scanned = 0;
        if rest.is_empty() {
            None
        } else if rest.iter().all(u8::is_ascii_whitespace) {
            Some(Piece::Gap(rest))
        } else {
            Some(Piece::Frame(rest))
        }
    }
}

/// The `data` of an SSE event: its `data:` lines joined with `\n`, each without the one
/// optional space after the colon. `None` for events without data (comments such as
/// `: keep-alive`, a lone `event:`), and for data that is not UTF-8.
pub fn sse_data(frame: &[u8]) -> Option<String> {
    let mut data: Option<String> = None;
    for line in lines(frame) {
        let Some(value) = data_value(line) else {
            continue;
        };
        let value = std::str::from_utf8(value).ok()?;
        match &mut data {
            None => data = Some(value.to_string()),
            Some(joined) => {
                joined.push('\n');
                joined.push_str(value);
            }
        }
    }
    data
}

/// The frame with its data lines replaced by one `data: {data}` line where the first
/// one was; other fields, comments and the terminator stay as they were.
pub fn sse_with_data(frame: &[u8], data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + data.len());
    let mut written = false;
    let mut rest = frame;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if data_value(content).is_some() {
            if !written {
                written = true;
                // Data with line breaks (JSON whitespace) takes one line each.
                let ending = &line[content.len()..];
                let ending = if ending.is_empty() {
                    b"\n".as_slice()
                } else {
                    ending
                };
                let mut data_lines = data.split('\n').peekable();
                while let Some(data_line) = data_lines.next() {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(
                        data_line.strip_suffix('\r').unwrap_or(data_line).as_bytes(),
                    );
                    if data_lines.peek().is_some() {
                        out.extend_from_slice(ending);
                    } else {
                        out.extend_from_slice(&line[content.len()..]);
                    }
                }
            }
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// The line ending a frame uses (`\r\n` or `\n`), for events written next to it.
pub fn line_ending(frame: &[u8]) -> &'static str {
    if frame.windows(2).any(|pair| pair == b"\r\n") {
        "\r\n"
    } else {
        "\n"
    }
}

/// The frame's lines without their endings.
fn lines(frame: &[u8]) -> impl Iterator<Item = &[u8]> {
    frame
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// The value of a `data` field line.
fn data_value(line: &[u8]) -> Option<&[u8]> {
    let value = match line.iter().position(|&b| b == b':') {
        Some(colon) if &line[..colon] == b"data" => &line[colon + 1..],
        None if line == b"data" => &[][..],
        _ => return None,
    };
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(format: Format, chunks: &[&[u8]]) -> Vec<Piece> {
        let mut framer = Framer::new(format);
        let mut pieces = Vec::new();
        for chunk in chunks {
            pieces.extend(framer.feed(chunk).unwrap());
        }
        pieces.extend(framer.finish());
        pieces
    }

    fn joined(pieces: &[Piece]) -> Vec<u8> {
        pieces
            .iter()
            .flat_map(|piece| match piece {
                Piece::Frame(bytes) | Piece::Gap(bytes) => bytes.clone(),
            })
            .collect()
    }

    const SSE: &[u8] = b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n: keep-alive\n\n\n\
        data: {\"b\":\"\xc3\xa9\"}\n\ndata: [DONE]\n\n";

    #[test]
    fn sse_frames_are_the_same_however_the_stream_is_split() {
        let whole = pieces(Format::Sse, &[SSE]);
        assert_eq!(
            whole,
            [
                Piece::Frame(b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n".to_vec()),
                Piece::Frame(b": keep-alive\n\n".to_vec()),
                Piece::Gap(b"\n".to_vec()),
                Piece::Frame(b"data: {\"b\":\"\xc3\xa9\"}\n\n".to_vec()),
                Piece::Frame(b"data: [DONE]\n\n".to_vec()),
            ]
        );
        assert_eq!(joined(&whole), SSE);
        for split in 0..=SSE.len() {
            assert_eq!(
                pieces(Format::Sse, &[&SSE[..split], &SSE[split..]]),
                whole,
                "split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = SSE.chunks(1).collect();
        assert_eq!(pieces(Format::Sse, &bytes), whole);
    }

    #[test]
    fn ndjson_lines_are_the_same_however_the_stream_is_split() {
        let stream: &[u8] = b"{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}";
        let whole = pieces(Format::Ndjson, &[stream]);
        assert_eq!(
            whole,
            [
                Piece::Frame(b"{\"a\":1}\n".to_vec()),
                Piece::Frame(b"\n".to_vec()),
                Piece::Frame(b"{\"b\":2}\r\n".to_vec()),
                Piece::Frame(b"{\"c\":3}".to_vec()),
            ]
        );
        for split in 0..=stream.len() {
            assert_eq!(
                pieces(Format::Ndjson, &[&stream[..split], &stream[split..]]),
                whole
            );
        }
    }

    #[test]
    fn the_end_of_a_stream_is_a_frame_or_a_gap() {
        assert_eq!(
            pieces(Format::Sse, &[b"data: [DONE]"]),
            [Piece::Frame(b"data: [DONE]".to_vec())]
        );
        assert_eq!(
            pieces(Format::Sse, &[b"\n\n  "]),
            [
                Piece::Gap(b"\n".to_vec()),
                Piece::Gap(b"\n".to_vec()),
                Piece::Gap(b"  ".to_vec())
            ]
        );
    }

    #[test]
    fn a_frame_without_end_is_handed_back_past_the_limit() {
        let mut framer = Framer::new(Format::Ndjson);
        let chunk = vec![b'x'; 1 << 19];
        assert!(framer.feed(&chunk).unwrap().is_empty());
        assert!(framer.feed(&chunk).unwrap().is_empty());
        let FrameTooLarge(bytes) = framer.feed(b"y").unwrap_err();
        assert_eq!(bytes.len(), (1 << 20) + 1);
        assert_eq!(
            framer.feed(b"{}\n").unwrap(),
            [Piece::Frame(b"{}\n".to_vec())]
        );
    }

    #[test]
    fn reads_the_data_of_an_event() {
        assert_eq!(
            sse_data(b"event: ping\ndata: {\"type\":\"ping\"}\n\n").as_deref(),
            Some("{\"type\":\"ping\"}")
        );
        assert_eq!(
            sse_data(b"data:no-space\r\n\r\n").as_deref(),
            Some("no-space")
        );
        assert_eq!(
            sse_data(b"data: a\ndata:  b\ndata\n\n").as_deref(),
            Some("a\n b\n")
        );
        assert_eq!(sse_data(b": keep-alive\n\n"), None);
        assert_eq!(sse_data(b"event: x\nid: 3\nretry: 10\n\n"), None);
        assert_eq!(sse_data(b"data: \xff\n\n"), None);
        assert_eq!(sse_data(b"database: x\n\n"), None);
    }

    #[test]
    fn replaces_the_data_of_an_event_keeping_the_rest() {
        assert_eq!(
            sse_with_data(
                b"event: e\r\nid: 1\r\ndata: a\r\ndata: b\r\n: c\r\n\r\n",
                "{}"
            ),
            b"event: e\r\nid: 1\r\ndata: {}\r\n: c\r\n\r\n"
        );
        assert_eq!(sse_with_data(b"data: old", "new"), b"data: new");
        assert_eq!(
            sse_with_data(b"data: {\n\n", "{\n\"a\": 1\r\n}"),
            b"data: {\ndata: \"a\": 1\ndata: }\n\n"
        );
        assert_eq!(sse_with_data(b"data: x", "a\nb"), b"data: a\ndata: b");
        assert_eq!(line_ending(b"data: x\r\n\r\n"), "\r\n");
        assert_eq!(line_ending(b"data: x\n\n"), "\n");
    }
}
