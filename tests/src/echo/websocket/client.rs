//! A minimal WebSocket client for tests: handshake over any byte stream, then send masked
//! frames and read the server's frames.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::accept_key::{accept_key, base64_encode};
use super::frame::{Frame, FrameError, read_frame, write_frame};

/// Frames the client reads are limited to this size.
const MAX_FRAME_PAYLOAD: usize = 16 * 1024 * 1024;

/// An open WebSocket connection, client side.
pub struct WebSocketClient<S> {
    stream: BufReader<S>,
    /// The server's `101` response head (status line and headers), for assertions.
    pub response_head: String,
}

impl<S> WebSocketClient<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Sends the upgrade request for `path` with `Host: host` and checks the `101` answer
    /// and its `Sec-WebSocket-Accept`. A refusal is an error carrying the response head.
    pub async fn handshake(stream: S, host: &str, path: &str) -> io::Result<Self> {
        let key = base64_encode(&random_bytes::<16>());
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let mut stream = BufReader::new(stream);
        stream.get_mut().write_all(request.as_bytes()).await?;

        // Read the head line by line: the bytes after it already belong to the frames.
        let mut response_head = String::new();
        loop {
            let before = response_head.len();
            if stream.read_line(&mut response_head).await? == 0 {
                return Err(invalid(format!(
                    "connection closed during the websocket handshake: {response_head:?}"
                )));
            }
            if response_head[before..].trim_end().is_empty() {
                break;
            }
        }
        let status = response_head.split_whitespace().nth(1);
        if status != Some("101") {
            return Err(invalid(format!(
                "websocket handshake refused: {}",
                response_head.trim_end()
            )));
        }
        let expected = accept_key(key.as_bytes());
        let accepted = response_head.lines().any(|line| {
            line.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected
            })
        });
        if !accepted {
            return Err(invalid(format!(
                "missing or wrong Sec-WebSocket-Accept: {}",
                response_head.trim_end()
            )));
        }
        Ok(Self {
            stream,
            response_head,
        })
    }

    /// Sends one frame, masked with a fresh key as RFC 6455 requires of clients.
    pub async fn send(&mut self, frame: &Frame) -> io::Result<()> {
        write_frame(self.stream.get_mut(), frame, Some(random_bytes::<4>())).await
    }

    /// Reads the next frame; `None` once the server closed the stream.
    pub async fn recv(&mut self) -> Result<Option<Frame>, FrameError> {
        read_frame(&mut self.stream, MAX_FRAME_PAYLOAD).await
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Unpredictable enough for a handshake nonce and a mask key, without a `rand` dependency:
/// every `RandomState` is seeded from the OS once and then varied per instance.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(chunk.as_ptr() as usize);
        let word = hasher.finish().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    out
}
