//! The request log of the conformance echo server: with `--log-requests`, one stdout line
//! per request, in echo-basic's words, because upstream's mirror tests find mirrored
//! requests by reading those lines from the mirror backend's log.

use std::io::Write;
use std::net::SocketAddr;

/// Whether the server logs each request. Off by default: the benchmark runs the same
/// binary and must not pay for a write per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RequestLog {
    #[default]
    Off,
    /// One [`request_log_line`] per request on stdout.
    Stdout,
}

/// `Echoing back request made to <target> to client (<peer>)`: echo-basic's line, with
/// the request target as sent (Go's `RequestURI`) and the client's address.
pub fn request_log_line(target: &str, peer: SocketAddr) -> String {
    format!("Echoing back request made to {target} to client ({peer})")
}

/// What one log line says: the request target and the client address, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedRequest<'a> {
    pub target: &'a str,
    pub peer: &'a str,
}

/// Reads a [`request_log_line`] back; `None` for any other line.
pub fn parse_request_log_line(line: &str) -> Option<LoggedRequest<'_>> {
    let rest = line
        .trim_end_matches(['\r', '\n'])
        .strip_prefix("Echoing back request made to ")?;
    // The peer never contains the separator, the target could: split at the last one.
    let (target, peer) = rest.rsplit_once(" to client (")?;
    let peer = peer.strip_suffix(')')?;
    Some(LoggedRequest { target, peer })
}

/// Writes the line for one request to stdout. Rust's stdout is line-buffered, and the
/// line goes out in a single write with its newline, so a reader of the log file never
/// waits for it nor sees half of it. Errors are ignored: a backend whose log is gone
/// keeps answering.
pub fn log_request(target: &str, peer: SocketAddr) {
    let mut line = request_log_line(target, peer);
    line.push('\n');
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let peer: SocketAddr = "127.0.100.1:40312".parse().unwrap();
        let line = request_log_line("/mirror?x=1", peer);
        assert_eq!(
            line,
            "Echoing back request made to /mirror?x=1 to client (127.0.100.1:40312)"
        );
        assert_eq!(
            parse_request_log_line(&format!("{line}\n")),
            Some(LoggedRequest {
                target: "/mirror?x=1",
                peer: "127.0.100.1:40312",
            })
        );
    }

    #[test]
    fn odd_targets_and_other_lines() {
        let peer: SocketAddr = "[::1]:8080".parse().unwrap();
        let tricky = request_log_line("/a to client (b)", peer);
        let parsed = parse_request_log_line(&tricky).unwrap();
        assert_eq!(
            (parsed.target, parsed.peer),
            ("/a to client (b)", "[::1]:8080")
        );
        assert_eq!(parse_request_log_line("listening on 127.0.0.1:3000"), None);
        assert_eq!(
            parse_request_log_line("Echoing back request made to /x to client"),
            None
        );
    }
}
