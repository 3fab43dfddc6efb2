//! WebSocket round trips through a Gateway, after the backend-protocol WebSocket test
//! (`websocket.Dial`, then `websocket.Message.Send`/`Receive` per message).

use std::time::Duration;

use nantian_e2e::echo::websocket::{Frame, Opcode, WebSocketClient};
use tokio::net::TcpStream;

use crate::model::WebSocketMessage;
use crate::roundtrip::Target;

/// Bounds one attempt (dial, handshake, every message), so a tunnel that never answers
/// fails the attempt instead of hanging the replay.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials `ws://<gateway>/<path>` on a fresh connection, sends each message and expects the
/// same payload back; `Err` says which part failed.
pub async fn round_trip(
    target: &Target,
    path: &str,
    messages: &[WebSocketMessage],
) -> Result<(), String> {
    tokio::time::timeout(ATTEMPT_TIMEOUT, exchange(target, path, messages))
        .await
        .unwrap_or_else(|_| Err(format!("no complete exchange within {ATTEMPT_TIMEOUT:?}")))
}

async fn exchange(
    target: &Target,
    path: &str,
    messages: &[WebSocketMessage],
) -> Result<(), String> {
    let stream = TcpStream::connect(target.socket_addr())
        .await
        .map_err(|e| format!("failed to dial: {e}"))?;
    let mut socket = WebSocketClient::handshake(stream, &target.url_host(), path)
        .await
        .map_err(|e| format!("failed to dial: {e}"))?;
    for message in messages {
        let (opcode, payload) = frame_of(message);
        socket
            .send(&Frame::new(opcode, payload.clone()))
            .await
            .map_err(|e| format!("failed to send {}: {e}", kind(opcode)))?;
        let reply = next_message(&mut socket).await?;
        if reply != payload {
            return Err(format!(
                "unexpected reply - want: {:?} got: {:?}",
                String::from_utf8_lossy(&payload),
                String::from_utf8_lossy(&reply)
            ));
        }
    }
    // A clean close, so the echo side does not log a dropped connection.
    let _ = socket.send(&Frame::close(1000)).await;
    Ok(())
}

fn frame_of(message: &WebSocketMessage) -> (Opcode, Vec<u8>) {
    match message {
        WebSocketMessage::Text(text) => (Opcode::Text, text.clone().into_bytes()),
        WebSocketMessage::Binary(bytes) => (Opcode::Binary, bytes.clone()),
    }
}

fn kind(opcode: Opcode) -> &'static str {
    if opcode == Opcode::Text {
        "text frame"
    } else {
        "binary frame"
    }
}

/// The payload of the next data message, reassembled from its fragments; pings and pongs
/// in between are skipped, like `websocket.Message.Receive` does.
async fn next_message(socket: &mut WebSocketClient<TcpStream>) -> Result<Vec<u8>, String> {
    let mut payload = Vec::new();
    loop {
        let frame = socket
            .recv()
            .await
            .map_err(|e| format!("failed to receive frame: {e}"))?
            .ok_or("failed to receive frame: the connection closed")?;
        match frame.opcode {
            Opcode::Ping | Opcode::Pong => continue,
            Opcode::Close => {
                return Err(format!(
                    "failed to receive frame: closed with {:?}",
                    frame.close_code()
                ));
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                payload.extend_from_slice(&frame.payload);
                if frame.fin {
                    return Ok(payload);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nantian_e2e::echo::{Context, EchoServer, ListenerMode, ListenerSpec, RequestLog};

    /// Against the echo server directly: text and binary messages come back, and a
    /// refused handshake (the h2c-only listener answers HTTP/1 with 400) is an error.
    #[tokio::test]
    async fn messages_round_trip_against_the_echo_server() {
        let specs = [
            ListenerSpec {
                addr: "127.0.0.1:0".parse().unwrap(),
                mode: ListenerMode::Mixed,
            },
            ListenerSpec {
                addr: "127.0.0.1:0".parse().unwrap(),
                mode: ListenerMode::H2cOnly,
            },
        ];
        let server = EchoServer::bind(&specs, Context::default(), RequestLog::Off, None)
            .await
            .unwrap();
        let addrs = server.local_addrs().unwrap();
        tokio::spawn(server.serve(std::future::pending()));
        let target = |i: usize| Target {
            ip: addrs[i].addr.ip().to_string(),
            port: addrs[i].addr.port(),
            tls: None,
        };
        let messages = [
            WebSocketMessage::Text("Websocket Support!".into()),
            WebSocketMessage::Binary(vec![1, 2, 3, 4, 5, 6, 7]),
        ];
        round_trip(&target(0), "/ws", &messages).await.unwrap();
        let refused = round_trip(&target(1), "/ws", &messages).await.unwrap_err();
        assert!(refused.starts_with("failed to dial"), "{refused}");
    }
}
