//! A raw HTTP/1.1 backend for the upstream pools' unit tests: it reads requests off each
//! connection (a body, framed by length or chunked, is read and skipped) and writes what
//! `answer` makes of each head, piece by piece with a
//! short pause between pieces (so the proxy sees them arrive apart), then closes the
//! connection if `close_after_answer` is set — without saying so, as a backend whose
//! keep-alive timeout just ran out does. It counts the connections it accepted. The same
//! backend runs behind TLS with [`tls_backend`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

type Answer = dyn Fn(&[u8]) -> Vec<Vec<u8>> + Send + Sync;

pub async fn backend(
    answer: impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + Sync + 'static,
    close_after_answer: bool,
) -> (String, Arc<AtomicUsize>) {
    serve(Arc::new(answer), close_after_answer, None).await
}

/// [`backend`] over TLS; connections count once their handshake is done.
pub async fn tls_backend(
    answer: impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + Sync + 'static,
    close_after_answer: bool,
    acceptor: TlsAcceptor,
) -> (String, Arc<AtomicUsize>) {
    serve(Arc::new(answer), close_after_answer, Some(acceptor)).await
}

async fn serve(
    answer: Arc<Answer>,
    close_after_answer: bool,
    tls: Option<TlsAcceptor>,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let (answer, counted, tls) = (answer.clone(), counted.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => {
                        counted.fetch_add(1, Ordering::SeqCst);
                        answer_heads(socket, &*answer, close_after_answer).await;
                    }
                    Some(acceptor) => {
                        let Ok(socket) = acceptor.accept(socket).await else {
                            return;
                        };
                        counted.fetch_add(1, Ordering::SeqCst);
                        answer_heads(socket, &*answer, close_after_answer).await;
                    }
                }
            });
        }
    });
    (addr, connections)
}

async fn answer_heads(
    mut socket: impl AsyncRead + AsyncWrite + Unpin,
    answer: &Answer,
    close_after_answer: bool,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = socket.read(&mut chunk).await {
        buf.extend_from_slice(&chunk[..n]);
        while let Some((head, whole)) = request_len(&buf) {
            let request: Vec<u8> = buf.drain(..whole).collect();
            let pieces = answer(&request[..head]);
            let last = pieces.len().saturating_sub(1);
            for (i, piece) in pieces.iter().enumerate() {
                let _ = socket.write_all(piece).await;
                // Over TLS the piece is only a record once flushed.
                let _ = socket.flush().await;
                if i < last {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            if close_after_answer {
                return;
            }
        }
    }
}

/// The lengths of the head and of the whole request (head and body) at the start of
/// `buf`, once all of it is there.
pub fn request_len(buf: &[u8]) -> Option<(usize, usize)> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
    if text.contains("transfer-encoding: chunked") {
        let end = buf[head..].windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some((head, head + end + 5));
    }
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse::<usize>().unwrap());
    (buf.len() >= head + length).then_some((head, head + length))
}
