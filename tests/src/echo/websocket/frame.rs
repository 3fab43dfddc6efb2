//! WebSocket frames (RFC 6455 §5.2), read and written over any async byte stream.
//!
//! Both ends use this codec: the echo server (reads masked frames, writes unmasked ones)
//! and the test client (the other way round). Extensions are never negotiated, so the
//! RSV bits must be zero.

use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The frame kinds of RFC 6455 §5.2; the reserved opcodes are rejected when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) may not be fragmented and carry ≤ 125 bytes.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// One frame with its payload already unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: Opcode,
    /// Whether the peer masked the payload: clients must, servers must not.
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A complete (FIN) frame.
    pub fn new(opcode: Opcode, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            fin: true,
            opcode,
            masked: false,
            payload: payload.into(),
        }
    }

    /// A close frame carrying `code` (RFC 6455 §7.4) and no reason text.
    pub fn close(code: u16) -> Self {
        Self::new(Opcode::Close, code.to_be_bytes())
    }

    /// The status code of a close frame, if it carries one.
    pub fn close_code(&self) -> Option<u16> {
        match (self.opcode, self.payload.as_slice()) {
            (Opcode::Close, [hi, lo, ..]) => Some(u16::from_be_bytes([*hi, *lo])),
            _ => None,
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    /// The peer broke the framing rules; the close code to answer with.
    Protocol {
        close_code: u16,
        reason: &'static str,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(err) => write!(f, "websocket i/o: {err}"),
            Self::Protocol { close_code, reason } => {
                write!(f, "websocket protocol error ({close_code}): {reason}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

/// Close code 1002: the peer violated the protocol.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code 1009: the message is larger than this end accepts.
pub const CLOSE_TOO_BIG: u16 = 1009;

fn protocol(close_code: u16, reason: &'static str) -> FrameError {
    FrameError::Protocol { close_code, reason }
}

/// Reads one frame. `Ok(None)` means the peer closed the stream cleanly between frames.
pub async fn read_frame<R>(reader: &mut R, max_payload: usize) -> Result<Option<Frame>, FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut head = [0u8; 2];
    match reader.read(&mut head[..1]).await? {
        0 => return Ok(None),
        _ => reader.read_exact(&mut head[1..]).await?,
    };
    if head[0] & 0x70 != 0 {
        return Err(protocol(
            CLOSE_PROTOCOL_ERROR,
            "reserved bits set without an extension",
        ));
    }
    let fin = head[0] & 0x80 != 0;
    let opcode = Opcode::from_bits(head[0] & 0x0F)
        .ok_or_else(|| protocol(CLOSE_PROTOCOL_ERROR, "reserved opcode"))?;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7F {
        126 => u64::from(reader.read_u16().await?),
        127 => reader.read_u64().await?,
        short => u64::from(short),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(protocol(
            CLOSE_PROTOCOL_ERROR,
            "fragmented or oversized control frame",
        ));
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|len| *len <= max_payload)
        .ok_or_else(|| protocol(CLOSE_TOO_BIG, "frame payload too large"))?;
    let mut mask = [0u8; 4];
    if masked {
        reader.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    if masked {
        apply_mask(&mut payload, mask);
    }
    Ok(Some(Frame {
        fin,
        opcode,
        masked,
        payload,
    }))
}

/// Writes one frame; with `mask` the payload is masked with that key (client → server).
pub async fn write_frame<W>(writer: &mut W, frame: &Frame, mask: Option<[u8; 4]>) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut out = Vec::with_capacity(14 + frame.payload.len());
    out.push(if frame.fin { 0x80 } else { 0 } | frame.opcode.bits());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match frame.payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let payload_start = match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.len()
        }
        None => out.len(),
    };
    out.extend_from_slice(&frame.payload);
    if let Some(key) = mask {
        apply_mask(&mut out[payload_start..], key);
    }
    writer.write_all(&out).await?;
    writer.flush().await
}

fn apply_mask(payload: &mut [u8], key: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(frame: Frame, mask: Option<[u8; 4]>) -> Frame {
        let mut wire = Vec::new();
        write_frame(&mut wire, &frame, mask).await.unwrap();
        read_frame(&mut wire.as_slice(), 1 << 20)
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn frames_of_every_length_class_round_trip() {
        for len in [0usize, 125, 126, 0xFFFF, 0x10000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let read = round_trip(Frame::new(Opcode::Binary, payload.clone()), mask).await;
                assert_eq!(read.payload, payload, "len {len} mask {mask:?}");
                assert_eq!(read.masked, mask.is_some());
                assert!(read.fin);
            }
        }
    }

    #[tokio::test]
    async fn rfc6455_masked_hello_decodes() {
        // RFC 6455 §5.7: a single-frame masked text message containing "Hello".
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let frame = read_frame(&mut wire.as_slice(), 125)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame.opcode, Opcode::Text);
        assert_eq!(frame.payload, b"Hello");
        assert!(frame.masked);
    }

    #[tokio::test]
    async fn oversized_and_malformed_frames_are_protocol_errors() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &Frame::new(Opcode::Binary, vec![0; 200]), None)
            .await
            .unwrap();
        let err = read_frame(&mut wire.as_slice(), 100).await.unwrap_err();
        assert!(matches!(
            err,
            FrameError::Protocol {
                close_code: CLOSE_TOO_BIG,
                ..
            }
        ));

        let fragmented_ping = [0x09, 0x00];
        let err = read_frame(&mut fragmented_ping.as_slice(), 100)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            FrameError::Protocol {
                close_code: CLOSE_PROTOCOL_ERROR,
                ..
            }
        ));

        let reserved_opcode = [0x83, 0x00];
        assert!(
            read_frame(&mut reserved_opcode.as_slice(), 100)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn clean_eof_between_frames_is_none() {
        assert!(read_frame(&mut [].as_slice(), 100).await.unwrap().is_none());
        assert_eq!(Frame::close(1000).close_code(), Some(1000));
    }
}
