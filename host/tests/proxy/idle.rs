//! The connection watchdog: idle keep-alive connections and request heads (or small
//! bodies) that never finish are closed; a connection with a request in flight is not. Tokio's clock is
//! paused, so the 10 s ticks pass as soon as everything waits.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Reads until the gateway closes the connection; returns what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let _ = stream.read_to_end(&mut seen).await;
    String::from_utf8_lossy(&seen).into_owned()
}

/// Sends `request` (never finished) and returns what the gateway answered before the
/// watchdog closed the connection, which must be after 30–60 s without progress.
async fn closed_unfinished(request: &[u8]) -> String {
    let (_gw, _echo, port) = gateway_with_echo().await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(request).await.unwrap();
    let started = tokio::time::Instant::now();
    let answer = read_to_close(&mut stream).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited <= Duration::from_secs(60),
        "closed after {waited:?}"
    );
    answer
}

#[tokio::test(start_paused = true)]
async fn an_unfinished_request_head_is_closed() {
    let answer = closed_unfinished(b"GET / HTTP/1.1\r\nHost: a").await;
    assert_eq!(answer, "");
}

#[tokio::test(start_paused = true)]
async fn an_unfinished_request_body_is_closed_like_a_head() {
    let answer =
        closed_unfinished(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc").await;
    assert_eq!(
        answer, "",
        "nothing is answered for a request never finished"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed() {
    let (_gw, _echo, port) = gateway_with_echo().await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_keeps_its_connection() {
    let (_gw, echo, port) = gateway_with_echo().await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(b"GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    echo.arrived.notified().await;
    // Far longer than the idle limit, with the backend still holding the answer.
    tokio::time::sleep(Duration::from_secs(300)).await;
    echo.release.notify_one();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
}
