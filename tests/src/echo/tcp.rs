//! The TCP test server of upstream's echo-basic (`tcpserver`, run when `TCP_ECHO_SERVER`
//! is set): on a plain port and, given a certificate, a TLS port. Each connection gets the
//! welcome line, then answers line by line:
//!
//! - `PING` → `PONG`;
//! - `IS_TLS` → `true` or `false`: whether the connection reached a TLS port;
//! - `TEST` → one line of JSON: the pod's context, `isTLS`, and on a TLS port the `tls`
//!   object (version, the SNI the client sent, cipher suite).
//!
//! The TLSRoute conformance tests read these to tell whether a gateway passed TLS through
//! (the backend did the handshake and saw the SNI) or terminated it (plain text arrives).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::handler::Context;
use super::response::TlsAssertions;
use super::tls::assertions;

/// The first line every connection gets (echo-basic's `WelcomeMessage`).
pub const WELCOME: &str = "Gateway API Test TCP Server\n";

/// echo-basic's `TCPAssertions`: what `TEST` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpAssertions {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub pod: String,
    #[serde(rename = "tcpport")]
    pub tcp_port: String,
    #[serde(rename = "tlsport", default, skip_serializing_if = "String::is_empty")]
    pub tls_port: String,
    #[serde(rename = "isTLS")]
    pub is_tls: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TcpTlsAssertions>,
}

/// echo-basic's `TLSAssertions` of the TCP server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpTlsAssertions {
    pub version: String,
    pub server_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub negotiated_protocol: String,
    pub cipher_suite: String,
}

/// The HTTP echo's `tls` object without the client certificates, which the TCP server does
/// not ask for.
impl From<TlsAssertions> for TcpTlsAssertions {
    fn from(tls: TlsAssertions) -> Self {
        TcpTlsAssertions {
            version: tls.version,
            server_name: tls.server_name,
            negotiated_protocol: tls.negotiated_protocol,
            cipher_suite: tls.cipher_suite,
        }
    }
}

/// The ports a pod's TCP server listens on, reported in every `TEST` answer.
#[derive(Debug, Clone, Default)]
pub struct TcpPorts {
    pub tcp: u16,
    /// 0: no TLS port.
    pub tls: u16,
}

/// Serves `listener` for as long as the task runs: TLS connections when given `tls` (no
/// ALPN is offered, as Go's `tls.Listen` with echo-basic's config offers none).
pub async fn serve(
    listener: TcpListener,
    context: Context,
    ports: TcpPorts,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let context = Arc::new(context);
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let context = context.clone();
        let ports = ports.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let mut answer = TcpAssertions {
                namespace: context.namespace.clone(),
                ingress: context.ingress.clone(),
                service: context.service.clone(),
                pod: context.pod.clone(),
                tcp_port: ports.tcp.to_string(),
                tls_port: match ports.tls {
                    0 => String::new(),
                    port => port.to_string(),
                },
                is_tls: false,
                tls: None,
            };
            let Some(acceptor) = acceptor else {
                return converse(stream, answer).await;
            };
            // A failed handshake just ends the connection, as echo-basic's does.
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            answer.is_tls = true;
            answer.tls = Some(assertions(stream.get_ref().1).into());
            converse(stream, answer).await
        });
    }
}

/// The welcome line, then one answer per known command line until the client closes.
async fn converse<S>(stream: S, answer: TcpAssertions)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    if write.write_all(WELCOME.as_bytes()).await.is_err() {
        return;
    }
    let test = match serde_json::to_string(&answer) {
        Ok(json) => json + "\n",
        Err(_) => return,
    };
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match line.as_str() {
            "TEST" => test.clone(),
            "IS_TLS" => format!("{}\n", answer.is_tls),
            "PING" => "PONG\n".to_owned(),
            _ => continue,
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_answer_is_echo_basics_json() {
        let answer = TcpAssertions {
            namespace: "ns".into(),
            pod: "tcp-backend-nantian-0".into(),
            tcp_port: "3000".into(),
            tls_port: "8443".into(),
            is_tls: true,
            tls: Some(TcpTlsAssertions {
                version: "TLSv1.3".into(),
                server_name: "abc.example.com".into(),
                cipher_suite: "TLS_AES_128_GCM_SHA256".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let json: serde_json::Value = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["isTLS"], true);
        assert_eq!(json["tcpport"], "3000");
        assert_eq!(json["tlsport"], "8443");
        assert_eq!(json["tls"]["serverName"], "abc.example.com");
        assert_eq!(json["tls"]["version"], "TLSv1.3");
        assert!(json["tls"].get("negotiatedProtocol").is_none());
    }
}
