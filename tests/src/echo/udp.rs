//! UDP echo: every datagram is answered, to its sender, with one JSON datagram saying who
//! answered and what arrived: `{"namespace": …, "pod": …, "payload": …}`. The UDPRoute
//! tests read which backend a flow reached from it.

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;

use super::handler::Context;

/// The answer to one datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpEcho {
    pub namespace: String,
    pub pod: String,
    /// The datagram as text (invalid UTF-8 replaced).
    pub payload: String,
}

/// Answers datagrams on `socket` for as long as the task runs.
pub async fn serve(socket: UdpSocket, context: Context) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            // ICMP errors of earlier replies surface here; the socket is still good.
            continue;
        };
        let answer = UdpEcho {
            namespace: context.namespace.clone(),
            pod: context.pod.clone(),
            payload: String::from_utf8_lossy(&buf[..n]).into_owned(),
        };
        if let Ok(json) = serde_json::to_vec(&answer) {
            let _ = socket.send_to(&json, peer).await;
        }
    }
}
