//! Server-sent events: the fields of one event block.
//!
//! [`crate::framing`] cuts the stream into blocks (lines up to a blank line); this reads
//! a block's `data`. Event names are not needed: every provider here repeats the event
//! type inside the JSON data, and OpenAI sends no names at all.

use std::borrow::Cow;

/// The `data` of an event block: its `data:` lines joined with `\n`, each without the one
/// optional space after the colon. `None` for blocks with no data (comments such as
/// `: keep-alive`, a lone `event:` or `retry:`), which the SSE spec does not dispatch.
///
/// Borrowed from the block for the usual single data line. Invalid UTF-8 is replaced
/// (the JSON that follows then fails or carries U+FFFD, and is reported, not trapped on).
pub fn event_data(block: &[u8]) -> Option<Cow<'_, str>> {
    let mut data: Option<Cow<'_, str>> = None;
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (field, value) = match line.iter().position(|&b| b == b':') {
            // A comment.
            Some(0) => continue,
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            // A field name alone has an empty value.
            None => (line, &[][..]),
        };
        if field != b"data" {
            continue;
        }
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let value = String::from_utf8_lossy(value);
        data = Some(match data {
            None => value,
            Some(previous) => {
                let mut joined = previous.into_owned();
                joined.push('\n');
                joined.push_str(&value);
                Cow::Owned(joined)
            }
        });
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_data_of_an_event() {
        assert_eq!(
            event_data(b"event: ping\ndata: {\"type\":\"ping\"}\n\n").as_deref(),
            Some("{\"type\":\"ping\"}")
        );
        assert!(matches!(
            event_data(b"data: {}\n\n"),
            Some(Cow::Borrowed("{}"))
        ));
        assert_eq!(
            event_data(b"data:no-space\r\n\r\n").as_deref(),
            Some("no-space")
        );
        assert_eq!(
            event_data(b"data: a\ndata:  b\ndata\n\n").as_deref(),
            Some("a\n b\n")
        );
        assert_eq!(event_data(b": keep-alive\n\n"), None);
        assert_eq!(event_data(b"event: x\nid: 3\nretry: 10\n\n"), None);
        assert_eq!(event_data(b"data: \xff\n\n").as_deref(), Some("\u{fffd}"));
    }
}
