//! Reading the request logs of the echo backends an [`Env`](super::Env) starts: each pod
//! runs `nantian-echo --log-requests` with its stdout appended to a file of its own, so the
//! conformance replay can see which requests a pod got, like upstream reads pod logs.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// A position in a pod's log; the lines after it were logged later. Take one before the
/// requests of interest, read the lines after it afterwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogMark(u64);

impl LogMark {
    /// The beginning: every line comes after it.
    pub const START: LogMark = LogMark(0);
}

/// The end of the log at `path` now.
pub fn end_of_log(path: &Path) -> io::Result<LogMark> {
    Ok(LogMark(std::fs::metadata(path)?.len()))
}

/// The complete lines of the log at `path` after `since`. A line still being written has
/// no newline yet and is left out: it shows up whole in a later read.
pub fn lines_after(path: &Path, since: LogMark) -> io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(since.0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(complete_lines(&bytes))
}

fn complete_lines(bytes: &[u8]) -> Vec<String> {
    let Some(last_newline) = bytes.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    bytes[..last_newline]
        .split(|&b| b == b'\n')
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn only_complete_lines_count() {
        assert_eq!(complete_lines(b""), Vec::<String>::new());
        assert_eq!(complete_lines(b"half"), Vec::<String>::new());
        assert_eq!(complete_lines(b"one\ntwo\nhal"), ["one", "two"]);
        assert_eq!(complete_lines(b"one\n\nthree\n"), ["one", "", "three"]);
    }

    #[test]
    fn lines_after_a_mark_are_the_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod.log");
        let mut log = File::create(&path).unwrap();
        writeln!(log, "before").unwrap();
        let mark = end_of_log(&path).unwrap();
        assert_eq!(lines_after(&path, mark).unwrap(), Vec::<String>::new());

        write!(log, "after 1\nafter 2\npart").unwrap();
        assert_eq!(lines_after(&path, mark).unwrap(), ["after 1", "after 2"]);
        writeln!(log, "ial").unwrap();
        assert_eq!(
            lines_after(&path, mark).unwrap(),
            ["after 1", "after 2", "partial"]
        );
        assert_eq!(
            lines_after(&path, LogMark::START).unwrap(),
            ["before", "after 1", "after 2", "partial"]
        );
        assert!(end_of_log(&dir.path().join("missing.log")).is_err());
    }
}
