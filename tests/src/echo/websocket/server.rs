//! The server half: accept an HTTP/1.1 upgrade, then echo every message back.
//!
//! Data frames go back with their own opcode and FIN bit, so text stays text, binary stays
//! binary and fragmented messages come back fragmented the same way. Pings are answered
//! with pongs and a close is answered with the same status code.

use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL};
use http::header::{SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};

use super::accept_key::accept_key;
use super::frame::{CLOSE_PROTOCOL_ERROR, Frame, FrameError, Opcode, read_frame, write_frame};

/// Larger messages are refused with close code 1009; the echo server is for tests.
const MAX_FRAME_PAYLOAD: usize = 16 * 1024 * 1024;

/// Whether the request asks to switch to WebSocket (RFC 6455 §4.2.1).
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && has_token(req.headers(), UPGRADE, "websocket")
        && has_token(req.headers(), CONNECTION, "upgrade")
}

fn has_token(headers: &HeaderMap, name: http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Answers an upgrade request: `101 Switching Protocols` and a task that echoes frames
/// once hyper hands over the connection, or `400`/`426` when the handshake is invalid.
pub fn accept<B, Out>(req: Request<B>) -> Response<Out>
where
    B: Send + 'static,
    Out: Default,
{
    let reply = |status: StatusCode| {
        let mut response = Response::new(Out::default());
        *response.status_mut() = status;
        response
    };
    if req
        .headers()
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut response = reply(StatusCode::UPGRADE_REQUIRED);
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    }
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY) else {
        return reply(StatusCode::BAD_REQUEST);
    };
    let accept = HeaderValue::try_from(accept_key(key.as_bytes()))
        .expect("base64 is always a valid header value");
    // Select the first offered subprotocol so clients that insist on one can connect.
    let protocol = req
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(str::trim)
        .filter(|first| !first.is_empty())
        .and_then(|first| HeaderValue::from_str(first).ok());

    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                if let Err(err) = echo_frames(TokioIo::new(upgraded)).await {
                    eprintln!("websocket connection ended: {err}");
                }
            }
            Err(err) => eprintln!("websocket upgrade failed: {err}"),
        }
    });

    let mut response = reply(StatusCode::SWITCHING_PROTOCOLS);
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(protocol) = protocol {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
}

/// Echoes frames until the client closes (or breaks the protocol).
pub async fn echo_frames<S>(stream: S) -> Result<(), FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = BufReader::new(stream);
    loop {
        let frame = match read_frame(&mut stream, MAX_FRAME_PAYLOAD).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(FrameError::Protocol { close_code, reason }) => {
                write_frame(&mut stream, &Frame::close(close_code), None).await?;
                return Err(FrameError::Protocol { close_code, reason });
            }
            Err(err) => return Err(err),
        };
        if !frame.masked {
            write_frame(&mut stream, &Frame::close(CLOSE_PROTOCOL_ERROR), None).await?;
            return Err(FrameError::Protocol {
                close_code: CLOSE_PROTOCOL_ERROR,
                reason: "client frame not masked",
            });
        }
        match frame.opcode {
            Opcode::Continuation | Opcode::Text | Opcode::Binary => {
                let echo = Frame {
                    masked: false,
                    ..frame
                };
                write_frame(&mut stream, &echo, None).await?;
            }
            Opcode::Ping => {
                write_frame(&mut stream, &Frame::new(Opcode::Pong, frame.payload), None).await?;
            }
            Opcode::Pong => {}
            Opcode::Close => {
                // Echo the status code (not the reason) and let the client close the TCP
                // connection first, as RFC 6455 §7.1.1 prefers.
                let mut reply = Frame::new(Opcode::Close, Vec::new());
                if let Some(code) = frame.close_code() {
                    reply.payload = code.to_be_bytes().to_vec();
                }
                write_frame(&mut stream, &reply, None).await?;
                return Ok(());
            }
        }
    }
}
